package sqlite

import (
	"context"
	"strings"
	"time"

	"keygate/keys"
)

// The audit trail: written in the transaction of the change it records
// (insertAudit) or in RecordUsage's batches, listed in pages, deleted by
// housekeeping once older than the retention.

// ListAudit implements keys.Store.
func (d *DB) ListAudit(ctx context.Context, after keys.AuditCursor, limit int) ([]keys.AuditEvent, error) {
	// audit_events_at holds (at, rowid): this is a range scan of it.
	rows, err := d.read.QueryContext(ctx, `SELECT id, at, actor_type, actor_id, action, target_type, target, addr, outcome, detail
		FROM audit_events WHERE (at, id) > (+?, +?) ORDER BY at, id LIMIT +?`, ms(after.At), after.ID, limit)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	out := []keys.AuditEvent{}
	for rows.Next() {
		var e keys.AuditEvent
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.ActorType, &e.ActorID, &e.Action, &e.TargetType, &e.Target, &e.Addr, &e.Outcome, &e.Detail); err != nil {
			return nil, err
		}
		e.At = fromMS(at)
		out = append(out, e)
	}
	return out, mapErr(rows.Err())
}

// DeleteAudit implements keys.Store.
func (d *DB) DeleteAudit(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	var n int64
	err := d.do(ctx, func(ctx context.Context, tx *wtx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM audit_events WHERE id IN (
				SELECT id FROM audit_events WHERE at < +? ORDER BY at, id LIMIT +?)`, ms(before), limit)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// auditRowsPerInsert is how many audit events one INSERT writes: a
// second's batch of logins is thousands of rows, and a statement per row
// cost a call into SQLite (and through cgo) per row.
const auditRowsPerInsert = 64

func insertAudit(ctx context.Context, tx *wtx, evs []keys.AuditEvent) error {
	for len(evs) > 0 {
		n := min(len(evs), auditRowsPerInsert)
		args := make([]any, 0, 9*n)
		for _, e := range evs[:n] {
			args = append(args, ms(e.At), e.ActorType, e.ActorID, e.Action, e.TargetType, e.Target, e.Addr, e.Outcome, e.Detail)
		}
		if _, err := tx.ExecContext(ctx, auditInsert(n), args...); err != nil {
			return err
		}
		evs = evs[n:]
	}
	return nil
}

// auditInserts are the INSERTs of 1 to auditRowsPerInsert audit events.
var auditInserts = func() (qs [auditRowsPerInsert + 1]string) {
	row := "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
	for n := 1; n <= auditRowsPerInsert; n++ {
		qs[n] = "INSERT INTO audit_events (at, actor_type, actor_id, action, target_type, target, addr, outcome, detail) VALUES " +
			strings.Repeat(row+", ", n-1) + row
	}
	return qs
}()

func auditInsert(n int) string { return auditInserts[n] }
