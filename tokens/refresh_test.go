package tokens_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"keygate/keys"
	"keygate/tokens"
)

const testAddr = "198.51.100.7"

func (e *env) refresh(tb testing.TB, tok keys.Secret) tokens.Pair {
	tb.Helper()
	pair, err := e.svc.Refresh(context.Background(), tok.Reveal(), testAddr)
	if err != nil {
		tb.Fatalf("Refresh: %v", err)
	}
	if !refreshPattern.MatchString(pair.RefreshToken.Reveal()) {
		tb.Fatalf("refresh token %q does not match %s", pair.RefreshToken.Reveal(), refreshPattern)
	}
	mustVerify(tb, e.jwt, pair.JWT.Reveal())
	return pair
}

func (e *env) refreshFails(tb testing.TB, tok keys.Secret) {
	tb.Helper()
	pair, err := e.svc.Refresh(context.Background(), tok.Reveal(), testAddr)
	if !errors.Is(err, tokens.ErrInvalidRefreshToken) {
		tb.Fatalf("Refresh = %v, want ErrInvalidRefreshToken", err)
	}
	if pair != (tokens.Pair{}) {
		tb.Fatal("a failed refresh returned tokens")
	}
}

// starts are the two kinds of live token a family is presented with: a
// login's (generation 0, the family has no row yet) and a later one (the
// family's state in its row).
var starts = []struct {
	name  string
	start func(tb testing.TB, e *env, p principal) tokens.Pair
}{
	{"first token", func(tb testing.TB, e *env, p principal) tokens.Pair { return e.login(tb, p) }},
	{"later token", func(tb testing.TB, e *env, p principal) tokens.Pair {
		return e.refresh(tb, e.login(tb, p).RefreshToken)
	}},
}

func TestRefreshRotates(t *testing.T) {
	e := newEnv(t)
	partner := e.newPartner(t, "Acme")
	company := e.newCompany(t, partner, "Widgets")
	for _, p := range []principal{partner, company} {
		e.clock.Set(t0)
		pair := e.login(t, p)
		first := mustVerify(t, e.jwt, pair.JWT.Reveal())
		seen := map[string]bool{pair.RefreshToken.Reveal(): true}
		jtis := map[string]bool{first.ID: true}
		for range 5 {
			e.clock.Advance(time.Minute)
			next := e.refresh(t, pair.RefreshToken)
			if seen[next.RefreshToken.Reveal()] {
				t.Fatal("refresh returned a token already issued")
			}
			seen[next.RefreshToken.Reveal()] = true
			c := mustVerify(t, e.jwt, next.JWT.Reveal())
			if jtis[c.ID] {
				t.Fatal("refresh returned a JWT with a jti already issued")
			}
			jtis[c.ID] = true
			if c.Principal() != first.Principal() {
				t.Fatalf("refreshed JWT speaks for %+v, want %+v", c.Principal(), first.Principal())
			}
			now := e.clock.Now()
			if !next.ExpiresAt.Equal(now.Add(testAccessTTL)) || !c.IssuedAt.Time.Equal(now) {
				t.Fatalf("refreshed JWT issued %v, expires %v; want %v and %v", c.IssuedAt, next.ExpiresAt, now, now.Add(testAccessTTL))
			}
			if !next.RefreshTokenExpiration.Equal(now.Add(e.cfg.refresh.TTL)) {
				t.Fatalf("RefreshTokenExpiration %v, want %v", next.RefreshTokenExpiration, now.Add(e.cfg.refresh.TTL))
			}
			if got, _ := familyOf(e.svc, next.RefreshToken.Reveal()); got != mustFamily(t, e, pair.RefreshToken) {
				t.Fatal("the successor belongs to another family")
			}
			pair = next
		}
	}
}

func reuseEvents(tb testing.TB, e *env) []keys.AuditEvent {
	tb.Helper()
	all := e.audit(tb)
	var out []keys.AuditEvent
	for _, ev := range all {
		if ev.Action == "refresh.reuse_detected" {
			out = append(out, ev)
		}
	}
	return out
}

func TestRefreshReuseRevokesFamily(t *testing.T) {
	for _, s := range starts {
		t.Run(s.name, func(t *testing.T) { testReuseRevokesFamily(t, s.start) })
	}
}

