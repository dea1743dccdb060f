package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLock is the advisory lock key migrations run under (any fixed
// number; this one spells "keygate"), so that replicas starting at the
// same moment migrate one after the other: the first applies, the others
// find nothing left to do.
const migrationLock int64 = 0x6b657967617465

type migration struct {
	version int
	name    string
	body    string
}

func loadMigrations() ([]migration, error) {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	var out []migration
	for _, name := range names {
		base := path.Base(name)
		version, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return nil, fmt.Errorf("migration %s: bad version", base)
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: version, name: base, body: string(body)})
	}
	return out, nil
}

// SchemaVersion is the newest migration this keygate knows.
func SchemaVersion() int {
	ms, err := loadMigrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// migrate applies pending migrations in one transaction holding the
// migration advisory lock, and refuses a database whose schema is newer
// than this keygate knows: an older replica must not write to it.
func (d *DB) migrate(ctx context.Context) error {
	all, err := loadMigrations()
	if err != nil {
		return err
	}
	known := all[len(all)-1].version
	// A schema already at this version needs no lock and no write: replicas
	// restarting skip the queue, and a read-only session (a standby) opens,
	// to be reported unavailable by Ready rather than refused at start.
	if current, err := d.currentVersion(ctx); err != nil {
		return d.mapErr(err)
	} else if current == known {
		return nil
	}
	return d.mapErr(pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		// A migration runs as long as it takes, and a replica waits for
		// another's: no session time limit applies.
		if _, err := tx.Exec(ctx, `SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer PRIMARY KEY,
			name       text NOT NULL,
			applied_at bigint NOT NULL)`); err != nil {
			return err
		}
		var current int
		if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
			return err
		}
		if current > known {
			return fmt.Errorf("database schema is at version %d, newer than this keygate knows (%d): run the keygate release that migrated it, or a newer one", current, known)
		}
		for _, m := range all {
			if m.version <= current {
				continue
			}
			if _, err := tx.Exec(ctx, m.body); err != nil {
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
				m.version, m.name, ms(d.now())); err != nil {
				return err
			}
			d.log.Debug("database migrated", "version", m.version, "migration", m.name)
		}
		return nil
	}))
}

// currentVersion is the schema's version, 0 if it has no migrations table.
func (d *DB) currentVersion(ctx context.Context) (int, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	var exists bool
	if err := d.pool.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return 0, err
	}
	var v int
	err := d.pool.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}

// Version is the schema version the database is at.
func (d *DB) Version(ctx context.Context) (int, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	var v int
	err := d.pool.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	return v, d.mapErr(err)
}
