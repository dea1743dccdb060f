// Package postgres is keygate's store on PostgreSQL, for several gateway
// replicas on one database, and the only importer of pgx: all its SQL, the
// embedded versioned migrations, and the mapping of PostgreSQL's errors to
// keygate's.
//
// Every guarantee that SQLite gets from its single writer is made here by
// the database, so that it holds across processes: a refresh locks its
// family's row (SELECT ... FOR UPDATE) and decides and writes in that one
// transaction; two replicas inserting one family's first row race on its
// primary key and the loser reads the winner's row; a partner's companies
// are created one at a time (its row locked) so that listing order is
// commit order; housekeeping deletes with SKIP LOCKED; batched audit rows
// are written once even when a commit's answer is lost. No lock in one
// process is relied on.
//
// Caches across replicas (keys.Service's key cache): every revocation and
// disabling moves the key epoch (KeyEpoch) and sends a notification
// (pg_notify) in its own transaction. A login waits for an epoch read that
// started after it arrived, shared with the logins that arrived with it:
// a change committed anywhere is refused by every replica's next login. A
// token check compares the epoch at most every 10 ms; the notification,
// heard on a listening connection of each replica's own (listen.go),
// drops the cache sooner, and a reconnecting listener drops it too, since
// notifications are lost while it is down. A cached key is reread after
// 5 s in any case: the epoch is a counter that a restore or failover can
// bring back to a number already seen. Signing keys are reread every
// tokens.key_reload_interval.
//
// Deadlines: every call is bounded (callTimeout), /ready more tightly, and
// connections get statement, lock and idle-in-transaction timeouts and
// TCP keepalives, so that a database that stops answering becomes 503s.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"keygate/keys"
	"keygate/tokens"
)

var (
	_ keys.Store   = (*DB)(nil)
	_ tokens.Store = (*DB)(nil)
)

// DefaultMaxConns is the pool size when Options leaves it 0.
const DefaultMaxConns = 16

// Time limits, so that a database that stops answering (frozen, cut off
// by the network, failing over) turns into 503s within a bound instead of
// requests that hang. SIGSTOP of the server, or a partition, leaves TCP
// connections open and silent: only a deadline on the client ends a wait.
const (
	// connectTimeout bounds a new connection when the URL sets none.
	connectTimeout = 5 * time.Second
	// callTimeout bounds every store call (all of a transaction's
	// attempts, or one read), pool acquisition included: less than the
	// HTTP server's write timeout, so that a client gets its 503.
	callTimeout = 5 * time.Second
	// readyTimeout bounds /ready's check: a probe must get its answer
	// before its own timeout (commonly 1–5 s) gives up on the replica.
	readyTimeout = 2 * time.Second
)

// sessionSettings are given to every connection unless the URL sets them
// (as a parameter or in options=-c ...). They are SET after connecting,
// not sent in the startup packet, which PgBouncer would refuse.
var sessionSettings = []struct{ name, value string }{
	// Every 2xx is sent after its commit is durable (Open refuses off).
	{"synchronous_commit", "on"},
	// The server's side of callTimeout: a statement the client gave up on
	// stops running.
	{"statement_timeout", "5s"},
	// A row lock held by a stuck transaction makes its waiters fail
	// (503) well within callTimeout instead of queueing to it.
	{"lock_timeout", "2s"},
	// A replica frozen or cut off inside a transaction releases its row
	// locks: keygate never leaves a transaction idle for more than a
	// round trip.
	{"idle_in_transaction_session_timeout", "10s"},
}

// Client-side TCP settings: a peer that vanished (host down, partition) is
// found within about keepAliveIdle + keepAliveCount·keepAliveInterval on
// an idle connection and within tcpUserTimeout on one with unacknowledged
// data, and the connection is then broken and replaced.
const (
	keepAliveIdle     = 10 * time.Second
	keepAliveInterval = 5 * time.Second
	keepAliveCount    = 3
	tcpUserTimeout    = 15 * time.Second
)

// Options configure Open.
type Options struct {
	URL      string // postgres://user:password@host:port/database?...
	MaxConns int    // DefaultMaxConns if 0
	Logger   *slog.Logger
	Now      func() time.Time // time.Now by default
	// OnCommit, if set, learns of every write transaction: one write (a
	// replica commits each request's own; PostgreSQL shares the WAL flush
	// of concurrent commits), how long it took with its retries, and its
	// error (the metrics).
	OnCommit func(writes int, took time.Duration, err error)
}