func testReuseRevokesFamily(t *testing.T, start func(testing.TB, *env, principal) tokens.Pair) {
	e := newEnv(t)
	p := e.newPartner(t, "Acme")
	stolen := start(t, e, p)
	other := e.login(t, p)
	live := e.refresh(t, stolen.RefreshToken)

	e.clock.Advance(e.cfg.refresh.ReuseGrace + time.Second)
	e.refreshFails(t, stolen.RefreshToken)
	e.refreshFails(t, live.RefreshToken) // the descendant died with its family
	e.refresh(t, other.RefreshToken)     // another family of the same principal lives

	evs := reuseEvents(t, e)
	if len(evs) != 1 {
		t.Fatalf("%d reuse events, want 1: %+v", len(evs), evs)
	}
	ev := evs[0]
	want := keys.AuditEvent{
		At: e.clock.Now(), ActorType: "partner", ActorID: p.ID, Action: "refresh.reuse_detected",
		TargetType: "token_family", Target: mustFamily(t, e, stolen.RefreshToken), Addr: testAddr,
		Outcome: tokens.OutcomeRevoked, Detail: "key=" + p.KeyID,
	}
	if !ev.At.Equal(want.At) {
		t.Errorf("event at %v, want %v", ev.At, want.At)
	}
	ev.At, ev.ID = want.At, 0
	if ev != want {
		t.Errorf("reuse event %+v, want %+v", ev, want)
	}

	// Presenting tokens of a dead family is refused without a new event.
	e.refreshFails(t, stolen.RefreshToken)
	e.refreshFails(t, live.RefreshToken)
	if n := len(reuseEvents(t, e)); n != 1 {
		t.Fatalf("%d reuse events after retries on a dead family, want 1", n)
	}
}

func TestRefreshGraceWindow(t *testing.T) {
	for _, s := range starts {
		t.Run(s.name, func(t *testing.T) { testGraceWindow(t, s.start) })
	}
}

func testGraceWindow(t *testing.T, start func(testing.TB, *env, principal) tokens.Pair) {
	const grace = 10 * time.Second
	t.Run("parent retried within grace gets the identical successor", func(t *testing.T) {
		e := newEnv(t, withGrace(grace))
		p := e.newPartner(t, "Acme")
		parent := start(t, e, p)
		child := e.refresh(t, parent.RefreshToken) // the response is lost
		e.clock.Advance(grace / 2)
		retry := e.refresh(t, parent.RefreshToken)
		if retry.RefreshToken != child.RefreshToken {
			t.Fatal("a retry within the grace window got a different successor")
		}
		if !retry.RefreshTokenExpiration.Equal(child.RefreshTokenExpiration) {
			t.Fatalf("retry expiration %v, want the successor's %v", retry.RefreshTokenExpiration, child.RefreshTokenExpiration)
		}
		if mustVerify(t, e.jwt, retry.JWT.Reveal()).ID == mustVerify(t, e.jwt, child.JWT.Reveal()).ID {
			t.Fatal("the retry's JWT repeats the jti")
		}
		// No fork: the successor is the family's only live token.
		grandchild := e.refresh(t, child.RefreshToken)
		if again := e.refresh(t, child.RefreshToken); again.RefreshToken != grandchild.RefreshToken {
			t.Fatal("the successor's retry forked the family")
		}
		e.refresh(t, grandchild.RefreshToken)
		if len(reuseEvents(t, e)) != 0 {
			t.Fatal("a retry within the grace window was recorded as reuse")
		}
	})
	t.Run("parent retried at the end of grace", func(t *testing.T) {
		e := newEnv(t, withGrace(grace))
		parent := start(t, e, e.newPartner(t, "Acme"))
		child := e.refresh(t, parent.RefreshToken)
		e.clock.Advance(grace)
		if retry := e.refresh(t, parent.RefreshToken); retry.RefreshToken != child.RefreshToken {
			t.Fatal("a retry at the end of the grace window got a different successor")
		}
	})
	t.Run("parent outside grace is reuse", func(t *testing.T) {
		e := newEnv(t, withGrace(grace))
		parent := start(t, e, e.newPartner(t, "Acme"))
		child := e.refresh(t, parent.RefreshToken)
		e.clock.Advance(grace + time.Millisecond)
		e.refreshFails(t, parent.RefreshToken)
		e.refreshFails(t, child.RefreshToken)
		if len(reuseEvents(t, e)) != 1 {
			t.Fatal("reuse outside the grace window was not recorded")
		}
	})
	t.Run("grandparent within grace is reuse", func(t *testing.T) {
		e := newEnv(t, withGrace(grace))
		grandparent := start(t, e, e.newPartner(t, "Acme"))
		parent := e.refresh(t, grandparent.RefreshToken)
		child := e.refresh(t, parent.RefreshToken)
		e.refreshFails(t, grandparent.RefreshToken)
		e.refreshFails(t, child.RefreshToken)
		e.refreshFails(t, parent.RefreshToken)
		if len(reuseEvents(t, e)) != 1 {
			t.Fatal("reuse of a grandparent was not recorded once")
		}
	})
	t.Run("grace zero turns it off", func(t *testing.T) {
		e := newEnv(t, withGrace(0))
		parent := start(t, e, e.newPartner(t, "Acme"))
		child := e.refresh(t, parent.RefreshToken)
		e.refreshFails(t, parent.RefreshToken) // the same instant
		e.refreshFails(t, child.RefreshToken)
		if len(reuseEvents(t, e)) != 1 {
			t.Fatal("reuse with the grace window off was not recorded")
		}
	})
}

