package keys_test

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"keygate/keys"
	"keygate/memstore"
)

// countingStore is a real store (memstore, which passes the store
// contract) that counts the reads a cache should spare it, and can hold a
// key resolution in flight.
type countingStore struct {
	*memstore.Store
	resolves, epochs atomic.Int64
	hold             chan chan struct{} // when set, ResolveKey waits to be released
	holdEpoch        chan chan struct{} // when set, KeyEpoch waits to be released
	fixedEpoch       bool               // KeyEpoch is always 0, as if restored
	epochErr         error              // when set, KeyEpoch fails with it
}

func (s *countingStore) ResolveKey(ctx context.Context, d keys.Digest) (keys.ResolvedKey, error) {
	s.resolves.Add(1)
	r, err := s.Store.ResolveKey(ctx, d)
	if s.hold != nil {
		release := make(chan struct{})
		s.hold <- release
		<-release
	}
	return r, err
}

func (s *countingStore) ResolveKeyID(ctx context.Context, id string) (keys.ResolvedKey, error) {
	s.resolves.Add(1)
	return s.Store.ResolveKeyID(ctx, id)
}

func (s *countingStore) KeyEpoch(ctx context.Context) (int64, error) {
	s.epochs.Add(1)
	if s.holdEpoch != nil {
		release := make(chan struct{})
		s.holdEpoch <- release
		<-release
	}
	if s.epochErr != nil {
		return 0, s.epochErr
	}
	if s.fixedEpoch {
		return 0, nil
	}
	return s.Store.KeyEpoch(ctx)
}

type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newService(st keys.Store, clk *manualClock) *keys.Service {
	return keys.NewService(st, nil, clk.Now, slog.New(slog.DiscardHandler))
}

func TestAuthenticateServesHitsFromTheCache(t *testing.T) {
	ctx := t.Context()
	st := &countingStore{Store: memstore.New()}
	clk := &manualClock{t: time.Date(2026, 6, 26, 8, 0, 0, 0, time.UTC)}
	svc := newService(st, clk)
	p, k, err := svc.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		got, err := svc.Authenticate(ctx, k.APIKey.Reveal())
		if err != nil || got.ID != p.ID || got.KeyID != k.ID || got.Name != "Acme" || got.Kind != keys.KindPartner {
			t.Fatalf("Authenticate = %+v, %v", got, err)
		}
	}
	if n := st.resolves.Load(); n != 1 {
		t.Errorf("100 logins with one key read the store %d times, want 1", n)
	}
	if n := st.epochs.Load(); n != 1 {
		t.Errorf("100 logins within %s checked the key epoch %d times, want 1", keys.KeyCheckInterval, n)
	}
	// The token check by key id reads nothing more: the login filled it.
	if got, err := svc.ActivePrincipal(ctx, keys.PrincipalOf(k.ID, keys.PartnerOwner(p.ID), "")); err != nil || got.Name != "Acme" {
		t.Fatalf("ActivePrincipal = %+v, %v", got, err)
	}
	if n := st.resolves.Load(); n != 1 {
		t.Errorf("ActivePrincipal after a login read the store (%d reads)", n)
	}
	if n := st.epochs.Load(); n != 1 {
		t.Errorf("ActivePrincipal within %s of a login's epoch read read it again", keys.KeyCheckInterval)
	}
	// Unknown keys are not remembered: each one is a read.
	for range 3 {
		if _, err := svc.Authenticate(ctx, keys.NewAPIKey(keys.PartnerKeyPrefix).Reveal()); !errors.Is(err, keys.ErrInvalidKey) {
			t.Fatalf("unknown key: %v", err)
		}
	}
	if n := st.resolves.Load(); n != 4 {
		t.Errorf("three unknown keys: %d reads in all, want 4", n)
	}
}

