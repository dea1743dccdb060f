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
	Principal Principal // with the owner's name and KeyExpiresAt; Scopes unset
	// Active is false once the key is revoked or its partner or company
	// is disabled. An expired key may still be Active: expiry is a matter
	// of the time it is used at (see Service.Authenticate).
	Active bool
	// KeyScopes are the key's own; PartnerScopes its partner's allowed ones.
	KeyScopes, PartnerScopes Scopes
}

// principal is who the key speaks for, with the scopes it may obtain.
func (r ResolvedKey) principal() Principal {
	p := r.Principal
	p.Scopes, p.KeyScopes = r.KeyScopes.Intersect(r.PartnerScopes), r.KeyScopes
	return p
}

// usable reports whether the key may act at now.
func (r ResolvedKey) usable(now time.Time) bool {
	return r.Active && (r.Principal.KeyExpiresAt == nil || now.Before(*r.Principal.KeyExpiresAt))
}

// keyCheckInterval bounds how long a change made by another process (the
// CLI, another replica) can go unseen by this one: while lookups use the
// cache, it asks the store for its key epoch at most this often, and
// forgets everything when the epoch has moved. On a store that replicas
// share, logins wait for an epoch read of their own instead (byKeyDigest).
const keyCheckInterval = 10 * time.Millisecond

// keyTTL is how long a cached key is used before it is read again, however
// quiet the epoch, on a store that replicas share: the safety net for what
// the epoch cannot show. The epoch is a counter; a database restored from a
// backup, or a standby promoted before it had replayed the last
// revocations, can come back with a number this process has already seen,
// and a change made behind keygate's back (SQL by hand) moves nothing. A
// key in use is then read once per keyTTL per process (a fraction of a read
// per second, against the hundreds of requests it may serve), and nothing
// stale outlives keyTTL.
const keyTTL = 5 * time.Second

// localKeyTTL is keyTTL on a store that one serving process owns (SQLite,
// with the CLI beside it): there no standby is promoted, a restore means a
// restart, and triggers move the epoch for every change to what a key
// resolves to, SQL by hand included (sqlite/migrations/0005), so nothing
// that keygate's schema lets happen slips past the epoch; the TTL is a
// last net only. Every read it causes is a point query on the key table:
// reading 1,000 keys in use every 5 s cost logins about 8% of their CPU in
// the benchmark, and reading 100,000 once a minute brought their logins to
// 0.72–0.73 of the 1,000-key rate (0.87–0.92 with 10 minutes; BENCHMARKS.md,
// "Scale").
const localKeyTTL = 10 * time.Minute

// epochCheckTimeout bounds an epoch read that no single request owns (one
// started for requests that queued behind another).
const epochCheckTimeout = 5 * time.Second

// maxCachedKeys bounds the cache; with more keys in use than that, a new
// entry pushes out an arbitrary old one, so most lookups still hit.
const maxCachedKeys = 250_000

// keyCache is a cache of resolved keys, by digest for logins and by key id
// for access-token checks, so that neither reads a key from the store on a
// hit. It is exact, not a guess with a lifetime:
//
//   - changes made through this process forget everything before the call
//     that made them returns;
//   - changes made by other processes move the store's key epoch (every
//     revocation and every disabling, in its own transaction), which
//     lookups compare at most keyCheckInterval apart. On a store that
//     replicas share (a ChangeFeed), a login uses the cache only after an
//     epoch read that started after the login did, shared by all logins
//     that arrived while the previous read was in flight, so a change
//     committed anywhere before a login began is seen by it;
//   - a store that can announce changes (ChangeFeed, PostgreSQL's
//     LISTEN/NOTIFY) makes the cache forget everything as each one commits
//     and whenever an announcement may have been missed: sooner, never
//     instead;
//   - keyTTL (localKeyTTL on a store one process owns) bounds what the
//     epoch cannot show.
type keyCache struct {
	store  Store
	now    func() time.Time
	max    int   // maxCachedKeys; tests lower it
	strict bool  // logins wait for an epoch read of their own (a ChangeFeed store)
	ttl    int64 // keyTTL or localKeyTTL, in nanoseconds

	mu    sync.RWMutex
	table *keyTable // by digest for logins, by key id for token checks
	// gen moves with every invalidation: a miss keeps what it read only if
	// no invalidation happened while it was reading.
	gen uint64

	checkMu sync.Mutex  // guards running and queued
	running *epochCheck // the epoch read in flight, if any
	queued  *epochCheck // the one to start when it ends, joined by whoever arrives meanwhile

	checkedAt atomic.Int64 // UnixNano of the last good check's start; 0: never
	epoch     int64        // the store's key epoch then (under mu)
	haveEpoch bool
}

// epochCheck is one read of the store's key epoch, which any number of
// lookups wait for.
type epochCheck struct {
	done    chan struct{} // closed when err is set
	err     error
	waiters int // lookups that joined it while queued (under checkMu)
}

func newKeyCache(store Store, now func() time.Time) *keyCache {
	_, shared := store.(ChangeFeed)
	ttl := localKeyTTL
	if shared {
		ttl = keyTTL
	}
	return &keyCache{store: store, now: now, max: maxCachedKeys, strict: shared, ttl: int64(ttl), table: newKeyTable()}
}

// fresh makes sure no other process has changed keys since the cache was
// last checked, at most keyCheckInterval before now.
func (c *keyCache) fresh(ctx context.Context, now time.Time) error {
	if c.recent(now) {
		return nil
	}
	return c.checked(ctx)
}