// refreshAtOnce presents tok n times at once, spread over the services
// (one per process), and returns what each caller got.
func refreshAtOnce(tok keys.Secret, n int, svcs ...*tokens.Service) ([]tokens.Pair, []error) {
	results := make([]tokens.Pair, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			results[i], errs[i] = svcs[i%len(svcs)].Refresh(context.Background(), tok.Reveal(), testAddr)
		})
	}
	close(start)
	wg.Wait()
	return results, errs
}

// succeeded returns the pairs of the callers that succeeded, and fails the
// test if any other failed with anything but ErrInvalidRefreshToken.
func succeeded(tb testing.TB, results []tokens.Pair, errs []error) []tokens.Pair {
	tb.Helper()
	var ok []tokens.Pair
	for i, err := range errs {
		switch {
		case err == nil:
			ok = append(ok, results[i])
		case !errors.Is(err, tokens.ErrInvalidRefreshToken):
			tb.Fatalf("refresh %d: %v, want success or ErrInvalidRefreshToken", i, err)
		case results[i] != (tokens.Pair{}):
			tb.Fatalf("refresh %d failed but returned tokens", i)
		}
	}
	return ok
}

// TestRefreshConcurrent presents one token 50 times at once. Within the
// grace window every caller gets the identical successor from one
// rotation (for a login's token: one insert of the family's row); without
// it exactly one caller succeeds and the family dies for the rest, its
// successor included.
func TestRefreshConcurrent(t *testing.T) {
	const n = 50
	eachBackend(t, func(t *testing.T, backend func(*envConfig)) {
		for _, s := range starts {
			for _, grace := range []time.Duration{10 * time.Second, 0} {
				t.Run(s.name+"/grace "+grace.String(), func(t *testing.T) {
					spy := &spyStore{}
					e := newEnv(t, backend, withGrace(grace), withSpy(spy))
					pair := s.start(t, e, e.newPartner(t, "Acme"))
					gen := generationOf(t, e, pair.RefreshToken)
					writes0, inserts0 := spy.familyChanges()
					results, errs := refreshAtOnce(pair.RefreshToken, n, e.svc)
					ok := succeeded(t, results, errs)
					writes, inserts := spy.familyChanges()
					writes, inserts = writes-writes0, inserts-inserts0
					wantInserts := 0
					if gen == 0 {
						wantInserts = 1
					}
					if inserts != wantInserts {
						t.Fatalf("%d inserts of the family's row, want %d", inserts, wantInserts)
					}
					checkConcurrent(t, e, pair, ok, n, grace, gen)
					// The rotation, and without grace the revocation: no other
					// caller wrote.
					if wantWrites := 1 + boolIndex(grace == 0); writes != wantWrites {
						t.Fatalf("%d family writes, want %d", writes, wantWrites)
					}
				})
			}
		}
	})
}