// TestCacheSeesChangesAtOnce: a change through this process is seen by the
// next login; one through another (here a second Service on the same
// store, as the CLI is) within keyCheckInterval.
func TestCacheSeesChangesAtOnce(t *testing.T) {
	ctx := t.Context()
	st := memstore.New()
	clk := &manualClock{t: time.Date(2026, 6, 26, 8, 0, 0, 0, time.UTC)}
	server, cli := newService(st, clk), newService(st, clk)
	p, k, err := server.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	_, co, err := server.CreateCompany(ctx, keys.ActorFor(keys.PrincipalOf(k.ID, keys.PartnerOwner(p.ID), ""), "192.0.2.1"), p.ID, keys.CompanyInput{Name: "Globex"})
	if err != nil {
		t.Fatal(err)
	}
	k2, err := server.CreateKey(ctx, keys.Operator, keys.PartnerOwner(p.ID), keys.KeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	login := func(key keys.NewKey) error {
		_, err := server.Authenticate(ctx, key.APIKey.Reveal())
		return err
	}
	for _, key := range []keys.NewKey{k, k2, co} {
		if err := login(key); err != nil {
			t.Fatalf("login: %v", err)
		}
	}

	// Through this process: at once.
	if err := server.RevokeKey(ctx, keys.Operator, keys.PartnerOwner(p.ID), k.ID); err != nil {
		t.Fatal(err)
	}
	if err := login(k); !errors.Is(err, keys.ErrInvalidKey) {
		t.Fatalf("login with a key this process revoked: %v", err)
	}
	if err := login(k2); err != nil {
		t.Fatalf("the partner's other key: %v", err)
	}

	// Through another process: within keyCheckInterval, and not before the
	// cache was last checked (the bound the docs state).
	if _, err := server.ActivePrincipal(ctx, keys.PrincipalOf(co.ID, co.Owner, "")); err != nil {
		t.Fatalf("token check before the change: %v", err)
	}
	if err := cli.DisableCompany(ctx, keys.Operator, p.ID, co.Owner.CompanyID()); err != nil {
		t.Fatal(err)
	}
	clk.Advance(keys.KeyCheckInterval)
	if err := login(co); !errors.Is(err, keys.ErrInvalidKey) {
		t.Fatalf("login with a company key another process disabled, %s later: %v", keys.KeyCheckInterval, err)
	}
	_, err = server.ActivePrincipal(ctx, keys.PrincipalOf(co.ID, co.Owner, ""))
	if !errors.Is(err, keys.ErrInactive) {
		t.Fatalf("token check of a disabled company: %v", err)
	}
	if _, err := server.ActivePrincipal(ctx, keys.PrincipalOf(k2.ID, k2.Owner, "")); err != nil {
		t.Fatalf("token check of the partner's key: %v", err)
	}
	if err := cli.DisablePartner(ctx, keys.Operator, p.ID); err != nil {
		t.Fatal(err)
	}
	clk.Advance(keys.KeyCheckInterval)
	if _, err := server.ActivePrincipal(ctx, keys.PrincipalOf(k2.ID, k2.Owner, "")); !errors.Is(err, keys.ErrInactive) {
		t.Fatalf("token check of a partner another process disabled, %s later: %v", keys.KeyCheckInterval, err)
	}
	if err := login(k2); !errors.Is(err, keys.ErrInvalidKey) {
		t.Fatalf("login of a partner another process disabled: %v", err)
	}
}

// TestSharedStoreLoginsSeeChangesAtOnce: on a store replicas share (a
// ChangeFeed), a login refuses a key another process revoked a moment
// before, with no time passing, though the cache holds it; token checks
// keep keyCheckInterval.
func TestSharedStoreLoginsSeeChangesAtOnce(t *testing.T) {
	ctx := t.Context()
	st := sharedStore()
	clk := &manualClock{t: time.Date(2026, 6, 26, 8, 0, 0, 0, time.UTC)}
	server, other := newService(st, clk), newService(st, clk)
	p, k, err := other.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	k2, err := other.CreateKey(ctx, keys.Operator, keys.PartnerOwner(p.ID), keys.KeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []keys.NewKey{k, k2} {
		if _, err := server.Authenticate(ctx, key.APIKey.Reveal()); err != nil {
			t.Fatal(err)
		}
	}
	if n := st.epochs.Load(); n != 2 {
		t.Errorf("two logins one after the other read the epoch %d times, want 2 (one each)", n)
	}
	if err := other.RevokeKey(ctx, keys.Operator, keys.PartnerOwner(p.ID), k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Authenticate(ctx, k.APIKey.Reveal()); !errors.Is(err, keys.ErrInvalidKey) {
		t.Errorf("login with a key another replica revoked a moment ago: %v, want ErrInvalidKey", err)
	}
	if _, err := server.Authenticate(ctx, k2.APIKey.Reveal()); err != nil {
		t.Errorf("the partner's other key: %v", err)
	}
}

// sharedStore is a counting memstore that passes for a store replicas
// share: a ChangeFeed that never announces anything.
func sharedStore() *feedStore {
	return &feedStore{countingStore: &countingStore{Store: memstore.New()}}
}

// TestConcurrentLoginsShareEpochReads: on a store replicas share, logins
// that arrive while an epoch read is in flight wait for the next one, all
// of them together: two reads for any number of logins.
func TestConcurrentLoginsShareEpochReads(t *testing.T) {
	ctx := t.Context()
	st := sharedStore()
	clk := &manualClock{t: time.Date(2026, 6, 26, 8, 0, 0, 0, time.UTC)}
	svc := newService(st, clk)
	_, k, err := svc.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Authenticate(ctx, k.APIKey.Reveal()); err != nil { // fills the cache
		t.Fatal(err)
	}
	st.epochs.Store(0)
	st.holdEpoch = make(chan chan struct{})
	const queued = 20
	errs := make(chan error, queued+1)
	login := func() {
		_, err := svc.Authenticate(ctx, k.APIKey.Reveal())
		errs <- err
	}
	go login()
	release := <-st.holdEpoch // the first login's read is in flight
	for range queued {
		go login()
	}
	for keys.QueuedEpochWaiters(svc) < queued {
		runtime.Gosched()
	}
	close(release)
	close((<-st.holdEpoch)) // the queued read, for all twenty
	st.holdEpoch = nil
	for range queued + 1 {
		if err := <-errs; err != nil {
			t.Fatalf("login: %v", err)
		}
	}
	if n := st.epochs.Load(); n != 2 {
		t.Errorf("%d concurrent logins read the epoch %d times, want 2", queued+1, n)
	}
}

// TestCacheEntriesExpire: with an epoch that does not move (as after a
// restore that brought back a number already seen), a change is still
// seen once the entry is KeyTTL old on a store replicas share, or
// LocalKeyTTL old on one a single process owns, by logins and token checks
// alike.
func TestCacheEntriesExpire(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func() keys.Store
		ttl   time.Duration
	}{
		{"one process's store", func() keys.Store { return &countingStore{Store: memstore.New(), fixedEpoch: true} }, keys.LocalKeyTTL},
		{"a store replicas share", func() keys.Store {
			s := sharedStore()
			s.fixedEpoch = true
			return s
		}, keys.KeyTTL},
	} {
		t.Run(tc.name, func(t *testing.T) { testCacheEntriesExpire(t, tc.store(), tc.ttl) })
	}
}

func testCacheEntriesExpire(t *testing.T, st keys.Store, ttl time.Duration) {
	ctx := t.Context()
	clk := &manualClock{t: time.Date(2026, 6, 26, 8, 0, 0, 0, time.UTC)}
	server, cli := newService(st, clk), newService(st, clk)
	p, k, err := cli.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	claims := keys.PrincipalOf(k.ID, keys.PartnerOwner(p.ID), "")
	if _, err := server.Authenticate(ctx, k.APIKey.Reveal()); err != nil {
		t.Fatal(err)
	}
	if err := cli.RevokeKey(ctx, keys.Operator, keys.PartnerOwner(p.ID), k.ID); err != nil {
		t.Fatal(err)
	}
	clk.Advance(ttl - time.Millisecond)
	if _, err := server.Authenticate(ctx, k.APIKey.Reveal()); err != nil {
		t.Fatalf("login before KeyTTL, the epoch unmoved: %v (want the stale hit this test relies on)", err)
	}
	if _, err := server.ActivePrincipal(ctx, claims); err != nil {
		t.Fatalf("token check before KeyTTL: %v", err)
	}
	clk.Advance(time.Millisecond)
	if _, err := server.Authenticate(ctx, k.APIKey.Reveal()); !errors.Is(err, keys.ErrInvalidKey) {
		t.Errorf("login KeyTTL after the cache read the key: %v, want ErrInvalidKey", err)
	}
	if _, err := server.ActivePrincipal(ctx, claims); !errors.Is(err, keys.ErrInactive) {
		t.Errorf("token check KeyTTL after: %v, want ErrInactive", err)
	}
}

// feedStore is a real store whose epoch never moves and which announces
// changes when the test says so: only the feed can tell the cache.
type feedStore struct {
	*countingStore
	watching chan func() // the cache's callback, once WatchKeyChanges runs
}

func (s *feedStore) WatchKeyChanges(ctx context.Context, changed func()) {
	if s.watching != nil {
		s.watching <- changed
	}
	<-ctx.Done()
}

// TestChangeFeedDropsTheCache: each announcement makes the cache forget
// everything, before any interval or lifetime has passed.
func TestChangeFeedDropsTheCache(t *testing.T) {
	ctx := t.Context()
	st := &feedStore{countingStore: &countingStore{Store: memstore.New(), fixedEpoch: true}, watching: make(chan func())}
	clk := &manualClock{t: time.Date(2026, 6, 26, 8, 0, 0, 0, time.UTC)}
	server, cli := newService(st, clk), newService(st, clk)
	watchCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { server.WatchChanges(watchCtx); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	changed := <-st.watching

	p, k, err := cli.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	claims := keys.PrincipalOf(k.ID, keys.PartnerOwner(p.ID), "")
	if _, err := server.ActivePrincipal(ctx, claims); err != nil {
		t.Fatal(err)
	}
	if err := cli.RevokeKey(ctx, keys.Operator, keys.PartnerOwner(p.ID), k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := server.ActivePrincipal(ctx, claims); err != nil {
		t.Fatalf("token check before the announcement: %v (want the stale hit this test relies on)", err)
	}
	changed()
	if _, err := server.ActivePrincipal(ctx, claims); !errors.Is(err, keys.ErrInactive) {
		t.Errorf("token check after the announcement: %v, want ErrInactive", err)
	}
}

// A store that is no ChangeFeed: WatchChanges returns at once.
func TestWatchChangesWithoutAFeed(t *testing.T) {
	svc := newService(memstore.New(), &manualClock{})
	svc.WatchChanges(t.Context())
}

// TestCacheDropsAReadThatRacedAnInvalidation: a lookup that read the key
// before a revocation committed must not leave its stale answer behind.
func TestCacheDropsAReadThatRacedAnInvalidation(t *testing.T) {
	ctx := t.Context()
	st := &countingStore{Store: memstore.New()}
	clk := &manualClock{t: time.Date(2026, 6, 26, 8, 0, 0, 0, time.UTC)}
	svc := newService(st, clk)
	p, k, err := svc.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	st.hold = make(chan chan struct{})
	done := make(chan error)
	go func() {
		_, err := svc.Authenticate(ctx, k.APIKey.Reveal())
		done <- err
	}()
	release := <-st.hold // the lookup has read the key, still active
	st.hold = nil
	if err := svc.RevokeKey(ctx, keys.Operator, keys.PartnerOwner(p.ID), k.ID); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("the login that started before the revocation: %v", err)
	}
	if _, err := svc.Authenticate(ctx, k.APIKey.Reveal()); !errors.Is(err, keys.ErrInvalidKey) {
		t.Fatalf("the login after the revocation: %v (a stale read was cached)", err)
	}
}

func TestCacheIsBounded(t *testing.T) {
	ctx := t.Context()
	st := memstore.New()
	clk := &manualClock{t: time.Date(2026, 6, 26, 8, 0, 0, 0, time.UTC)}
	svc := newService(st, clk)
	keys.SetKeyCacheSize(svc, 10)
	var all []keys.NewKey
	for range 25 {
		_, k, err := svc.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "p"})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, k)
	}
	for range 3 {
		for _, k := range all {
			if _, err := svc.Authenticate(ctx, k.APIKey.Reveal()); err != nil {
				t.Fatal(err)
			}
		}
		if n := keys.CachedKeys(svc); n > 10 {
			t.Fatalf("cache holds %d keys, bound 10", n)
		}
	}
}

