// Package pgtest gives tests a PostgreSQL database of their own on the
// server that KEYGATE_TEST_POSTGRES_URL names (scripts/test.sh starts a
// throwaway cluster and sets it): a fresh schema per test, dropped when the
// test ends. Without the variable a test that needs PostgreSQL skips, with
// the reason logged, so that a quick `go test ./...` still works; with it
// set, a server that cannot be reached fails the test.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Environment variables scripts/test.sh sets.
const (
	EnvURL      = "KEYGATE_TEST_POSTGRES_URL"       // the shared test cluster
	EnvFaultURL = "KEYGATE_TEST_POSTGRES_FAULT_URL" // a cluster of its own for the test that stops it
	EnvFaultCtl = "KEYGATE_TEST_POSTGRES_FAULT_CTL" // scripts/pgtmp.sh
	EnvFaultDir = "KEYGATE_TEST_POSTGRES_FAULT_DIR" // the fault cluster's directory
)

// Marker starts the line every test that got a database logs: scripts/test.sh
// counts them to show that the PostgreSQL tests ran.
const Marker = "pgtest: PostgreSQL schema"

var (
	reachOnce sync.Once
	reachErr  error
)

// ServerURL is the test server's URL. It skips t if the variable is unset
// and fails it if the server does not answer.
func ServerURL(t testing.TB) string {
	t.Helper()
	raw := os.Getenv(EnvURL)
	if raw == "" {
		t.Skipf("%s is not set: skipping a test that needs PostgreSQL (scripts/test.sh starts one)", EnvURL)
	}
	reachOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		var conn *pgx.Conn
		if conn, reachErr = pgx.Connect(ctx, raw); reachErr == nil {
			reachErr = conn.Ping(ctx)
			conn.Close(ctx)
		}
	})
	if reachErr != nil {
		t.Fatalf("%s is set but PostgreSQL does not answer: %v", EnvURL, reachErr)
	}
	return raw
}

// Schema creates a fresh, empty schema on the test server and returns a URL
// whose connections use it (search_path), and the schema's name. The schema
// is dropped when t ends.
func Schema(t testing.TB) (dbURL, schema string) {
	t.Helper()
	return schemaOn(t, ServerURL(t))
}

func schemaOn(t testing.TB, server string) (string, string) {
	t.Helper()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	schema := "kg_" + hex.EncodeToString(b)
	run(t, server, `CREATE SCHEMA `+schema)
	t.Cleanup(func() { run(t, server, `DROP SCHEMA IF EXISTS `+schema+` CASCADE`) })
	t.Logf("%s %s", Marker, schema)
	return WithSchema(t, server, schema), schema
}

// WithSchema is server's URL with its connections' search_path set to schema.
func WithSchema(t testing.TB, server, schema string) string {
	t.Helper()
	u, err := url.Parse(server)
	if err != nil {
		t.Fatalf("%s: %v", EnvURL, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Exec runs one statement on the server at rawURL.
func Exec(t testing.TB, rawURL, sql string, args ...any) {
	t.Helper()
	run(t, rawURL, sql, args...)
}

func run(t testing.TB, rawURL, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, rawURL)
	if err != nil {
		t.Fatalf("pgtest: connecting: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("pgtest: %s: %v", sql, err)
	}
}

// Hold runs sql in a transaction on its own connection to rawURL and keeps
// that transaction open, with whatever locks it took, until release is
// called (or t ends).
func Hold(t testing.TB, rawURL, sql string) (release func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, rawURL)
	if err != nil {
		t.Fatalf("pgtest: connecting: %v", err)
	}
	tx, err := conn.Begin(ctx)
	if err == nil {
		_, err = tx.Exec(ctx, sql)
	}
	if err != nil {
		conn.Close(ctx)
		t.Fatalf("pgtest: %s: %v", sql, err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			_ = tx.Commit(ctx)
			conn.Close(ctx)
		})
	}
	t.Cleanup(release)
	return release
}

// QueryInt runs a query returning one integer on the server at rawURL.
func QueryInt(t testing.TB, rawURL, sql string, args ...any) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, rawURL)
	if err != nil {
		t.Fatalf("pgtest: connecting: %v", err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("pgtest: %s: %v", sql, err)
	}
	return n
}

// Cluster is a PostgreSQL cluster a test may stop and start: the fault
// cluster scripts/test.sh starts for that alone, so that stopping it
// disturbs no other test.
type Cluster struct {
	URL      string // a fresh schema on it
	ctl, dir string
	frozen   []int // the processes Freeze stopped
}

// FaultCluster returns the fault cluster, with a fresh schema. It skips t
// if no PostgreSQL is configured at all, and fails it if the test cluster
// is (KEYGATE_TEST_POSTGRES_URL) but the fault cluster is not: a run that
// means to test PostgreSQL must not silently leave out its fault tests.
func FaultCluster(t testing.TB) *Cluster {
	t.Helper()
	server, ctl, dir := os.Getenv(EnvFaultURL), os.Getenv(EnvFaultCtl), os.Getenv(EnvFaultDir)
	if server == "" || ctl == "" || dir == "" {
		if os.Getenv(EnvURL) != "" {
			t.Fatalf("%s is set but %s, %s or %s is not: a test that stops PostgreSQL needs a cluster of its own (see scripts/test.sh)", EnvURL, EnvFaultURL, EnvFaultCtl, EnvFaultDir)
		}
		t.Skipf("%s, %s or %s is not set: skipping a test that stops PostgreSQL (scripts/test.sh starts a cluster for it)", EnvFaultURL, EnvFaultCtl, EnvFaultDir)
	}
	c := &Cluster{ctl: ctl, dir: dir}
	c.URL, _ = schemaOn(t, server)
	t.Cleanup(func() { c.Start(t) }) // leave it running, whatever happened
	return c
}

// Stop stops the cluster (fast shutdown: clients are disconnected).
func (c *Cluster) Stop(t testing.TB) { c.ctlRun(t, "restart-stop") }

// Start starts it again on the same port; it does nothing if it runs.
func (c *Cluster) Start(t testing.TB) {
	if _, err := os.Stat(c.dir + "/data/postmaster.pid"); err == nil {
		return
	}
	c.ctlRun(t, "restart-start")
}

func (c *Cluster) ctlRun(t testing.TB, cmd string) {
	t.Helper()
	out, err := exec.Command(c.ctl, cmd, c.dir).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s %s: %v\n%s", c.ctl, cmd, c.dir, err, out)
	}
}