// TestRefreshConcurrentTwoProcesses: two gateways on one SQLite file, as
// two replicas on one machine, present one token at once: the database
// decides, as it does within one process.
func TestRefreshConcurrentTwoProcesses(t *testing.T) {
	const n = 50
	for _, s := range starts {
		for _, grace := range []time.Duration{10 * time.Second, 0} {
			t.Run(s.name+"/grace "+grace.String(), func(t *testing.T) {
				e := newEnv(t, withGrace(grace))
				second := newEnv(t, withDB(e), withGrace(grace))
				pair := s.start(t, e, e.newPartner(t, "Acme"))
				gen := generationOf(t, e, pair.RefreshToken)
				results, errs := refreshAtOnce(pair.RefreshToken, n, e.svc, second.svc)
				ok := succeeded(t, results, errs)
				checkConcurrent(t, e, pair, ok, n, grace, gen)
			})
		}
	}
}

// generationOf is the generation of tok: 0 for a login's, else its family's.
func generationOf(tb testing.TB, e *env, tok keys.Secret) int64 {
	tb.Helper()
	if firstPattern.MatchString(tok.Reveal()) {
		return 0
	}
	f, ok := e.family(tb, tok)
	if !ok {
		tb.Fatal("a later token without a family row")
	}
	return f.Generation
}

// checkConcurrent checks the outcome of n simultaneous refreshes of pair,
// a token of generation gen, that gave ok.
func checkConcurrent(t *testing.T, e *env, pair tokens.Pair, ok []tokens.Pair, n int, grace time.Duration, gen int64) {
	t.Helper()
	f, exists := e.family(t, pair.RefreshToken)
	if !exists {
		t.Fatal("no family row after the refreshes")
	}
	if grace == 0 {
		if len(ok) != 1 {
			t.Fatalf("%d of %d simultaneous refreshes succeeded without grace, want exactly 1", len(ok), n)
		}
		if f.RevokedAt == nil || f.RevokeReason != "reuse" || f.Generation != gen+1 {
			t.Fatalf("family after a race without grace: %+v, want generation %d revoked for reuse", f, gen+1)
		}
		e.refreshFails(t, ok[0].RefreshToken)
		if n := len(reuseEvents(t, e)); n != 1 {
			t.Fatalf("%d reuse events, want 1", n)
		}
		return
	}
	if len(ok) != n {
		t.Fatalf("%d of %d simultaneous refreshes succeeded with grace, want all", len(ok), n)
	}
	for _, p := range ok {
		if p.RefreshToken != ok[0].RefreshToken || !p.RefreshTokenExpiration.Equal(ok[0].RefreshTokenExpiration) {
			t.Fatal("simultaneous refreshes got different successors: the family forked")
		}
		mustVerify(t, e.jwt, p.JWT.Reveal())
	}
	if f.RevokedAt != nil || f.Generation != gen+1 {
		t.Fatalf("family after a race within grace: %+v, want generation %d, live", f, gen+1)
	}
	// One rotation: the shared successor is live, and its own successor
	// is new.
	next := e.refresh(t, ok[0].RefreshToken)
	if next.RefreshToken == ok[0].RefreshToken {
		t.Fatal("the successor did not rotate")
	}
	if len(reuseEvents(t, e)) != 0 {
		t.Fatal("simultaneous refreshes within grace were recorded as reuse")
	}
}

// TestRefreshConcurrentFamilies rotates many families at once, so the
// store commits their rotations together.
func TestRefreshConcurrentFamilies(t *testing.T) {
	const n = 50
	e := newEnv(t, withGrace(0))
	p := e.newPartner(t, "Acme")
	pairs := make([]tokens.Pair, n)
	for i := range pairs {
		pairs[i] = e.login(t, p)
	}
	next := make([]tokens.Pair, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			next[i], errs[i] = e.svc.Refresh(context.Background(), pairs[i].RefreshToken.Reveal(), testAddr)
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("family %d: %v", i, errs[i])
		}
		if mustFamily(t, e, next[i].RefreshToken) != mustFamily(t, e, pairs[i].RefreshToken) {
			t.Fatalf("family %d got another family's token", i)
		}
		e.refresh(t, next[i].RefreshToken)
	}
}

