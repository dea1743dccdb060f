// Package store is the one seam between keygate and its databases: the
// Store interface every backend implements (the keys and tokens stores,
// plus Ready and Close) and Open, which opens the backend the configuration
// names. sqlite/, postgres/ and memstore/ (the in-memory floor of the
// benchmarks) implement it, storetest/ holds the contract they all pass, and gateway/
// wires it into the services.
package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"keygate/dump"
	"keygate/keys"
	"keygate/postgres"
	"keygate/sqlite"
	"keygate/tokens"
)

// Store is everything keygate persists, and how to tell whether it can.
type Store interface {
	keys.Store
	tokens.Store
	// Ready reports whether the store can serve now: it answers reads and,
	// after a failed write, writes succeed again.
	Ready(ctx context.Context) error
	// Close releases the store; call it once no request uses it any more.
	// Closing again does nothing and returns nil.
	Close() error
}

var (
	_ Store    = (*sqlite.DB)(nil)
	_ Store    = (*postgres.DB)(nil)
	_ Exporter = (*sqlite.DB)(nil)
	_ Importer = (*postgres.DB)(nil)
)

// Drivers names the accepted values of database.driver.
var Drivers = []string{"sqlite", "postgres"}

// Config is the database section of the configuration.
type Config struct {
	Driver      string // "sqlite" (the default) or "postgres"
	Path        string // sqlite: the database file
	Synchronous string // sqlite: FULL by default
	URL         URL    // postgres: postgres://user:password@host:port/database
	MaxConns    int    // postgres: the connection pool's size
}

// Describe names the database for logs and messages: the SQLite file, or
// the PostgreSQL URL without its password.
func (c Config) Describe() string {
	if c.Driver == "postgres" {
		return c.URL.String()
	}
	return c.Path
}

// URL is a database URL. It prints without its password, so that a
// configuration dumped to a log or an error does not leak it; Reveal gives
// the URL itself, for the driver.
type URL string

// String is the URL with its password replaced by xxxxx.
func (u URL) String() string {
	if u == "" {
		return ""
	}
	return postgres.Redact(string(u))
}

// LogValue implements slog.LogValuer.
func (u URL) LogValue() slog.Value { return slog.StringValue(u.String()) }

// GoString keeps %#v from printing the password.
func (u URL) GoString() string { return u.String() }

// Reveal is the URL, password included.
func (u URL) Reveal() string { return string(u) }

// Exporter is a store whose rows keygate store copy can read: SQLite, the
// store one moves from.
type Exporter interface {
	Export(ctx context.Context) (dump.Source, error)
}

// Importer is a store keygate store copy can fill: PostgreSQL. Import
// copies every row of src in one transaction into a store that holds
// nothing yet, refusing one that holds anything, checks the counts against
// src's before it commits, and returns them.
type Importer interface {
	Import(ctx context.Context, src dump.Source) (dump.Counts, error)
}

// Options are what Open needs besides the configuration.
type Options struct {
	// Create lets Open make a new, empty database. Commands that expect an
	// existing one leave it false, so that a mistyped path is an error
	// instead of a fresh database.
	Create bool
	Log    *slog.Logger
	Now    func() time.Time
	// OnCommit, if set, learns of every commit of the store's writes: how
	// many writes it carried, how long it took, its error (the metrics).
	// SQLite calls it per group commit; PostgreSQL per write transaction
	// (one write each).
	OnCommit func(writes int, took time.Duration, err error)
}

// Open opens the store cfg names, applying pending migrations.
func Open(ctx context.Context, cfg Config, opts Options) (Store, error) {
	switch cfg.Driver {
	case "", "sqlite":
		if !opts.Create {
			if _, err := os.Stat(cfg.Path); errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("no database at %s: check database.path (keygate serve or partner create makes one)", cfg.Path)
			}
		}
		return sqlite.Open(ctx, sqlite.Options{Path: cfg.Path, Synchronous: cfg.Synchronous, Logger: opts.Log, Now: opts.Now, OnCommit: opts.OnCommit})
	case "postgres":
		// A PostgreSQL database exists before keygate does: Create has no
		// part here, and migrations make an empty one keygate's.
		db, err := postgres.Open(ctx, postgres.Options{URL: cfg.URL.Reveal(), MaxConns: cfg.MaxConns, Logger: opts.Log, Now: opts.Now, OnCommit: opts.OnCommit})
		if err != nil {
			return nil, err
		}
		return db, nil
	}
	return nil, fmt.Errorf("database.driver: unknown driver %q", cfg.Driver)
}
