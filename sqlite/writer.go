package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"keygate/keys"
	"runtime"
	"time"
)

// maxBatch bounds how many writes one transaction gathers.
const maxBatch = 256

// ErrClosed is returned for writes submitted after Close; callers see it
// as storage that is unavailable (503 during a shutdown).
var ErrClosed = fmt.Errorf("%w: database closed", keys.ErrUnavailable)

type writeOp struct {
	ctx  context.Context
	fn   func(ctx context.Context, tx *wtx) error
	done chan error
	// lazy: fn opens its savepoint itself (tx.savepoint) before it writes
	// a second statement; until then a failed statement undoes itself.
	lazy bool
	// bare: fn runs alone on the writer's connection, outside any
	// transaction (a WAL checkpoint cannot run inside one).
	bare bool
}

// wtx is the batch's transaction as an op sees it: the writer's own
// connection (its prepared statements run on it directly), inside the
// transaction the writer began.
type wtx struct {
	*sql.Conn
	d     *DB
	alone bool // the op is the batch's only one: no savepoint needed
	saved bool // the op's savepoint is open
}

// savepoint opens the op's savepoint, if it needs one and has none.
func (t *wtx) savepoint(ctx context.Context) error {
	if t.alone || t.saved {
		return nil
	}
	if _, err := t.d.wstmts.savepoint.ExecContext(ctx); err != nil {
		return err
	}
	t.saved = true
	return nil
}

// do runs fn in the writer's next transaction and returns once that
// transaction has committed (or fn's own error). fn's changes are rolled
// back to a savepoint if it fails, so one bad write fails only its caller.
func (d *DB) do(ctx context.Context, fn func(ctx context.Context, tx *wtx) error) error {
	return d.submit(&writeOp{ctx: ctx, fn: fn, done: make(chan error, 1)})
}

// insertOne runs one INSERT in the writer's next transaction, which no
// other writer (another process's included) interleaves with, and reports
// whether it wrote a row: the store's "add unless there already is one".
func (d *DB) insertOne(ctx context.Context, query string, args ...any) (bool, error) {
	var added bool
	err := d.do(ctx, func(ctx context.Context, tx *wtx) error {
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		added = n == 1
		return err
	})
	return added, err
}

// doLazy is do for an fn that reads, then writes one statement, or calls
// tx.savepoint before it writes more: a refresh, which then costs two
// statements fewer.
func (d *DB) doLazy(ctx context.Context, fn func(ctx context.Context, tx *wtx) error) error {
	return d.submit(&writeOp{ctx: ctx, fn: fn, done: make(chan error, 1), lazy: true})
}

