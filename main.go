// Command keygate exchanges partners' and companies' API keys for
// short-lived R-Auth JWTs and rotating refresh tokens. This file wires the
// packages together: commands, configuration, the store and the server.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"keygate/gateway"
	"keygate/metrics"
	"keygate/store"
	"keygate/tokens"
)

func main() {
	if err := newRootCommand(os.Stdout, os.Stderr).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "keygate: "+oneLine(err))
		os.Exit(1)
	}
}

// app is what every command needs once configuration is loaded.
type app struct {
	cfg    gateway.Config
	log    *slog.Logger
	stdout io.Writer
	stderr io.Writer
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	var configPath string
	a := &app{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "keygate",
		Short:         "API-key-to-JWT gateway",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(configPath)
			if err != nil {
				return err
			}
			a.cfg = cfg
			a.log = gateway.NewLogger(cfg.Log, stderr)
			return nil
		},
	}
	root.PersistentFlags().StringVar(&configPath, "config", "", "config file (default ./config.yaml if present)")
	root.AddCommand(a.serveCommand(), a.partnerCommand(), a.signingKeyCommand(), a.auditCommand(), a.migrateCommand(), a.storeCommand(), a.backupCommand(), a.masterKeyCommand(), a.versionCommand())
	return root
}

// versionCommand prints the version; it needs no configuration.
func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:               "version",
		Short:             "Print keygate's version and Go version",
		Args:              cobra.NoArgs,
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintf(a.stdout, "keygate %s %s\n", metrics.Version(), runtime.Version())
			return err
		},
	}
}

// openStore opens the configured store for a command. Only serve and
// partner create may create a database: any other command pointed at a
// mistyped path says so instead of writing a new one.
func (a *app) openStore(ctx context.Context, create bool) (store.Store, error) {
	return a.openStoreWith(ctx, store.Options{Create: create, Log: a.log})
}

func (a *app) openStoreWith(ctx context.Context, opts store.Options) (store.Store, error) {
	st, err := store.Open(ctx, a.cfg.Database, opts)
	if err != nil {
		return nil, fmt.Errorf("opening database: %w", err)
	}
	return st, nil
}

// masterKey returns tokens.master_key, or else the key file beside the
// database, created with mode 0600 only while the database holds nothing
// sealed (holdsSealed): a new master key could not open it, so a missing
// file next to a used database is an error, not a reason to start afresh.
func (a *app) masterKey(ctx context.Context, st store.Store) (tokens.MasterKey, error) {
	if a.cfg.Tokens.MasterKey != "" {
		return tokens.NewMasterKey(a.cfg.Tokens.MasterKey.Reveal())
	}
	path := filepath.Join(filepath.Dir(a.cfg.Database.Path), "master.key")
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		sealed, err := holdsSealed(ctx, st)
		if err != nil {
			return tokens.MasterKey{}, err
		}
		if sealed {
			return tokens.MasterKey{}, fmt.Errorf("no master key: %s is missing and tokens.master_key is not set, but the database holds keys sealed under one; give this command the server's KEYGATE_TOKENS_MASTER_KEY", path)
		}
	}
	return tokens.LoadOrCreateMasterKeyFile(path)
}

func (a *app) keyring(ctx context.Context, st store.Store) (*tokens.Keyring, error) {
	master, err := a.masterKey(ctx, st)
	if err != nil {
		return nil, err
	}
	return gateway.NewKeyring(a.cfg.Tokens, master, st, time.Now, a.log), nil
}

func (a *app) serveCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			// After the first signal, a second one kills at once instead of
			// waiting out the drain.
			context.AfterFunc(ctx, stop)
			return a.serve(ctx)
		},
	}
}

// serve runs until ctx ends, then drains requests, stops the background
// jobs, flushes the audit batch and closes the database, in that order.
func (a *app) serve(ctx context.Context) error {
	// One line per request: many go out in one write.
	lw := gateway.NewLogWriter(a.stderr)
	defer lw.Close()
	a.log = gateway.NewLogger(a.cfg.Log, lw)
	// The metrics exist before the store, so that they see its commits.
	m := gateway.NewMetrics(a.cfg)
	st, err := a.openStoreWith(ctx, store.Options{Create: true, Log: a.log, OnCommit: m.CommitObserver()})
	if err != nil {
		return err
	}
	defer st.Close()
	master, err := a.masterKey(ctx, st)
	if err != nil {
		return err
	}
	gw, err := gateway.New(ctx, a.cfg, st, master, gateway.Options{Log: a.log, Now: time.Now, Metrics: m})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", a.cfg.Server.Addr)
	if err != nil {
		return err
	}
	var admin net.Listener
	if a.cfg.Admin.Addr != "" {
		if admin, err = net.Listen("tcp", a.cfg.Admin.Addr); err != nil {
			ln.Close()
			return fmt.Errorf("admin.addr: %w", err)
		}
		a.log.Info("admin listening", "addr", admin.Addr().String(), "pprof", a.cfg.Admin.Pprof)
	}
	a.log.Info("keygate listening", "addr", ln.Addr().String(), "database", a.cfg.Database.Describe(), "algorithm", a.cfg.Tokens.Algorithm)
	serveErr := gw.Serve(ctx, ln, admin)
	if err := st.Close(); err != nil {
		return fmt.Errorf("closing database: %w", err)
	}
	if serveErr != nil {
		return serveErr
	}
	a.log.Info("stopped cleanly")
	return nil
}

// oneLine keeps a command's error on one line of stderr.
func oneLine(err error) string {
	msg := err.Error()
	out := make([]rune, 0, len(msg))
	for _, r := range msg {
		if r == '\n' || r == '\r' {
			r = ' '
		}
		out = append(out, r)
	}
	return string(out)
}
