package sqlite_test

import (
	"path/filepath"
	"testing"

	"keygate/sqlite"
)

// TestConnectionSettings: every connection, the writer's and each pooled
// reader's, runs with the durability and safety settings keygate promises,
// and readers cannot write.
func TestConnectionSettings(t *testing.T) {
	for _, tc := range []struct {
		synchronous string
		want        string // PRAGMA synchronous answers with a number
	}{
		{"", "2"}, // the default is FULL
		{"FULL", "2"},
		{"NORMAL", "1"},
		{"EXTRA", "3"},
	} {
		t.Run("synchronous="+tc.synchronous, func(t *testing.T) {
			db, err := sqlite.Open(t.Context(), sqlite.Options{Path: filepath.Join(t.TempDir(), "k.db"), Synchronous: tc.synchronous})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			writer, reader, err := db.Pragmas(t.Context(), "synchronous", "journal_mode", "foreign_keys", "busy_timeout", "query_only", "cache_size")
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"synchronous": tc.want, "journal_mode": "wal", "foreign_keys": "1", "busy_timeout": "5000"}
			for name, v := range want {
				if writer[name] != v {
					t.Errorf("writer: %s = %q, want %q", name, writer[name], v)
				}
				if reader[name] != v {
					t.Errorf("reader: %s = %q, want %q", name, reader[name], v)
				}
			}
			if writer["query_only"] != "0" || reader["query_only"] != "1" {
				t.Errorf("query_only: writer %q, reader %q; want 0 and 1", writer["query_only"], reader["query_only"])
			}
			if writer["cache_size"] != "-2000" || reader["cache_size"] != "-512" {
				t.Errorf("cache_size: writer %q, reader %q; want -2000 (SQLite's default) and -512", writer["cache_size"], reader["cache_size"])
			}
		})
	}
}