// TestActivePrincipalChecksEveryClaim: a token's principal must be its
// key's exactly; any claim that differs is ErrInactive, like a revoked key.
func TestActivePrincipalChecksEveryClaim(t *testing.T) {
	ctx := t.Context()
	st := memstore.New()
	clk := &manualClock{t: time.Date(2026, 6, 26, 8, 0, 0, 0, time.UTC)}
	svc := newService(st, clk)
	newPartner := func(name string) (keys.Partner, keys.NewKey, keys.NewKey) {
		p, k, err := svc.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		_, co, err := svc.CreateCompany(ctx, keys.Operator, p.ID, keys.CompanyInput{Name: name + " customer"})
		if err != nil {
			t.Fatal(err)
		}
		return p, k, co
	}
	_, pk, ck := newPartner("Acme")
	other, opk, ock := newPartner("Bolt")
	claims := func(k keys.NewKey) keys.Principal { return keys.PrincipalOf(k.ID, k.Owner, "") }
	change := func(p keys.Principal, f func(*keys.Principal)) keys.Principal { f(&p); return p }

	for _, k := range []keys.NewKey{pk, ck, opk, ock} {
		got, err := svc.ActivePrincipal(ctx, claims(k))
		if err != nil || got.KeyID != k.ID || got.Name == "" {
			t.Fatalf("ActivePrincipal(%s) = %+v, %v", k.ID, got, err)
		}
	}
	pp, cp := claims(pk), claims(ck)
	for _, tc := range []struct {
		name string
		p    keys.Principal
	}{
		{"zero principal", keys.Principal{}},
		{"unknown key", change(pp, func(p *keys.Principal) { p.KeyID = keys.NewID("key_") })},
		{"partner key claiming company kind", change(pp, func(p *keys.Principal) { p.Kind = keys.KindCompany })},
		{"company key claiming partner kind", change(cp, func(p *keys.Principal) { p.Kind, p.ID = keys.KindPartner, p.PartnerID })},
		{"company key without its company", change(cp, func(p *keys.Principal) { p.Kind, p.ID, p.CompanyID = keys.KindPartner, p.PartnerID, "" })},
		{"company key with an empty company id", change(cp, func(p *keys.Principal) { p.CompanyID = "" })},
		{"id not the key's owner", change(pp, func(p *keys.Principal) { p.ID = other.ID })},
		{"company id not the key's", change(cp, func(p *keys.Principal) { p.ID, p.CompanyID = ock.Owner.CompanyID(), ock.Owner.CompanyID() })},
		{"partner id not the key's", change(cp, func(p *keys.Principal) { p.PartnerID = other.ID })},
		{"another partner's key", change(pp, func(p *keys.Principal) { p.KeyID = opk.ID })},
	} {
		if _, err := svc.ActivePrincipal(ctx, tc.p); !errors.Is(err, keys.ErrInactive) {
			t.Errorf("%s: ActivePrincipal = %v, want ErrInactive", tc.name, err)
		}
	}
}

