package postgres_test

import (
	"log/slog"
	"os"
	"testing"

	"keygate/postgres"
	"keygate/postgres/pgtest"
	"keygate/store"
	"keygate/storetest"
)

// open opens a store on a fresh schema of the test server, closed when t
// ends.
func open(t *testing.T) *postgres.DB {
	t.Helper()
	dbURL, _ := pgtest.Schema(t)
	return openURL(t, dbURL)
}

// openURL opens another handle (another replica, as far as the database
// can tell) on the database at dbURL.
func openURL(t *testing.T, dbURL string) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(t.Context(), postgres.Options{URL: dbURL, Logger: testLogger()})
	if err != nil {
		t.Fatalf("postgres.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// TestStore runs the store contract against PostgreSQL, a fresh schema per
// subtest.
func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t) })
}
