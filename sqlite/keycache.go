package sqlite

import (
	"context"
	"database/sql"
	"keygate/keys"
)

// keyCache remembers, for the writer goroutine alone, which key digests
// belong to which active principal and which keys may act, so that logins
// and refreshes skip the join. It is exact, not a guess: revocations made
// through this DB forget everything in the same op, and every batch starts
// by comparing PRAGMA data_version, which moves whenever another connection
// (the CLI, another process) has committed; inside the batch's immediate
// transaction nobody else can commit.
type keyCache struct {
	dataVersion int64
	byDigest    map[keys.Digest]keys.Principal
	activeKey   map[string]bool
}

// maxCachedKeys bounds each of the cache's maps. Past it, a new entry
// pushes out an arbitrary old one: with more keys in use than that, most
// lookups still hit, where starting afresh would make every one miss.
const maxCachedKeys = 100_000

func (c *keyCache) forget() {
	c.byDigest = make(map[keys.Digest]keys.Principal)
	c.activeKey = make(map[string]bool)
}

func (c *keyCache) remember(d keys.Digest, p keys.Principal) {
	put(c.byDigest, d, p)
	put(c.activeKey, p.KeyID, true)
}

func (c *keyCache) setActive(keyID string, active bool) { put(c.activeKey, keyID, active) }

// put sets m[k], first deleting an arbitrary other entry if m is full and
// lacks k (Go starts each range at a random place).
func put[K comparable, V any](m map[K]V, k K, v V) {
	if _, ok := m[k]; !ok && len(m) >= maxCachedKeys {
		for old := range m {
			delete(m, old)
			break
		}
	}
	m[k] = v
}

// sync forgets everything if another connection has committed since the
// last batch. It runs first in every batch transaction.
func (c *keyCache) sync(ctx context.Context, tx *sql.Tx, st *sql.Stmt) error {
	var v int64
	if err := tx.StmtContext(ctx, st).QueryRowContext(ctx).Scan(&v); err != nil {
		return err
	}
	if v != c.dataVersion || c.byDigest == nil {
		c.dataVersion = v
		c.forget()
	}
	return nil
}