// checked returns once an epoch read that started after this call has
// updated the cache: the one queued behind the read in flight, or a new
// one if none is in flight. Concurrent callers share reads, so the store
// sees about one read per round trip however many lookups wait.
func (c *keyCache) checked(ctx context.Context) error {
	c.checkMu.Lock()
	if c.running == nil {
		f := &epochCheck{done: make(chan struct{})}
		c.running = f
		c.checkMu.Unlock()
		c.run(ctx, f) // on this goroutine: the common, uncontended case
		return f.err
	}
	if c.queued == nil {
		c.queued = &epochCheck{done: make(chan struct{})}
	}
	f := c.queued
	f.waiters++
	c.checkMu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run reads the epoch for f, then starts the read queued behind it, if any.
// If f's read failed, the queued one fails with it at once, unread: its
// lookups would otherwise wait for a second timeout behind the first, and
// an error is always a safe answer (the caller refuses, 503).
func (c *keyCache) run(ctx context.Context, f *epochCheck) {
	f.err = c.readEpoch(ctx)
	close(f.done)
	c.checkMu.Lock()
	next := c.queued
	c.queued = nil
	if f.err != nil {
		c.running = nil
	} else {
		c.running = next
	}
	c.checkMu.Unlock()
	if next != nil && f.err != nil {
		next.err = f.err
		close(next.done)
		return
	}
	if next != nil {
		go func() {
			// No one request owns it: its waiters may give up, it still ends.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), epochCheckTimeout)
			defer cancel()
			c.run(ctx, next)
		}()
	}
}

// readEpoch reads the store's key epoch and forgets everything if it moved,
// or could not be read for any reason but the caller's giving up.
func (c *keyCache) readEpoch(ctx context.Context) error {
	start := c.now()
	epoch, err := c.store.KeyEpoch(ctx)
	if err != nil && ctx.Err() != nil {
		return err
	}
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
// the store on a miss. On a store replicas share it answers only after an
// epoch read that started after it was called (checked), so that a key
// revoked anywhere before a login began is refused by it; elsewhere (one
// process, and the CLI beside it) within keyCheckInterval. Unknown digests
// are not remembered: a key created later must log in at once.
func (c *keyCache) byKeyDigest(ctx context.Context, d Digest) (ResolvedKey, error) {
	var t time.Time
	var err error
	if c.strict {
		err = c.checked(ctx)
		t = c.now()
	} else {
		t = c.now()
		err = c.fresh(ctx, t)
	}
	if err != nil {
		return ResolvedKey{}, err
	}
	return lookup(ctx, c, d, t, (*keyTable).digest, c.store.ResolveKey)
}

// cachedActive reports whether the cache holds d as an active key, without
// reading the store or checking freshness: a hint for admitting a request
// that would otherwise be refused, never a reason to refuse one.
func (c *keyCache) cachedActive(d Digest, now time.Time) bool {
	c.mu.RLock()
	r, _, ok := c.table.digest(d)
	c.mu.RUnlock()
	return ok && r.usable(now)
}

// byKeyID is byKeyDigest by key id, for token checks: it compares the
// epoch at most keyCheckInterval apart instead of on every call.
func (c *keyCache) byKeyID(ctx context.Context, id string) (ResolvedKey, error) {
	t := c.now()
	if err := c.fresh(ctx, t); err != nil {
		return ResolvedKey{}, err
	}
	return lookup(ctx, c, id, t, (*keyTable).id, c.store.ResolveKeyID)
}

// lookup returns the key find finds under k if it was read less than the
// cache's TTL before t, or reads it from the store and remembers it.
func lookup[K any](ctx context.Context, c *keyCache, k K, t time.Time, find func(*keyTable, K) (ResolvedKey, int64, bool), read func(context.Context, K) (ResolvedKey, error)) (ResolvedKey, error) {
	now := t.UnixNano()
	c.mu.RLock()
	r, at, ok := find(c.table, k)
	gen := c.gen
	c.mu.RUnlock()
	if ok && now-at < c.ttl {
		return r, nil
	}
	r, err := read(ctx, k)
	if err != nil {
		return ResolvedKey{}, err
	}
	c.put(r, gen, now)
	return r, nil
}

// put remembers r, read from a time at (UnixNano), unless an invalidation
// happened since gen was read.
func (c *keyCache) put(r ResolvedKey, gen uint64, at int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen == c.gen {
		c.table.put(r, at, c.max)
	}
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
	if c.table.len() > 0 || len(c.table.partners) > 0 {
		c.table = newKeyTable()
	}
}

// ChangeFeed is a store that several serving processes (replicas) share,
// and that can announce, as they commit, the changes that make cached keys
// wrong: a key revoked, a partner or company disabled, through any handle
// on the store. The cache forgets everything on each announcement, which
// only makes it forget sooner; and because another replica's change must
// stop a login at once, logins on such a store wait for an epoch read of
// their own (see keyCache).
type ChangeFeed interface {
	// WatchKeyChanges calls changed after each such change commits, and
	// each time it may have missed one (whenever it starts listening, and
	// again after every reconnection), until ctx ends; then it returns.
	WatchKeyChanges(ctx context.Context, changed func())
}

// WatchChanges makes the key cache forget everything on each change the
// store announces, until ctx ends, if the store is a ChangeFeed; otherwise
// it returns at once. keygate serve runs it among its background jobs.
func (s *Service) WatchChanges(ctx context.Context) {
	if f, ok := s.store.(ChangeFeed); ok {
		f.WatchKeyChanges(ctx, s.cache.invalidate)
	}
}
