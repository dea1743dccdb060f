package sqlite

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
)

// TestKeyCacheStaysBoundedAndWarm: past maxCachedKeys, remembering a key
// pushes out one other, not the whole cache; updating a key it holds
// pushes out none; forget empties it.
func TestKeyCacheStaysBoundedAndWarm(t *testing.T) {
	var c writerCache
	c.forget()
	key := func(i int) string { return fmt.Sprint("key_", i) }
	for i := range maxCachedKeys + 10 {
		c.setKey(key(i), keyState{active: i%2 == 0})
	}
	if len(c.keys) != maxCachedKeys {
		t.Fatalf("cache holds %d keys, want %d", len(c.keys), maxCachedKeys)
	}
	for _, i := range []int{maxCachedKeys + 8, maxCachedKeys + 9} {
		if k, ok := c.keys[key(i)]; !ok || k.active != (i%2 == 0) {
			t.Errorf("key %d remembered last: entry %v/%v, want %v/true", i, k.active, ok, i%2 == 0)
		}
	}
	last := key(maxCachedKeys + 9)
	c.setKey(last, keyState{active: true})
	if k := c.keys[last]; !k.active || len(c.keys) != maxCachedKeys {
		t.Errorf("setKey on a key in a full cache: active %v, %d keys; want true, %d", k.active, len(c.keys), maxCachedKeys)
	}
	c.setKey("key_revoked", keyState{})
	if k, ok := c.keys["key_revoked"]; !ok || k.active || len(c.keys) != maxCachedKeys {
		t.Errorf("setKey(inactive) on a full cache: entry %v/%v, %d keys", k.active, ok, len(c.keys))
	}
	c.forget()
	if len(c.keys) != 0 {
		t.Errorf("forget left %d keys", len(c.keys))
	}
}

// TestKeyCacheSync: sync keeps the cache while no other connection has
// committed, its own commits included, and forgets it once one has.
func TestKeyCacheSync(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "k.db")
	conn := func() *sql.DB {
		db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000&_journal_mode=WAL&_txlock=immediate")
		if err != nil {
			t.Fatal(err)
		}
		db.SetMaxOpenConns(1) // data_version is per connection
		t.Cleanup(func() { db.Close() })
		return db
	}
	writerDB, other := conn(), conn()
	writer, err := writerDB.Conn(ctx) // the writer holds its one connection, as DB does
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	if _, err := writer.ExecContext(ctx, `CREATE TABLE t (x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	st, err := writer.PrepareContext(ctx, `PRAGMA data_version`)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	var c writerCache
	batch := func(what string, write bool) {
		t.Helper()
		exec := func(q string) {
			t.Helper()
			if _, err := writer.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %s: %v", what, q, err)
			}
		}
		exec(`BEGIN IMMEDIATE`)
		if err := c.sync(ctx, st); err != nil {
			exec(`ROLLBACK`)
			t.Fatalf("%s: sync: %v", what, err)
		}
		if write {
			exec(`INSERT INTO t VALUES (1)`)
		}
		exec(`COMMIT`)
	}
	cached := func() bool { _, ok := c.keys["key_1"]; return ok }

	batch("first batch", false)
	c.setKey("key_1", keyState{active: true})
	batch("a batch after none", true)
	batch("a batch after the writer's own commit", false)
	if !cached() {
		t.Fatal("sync forgot the cache with no other connection's commit")
	}
	if _, err := other.ExecContext(ctx, `INSERT INTO t VALUES (2)`); err != nil {
		t.Fatal(err)
	}
	batch("a batch after another connection's commit", false)
	if cached() {
		t.Error("sync kept the cache after another connection committed")
	}
}