// DB is an open keygate database on PostgreSQL: a pool of connections.
type DB struct {
	pool    *pgxpool.Pool
	log     *slog.Logger
	now     func() time.Time
	secrets []string // the URL's passwords, scrubbed from every error

	usage usageState // RecordUsage's batches whose commit is unconfirmed

	connConfig *pgx.ConnConfig // the pool's, for WatchKeyChanges' own connections

	closeOnce sync.Once
	closed    atomic.Bool
	quit      chan struct{} // closed by Close: WatchKeyChanges ends

	usageFault atomic.Int32 // set only by tests: see usage.go

	onCommit func(writes int, took time.Duration, err error)
	// failing is set while writes fail for want of the database (it is
	// unreachable, refuses writes, or times out) and cleared by the next
	// write or Ready that succeeds: the keygate_store_failing gauge.
	failing atomic.Bool
}

// Failing reports whether writes are failing for want of the database.
func (d *DB) Failing() bool { return d.failing.Load() }

// observe records a write transaction's outcome.
func (d *DB) observe(start time.Time, err error) {
	if d.onCommit != nil {
		d.onCommit(1, time.Since(start), err)
	}
	switch {
	case err == nil:
		d.failing.Store(false)
	case errors.Is(err, keys.ErrUnavailable):
		if !d.failing.Swap(true) {
			d.log.Error("database writes failing", "err", err)
		}
	}
}

// Open connects to the database at opts.URL, applies pending migrations
// (under an advisory lock, so that replicas starting together migrate
// once) and refuses a schema newer than this keygate knows, or a session
// whose commits are not durable (synchronous_commit off). Its errors
// never contain the URL's passwords.
func Open(ctx context.Context, opts Options) (*DB, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = DefaultMaxConns
	}
	secrets := Secrets(opts.URL)
	if err := CheckURL(opts.URL); err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("database.url: not a valid PostgreSQL URL: %s", Redact(opts.URL))
	}
	cfg.MaxConns = int32(opts.MaxConns)
	configureConn(cfg)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, scrub(fmt.Errorf("connecting to %s: %w", Redact(opts.URL), err), secrets)
	}
	d := &DB{pool: pool, log: opts.Logger, now: opts.Now, secrets: secrets, connConfig: cfg.ConnConfig, quit: make(chan struct{}), onCommit: opts.OnCommit}
	if err := d.migrate(ctx); err != nil {
		pool.Close()
		return nil, scrub(fmt.Errorf("%s: %w", Redact(opts.URL), err), secrets)
	}
	if err := d.checkDurability(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return d, nil
}

// configureConn gives every connection of the pool the dialer and the
// session settings above.
func configureConn(cfg *pgxpool.Config) {
	cc := cfg.ConnConfig
	if cc.ConnectTimeout == 0 {
		cc.ConnectTimeout = connectTimeout
	}
	dialer := &net.Dialer{
		Timeout: cc.ConnectTimeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable: true, Idle: keepAliveIdle, Interval: keepAliveInterval, Count: keepAliveCount,
		},
		Control: setUserTimeout,
	}
	cc.DialFunc = dialer.DialContext // every host of the URL's is dialed with it
	set := sessionSetQuery(cc.RuntimeParams)
	if set == "" {
		return
	}
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, set)
		return err
	}
}

// sessionSetQuery is the statement that applies the sessionSettings the
// URL's parameters (params) leave unset, "" if it sets them all.
func sessionSetQuery(params map[string]string) string {
	var sets []string
	for _, s := range sessionSettings {
		if _, ok := params[s.name]; ok || strings.Contains(params["options"], s.name) {
			continue
		}
		sets = append(sets, "set_config('"+s.name+"', '"+s.value+"', false)")
	}
	if len(sets) == 0 {
		return ""
	}
	return "SELECT " + strings.Join(sets, ", ")
}

