package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"keygate/dump"
)

// backupCommand writes a consistent copy of the live SQLite database.
func (a *app) backupCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "backup FILE",
		Short: "Write a consistent, integrity-checked copy of the SQLite database to FILE",
		Long: `Write a consistent copy of the configured SQLite database (database.path) to
FILE, which must not exist, while keygate serve keeps running: one read
snapshot (VACUUM INTO), checked with PRAGMA integrity_check, synced to disk,
then renamed into place. It prints what the copy holds.

The copy does not hold the master key (data/master.key or tokens.master_key),
without which its signing keys and refresh tokens are useless: back that up
separately, and keep it apart from the database copies. On PostgreSQL, use
pg_dump (docs/operations.md).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.backup(cmd.Context(), args[0])
		},
	}
}

// backuper is a store that can copy itself to a file: SQLite.
type backuper interface {
	Backup(ctx context.Context, path string) (dump.Counts, error)
}

func (a *app) backup(ctx context.Context, path string) error {
	if a.cfg.Database.Driver != "sqlite" {
		return fmt.Errorf("keygate backup copies a SQLite database: database.driver is %s; back PostgreSQL up with pg_dump (docs/operations.md)", a.cfg.Database.Driver)
	}
	st, err := a.openStore(ctx, false)
	if err != nil {
		return err
	}
	defer st.Close()
	b, ok := st.(backuper)
	if !ok {
		return fmt.Errorf("keygate backup: the %s store cannot copy itself", a.cfg.Database.Driver)
	}
	n, err := b.Backup(ctx, path)
	if err != nil {
		return fmt.Errorf("backup of %s: %w", a.cfg.Database.Path, explain(err))
	}
	fmt.Fprintf(a.stdout, "backed up %s to %s (integrity check: ok)\n\n", a.cfg.Database.Path, path)
	printCounts(a.stdout, n, "refresh-token families")
	master := "tokens.master_key"
	if a.cfg.Tokens.MasterKey == "" {
		master = filepath.Join(filepath.Dir(a.cfg.Database.Path), "master.key")
	}
	fmt.Fprintf(a.stdout, "\nThe copy does not hold the master key: restoring it needs %s as well.\n", master)
	return nil
}
