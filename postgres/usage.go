package postgres

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"keygate/keys"
)

// usageState is what RecordUsage remembers between calls: batches it
// wrote whose events the caller (keys.Recorder) still holds, because the
// call failed, and ids of batch rows that can be deleted.
//
// A commit whose answer is lost (the connection broke during COMMIT) may
// or may not have happened. keys.Recorder then hands the same events back
// in its next batch. To write them exactly once, every batch inserts a row
// keyed by a random id in its own transaction; the next call inserts that
// id again, and a unique-key conflict proves that the first commit
// happened (the insert waits for a transaction still in flight to end):
// its events are then left out of the new batch.
type usageState struct {
	mu      sync.Mutex
	pending []usageBatch
	done    [][]byte // batch rows no longer needed
}

type usageBatch struct {
	id        []byte
	events    []keys.AuditEvent // as this batch wrote them
	committed bool              // known to have committed
}

// RecordUsage implements keys.Store: last-use times only move forward
// (GREATEST), keys are updated in one order on every replica (no deadlock
// between two replicas' batches), and audit events are appended with COPY,
// exactly once even when a commit's answer was lost (see usageState).
func (d *DB) RecordUsage(ctx context.Context, lastUsed map[string]time.Time, evs []keys.AuditEvent) error {
	if len(lastUsed) == 0 && len(evs) == 0 {
		return nil
	}
	if d.closed.Load() {
		return errClosed
	}
	ctx, cancel := bound(ctx)
	defer cancel()
	u := &d.usage
	u.mu.Lock()
	defer u.mu.Unlock()
	ids := make([]string, 0, len(lastUsed))
	for id := range lastUsed {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	batch := usageBatch{id: make([]byte, 16)}
	_, _ = rand.Read(batch.id)
	var err error
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		var atCommit bool
		batch.events = nil
		atCommit, err = d.writeUsage(ctx, &batch, ids, lastUsed, evs)
		switch {
		case err == nil:
			u.done = [][]byte{batch.id}
			u.pending = nil
			return nil
		case atCommit && sqlState(err) == "":
			// No answer to COMMIT: the batch may have committed.
			u.pending = append(u.pending, batch)
			return d.mapErr(err)
		case !retryable(err):
			return d.mapErr(err)
		}
	}
	return unavailableErr(err)
}

// writeUsage writes one batch in one transaction; atCommit reports that
// the error, if any, came from COMMIT.
func (d *DB) writeUsage(ctx context.Context, batch *usageBatch, ids []string, lastUsed map[string]time.Time, evs []keys.AuditEvent) (atCommit bool, err error) {
	u := &d.usage
	tx, err := d.pool.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	now := ms(d.now())
	if err := d.resolvePending(ctx, tx, now); err != nil {
		return false, err
	}
	batch.events = withoutCommitted(evs, u.pending)

	b := &pgx.Batch{}
	b.Queue(`INSERT INTO usage_batches (id, at) VALUES ($1, $2)`, batch.id, now)
	if len(u.done) > 0 {
		b.Queue(`DELETE FROM usage_batches WHERE id = ANY($1)`, u.done)
	}
	for _, id := range ids {
		b.Queue(`UPDATE api_keys SET last_used_at = GREATEST(COALESCE(last_used_at, 0), $1) WHERE id = $2`, ms(lastUsed[id]), id)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return false, err
	}
	if len(batch.events) > 0 {
		i := 0
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_events"},
			[]string{"at", "actor_type", "actor_id", "action", "target_type", "target", "addr", "outcome", "detail"},
			pgx.CopyFromFunc(func() ([]any, error) {
				if i == len(batch.events) {
					return nil, nil
				}
				e := batch.events[i]
				i++
				return []any{ms(e.At), string(e.ActorType), e.ActorID, e.Action, e.TargetType, e.Target, e.Addr, e.Outcome, e.Detail}, nil
			}))
		if err != nil {
			return false, err
		}
	}
	switch d.usageFault.Swap(noFault) {
	case faultCommitted:
		if err := tx.Commit(ctx); err != nil {
			return true, err
		}
		return true, errNoAnswer
	case faultRolledBack:
		return true, errNoAnswer
	}
	return true, tx.Commit(ctx)
}

// resolvePending learns, for each pending batch whose commit is
// unconfirmed, whether it committed. What it learns is true whatever
// becomes of tx: a batch that had not committed when its id could be
// inserted never will.
func (d *DB) resolvePending(ctx context.Context, tx pgx.Tx, now int64) error {
	u := &d.usage
	unsure := slices.ContainsFunc(u.pending, func(b usageBatch) bool { return !b.committed })
	if !unsure {
		return nil
	}
	// A batch still in flight on a broken connection holds its row's key:
	// wait for it a little, not for ever (and well within callTimeout).
	if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '2s'`); err != nil {
		return err
	}
	kept := u.pending[:0]
	for _, b := range u.pending {
		if b.committed {
			kept = append(kept, b)
			continue
		}
		tag, err := tx.Exec(ctx, `INSERT INTO usage_batches (id, at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING`, b.id, now)
		if err != nil {
			u.pending = append(kept, u.pending[len(kept):]...)
			return err
		}
		u.done = append(u.done, b.id)
		if tag.RowsAffected() == 0 {
			b.committed = true
			kept = append(kept, b)
		}
		// Otherwise it never committed: its events are simply written again.
	}
	u.pending = kept
	return nil
}

// auditKey is an audit event as stored: what tells two events apart.
type auditKey struct {
	at                                                                    int64
	actorType, actorID, action, targetType, target, addr, outcome, detail string
}

func keyOf(e keys.AuditEvent) auditKey {
	return auditKey{ms(e.At), string(e.ActorType), e.ActorID, e.Action, e.TargetType, e.Target, e.Addr, e.Outcome, e.Detail}
}

// withoutCommitted is evs less one occurrence of each event that a
// committed pending batch already wrote.
func withoutCommitted(evs []keys.AuditEvent, pending []usageBatch) []keys.AuditEvent {
	written := map[auditKey]int{}
	for _, b := range pending {
		if b.committed {
			for _, e := range b.events {
				written[keyOf(e)]++
			}
		}
	}
	if len(written) == 0 {
		return evs
	}
	out := make([]keys.AuditEvent, 0, len(evs))
	for _, e := range evs {
		k := keyOf(e)
		if written[k] > 0 {
			written[k]--
			continue
		}
		out = append(out, e)
	}
	return out
}

// Test faults of RecordUsage's next COMMIT (export_test.go): its answer
// is lost after it committed, or after it was rolled back instead.
const (
	noFault int32 = iota
	faultCommitted
	faultRolledBack
)

// errNoAnswer is what a test fault returns for a COMMIT whose answer was
// lost, as a broken connection would.
var errNoAnswer = fmt.Errorf("postgres: no answer to COMMIT (test fault): %w", io.ErrUnexpectedEOF)
