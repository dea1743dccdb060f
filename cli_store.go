package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"keygate/dump"
	"keygate/store"
)

// migrateCommand applies the database's pending migrations and exits: the
// step to run before rolling out a release whose replicas would otherwise
// each try at start (they take turns under a lock, so that is safe too).
func (a *app) migrateCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Apply pending database migrations and exit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := a.openStore(cmd.Context(), false) // opening migrates
			if err != nil {
				return err
			}
			defer st.Close()
			if v, ok := st.(interface {
				Version(ctx context.Context) (int, error)
			}); ok {
				n, err := v.Version(cmd.Context())
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "database %s is at schema version %d\n", a.cfg.Database.Describe(), n)
				return nil
			}
			fmt.Fprintf(a.stdout, "database %s is migrated\n", a.cfg.Database.Describe())
			return nil
		},
	}
}

func (a *app) storeCommand() *cobra.Command {
	cmd := commandGroup("store", "Move keygate's data between databases")
	var toURL string
	cp := &cobra.Command{
		Use:   "copy --to-url postgres://...",
		Short: "Copy the configured SQLite database into an empty PostgreSQL database",
		Long: `Copy the configured SQLite database (database.path) into an empty PostgreSQL
database: partners, companies, API key digests, signing keys (still sealed),
the refresh-token families still needed, and the audit trail, in one
transaction, with the row counts checked before it commits. Stop the server
first: what it writes after the copy starts is not copied. The password may
come from PGPASSWORD or ~/.pgpass instead of the URL.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.copyStore(cmd.Context(), store.URL(toURL))
		},
	}
	cp.Flags().StringVar(&toURL, "to-url", "", "the PostgreSQL database to fill: postgres://user:password@host:port/database")
	_ = cp.MarkFlagRequired("to-url")
	cmd.AddCommand(cp)
	return cmd
}

func (a *app) copyStore(ctx context.Context, to store.URL) error {
	if a.cfg.Database.Driver != "sqlite" {
		return fmt.Errorf("store copy reads a SQLite database: database.driver is %s, want sqlite (point database.path at the file to copy)", a.cfg.Database.Driver)
	}
	target := store.Config{Driver: "postgres", URL: to, MaxConns: 2}
	src, err := a.openStore(ctx, false)
	if err != nil {
		return err
	}
	defer src.Close()
	exporter, ok := src.(store.Exporter)
	if !ok {
		return errors.New("store copy: this store cannot be exported")
	}
	dst, err := store.Open(ctx, target, store.Options{Log: a.log})
	if err != nil {
		return fmt.Errorf("opening the target database: %w", err)
	}
	defer dst.Close()
	importer, ok := dst.(store.Importer)
	if !ok {
		return errors.New("store copy: the target store cannot be imported into")
	}
	snap, err := exporter.Export(ctx)
	if err != nil {
		return fmt.Errorf("reading %s: %w", a.cfg.Database.Path, err)
	}
	defer snap.Close()
	n, err := importer.Import(ctx, snap)
	if err != nil {
		return fmt.Errorf("copying to %s: %w", to, err)
	}
	a.printCopy(n, to)
	return nil
}

func (a *app) printCopy(n dump.Counts, to store.URL) {
	fmt.Fprintf(a.stdout, "copied %s to %s\n\n", a.cfg.Database.Path, to)
	printCounts(a.stdout, n, "refresh-token families (live, or keeping a login's token dead)")
	master := "tokens.master_key"
	if a.cfg.Tokens.MasterKey == "" {
		master = "the contents of " + filepath.Join(filepath.Dir(a.cfg.Database.Path), "master.key")
	}
	fmt.Fprintf(a.stdout, "\nrow counts verified. Start the replicas with database.driver=postgres, this database.url,\nand KEYGATE_TOKENS_MASTER_KEY set to %s: the signing keys and refresh tokens need it.\n", master)
}

// printCounts prints a table of what a copy of the database holds.
func printCounts(w io.Writer, n dump.Counts, families string) {
	for _, row := range []struct {
		n    int64
		what string
	}{
		{n.Partners, "partners"},
		{n.Companies, "companies"},
		{n.Keys, "API keys (digests)"},
		{n.SigningKeys, "signing keys (sealed)"},
		{n.Families, families},
		{n.AuditEvents, "audit events"},
	} {
		fmt.Fprintf(w, "%10d  %s\n", row.n, row.what)
	}
}
