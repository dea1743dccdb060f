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
// Caches across replicas: keys.Service compares the key epoch (KeyEpoch,
// moved in the transaction of every revocation and disabling) at most every
// 10 ms, so every replica refuses a key revoked anywhere within 10 ms: one
// indexed read per 10 ms per busy replica. LISTEN/NOTIFY is not used: a
// notification is delivered after the commit, asynchronously, and lost
// while a replica's listening connection is down, so it would still need
// this check as its safety net, and the check alone already gives the
// bound. Signing keys are reread every tokens.key_reload_interval.
package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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

// connectTimeout bounds a new connection when the URL sets none, so that
// /ready and requests fail quickly while the database cannot be reached.
const connectTimeout = 5 * time.Second

// Options configure Open.
type Options struct {
	URL      string // postgres://user:password@host:port/database?...
	MaxConns int    // DefaultMaxConns if 0
	Logger   *slog.Logger
	Now      func() time.Time // time.Now by default
}

// DB is an open keygate database on PostgreSQL: a pool of connections.
type DB struct {
	pool   *pgxpool.Pool
	log    *slog.Logger
	now    func() time.Time
	secret string // the URL's password, scrubbed from every error

	usage usageState // RecordUsage's batches whose commit is unconfirmed

	closeOnce sync.Once
	closed    atomic.Bool

	usageFault atomic.Int32 // set only by tests: see usage.go
}

// Open connects to the database at opts.URL, applies pending migrations
// (under an advisory lock, so that replicas starting together migrate
// once) and refuses a schema newer than this keygate knows. Its errors
// never contain the URL's password.
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
	secret := Password(opts.URL)
	if err := CheckURL(opts.URL); err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("database.url: not a valid PostgreSQL URL: %s", Redact(opts.URL))
	}
	cfg.MaxConns = int32(opts.MaxConns)
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, scrub(fmt.Errorf("connecting to %s: %w", Redact(opts.URL), err), secret)
	}
	d := &DB{pool: pool, log: opts.Logger, now: opts.Now, secret: secret}
	if err := d.migrate(ctx); err != nil {
		pool.Close()
		return nil, scrub(fmt.Errorf("%s: %w", Redact(opts.URL), err), secret)
	}
	d.checkDurability(ctx)
	return d, nil
}

// checkDurability warns when PostgreSQL would acknowledge a commit before
// it is on disk: keygate's promise that every 2xx is durable is then void.
func (d *DB) checkDurability(ctx context.Context) {
	var syncCommit, fsync string
	err := d.pool.QueryRow(ctx, `SELECT current_setting('synchronous_commit'), current_setting('fsync')`).Scan(&syncCommit, &fsync)
	if err != nil {
		return
	}
	if syncCommit == "off" || fsync == "off" {
		d.log.Warn("PostgreSQL acknowledges commits before they are durable: an acknowledged refresh or revocation may be lost if the database crashes",
			"synchronous_commit", syncCommit, "fsync", fsync)
	}
}

// Close closes the pool, waiting for connections in use to be returned.
// Closing again does nothing.
func (d *DB) Close() error {
	d.closeOnce.Do(func() {
		d.closed.Store(true)
		d.pool.Close()
	})
	return nil
}

// Ready reports whether the database answers now: a pooled connection (a
// new one if the old ones died) runs a query.
func (d *DB) Ready(ctx context.Context) error {
	var one int
	if err := d.pool.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil {
		return d.mapErr(err)
	}
	return nil
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

// Password is the password in a database URL, "" if none.
func Password(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return ""
	}
	p, _ := u.User.Password()
	return p
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

// scrub removes secret from err's message, keeping err's chain for
// errors.Is and errors.As: the last guard against a driver message that
// quotes the URL.
func scrub(err error, secret string) error {
	if err == nil || secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return &scrubbed{msg: strings.ReplaceAll(err.Error(), secret, "xxxxx"), err: err}
}

type scrubbed struct {
	msg string
	err error
}

func (s *scrubbed) Error() string { return s.msg }
func (s *scrubbed) Unwrap() error { return s.err }

// errClosed is returned once Close has run.
var errClosed = fmt.Errorf("%w: database closed", keys.ErrUnavailable)