func TestRefreshInactivityExpiry(t *testing.T) {
	e := newEnv(t, func(c *envConfig) { c.refresh.TTL = time.Hour })
	pair := e.login(t, e.newPartner(t, "Acme"))
	if !pair.RefreshTokenExpiration.Equal(t0.Add(time.Hour)) {
		t.Fatalf("expiration %v, want %v", pair.RefreshTokenExpiration, t0.Add(time.Hour))
	}
	// Used just in time, each successor lives another hour from its issue.
	for range 3 {
		e.clock.Advance(time.Hour - time.Second)
		pair = e.refresh(t, pair.RefreshToken)
		if want := e.clock.Now().Add(time.Hour); !pair.RefreshTokenExpiration.Equal(want) {
			t.Fatalf("expiration %v, want %v", pair.RefreshTokenExpiration, want)
		}
	}
	e.clock.Advance(time.Hour)
	e.refreshFails(t, pair.RefreshToken)
	e.clock.Set(t0)
	e.refresh(t, pair.RefreshToken) // expiry, not revocation, refused it
}

func TestRefreshAbsoluteExpiry(t *testing.T) {
	e := newEnv(t, func(c *envConfig) { c.refresh.TTL, c.refresh.MaxLifetime = time.Hour, 2*time.Hour })
	pair := e.login(t, e.newPartner(t, "Acme"))
	end := t0.Add(2 * time.Hour)
	for _, step := range []struct {
		at   time.Duration
		want time.Time
	}{
		{50 * time.Minute, t0.Add(110 * time.Minute)}, // inactivity is earlier
		{100 * time.Minute, end},                      // the absolute limit is earlier
		{2*time.Hour - time.Second, end},
	} {
		e.clock.Set(t0.Add(step.at))
		pair = e.refresh(t, pair.RefreshToken)
		if !pair.RefreshTokenExpiration.Equal(step.want) {
			t.Fatalf("at +%v expiration %v, want %v", step.at, pair.RefreshTokenExpiration, step.want)
		}
	}
	e.clock.Set(end)
	e.refreshFails(t, pair.RefreshToken)
}

func TestRefreshExpiredInsideGrace(t *testing.T) {
	const grace = 10 * time.Second
	t.Run("parent expired", func(t *testing.T) {
		e := newEnv(t, withGrace(grace), func(c *envConfig) { c.refresh.TTL = time.Hour })
		parent := e.login(t, e.newPartner(t, "Acme"))
		e.clock.Set(t0.Add(time.Hour - 2*time.Second))
		child := e.refresh(t, parent.RefreshToken)
		e.clock.Set(t0.Add(time.Hour)) // 2s after rotation: inside grace, parent expired
		e.refreshFails(t, parent.RefreshToken)
		e.refresh(t, child.RefreshToken) // not reuse: the family lives
	})
	t.Run("family past its absolute lifetime", func(t *testing.T) {
		e := newEnv(t, withGrace(grace), func(c *envConfig) { c.refresh.MaxLifetime = time.Hour })
		parent := e.login(t, e.newPartner(t, "Acme"))
		e.clock.Set(t0.Add(time.Hour - 2*time.Second))
		child := e.refresh(t, parent.RefreshToken)
		if !child.RefreshTokenExpiration.Equal(t0.Add(time.Hour)) {
			t.Fatalf("successor expires %v, want the family's end %v", child.RefreshTokenExpiration, t0.Add(time.Hour))
		}
		e.clock.Set(t0.Add(time.Hour + time.Second))
		e.refreshFails(t, parent.RefreshToken)
		e.refreshFails(t, child.RefreshToken)
	})
}

func TestRefreshUnknownFamily(t *testing.T) {
	e := newEnv(t)
	other := newEnv(t) // same master key, so the MAC is good
	first := other.login(t, other.newPartner(t, "Other")).RefreshToken
	later := other.refresh(t, other.login(t, other.newPartner(t, "Another")).RefreshToken).RefreshToken
	e.refreshFails(t, first) // its key is unknown here
	e.refreshFails(t, later) // its family is unknown here
	if _, ok := e.family(t, first); ok {
		t.Fatal("a first token of an unknown key wrote a family row")
	}
	other.refresh(t, first)
	other.refresh(t, later)
}

