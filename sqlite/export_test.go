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
	return d.do(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", n))
		return err
	})
}
