package sqlite

import (
	"context"
	"math/bits"
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

// auditRowsPerInsert is the most audit events one INSERT writes: a
// second's batch of logins is thousands of rows, and a statement per row
// cost a call into SQLite (and through cgo) per row. A batch is written in
// chunks of powers of two up to it, so that the writer's statement cache
// (writerStmtCache) holds every INSERT it needs, prepared once: parsing a
// 64-row INSERT anew took a third of the batch's CPU time.
const auditRowsPerInsert = 64

func insertAudit(ctx context.Context, tx *wtx, evs []keys.AuditEvent) error {
	args := make([]any, 0, 9*min(len(evs), auditRowsPerInsert))
	for len(evs) > 0 {
		n := auditChunk(len(evs))
		args = args[:0]
		for _, e := range evs[:n] {
			// Plain strings: database/sql converts a named string type
			// (ActorType) by reflection.
			args = append(args, ms(e.At), string(e.ActorType), e.ActorID, e.Action, e.TargetType, e.Target, e.Addr, e.Outcome, e.Detail)
		}
		if _, err := tx.ExecContext(ctx, auditInserts[n], args...); err != nil {
			return err
		}
		evs = evs[n:]
	}
	return nil
}

// auditChunk is how many of n events the next INSERT writes: the largest
// power of two that is at most n and auditRowsPerInsert.
func auditChunk(n int) int {
	if n >= auditRowsPerInsert {
		return auditRowsPerInsert
	}
	return 1 << (bits.Len(uint(n)) - 1)
}

// auditInserts are the INSERTs of 1 to auditRowsPerInsert audit events, by
// the number of rows (the powers of two auditChunk uses).
var auditInserts = func() map[int]string {
	row := "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
	qs := map[int]string{}
	for n := 1; n <= auditRowsPerInsert; n *= 2 {
		qs[n] = "INSERT INTO audit_events (at, actor_type, actor_id, action, target_type, target, addr, outcome, detail) VALUES " +
			strings.Repeat(row+", ", n-1) + row
	}
	return qs
}()
