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
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"keygate/keys"
	"keygate/server"
	"keygate/sqlite"
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
	cfg    Config
	log    *slog.Logger
	stdout io.Writer
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	var configPath string
	a := &app{stdout: stdout}
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
			a.log = newLogger(cfg.Log, stderr)
			return nil
		},
	}
	root.PersistentFlags().StringVar(&configPath, "config", "", "config file (default ./config.yaml if present)")
	root.AddCommand(a.serveCommand(), a.partnerCommand(), a.signingKeyCommand(), a.auditCommand())
	return root
}

func newLogger(cfg LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level)) // validated already
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if cfg.Format == "text" {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(server.LogHandler(h))
}

// openDB opens the configured database for a command.
// Only serve and partner create may create a database: any other command
// pointed at a mistyped path says so instead of writing a new one.
func (a *app) openDB(ctx context.Context, create bool) (*sqlite.DB, error) {
	if !create {
		if _, err := os.Stat(a.cfg.Database.Path); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no database at %s: check database.path (keygate serve or partner create makes one)", a.cfg.Database.Path)
		}
	}
	return sqlite.Open(ctx, sqlite.Options{Path: a.cfg.Database.Path, Synchronous: a.cfg.Database.Synchronous, Logger: a.log})
}

// masterKey returns tokens.master_key, or else the key file beside the
// database, created with mode 0600 only while the database holds no
// signing key: a new master key could not open those, so a missing file
// next to a used database is an error, not a reason to start afresh.
func (a *app) masterKey(ctx context.Context, db *sqlite.DB) (tokens.MasterKey, error) {
	if a.cfg.Tokens.MasterKey != "" {
		return tokens.NewMasterKey(a.cfg.Tokens.MasterKey.Reveal())
	}
	path := filepath.Join(filepath.Dir(a.cfg.Database.Path), "master.key")
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		sealed, err := db.ListSigningKeys(ctx)
		if err != nil {
			return tokens.MasterKey{}, err
		}
		if len(sealed) > 0 {
			return tokens.MasterKey{}, fmt.Errorf("no master key: %s is missing and tokens.master_key is not set, but the database holds signing keys sealed under one; give this command the server's KEYGATE_TOKENS_MASTER_KEY", path)
		}
	}
	return tokens.LoadOrCreateMasterKeyFile(path)
}

func (a *app) keyring(ctx context.Context, db *sqlite.DB) (*tokens.Keyring, error) {
	master, err := a.masterKey(ctx, db)
	if err != nil {
		return nil, err
	}
	t := a.cfg.Tokens
	return tokens.NewKeyring(tokens.KeyringConfig{
		Algorithm:       t.Algorithm,
		HMACSecret:      t.HMACSecret.Reveal(),
		AccessTTL:       t.AccessTTL,
		Leeway:          t.Leeway,
		ActivationDelay: t.SigningKeyActivationDelay,
	}, master, db, time.Now, a.log), nil
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
	server.KeepHeapGoal()
	db, err := a.openDB(ctx, true)
	if err != nil {
		return fmt.Errorf("opening database: %w", err)
	}
	defer db.Close()

	ring, err := a.keyring(ctx, db)
	if err != nil {
		return err
	}
	if err := ring.EnsureKey(ctx); err != nil {
		return fmt.Errorf("creating signing key: %w", err)
	}
	if err := ring.Load(ctx); err != nil {
		return fmt.Errorf("loading signing keys: %w", err)
	}
	master, err := a.masterKey(ctx, db)
	if err != nil {
		return err
	}
	t := a.cfg.Tokens
	jwtSigner, err := tokens.NewJWT(tokens.JWTConfig{
		Issuer: t.Issuer, Audience: t.Audience, Algorithm: t.Algorithm, AccessTTL: t.AccessTTL, Leeway: t.Leeway,
	}, ring, time.Now)
	if err != nil {
		return err
	}
	recorder := keys.NewRecorder(db, time.Second, a.log)
	keySvc := keys.NewService(db, recorder, time.Now, a.log)
	tokenSvc := tokens.NewService(keySvc, db, jwtSigner, master, tokens.RefreshConfig{
		TTL: t.RefreshTTL, MaxLifetime: t.RefreshMaxLifetime, ReuseGrace: t.RefreshReuseGrace, Retention: t.Retention,
	}, time.Now)

	rl := a.cfg.RateLimit
	srv, err := server.New(server.Config{
		TrustedProxies: a.cfg.Server.TrustedProxies,
		MaxBodyBytes:   a.cfg.Server.MaxBodyBytes,
		RateLimits: server.RateLimits{
			LoginFailuresPerMinute:    rl.LoginFailuresPerMinute,
			LoginPerKeyPerMinute:      rl.LoginPerKeyPerMinute,
			RefreshPerFamilyPerMinute: rl.RefreshPerFamilyPerMinute,
			APIPerMinute:              rl.APIPerMinute,
			MaxTracked:                rl.MaxTracked,
		},
	}, server.Deps{Keys: keySvc, Tokens: tokenSvc, JWKS: ring.JWKS, Ready: db.Ready, Log: a.log, Now: time.Now})
	if err != nil {
		return err
	}

	sc := a.cfg.Server
	httpServer := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: sc.ReadHeaderTimeout,
		ReadTimeout:       sc.ReadTimeout,
		WriteTimeout:      sc.WriteTimeout,
		IdleTimeout:       sc.IdleTimeout,
		MaxHeaderBytes:    headerLimit(sc.MaxHeaderBytes),
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", sc.Addr)
	if err != nil {
		return err
	}

	bgCtx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	var bg sync.WaitGroup
	bg.Go(func() { ring.Run(bgCtx, t.KeyReloadInterval) })
	bg.Go(func() { recorder.Run(bgCtx) })
	bg.Go(func() { housekeep(bgCtx, tokenSvc, t.HousekeepingInterval, a.log) })

	serveErr := make(chan error, 1)
	go func() { serveErr <- httpServer.Serve(ln) }()
	a.log.Info("keygate listening", "addr", ln.Addr().String(), "database", a.cfg.Database.Path, "algorithm", t.Algorithm)

	select {
	case err := <-serveErr:
		stopBackground()
		bg.Wait()
		return err
	case <-ctx.Done():
	}
	a.log.Info("shutting down: draining requests", "timeout", sc.ShutdownTimeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sc.ShutdownTimeout)
	defer cancel()
	shutdownErr := httpServer.Shutdown(shutdownCtx)
	stopBackground()
	bg.Wait() // the recorder flushes its last batch here
	if err := db.Close(); err != nil {
		return fmt.Errorf("closing database: %w", err)
	}
	if shutdownErr != nil {
		return fmt.Errorf("draining requests: %w", shutdownErr)
	}
	a.log.Info("stopped cleanly")
	return nil
}

// headerLimit turns server.max_header_bytes into http.Server's setting,
// which lets 4096 bytes more through than it says.
func headerLimit(n int) int {
	const slop = 4096
	if n-slop < 1024 {
		return 1024
	}
	return n - slop
}

func housekeep(ctx context.Context, svc *tokens.Service, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, err := svc.Housekeep(ctx)
		if err != nil && ctx.Err() == nil {
			log.ErrorContext(ctx, "housekeeping", "err", err)
		} else if n > 0 {
			log.InfoContext(ctx, "housekeeping deleted refresh-token families", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
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
