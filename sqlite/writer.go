package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"keygate/keys"
)

// maxBatch bounds how many writes one transaction gathers.
const maxBatch = 256

// ErrClosed is returned for writes submitted after Close; callers see it
// as storage that is unavailable (503 during a shutdown).
var ErrClosed = fmt.Errorf("%w: database closed", keys.ErrUnavailable)

type writeOp struct {
	ctx  context.Context
	fn   func(ctx context.Context, tx *sql.Tx) error
	done chan error
}

// do runs fn in the writer's next transaction and returns once that
// transaction has committed (or fn's own error). fn's changes are rolled
// back to a savepoint if it fails, so one bad write fails only its caller.
func (d *DB) do(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return d.submit(&writeOp{ctx: ctx, fn: fn, done: make(chan error, 1)})
}

func (d *DB) submit(op *writeOp) error {
	select {
	case d.ops <- op:
	case <-d.quit:
		return ErrClosed
	case <-op.ctx.Done():
		return op.ctx.Err()
	}
	// Once taken, the write runs to completion: wait for its verdict even
	// if the caller's context ends, so the caller always learns whether
	// its row committed.
	return <-op.done
}

// writer is the only goroutine that writes. It takes one op, gathers every
// other op already waiting (up to maxBatch), and commits them in one
// transaction: one fsync for the lot. While it commits, new ops queue up
// for the next batch, so batches grow with load by themselves.
func (d *DB) writer() {
	defer close(d.stopped)
	batch := make([]*writeOp, 0, maxBatch)
	for {
		select {
		case <-d.quit:
			return
		case op := <-d.ops:
			batch = append(batch[:0], op)
		}
	gather:
		for len(batch) < maxBatch {
			select {
			case op := <-d.ops:
				batch = append(batch, op)
			default:
				break gather
			}
		}
		d.commit(batch)
		clear(batch)
	}
}

func (d *DB) commit(batch []*writeOp) {
	results := make([]error, len(batch))
	err := d.runBatch(batch, results)
	if err != nil {
		err = mapErr(err)
		if errors.Is(err, keys.ErrUnavailable) {
			if !d.failing.Swap(true) {
				d.log.Error("database writes failing", "err", err)
			}
		}
		for i := range results {
			if results[i] == nil {
				results[i] = err
			}
		}
	}
	// A batch that wrote nothing commits even on a full disk, so only the
	// probe in Ready, which writes, may declare the database healthy again.
	for i, op := range batch {
		op.done <- results[i]
	}
}

func (d *DB) runBatch(batch []*writeOp, results []error) error {
	ctx := context.Background()
	tx, err := d.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	// The writer's key cache may hold what this transaction read; if the
	// transaction does not commit, that may not be true any more.
	rollback := func() {
		tx.Rollback()
		d.keyCache.forget()
	}
	if err := d.keyCache.sync(ctx, tx, d.wstmts.dataVersion); err != nil {
		rollback()
		return err
	}
	changesAtStart := int64(-1)
	if d.commitFault.Load() != nil {
		changesAtStart = totalChanges(tx)
	}
	alone := len(batch) == 1
	for i, op := range batch {
		if err := op.ctx.Err(); err != nil {
			results[i] = err // the caller left before its write started
			continue
		}
		octx := context.WithoutCancel(op.ctx)
		if alone {
			if results[i] = mapErr(op.fn(octx, tx)); results[i] != nil {
				rollback()
				if errors.Is(results[i], keys.ErrUnavailable) {
					return results[i]
				}
				return nil
			}
			continue
		}
		if _, err := tx.StmtContext(ctx, d.wstmts.savepoint).ExecContext(ctx); err != nil {
			rollback()
			return err
		}
		if results[i] = op.fn(octx, tx); results[i] != nil {
			results[i] = mapErr(results[i])
			if errors.Is(results[i], keys.ErrUnavailable) {
				rollback()
				return results[i]
			}
			d.keyCache.forget()
			if _, err := tx.ExecContext(ctx, `ROLLBACK TO op`); err != nil {
				rollback()
				return err
			}
		}
		if _, err := tx.StmtContext(ctx, d.wstmts.release).ExecContext(ctx); err != nil {
			rollback()
			return err
		}
	}
	if fault := d.commitFault.Load(); fault != nil && wrote(tx, changesAtStart) {
		rollback()
		return *fault
	}
	if err := tx.Commit(); err != nil {
		rollback()
		return err
	}
	return nil
}

// totalChanges is the connection's count of changed rows, for the test
// fault hook.
func totalChanges(tx *sql.Tx) int64 {
	var n int64
	_ = tx.QueryRow(`SELECT total_changes()`).Scan(&n)
	return n
}

func wrote(tx *sql.Tx, before int64) bool { return totalChanges(tx) != before }