// TestRefreshAfterPrincipalInactive: revoking a key, or disabling its
// company or partner, ends its families whatever their tokens: a login's
// token whose family has no row yet is refused as a later one is.
func TestRefreshAfterPrincipalInactive(t *testing.T) {
	ctx := context.Background()
	type world struct {
		partner, partnerKey2, company principal
		pFam, p2Fam, cFam             keys.Secret
	}
	cases := []struct {
		name                 string
		act                  func(e *env, w world) error
		partner, key2, compy bool // which families still refresh
	}{
		{"partner key revoked", func(e *env, w world) error {
			return e.keys.RevokeKey(ctx, keys.Operator, w.partner.Owner(), w.partner.KeyID)
		}, false, true, true},
		{"company key revoked", func(e *env, w world) error {
			return e.keys.RevokeKey(ctx, keys.Operator, w.company.Owner(), w.company.KeyID)
		}, true, true, false},
		{"company disabled", func(e *env, w world) error {
			return e.keys.DisableCompany(ctx, keys.Operator, w.partner.ID, w.company.CompanyID)
		}, true, true, false},
		{"partner disabled", func(e *env, w world) error {
			return e.keys.DisablePartner(ctx, keys.Operator, w.partner.ID)
		}, false, false, false},
	}
	eachBackend(t, func(t *testing.T, backend func(*envConfig)) {
		for _, s := range starts {
			for _, tc := range cases {
				t.Run(s.name+"/"+tc.name, func(t *testing.T) {
					e := newEnv(t, backend)
					var w world
					w.partner = e.newPartner(t, "Acme")
					k2, err := e.keys.CreateKey(ctx, keys.Operator, w.partner.Owner(), keys.KeyInput{})
					if err != nil {
						t.Fatal(err)
					}
					w.partnerKey2 = principalOf(k2)
					w.company = e.newCompany(t, w.partner, "Widgets")
					w.pFam = s.start(t, e, w.partner).RefreshToken
					w.p2Fam = s.start(t, e, w.partnerKey2).RefreshToken
					w.cFam = s.start(t, e, w.company).RefreshToken
					bystander := s.start(t, e, e.newPartner(t, "Bystander")).RefreshToken

					if err := tc.act(e, w); err != nil {
						t.Fatal(err)
					}
					for _, f := range []struct {
						name  string
						tok   keys.Secret
						alive bool
					}{
						{"partner's first key", w.pFam, tc.partner},
						{"partner's second key", w.p2Fam, tc.key2},
						{"company", w.cFam, tc.compy},
						{"another partner", bystander, true},
					} {
						if f.alive {
							e.refresh(t, f.tok)
							continue
						}
						e.refreshFails(t, f.tok)
						e.refreshFails(t, f.tok) // and stays refused
						if row, ok := e.family(t, f.tok); !ok || row.RevokedAt == nil || row.PrincipalActive {
							t.Errorf("%s: family %+v (row %v), want revoked with its principal inactive", f.name, row, ok)
						}
					}
				})
			}
		}
	})
}

// TestRefreshAfterRevocationByAnotherProcess: a key revoked through
// another handle on the database (the CLI, another replica) ends this
// process's families at once, with and without rows, though its writer
// had seen the key active.
func TestRefreshAfterRevocationByAnotherProcess(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	p := e.newPartner(t, "Acme")
	fresh := e.login(t, p)
	started := e.refresh(t, e.login(t, p).RefreshToken) // the writer saw the key active
	cli := newEnv(t, withDB(e))
	if err := cli.keys.RevokeKey(ctx, keys.Operator, p.Owner(), p.KeyID); err != nil {
		t.Fatal(err)
	}
	e.refreshFails(t, started.RefreshToken) // first: the other's refusal would teach the writer
	e.refreshFails(t, fresh.RefreshToken)
	// Logins learn of it within the keys cache's check interval.
	e.clock.Advance(time.Second)
	if _, err := e.svc.Login(ctx, p.apiKey, testAddr); !errors.Is(err, keys.ErrInvalidKey) {
		t.Fatalf("Login after another process revoked the key = %v, want ErrInvalidKey", err)
	}
}

// cascadeFreeStore hides the revocations a store may cascade from a
// revoked key or a disabled owner to its families' rows (the in-memory
// store does), as a store that only reports the principal's state would:
// the service must then refuse the refresh on its own.
type cascadeFreeStore struct{ tokens.FamilyStore }

func (s cascadeFreeStore) UpdateFamily(ctx context.Context, id string, seed *tokens.Family, decide func(f *tokens.Family) (tokens.Change, error)) error {
	return s.FamilyStore.UpdateFamily(ctx, id, seed, func(f *tokens.Family) (tokens.Change, error) {
		switch f.RevokeReason {
		case "key_revoked", "company_disabled", "partner_disabled":
			f.RevokedAt, f.RevokeReason = nil, ""
		}
		return decide(f)
	})
}

