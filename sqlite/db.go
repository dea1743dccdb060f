// Package sqlite is keygate's embedded default store and the only importer
// of go-sqlite3: all SQL, the embedded versioned migrations, and the single
// writer that commits concurrent requests' writes together (group commit).
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"

	"keygate/keys"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Synchronous modes accepted for database.synchronous.
var SynchronousModes = []string{"OFF", "NORMAL", "FULL", "EXTRA"}

// maxBatch bounds how many writes one transaction gathers.
const maxBatch = 256

// ErrClosed is returned for writes submitted after Close; callers see it
// as storage that is unavailable (503 during a shutdown).
var ErrClosed = fmt.Errorf("%w: database closed", keys.ErrUnavailable)

// Options configure Open.
type Options struct {
	Path        string
	Synchronous string // FULL by default
	Logger      *slog.Logger
}

// DB is an open keygate database: one writer connection owned by one
// goroutine, and a pool of query-only connections for reads.
type DB struct {
	write *sql.DB
	read  *sql.DB
	log   *slog.Logger

	ops     chan *writeOp
	quit    chan struct{}
	stopped chan struct{}

	closeOnce sync.Once
	closeErr  error

	// failing is set when a commit fails for a storage reason and cleared by
	// the next successful one; /ready reports it.
	failing atomic.Bool

	stmts      readStmts
	wstmts     writeStmts
	principals principalCache
	keyCache   keyCache // the writer goroutine's alone

	// commitFault, set only by tests, fails every commit that changed rows
	// with this error, the way a full disk or a read-only file does (a
	// commit that wrote nothing succeeds even on a full disk).
	commitFault atomic.Pointer[sqlite3.Error]
}

type writeOp struct {
	ctx  context.Context
	fn   func(ctx context.Context, tx *sql.Tx) error
	done chan error
	// single marks an fn that runs one statement: SQLite undoes a failed
	// statement by itself, so it needs no savepoint of its own.
	single bool
}

