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
		c.setActive(key(i), i%2 == 0)
	}
	if len(c.activeKey) != maxCachedKeys {
		t.Fatalf("cache holds %d keys, want %d", len(c.activeKey), maxCachedKeys)
	}
	for _, i := range []int{maxCachedKeys + 8, maxCachedKeys + 9} {
		if active, ok := c.activeKey[key(i)]; !ok || active != (i%2 == 0) {
			t.Errorf("key %d remembered last: entry %v/%v, want %v/true", i, active, ok, i%2 == 0)
		}
	}
	last := key(maxCachedKeys + 9)
	c.setActive(last, true)
	if active := c.activeKey[last]; !active || len(c.activeKey) != maxCachedKeys {
		t.Errorf("setActive on a key in a full cache: active %v, %d keys; want true, %d", active, len(c.activeKey), maxCachedKeys)
	}
	c.setActive("key_revoked", false)
	if active, ok := c.activeKey["key_revoked"]; !ok || active || len(c.activeKey) != maxCachedKeys {
		t.Errorf("setActive(false) on a full cache: entry %v/%v, %d keys", active, ok, len(c.activeKey))
	}
	c.forget()
	if len(c.activeKey) != 0 {
		t.Errorf("forget left %d keys", len(c.activeKey))
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
	cached := func() bool { _, ok := c.activeKey["key_1"]; return ok }

	batch("first batch", false)
	c.setActive("key_1", true)
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