// TestQueuedLookupsShareAFailedRead: lookups queued behind an epoch read
// that fails get its error at once, not after a read of their own.
func TestQueuedLookupsShareAFailedRead(t *testing.T) {
	ctx := t.Context()
	st := sharedStore()
	clk := &manualClock{t: time.Date(2026, 6, 26, 8, 0, 0, 0, time.UTC)}
	svc := newService(st, clk)
	_, k, err := svc.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	st.epochs.Store(0)
	st.holdEpoch = make(chan chan struct{})
	st.epochErr = keys.ErrUnavailable
	errs := make(chan error, 4)
	login := func() {
		_, err := svc.Authenticate(ctx, k.APIKey.Reveal())
		errs <- err
	}
	go login()
	release := <-st.holdEpoch
	for range 3 {
		go login()
	}
	for keys.QueuedEpochWaiters(svc) < 3 {
		runtime.Gosched()
	}
	st.holdEpoch = nil
	close(release)
	for range 4 {
		if err := <-errs; !errors.Is(err, keys.ErrUnavailable) {
			t.Errorf("login behind a failed epoch read: %v, want ErrUnavailable", err)
		}
	}
	if n := st.epochs.Load(); n != 1 {
		t.Errorf("the queued logins read the epoch again (%d reads), want the failed read's answer", n)
	}
}