// Open opens (creating if needed) the database at opts.Path, applies
// pending migrations and starts the writer.
func Open(ctx context.Context, opts Options) (*DB, error) {
	if opts.Synchronous == "" {
		opts.Synchronous = "FULL"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if !slices.Contains(SynchronousModes, strings.ToUpper(opts.Synchronous)) {
		return nil, fmt.Errorf("database.synchronous: unknown mode %q", opts.Synchronous)
	}
	if dir := filepath.Dir(opts.Path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("creating database directory: %w", err)
		}
	}
	write, err := sql.Open("sqlite3", dsn(opts.Path, opts.Synchronous, false))
	if err != nil {
		return nil, err
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	write.SetConnMaxIdleTime(0)

	d := &DB{
		write:   write,
		log:     opts.Logger,
		ops:     make(chan *writeOp),
		quit:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	if err := d.migrate(ctx); err != nil {
		write.Close()
		return nil, err
	}
	// The reader pool opens after the writer has created the file and
	// switched it to WAL, so readers never see a missing database.
	d.read, err = sql.Open("sqlite3", dsn(opts.Path, opts.Synchronous, true))
	if err != nil {
		write.Close()
		return nil, err
	}
	d.read.SetMaxOpenConns(8)
	d.read.SetMaxIdleConns(8)
	if err := d.read.PingContext(ctx); err != nil {
		d.read.Close()
		write.Close()
		return nil, mapErr(err)
	}
	if err := d.wstmts.prepare(ctx, d.write); err != nil {
		d.read.Close()
		write.Close()
		return nil, fmt.Errorf("preparing statements: %w", err)
	}
	if err := d.stmts.prepare(ctx, d.read); err != nil {
		d.read.Close()
		write.Close()
		return nil, fmt.Errorf("preparing statements: %w", err)
	}
	go d.writer()
	return d, nil
}

// dsn puts every pragma in the connection string, so each pooled
// connection gets them, not only the first.
func dsn(path, synchronous string, readOnly bool) string {
	q := url.Values{}
	q.Set("_foreign_keys", "on")
	q.Set("_busy_timeout", "5000")
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", strings.ToUpper(synchronous))
	q.Set("_txlock", "immediate")
	if readOnly {
		q.Set("_query_only", "on")
	}
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// Close stops the writer after the write in progress and closes both
// connection pools. Call it after the HTTP server has drained.
func (d *DB) Close() error {
	d.closeOnce.Do(func() {
		close(d.quit)
		<-d.stopped
		d.stmts.close()
		d.wstmts.close()
		d.closeErr = errors.Join(d.read.Close(), d.write.Close())
	})
	return d.closeErr
}

// Ready reports whether the database can serve: reads answer and, if a
// recent commit failed, a probe write succeeds again.
func (d *DB) Ready(ctx context.Context) error {
	if err := d.read.PingContext(ctx); err != nil {
		return mapErr(err)
	}
	if !d.failing.Load() {
		return nil
	}
	err := d.do(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO health (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at`, time.Now().UnixMilli())
		return err
	})
	if err == nil && d.failing.Swap(false) {
		d.log.Info("database writes working again")
	}
	return err
}

// IntegrityCheck runs PRAGMA integrity_check and returns its verdict.
func (d *DB) IntegrityCheck(ctx context.Context) error {
	var res string
	if err := d.read.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&res); err != nil {
		return err
	}
	if res != "ok" {
		return fmt.Errorf("integrity check: %s", res)
	}
	return nil
}

// do runs fn in the writer's next transaction and returns once that
// transaction has committed (or fn's own error). fn's changes are rolled
// back to a savepoint if it fails, so one bad write fails only its caller.
func (d *DB) do(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return d.submit(&writeOp{ctx: ctx, fn: fn, done: make(chan error, 1)})
}

// doSingle is do for an fn that executes exactly one statement.
func (d *DB) doSingle(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return d.submit(&writeOp{ctx: ctx, fn: fn, done: make(chan error, 1), single: true})
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
		if op.single {
			results[i] = mapErr(op.fn(octx, tx))
			if errors.Is(results[i], keys.ErrUnavailable) {
				// SQLite may have rolled the whole transaction back
				// (full disk, I/O error): fail the batch, don't go on
				// in autocommit.
				rollback()
				return results[i]
			}
			continue
		}
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

func (d *DB) migrate(ctx context.Context) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	slices.Sort(names)
	conn, err := d.write.Conn(ctx)
	if err != nil {
		return mapErr(err)
	}
	defer conn.Close()
	// Several processes (the server, the CLI) may open a fresh database at
	// once: an immediate transaction makes them take turns.
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return mapErr(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT`); err != nil {
		return mapErr(err)
	}
	var current int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return err
	}
	for _, name := range names {
		base := filepath.Base(name)
		version, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migration %s: bad version", base)
		}
		if version <= current {
			continue
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			return fmt.Errorf("migration %s: %w", base, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`, version, base, time.Now().UnixMilli()); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// mapErr turns driver errors a caller can act on into domain errors,
// matching by SQLite result code, never by message text.
func mapErr(err error) error {
	var se sqlite3.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code {
	case sqlite3.ErrFull, sqlite3.ErrReadonly, sqlite3.ErrIoErr, sqlite3.ErrBusy,
		sqlite3.ErrLocked, sqlite3.ErrCantOpen, sqlite3.ErrPerm, sqlite3.ErrNotADB, sqlite3.ErrCorrupt:
		return fmt.Errorf("%w: %w", keys.ErrUnavailable, err)
	}
	if se.ExtendedCode == sqlite3.ErrConstraintUnique || se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey {
		return fmt.Errorf("%w: %w", keys.ErrConflict, err)
	}
	return err
}

// totalChanges is the connection's count of changed rows, for the test
// fault hook.
func totalChanges(tx *sql.Tx) int64 {
	var n int64
	_ = tx.QueryRow(`SELECT total_changes()`).Scan(&n)
	return n
}

func wrote(tx *sql.Tx, before int64) bool { return totalChanges(tx) != before }

// stmts prepares a set of statements on one pool, keeping the first error
// and every statement made, so that they close together.
type stmts struct {
	err  error
	made []*sql.Stmt
}

func (s *stmts) preparer(ctx context.Context, db *sql.DB) func(q string) *sql.Stmt {
	return func(q string) *sql.Stmt {
		if s.err != nil {
			return nil
		}
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			s.err = err
			return nil
		}
		s.made = append(s.made, st)
		return st
	}
}

func (s *stmts) close() {
	for _, st := range s.made {
		st.Close()
	}
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func fromNullMS(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMS(v.Int64)
	return &t
}

func nullMS(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

func nullString(s string) sql.NullString {
	return sql.NullString{String: s, Valid: s != ""}
}