// checkDurability refuses a session in which PostgreSQL acknowledges a
// commit before it is durable (synchronous_commit off, which only the URL
// can have asked for): keygate's promise that every 2xx is committed would
// be void. fsync off, a choice made for the whole server, is warned about.
func (d *DB) checkDurability(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	var syncCommit, fsync string
	err := d.pool.QueryRow(ctx, `SELECT current_setting('synchronous_commit'), current_setting('fsync')`).Scan(&syncCommit, &fsync)
	if err != nil {
		return d.mapErr(err)
	}
	if syncCommit == "off" {
		return errors.New("database.url: synchronous_commit is off for keygate's connections, so an acknowledged refresh or revocation could be lost: remove synchronous_commit from the URL (keygate sets it on)")
	}
	if fsync == "off" {
		d.log.Warn("PostgreSQL runs with fsync off: an acknowledged refresh or revocation may be lost if the database crashes", "fsync", fsync)
	}
	return nil
}

// Close closes the pool, waiting for connections in use to be returned.
// Closing again does nothing.
func (d *DB) Close() error {
	d.closeOnce.Do(func() {
		d.closed.Store(true)
		close(d.quit)
		d.pool.Close()
	})
	return nil
}

// Ready reports whether the database serves keygate now, within
// readyTimeout: a pooled connection (a new one if the old ones died)
// answers, on a primary that takes writes. A standby, or a session that is
// read-only, is unavailable; its connections are then dropped, so that the
// next ones are made afresh (with target_session_attrs=read-write in the
// URL, to the primary among its hosts).
func (d *DB) Ready(ctx context.Context) error {
	if d.closed.Load() {
		return errClosed
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var inRecovery, readOnly bool
	err := d.pool.QueryRow(ctx, `SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'`).Scan(&inRecovery, &readOnly)
	if err != nil {
		err = d.mapErr(err)
		if errors.Is(err, keys.ErrUnavailable) {
			d.failing.Store(true)
		}
		return err
	}
	if inRecovery || readOnly {
		d.pool.Reset()
		d.failing.Store(true)
		what := "a read-only session"
		if inRecovery {
			what = "a standby in recovery"
		}
		return fmt.Errorf("%w: the database is %s and refuses writes (list every host in database.url with target_session_attrs=read-write)", keys.ErrUnavailable, what)
	}
	if d.failing.Swap(false) {
		d.log.Info("database writes working again")
	}
	return nil
}

// bound limits a store call to callTimeout.
func bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, callTimeout)
}

// CheckURL reports, in one line without the password, what is wrong with
// a database.url; nil if it can be used.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "postgres" && u.Scheme != "postgresql" || u.Host == "" && u.Query().Get("host") == "" {
		return fmt.Errorf("database.url: want postgres://user:password@host:port/database, got %s", Redact(raw))
	}
	if _, err := pgxpool.ParseConfig(raw); err != nil {
		return fmt.Errorf("database.url: not a valid PostgreSQL URL: %s", Redact(raw))
	}
	return nil
}

// Secrets are the passwords a database URL carries, in its user part and
// as password or sslpassword parameters: what no error may show.
func Secrets(raw string) []string {
	u, err := url.Parse(raw)
	if err != nil {
		return nil
	}
	var out []string
	if u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			out = append(out, p)
		}
	}
	q := u.Query()
	for _, k := range []string{"password", "sslpassword"} {
		if p := q.Get(k); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Redact is the URL with its password (in the user part or as a password
// query parameter) replaced by xxxxx, for logs and errors; a URL that does
// not parse is replaced whole, since its password cannot be found.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	q := u.Query()
	for _, k := range []string{"password", "sslpassword"} {
		if q.Has(k) {
			q.Set(k, "xxxxx")
			u.RawQuery = q.Encode()
		}
	}
	return u.String()
}

// scrub removes every secret from err's message, keeping err's chain for
// errors.Is and errors.As: the last guard against a driver message that
// quotes the URL.
func scrub(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	if msg == err.Error() {
		return err
	}
	return &scrubbed{msg: msg, err: err}
}

type scrubbed struct {
	msg string
	err error
}

func (s *scrubbed) Error() string { return s.msg }
func (s *scrubbed) Unwrap() error { return s.err }

// errClosed is returned once Close has run.
var errClosed = fmt.Errorf("%w: database closed", keys.ErrUnavailable)
