package keys

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// ResolvedKey is an API key as a login or an access-token check needs it:
// who it speaks for and whether it may act now.
type ResolvedKey struct {
	Digest    Digest
	Principal Principal // with the owner's name
	// Active is false once the key is revoked or its partner or company
	// is disabled.
	Active bool
}

// keyCheckInterval bounds how long a change made by another process (the
// CLI, another replica) can go unseen by this one: while logins or token
// checks use the cache, it asks the store for its key epoch at most this
// often, and forgets everything when the epoch has moved.
const keyCheckInterval = 10 * time.Millisecond

// maxCachedKeys bounds the cache; with more keys in use than that, a new
// entry pushes out an arbitrary old one, so most lookups still hit.
const maxCachedKeys = 250_000

// keyCache is an exact cache of resolved keys, by digest for logins and by
// key id for access-token checks, so that neither touches the store on a
// hit. It is exact, not a guess with a lifetime: changes made through this
// process forget everything before the call that made them returns, and
// changes made by other processes are found by comparing the store's key
// epoch (which every revocation and every disabling moves, in its own
// transaction) at most keyCheckInterval apart.
type keyCache struct {
	store Store
	now   func() time.Time
	max   int // maxCachedKeys; tests lower it

	mu       sync.RWMutex
	byDigest map[Digest]*ResolvedKey
	byID     map[string]*ResolvedKey
	// gen moves with every invalidation: a miss keeps what it read only if
	// no invalidation happened while it was reading.
	gen uint64

	checkMu   sync.Mutex   // one epoch check at a time
	checkedAt atomic.Int64 // UnixNano of the last check's start; 0: never
	epoch     int64        // the store's key epoch then (under mu)
	haveEpoch bool
}

func newKeyCache(store Store, now func() time.Time) *keyCache {
	return &keyCache{store: store, now: now, max: maxCachedKeys, byDigest: map[Digest]*ResolvedKey{}, byID: map[string]*ResolvedKey{}}
}

// fresh makes sure no other process has changed keys since the cache was
// last checked, at most keyCheckInterval ago.
func (c *keyCache) fresh(ctx context.Context) error {
	if c.recent(c.now()) {
		return nil
	}
	c.checkMu.Lock()
	defer c.checkMu.Unlock()
	start := c.now()
	if c.recent(start) {
		return nil // another caller checked while this one waited
	}
	epoch, err := c.store.KeyEpoch(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.clear()
		return err
	}
	if !c.haveEpoch || epoch != c.epoch {
		c.clear()
		c.epoch, c.haveEpoch = epoch, true
	}
	c.checkedAt.Store(start.UnixNano()) // the time before the read: never later than what it saw
	return nil
}

// recent reports whether the last check started less than keyCheckInterval
// before now.
func (c *keyCache) recent(now time.Time) bool {
	at := c.checkedAt.Load()
	return at != 0 && now.UnixNano()-at < int64(keyCheckInterval)
}

// byKeyDigest returns the resolved key with that digest, reading it from
// the store on a miss. Unknown digests are not remembered: a key created
// later must log in at once.
func (c *keyCache) byKeyDigest(ctx context.Context, d Digest) (ResolvedKey, error) {
	if err := c.fresh(ctx); err != nil {
		return ResolvedKey{}, err
	}
	c.mu.RLock()
	e, ok := c.byDigest[d]
	gen := c.gen
	c.mu.RUnlock()
	if ok {
		return *e, nil
	}
	r, err := c.store.ResolveKey(ctx, d)
	if err != nil {
		return ResolvedKey{}, err
	}
	c.put(r, gen)
	return r, nil
}

// cachedActive reports whether the cache holds d as an active key, without
// reading the store or checking freshness: a hint for admitting a request
// that would otherwise be refused, never a reason to refuse one.
func (c *keyCache) cachedActive(d Digest) bool {
	c.mu.RLock()
	e, ok := c.byDigest[d]
	c.mu.RUnlock()
	return ok && e.Active
}

// byKeyID is byKeyDigest by key id.
func (c *keyCache) byKeyID(ctx context.Context, id string) (ResolvedKey, error) {
	if err := c.fresh(ctx); err != nil {
		return ResolvedKey{}, err
	}
	c.mu.RLock()
	e, ok := c.byID[id]
	gen := c.gen
	c.mu.RUnlock()
	if ok {
		return *e, nil
	}
	r, err := c.store.ResolveKeyID(ctx, id)
	if err != nil {
		return ResolvedKey{}, err
	}
	c.put(r, gen)
	return r, nil
}

// put remembers r, unless an invalidation happened since gen was read.
func (c *keyCache) put(r ResolvedKey, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if _, ok := c.byID[r.Principal.KeyID]; !ok && len(c.byID) >= c.max {
		for id, old := range c.byID { // Go starts each range at a random place
			delete(c.byID, id)
			delete(c.byDigest, old.Digest)
			break
		}
	}
	e := &r
	c.byID[r.Principal.KeyID] = e
	c.byDigest[r.Digest] = e
}

// invalidate forgets everything; call it once a change has committed.
func (c *keyCache) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clear()
}

// clear forgets everything; the caller holds mu.
func (c *keyCache) clear() {
	c.gen++
	if len(c.byID) > 0 {
		c.byDigest = map[Digest]*ResolvedKey{}
		c.byID = map[string]*ResolvedKey{}
	}
}
