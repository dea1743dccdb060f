package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/mattn/go-sqlite3"
)

// FailCommits makes every commit fail with code until called with 0.
func (d *DB) FailCommits(code sqlite3.ErrNo) {
	if code == 0 {
		d.commitFault.Store(nil)
		return
	}
	d.commitFault.Store(&sqlite3.Error{Code: code})
}

// SetMaxPageCount caps the database file, so that writes needing a new page
// fail with a real SQLITE_FULL.
func (d *DB) SetMaxPageCount(ctx context.Context, n int) error {
	return d.do(ctx, func(ctx context.Context, tx *wtx) error {
		_, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", n))
		return err
	})
}

// Pragmas reads the settings in force on the writer's connection and on a
// pooled reader's.
func (d *DB) Pragmas(ctx context.Context, names ...string) (writer, reader map[string]string, err error) {
	read := func(q func(string) *sql.Row) (map[string]string, error) {
		out := make(map[string]string)
		for _, n := range names {
			var v string
			if err := q("PRAGMA " + n).Scan(&v); err != nil {
				return nil, fmt.Errorf("%s: %w", n, err)
			}
			out[n] = v
		}
		return out, nil
	}
	err = d.do(ctx, func(ctx context.Context, tx *wtx) error {
		var err error
		writer, err = read(func(q string) *sql.Row { return tx.QueryRowContext(ctx, q) })
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	reader, err = read(func(q string) *sql.Row { return d.read.QueryRowContext(ctx, q) })
	return writer, reader, err
}
