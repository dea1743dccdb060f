package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"keygate/keys"
)

// ListAudit implements keys.Store: a range scan of audit_events_at, which
// holds (at, id).
func (d *DB) ListAudit(ctx context.Context, after keys.AuditCursor, limit int) ([]keys.AuditEvent, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	rows, _ := d.pool.Query(ctx, `SELECT id, at, actor_type, actor_id, action, target_type, target, addr, outcome, detail
		FROM audit_events WHERE (at, id) > ($1, $2) ORDER BY at, id LIMIT $3`, ms(after.At), after.ID, limit)
	out, err := pgx.CollectRows(rows, scanAudit)
	if err != nil {
		return nil, d.mapErr(err)
	}
	if out == nil {
		out = []keys.AuditEvent{}
	}
	return out, nil
}

func scanAudit(row pgx.CollectableRow) (keys.AuditEvent, error) {
	var e keys.AuditEvent
	var at int64
	var actorType string
	err := row.Scan(&e.ID, &at, &actorType, &e.ActorID, &e.Action, &e.TargetType, &e.Target, &e.Addr, &e.Outcome, &e.Detail)
	e.At, e.ActorType = fromMS(at), keys.ActorType(actorType)
	return e, err
}

// DeleteAudit implements keys.Store. Like DeleteFamilies, replicas running
// it at once skip each other's locked rows, so each event is deleted once
// and no one waits.
func (d *DB) DeleteAudit(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	var n int64
	err := d.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM audit_events WHERE id IN (
				SELECT id FROM audit_events WHERE at < $1 ORDER BY at, id
				LIMIT $2 FOR UPDATE SKIP LOCKED)`, ms(before), limit)
		n = tag.RowsAffected()
		return err
	})
	return int(n), err
}
