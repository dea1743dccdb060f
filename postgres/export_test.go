package postgres

import "context"

// Setting is a session setting as a pooled connection of d has it.
func (d *DB) Setting(ctx context.Context, name string) (string, error) {
	var v string
	err := d.pool.QueryRow(ctx, `SELECT current_setting($1)`, name).Scan(&v)
	return v, err
}

// LoseNextUsageCommitAnswer makes RecordUsage's next COMMIT fail without an
// answer, as a connection breaking during COMMIT does: after the commit
// happened (committed) or without it.
func (d *DB) LoseNextUsageCommitAnswer(committed bool) {
	if committed {
		d.usageFault.Store(faultCommitted)
	} else {
		d.usageFault.Store(faultRolledBack)
	}
}
