package postgres

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