// doBare runs fn on the writer's connection between batches, outside any
// transaction.
func (d *DB) doBare(ctx context.Context, fn func(ctx context.Context, tx *wtx) error) error {
	return d.submit(&writeOp{ctx: ctx, fn: fn, done: make(chan error, 1), bare: true})
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

// writer is the only goroutine that writes, on the one connection of the
// write pool, held for its lifetime. It takes one op, gathers every other
// op already waiting (up to maxBatch), and commits them in one
// transaction: one fsync for the lot. While it commits, new ops queue up
// for the next batch, so batches grow with load by themselves.
//
// Before committing it yields its processor twice (gatherYields), taking
// what the requests that ran meanwhile queued: on a busy machine they are
// runnable but not yet running when the writer looks, and the commit's
// fsync costs the same for one write or thirty. On an idle machine a yield
// returns at once. BenchmarkRotate, 32 families: 16 -> 28 writes per
// commit, 29 -> 21 µs of CPU per rotation.
func (d *DB) writer() {
	defer close(d.stopped)
	batch := make([]*writeOp, 0, maxBatch)
	for {
		var first *writeOp
		select {
		case <-d.quit:
			return
		case first = <-d.ops:
		}
		if first.bare {
			d.runBare(first)
			continue
		}
		batch = append(batch[:0], first)
		var bare *writeOp // runs after the batch gathered before it
		batch, bare = d.gather(batch)
		for range gatherYields {
			if bare != nil || len(batch) == maxBatch {
				break
			}
			runtime.Gosched()
			batch, bare = d.gather(batch)
		}
		d.commit(batch)
		clear(batch)
		if bare != nil {
			d.runBare(bare)
		}
	}
}

// gatherYields is how often the writer yields to gather more writes.
const gatherYields = 2

// gather adds the ops already waiting to batch, up to maxBatch, stopping
// at a bare op, which it returns to run after the batch.
func (d *DB) gather(batch []*writeOp) ([]*writeOp, *writeOp) {
	for len(batch) < maxBatch {
		select {
		case op := <-d.ops:
			if op.bare {
				return batch, op
			}
			batch = append(batch, op)
		default:
			return batch, nil
		}
	}
	return batch, nil
}

// runBare runs a bare op alone, outside any transaction.
func (d *DB) runBare(op *writeOp) {
	op.done <- mapErr(op.fn(context.WithoutCancel(op.ctx), &wtx{Conn: d.conn, d: d, alone: true}))
}

func (d *DB) commit(batch []*writeOp) {
	results := make([]error, len(batch))
	start := time.Now()
	err := d.runBatch(batch, results)
	if d.onCommit != nil {
		d.onCommit(len(batch), time.Since(start), err)
	}
	if err != nil {
		err = mapErr(err)
		if errors.Is(err, keys.ErrUnavailable) {
			if !d.failing.Swap(true) {
				d.log.Error("database writes failing", "err", err)
				go d.probeUntilHealthy()
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
	if _, err := d.wstmts.begin.ExecContext(ctx); err != nil {
		return err
	}
	tx := &wtx{Conn: d.conn, d: d, alone: len(batch) == 1}
	// The writer's key cache may hold what this transaction read; if the
	// transaction does not commit, that may not be true any more.
	rollback := func() {
		_, _ = d.wstmts.rollback.ExecContext(ctx)
		d.cache.forget()
	}
	if err := d.cache.sync(ctx, d.wstmts.dataVersion); err != nil {
		rollback()
		return err
	}
	changesAtStart := int64(-1)
	if d.commitFault.Load() != nil {
		changesAtStart = totalChanges(tx)
	}
	for i, op := range batch {
		if err := op.ctx.Err(); err != nil {
			results[i] = err // the caller left before its write started
			continue
		}
		tx.saved = false
		if !op.lazy {
			if err := tx.savepoint(ctx); err != nil {
				rollback()
				return err
			}
		}
		results[i] = mapErr(op.fn(context.WithoutCancel(op.ctx), tx))
		switch {
		case errors.Is(results[i], keys.ErrUnavailable):
			// SQLite may have rolled the whole transaction back (full
			// disk, I/O error): fail the batch, don't go on in autocommit.
			rollback()
			return results[i]
		case results[i] != nil && tx.alone:
			rollback()
			return nil
		case results[i] != nil:
			d.cache.forget()
			if tx.saved {
				if _, err := d.wstmts.rollbackOp.ExecContext(ctx); err != nil {
					rollback()
					return err
				}
			}
		}
		if tx.saved {
			if _, err := d.wstmts.release.ExecContext(ctx); err != nil {
				rollback()
				return err
			}
		}
	}
	if fault := d.commitFault.Load(); fault != nil && wrote(tx, changesAtStart) {
		rollback()
		return *fault
	}
	if _, err := d.wstmts.commit.ExecContext(ctx); err != nil {
		rollback()
		return err
	}
	return nil
}

// totalChanges is the connection's count of changed rows, for the test
// fault hook.
func totalChanges(tx *wtx) int64 {
	var n int64
	_ = tx.QueryRowContext(context.Background(), `SELECT total_changes()`).Scan(&n)
	return n
}

func wrote(tx *wtx, before int64) bool { return totalChanges(tx) != before }
