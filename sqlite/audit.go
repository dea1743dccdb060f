package sqlite

import (
	"context"
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
		FROM audit_events WHERE (at, id) > (?, ?) ORDER BY at, id LIMIT ?`, ms(after.At), after.ID, limit)
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
				SELECT id FROM audit_events WHERE at < ? ORDER BY at, id LIMIT ?)`, ms(before), limit)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

func insertAudit(ctx context.Context, tx *wtx, evs []keys.AuditEvent) error {
	if len(evs) == 0 {
		return nil
	}
	st, err := tx.PrepareContext(ctx, `INSERT INTO audit_events (at, actor_type, actor_id, action, target_type, target, addr, outcome, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, e := range evs {
		if _, err := st.ExecContext(ctx, ms(e.At), e.ActorType, e.ActorID, e.Action, e.TargetType, e.Target, e.Addr, e.Outcome, e.Detail); err != nil {
			return err
		}
	}
	return nil
}
