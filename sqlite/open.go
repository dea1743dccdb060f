// Package sqlite is keygate's embedded default store and the only importer
// of go-sqlite3: all SQL, the embedded versioned migrations, and the single
// writer that commits concurrent requests' writes together (group commit).
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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
)

// busyTimeout is how long a connection waits for another's lock.
const busyTimeout = 5 * time.Second

// Synchronous modes accepted for database.synchronous.
var SynchronousModes = []string{"OFF", "NORMAL", "FULL", "EXTRA"}

// Options configure Open.
type Options struct {
	Path        string
	Synchronous string // FULL by default
	Logger      *slog.Logger
	Now         func() time.Time // time.Now by default
	// OnCommit, if set, learns of every group commit: how many writes it
	// carried, how long it took, and its error (metrics use it). It runs
	// on the writer: it must be quick.
	OnCommit func(writes int, took time.Duration, err error)
}

// DB is an open keygate database: one writer connection owned by one
// goroutine, and a pool of query-only connections for reads.
type DB struct {
	path     string
	write    *sql.DB
	conn     *sql.Conn // write's one connection, the writer goroutine's alone
	read     *sql.DB
	log      *slog.Logger
	now      func() time.Time
	onCommit func(writes int, took time.Duration, err error)

	ops     chan *writeOp
	quit    chan struct{}
	stopped chan struct{}

	closeOnce sync.Once
	closeErr  error

	// failing is set when a commit fails for a storage reason and cleared by
	// the next successful one; /ready reports it.
	failing atomic.Bool

	stmts  readStmts
	wstmts writeStmts
	cache  writerCache // the writer goroutine's alone

	// commitFault, set only by tests, fails every commit that changed rows
	// with this error, the way a full disk or a read-only file does (a
	// commit that wrote nothing succeeds even on a full disk).
	commitFault atomic.Pointer[sqlite3.Error]
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
	if opts.Now == nil {
		opts.Now = time.Now
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
		path:     opts.Path,
		write:    write,
		log:      opts.Logger,
		now:      opts.Now,
		onCommit: opts.OnCommit,
		ops:      make(chan *writeOp),
		quit:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	if err := d.migrateWhenFree(ctx); err != nil {
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
	if d.conn, err = write.Conn(ctx); err != nil {
		d.read.Close()
		write.Close()
		return nil, mapErr(err)
	}
	if err := d.wstmts.prepare(ctx, d.conn); err != nil {
		d.wstmts.close()
		d.conn.Close()
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

// readerCacheKiB is each pooled reader's page cache (SQLite's default is
// 2,000 KiB, the writer's). The key cache answers nearly every login, so
// readers mostly serve its misses, each a few pages of B-tree whose
// interior fits; and their caches hold copies of the same pages, in
// memory the operating system's page cache holds once. At 2,000 KiB the
// eight readers took 18 MiB of the 100,000-company benchmark's RSS
// (BENCHMARKS.md).
const readerCacheKiB = 512

// writerStmtCache is how many statements the writer's connection keeps
// prepared, by their text, for the writes that are not among its prepared
// statements (writeStmts): the audit INSERTs (insertAudit) and the
// last-use UPDATE of every login batch, and what changes run now and
// then.
const writerStmtCache = 32

// dsn puts every pragma in the connection string, so each pooled
// connection gets them, not only the first.
func dsn(path, synchronous string, readOnly bool) string {
	q := url.Values{}
	q.Set("_foreign_keys", "on")
	q.Set("_busy_timeout", strconv.Itoa(int(busyTimeout/time.Millisecond)))
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", strings.ToUpper(synchronous))
	q.Set("_txlock", "immediate")
	if readOnly {
		q.Set("_query_only", "on")
		q.Set("_cache_size", strconv.Itoa(-readerCacheKiB))
	} else {
		q.Set("_stmt_cache_size", strconv.Itoa(writerStmtCache))
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
		d.closeErr = errors.Join(d.conn.Close(), d.read.Close(), d.write.Close())
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
	err := d.do(ctx, func(ctx context.Context, tx *wtx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO health (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at`, d.now().UnixMilli())
		return err
	})
	if err == nil && d.failing.Swap(false) {
		d.log.Info("database writes working again")
		// On a nearly full disk the WAL would grow back into the space just
		// freed long before its automatic checkpoint (about 4 MB of WAL)
		// shrinks nothing, and writes would fail again: move what the WAL
		// holds into the database now and truncate it to nothing.
		if err := d.checkpoint(ctx); err != nil {
			d.log.Warn("checkpointing the WAL after the database recovered", "err", err)
		}
	}
	return err
}

// checkpoint copies every page of the WAL into the database and truncates
// the WAL to zero bytes (PRAGMA wal_checkpoint(TRUNCATE)), on the writer's
// connection between batches. Readers in the way make it wait for them
// (the busy timeout) or give up partly, which it reports.
func (d *DB) checkpoint(ctx context.Context) error {
	return d.doBare(ctx, func(ctx context.Context, tx *wtx) error {
		var busy, logPages, done int
		if err := tx.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logPages, &done); err != nil {
			return err
		}
		if busy != 0 {
			return fmt.Errorf("WAL checkpoint blocked by readers: %d of %d pages copied", done, logPages)
		}
		return nil
	})
}

// probeInterval is how often a failing database is probed by itself.
const probeInterval = time.Second

// probeUntilHealthy runs Ready's probe every probeInterval while writes
// are failing, so that the database recovers (and checkpoints its WAL)
// once space is freed even if nothing polls /ready.
func (d *DB) probeUntilHealthy() {
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	for d.failing.Load() {
		select {
		case <-d.quit:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), probeInterval)
		_ = d.Ready(ctx)
		cancel()
	}
}

// Failing reports whether writes are failing: set by a commit that failed
// for a storage reason, cleared by Ready's probe write once one succeeds.
func (d *DB) Failing() bool { return d.failing.Load() }

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
