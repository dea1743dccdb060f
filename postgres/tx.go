package postgres

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
)

// maxAttempts bounds how often a transaction is tried when the database
// rolls it back for a deadlock or serialization failure, or when it lost
// an insert race it must redo (errRetry).
const maxAttempts = 8

// errRetry, returned by a transaction's function, rolls it back and runs
// it again: it read something another transaction changed before it could
// write (two first refreshes of one family inserting its row).
var errRetry = errors.New("postgres: transaction lost a race, run it again")

// tx runs fn in a READ COMMITTED transaction and commits it, trying again
// (bounded, with a short random pause) when the database rolled it back
// for a deadlock or a serialization failure, or fn returned errRetry. fn
// may run more than once: it must start from scratch each time. The
// returned error is mapped (mapErr); fn's own errors pass through.
func (d *DB) tx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	if d.closed.Load() {
		return errClosed
	}
	ctx, cancel := bound(ctx)
	defer cancel()
	start := time.Now()
	err := d.runTx(ctx, fn)
	d.observe(start, err)
	return err
}

func (d *DB) runTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = pgx.BeginFunc(ctx, d.pool, fn)
		if err == nil || !(errors.Is(err, errRetry) || retryable(err)) || attempt == maxAttempts {
			break
		}
		pause := time.Duration(rand.Int64N(int64(attempt) * int64(2*time.Millisecond)))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
	}
	if errors.Is(err, errRetry) || retryable(err) {
		// Still losing after every attempt: the database is too busy to
		// decide, which the caller should retry later.
		return unavailableErr(err)
	}
	return d.mapErr(err)
}
