package sqlite

import (
	"context"
	"database/sql"
)

// keyCache remembers, for the writer goroutine alone, which keys may act,
// so that a refresh skips the join of its key and owners. It is exact, not
// a guess: revocations made through this DB forget everything in the same
// op, and every batch starts by comparing PRAGMA data_version, which moves
// whenever another connection (the CLI, another process) has committed;
// inside the batch's immediate transaction nobody else can commit.
type keyCache struct {
	dataVersion int64
	activeKey   map[string]bool
}

// maxCachedKeys bounds the cache. Past it, a new entry pushes out an
// arbitrary old one: with more keys in use than that, most lookups still
// hit, where starting afresh would make every one miss.
const maxCachedKeys = 100_000

func (c *keyCache) forget() { c.activeKey = make(map[string]bool) }

func (c *keyCache) setActive(keyID string, active bool) {
	if _, ok := c.activeKey[keyID]; !ok && len(c.activeKey) >= maxCachedKeys {
		for old := range c.activeKey { // Go starts each range at a random place
			delete(c.activeKey, old)
			break
		}
	}
	c.activeKey[keyID] = active
}

// sync forgets everything if another connection has committed since the
// last batch. It runs first in every batch transaction.
func (c *keyCache) sync(ctx context.Context, st *sql.Stmt) error {
	var v int64
	if err := st.QueryRowContext(ctx).Scan(&v); err != nil {
		return err
	}
	if v != c.dataVersion || c.activeKey == nil {
		c.dataVersion = v
		c.forget()
	}
	return nil
}
