// Package store is the one seam between keygate and its databases: the
// Store interface every backend implements (the keys and tokens stores,
// plus Ready and Close) and Open, which opens the backend the configuration
// names. sqlite/ and memstore/ (the in-memory floor of the benchmarks)
// implement it, storetest/ holds the contract they all pass, and gateway/
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

	"keygate/keys"
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

var _ Store = (*sqlite.DB)(nil)

// Drivers names the accepted values of database.driver.
var Drivers = []string{"sqlite"}

// Config is the database section of the configuration.
type Config struct {
	Driver      string // "sqlite" (the default)
	Path        string // sqlite: the database file
	Synchronous string // sqlite: FULL by default
}

// Options are what Open needs besides the configuration.
type Options struct {
	// Create lets Open make a new, empty database. Commands that expect an
	// existing one leave it false, so that a mistyped path is an error
	// instead of a fresh database.
	Create bool
	Log    *slog.Logger
	Now    func() time.Time
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
		return sqlite.Open(ctx, sqlite.Options{Path: cfg.Path, Synchronous: cfg.Synchronous, Logger: opts.Log, Now: opts.Now})
	}
	return nil, fmt.Errorf("database.driver: unknown driver %q", cfg.Driver)
}