func TestRefreshChecksPrincipalItself(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend func(*envConfig)) {
		e := newEnv(t, backend)
		ctx := t.Context()
		svc := tokens.NewService(e.keys, cascadeFreeStore{e.db}, e.jwt, e.refreshKey, e.cfg.refresh, e.clock.Now)
		p := e.newPartner(t, "Acme")
		pair := e.login(t, p)
		if _, err := svc.Refresh(ctx, pair.RefreshToken.Reveal(), testAddr); err != nil {
			t.Fatalf("Refresh through the wrapper: %v", err)
		}
		fresh := e.login(t, p)                              // no row yet
		started := e.refresh(t, e.login(t, p).RefreshToken) // a row, which a store may revoke
		if err := e.keys.RevokeKey(ctx, keys.Operator, p.Owner(), p.KeyID); err != nil {
			t.Fatal(err)
		}
		for name, tok := range map[string]keys.Secret{"first token": fresh.RefreshToken, "later token": started.RefreshToken} {
			if _, err := svc.Refresh(ctx, tok.Reveal(), testAddr); !errors.Is(err, tokens.ErrInvalidRefreshToken) {
				t.Fatalf("%s: Refresh after the key was revoked = %v, want ErrInvalidRefreshToken", name, err)
			}
		}
	})
}

// TestReplayOfAnExpiredAncestorIsReuse: an expired token of a family that
// has moved on, login token included, is refused and revokes the family,
// like any other reuse.
func TestReplayOfAnExpiredAncestorIsReuse(t *testing.T) {
	for _, s := range starts {
		t.Run(s.name, func(t *testing.T) {
			e := newEnv(t, func(c *envConfig) { c.refresh.TTL = time.Hour })
			stale := s.start(t, e, e.newPartner(t, "Acme"))
			e.clock.Advance(50 * time.Minute)
			live := e.refresh(t, stale.RefreshToken)
			e.clock.Set(stale.RefreshTokenExpiration.Add(time.Minute))
			e.refreshFails(t, stale.RefreshToken)
			if f, _ := e.family(t, live.RefreshToken); f.RevokedAt == nil {
				t.Errorf("replay of an expired ancestor left the family live: %+v", f)
			}
		})
	}
}

// rerunStore runs each decision twice, first on a family as a lost race
// might have read it (another principal), then on the row, as PostgreSQL
// runs a transaction again; with fail set, it reports that the write did
// not commit after deciding.
type rerunStore struct {
	tokens.FamilyStore
	fail error
}

func (s rerunStore) UpdateFamily(ctx context.Context, id string, seed *tokens.Family, decide func(f *tokens.Family) (tokens.Change, error)) error {
	err := s.FamilyStore.UpdateFamily(ctx, id, seed, func(f *tokens.Family) (tokens.Change, error) {
		stale := *f
		stale.Principal.ID = "par_stale"
		decide(&stale)
		return decide(f)
	})
	if err == nil && s.fail != nil {
		return s.fail
	}
	return err
}

// TestRefreshSendsOnlyWhatCommitted: the access token is signed while the
// rotation commits (signAhead), so it must be the last decision's, and a
// rotation that does not commit returns no tokens at all.
func TestRefreshSendsOnlyWhatCommitted(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	p := e.newPartner(t, "Acme")
	svc := tokens.NewService(e.keys, rerunStore{FamilyStore: e.db}, e.jwt, e.refreshKey, e.cfg.refresh, e.clock.Now)
	pair, err := svc.Refresh(ctx, e.login(t, p).RefreshToken.Reveal(), testAddr)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := e.jwt.Verify(pair.JWT.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	if claims.Subject != p.ID || pair.Principal.ID != p.ID {
		t.Errorf("access token for %q (pair says %q), want %q: not the last decision's", claims.Subject, pair.Principal.ID, p.ID)
	}
	lost := errors.New("commit lost")
	svc = tokens.NewService(e.keys, rerunStore{FamilyStore: e.db, fail: lost}, e.jwt, e.refreshKey, e.cfg.refresh, e.clock.Now)
	got, err := svc.Refresh(ctx, pair.RefreshToken.Reveal(), testAddr)
	if !errors.Is(err, lost) || got.JWT != "" || got.RefreshToken != "" {
		t.Errorf("Refresh whose write did not commit = %+v, %v; want no tokens and %v", got, err, lost)
	}
}
