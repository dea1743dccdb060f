package sqlite

import (
	"context"
	"database/sql"
	"time"

	"keygate/keys"
	"keygate/tokens"
)

// writerCache remembers, for the writer goroutine alone, what the writer
// has read or written: which keys may act, so that a refresh skips the join
// of its key and owners, and the rows of the families it has seen, so that
// a refresh skips reading its family. It is exact, not a guess: the writer
// is the only connection that writes families or revokes keys in this
// process, and it updates the cache in the same op; a revocation forgets
// every key, a failed op or transaction forgets everything, and every batch
// starts by comparing PRAGMA data_version, which moves whenever another
// connection (the CLI, another process) has committed — inside the batch's
// immediate transaction nobody else can commit.
type writerCache struct {
	dataVersion int64
	keys        map[string]keyState
	families    map[string]tokens.Family
}

// Bounds of the cache's maps. Past them, a new entry pushes out an
// arbitrary old one: with more in use than that, most lookups still hit,
// where starting afresh would make every one miss.
const (
	maxCachedKeys     = 100_000
	maxCachedFamilies = 50_000 // about 300 bytes each
)

// forget forgets everything: after a failed op or transaction, or another
// connection's commit.
func (c *writerCache) forget() {
	c.forgetKeys()
	c.forgetFamilies()
}

// forgetKeys forgets what keys may do: after a revocation, a disabling or
// a change of a partner's scopes.
func (c *writerCache) forgetKeys() { c.keys = make(map[string]keyState) }

// forgetFamilies forgets every family: after rows were deleted.
func (c *writerCache) forgetFamilies() { c.families = make(map[string]tokens.Family) }

func (c *writerCache) setKey(keyID string, k keyState) {
	put(c.keys, keyID, k, maxCachedKeys)
}

// family returns the family's row as the writer last read or wrote it.
func (c *writerCache) family(id string) (tokens.Family, bool) {
	f, ok := c.families[id]
	return f, ok
}

// putFamily remembers f as its row now stands, in the row's precision: as
// readFamily would return it.
func (c *writerCache) putFamily(f tokens.Family) {
	// Read afresh on every use:
	f.PrincipalActive, f.KeyScopes, f.PartnerScopes, f.KeyExpiresAt = false, keys.Scopes{}, keys.Scopes{}, nil
	f.Principal.Name, f.SeedScopes = "", 0 // not stored
	f.CreatedAt, f.RotatedAt, f.ExpiresAt = fromMS(ms(f.CreatedAt)), fromMS(ms(f.RotatedAt)), fromMS(ms(f.ExpiresAt))
	f.ParentExpiresAt, f.FirstExpiresAt = fromZeroMS(ms0(f.ParentExpiresAt)), fromZeroMS(ms0(f.FirstExpiresAt))
	if f.RevokedAt != nil {
		at := fromMS(ms(*f.RevokedAt))
		f.RevokedAt = &at
	}
	put(c.families, f.ID, f, maxCachedFamilies)
}

// ms0 is ms, with the zero time 0 (stored as NULL).
func ms0(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return ms(t)
}

// put sets m[k], first deleting an arbitrary other entry if m has max
// entries and lacks k (Go starts each range at a random place).
func put[K comparable, V any](m map[K]V, k K, v V, max int) {
	if _, ok := m[k]; !ok && len(m) >= max {
		for old := range m {
			delete(m, old)
			break
		}
	}
	m[k] = v
}

// sync forgets everything if another connection has committed since the
// last batch. It runs first in every batch transaction.
func (c *writerCache) sync(ctx context.Context, st *sql.Stmt) error {
	var v int64
	if err := st.QueryRowContext(ctx).Scan(&v); err != nil {
		return err
	}
	if v != c.dataVersion || c.keys == nil {
		c.dataVersion = v
		c.forget()
	}
	return nil
}
