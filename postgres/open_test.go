package postgres_test

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"keygate/keys"
	"keygate/postgres"
	"keygate/postgres/pgtest"
)

// Replicas starting at the same moment on an empty database: all start,
// and each migration is applied once.
func TestMigrateConcurrently(t *testing.T) {
	dbURL, _ := pgtest.Schema(t)
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			db, err := postgres.Open(t.Context(), postgres.Options{URL: dbURL, MaxConns: 2})
			if err != nil {
				t.Errorf("Open: %v", err)
				return
			}
			db.Close()
		})
	}
	wg.Wait()
	if n := pgtest.QueryInt(t, dbURL, `SELECT COUNT(*) FROM schema_migrations`); n != int64(postgres.SchemaVersion()) {
		t.Errorf("schema_migrations holds %d rows, want %d", n, postgres.SchemaVersion())
	}
	db := openURL(t, dbURL)
	if v, err := db.Version(t.Context()); err != nil || v != postgres.SchemaVersion() {
		t.Errorf("Version = %d, %v; want %d", v, err, postgres.SchemaVersion())
	}
}

// A replica refuses a schema migrated by a newer keygate, saying so.
func TestRefusesNewerSchema(t *testing.T) {
	dbURL, _ := pgtest.Schema(t)
	openURL(t, dbURL).Close()
	pgtest.Exec(t, dbURL, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, '0999_future.sql', 0)`)
	_, err := postgres.Open(t.Context(), postgres.Options{URL: dbURL})
	if err == nil || !strings.Contains(err.Error(), "version 999, newer than this keygate knows") {
		t.Fatalf("Open on a newer schema: %v", err)
	}
}

// A URL's password appears in no error, whatever goes wrong.
func TestErrorsHideThePassword(t *testing.T) {
	const pw = "s3cret-Pa55word"
	for _, tc := range []struct {
		name, url   string
		unavailable bool
	}{
		{"nothing listening", "postgres://keygate:" + pw + "@127.0.0.1:1/keygate?sslmode=disable&connect_timeout=2", true},
		{"not a URL", "postgres://keygate:" + pw + "@127.0.0.1:notaport/keygate", false},
		{"wrong scheme", "mysql://keygate:" + pw + "@127.0.0.1/keygate", false},
		{"password parameter", "postgres://keygate@127.0.0.1:1/keygate?sslmode=disable&connect_timeout=2&password=" + pw, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := postgres.Open(t.Context(), postgres.Options{URL: tc.url})
			if err == nil {
				t.Fatal("Open succeeded")
			}
			if strings.Contains(err.Error(), pw) {
				t.Errorf("error shows the password: %v", err)
			}
			if got := errors.Is(err, keys.ErrUnavailable); got != tc.unavailable {
				t.Errorf("ErrUnavailable %v, want %v: %v", got, tc.unavailable, err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
	if got := postgres.Redact("postgres://u:" + pw + "@h/db?sslpassword=" + pw); strings.Contains(got, pw) {
		t.Errorf("Redact = %q", got)
	}
	for _, raw := range []string{
		"postgres://u:" + pw + "@h/db",
		"postgres://u@h/db?password=" + pw,
		"postgres://u@h/db?sslpassword=" + pw,
	} {
		if got := postgres.Secrets(raw); !slices.Contains(got, pw) {
			t.Errorf("Secrets(%s) = %d secrets, none of them the password", postgres.Redact(raw), len(got))
		}
	}
}

// Every connection gets keygate's session settings, except those the URL
// sets itself.
func TestSessionSettings(t *testing.T) {
	dbURL, _ := pgtest.Schema(t)
	for _, tc := range []struct {
		name  string
		extra string
		want  map[string]string
	}{
		{"defaults", "", map[string]string{"synchronous_commit": "on", "statement_timeout": "5s", "lock_timeout": "2s", "idle_in_transaction_session_timeout": "10s"}},
		{"the URL's own", "&statement_timeout=1min&synchronous_commit=remote_write", map[string]string{"synchronous_commit": "remote_write", "statement_timeout": "1min", "lock_timeout": "2s"}},
		{"options=-c", "&options=-c%20lock_timeout%3D7s", map[string]string{"lock_timeout": "7s", "statement_timeout": "5s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := openURL(t, dbURL+tc.extra)
			for name, want := range tc.want {
				got, err := db.Setting(t.Context(), name)
				if err != nil || got != want {
					t.Errorf("%s = %q, %v; want %q", name, got, err, want)
				}
			}
		})
	}
}

// A URL that turns synchronous_commit off is refused with one line: an
// acknowledged refresh could otherwise be lost.
func TestRefusesSynchronousCommitOff(t *testing.T) {
	dbURL, _ := pgtest.Schema(t)
	for _, extra := range []string{"&synchronous_commit=off", "&options=-c%20synchronous_commit%3Doff"} {
		_, err := postgres.Open(t.Context(), postgres.Options{URL: dbURL + extra})
		if err == nil || !strings.Contains(err.Error(), "synchronous_commit is off") || strings.Contains(err.Error(), "\n") {
			t.Errorf("Open with %s: %v, want one line refusing it", extra, err)
		}
	}
}

// Ready is unavailable on a session that cannot write (a standby, or here
// default_transaction_read_only), though reads still work there.
func TestReadyRefusesReadOnly(t *testing.T) {
	dbURL, _ := pgtest.Schema(t)
	rw := openURL(t, dbURL)
	if err := rw.Ready(t.Context()); err != nil {
		t.Fatalf("Ready on the primary: %v", err)
	}
	ro := openURL(t, dbURL+"&default_transaction_read_only=on")
	err := ro.Ready(t.Context())
	if !errors.Is(err, keys.ErrUnavailable) || !strings.Contains(err.Error(), "refuses writes") {
		t.Errorf("Ready on a read-only session: %v, want ErrUnavailable saying it refuses writes", err)
	}
	if _, err := ro.KeyEpoch(t.Context()); err != nil {
		t.Errorf("a read on the read-only session: %v", err)
	}
	if _, err := ro.ListPartners(t.Context()); err != nil {
		t.Errorf("ListPartners on the read-only session: %v", err)
	}
}

// Close is idempotent, and a closed store says it is unavailable.
func TestCloseTwice(t *testing.T) {
	db := open(t)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Ready(t.Context()); !errors.Is(err, keys.ErrUnavailable) {
		t.Errorf("Ready after Close: %v", err)
	}
	if _, err := db.KeyEpoch(t.Context()); !errors.Is(err, keys.ErrUnavailable) {
		t.Errorf("KeyEpoch after Close: %v", err)
	}
}
