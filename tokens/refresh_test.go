package tokens_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"

	"keygate/keys"
	"keygate/tokens"
)

const testAddr = "198.51.100.7"

// refreshPayloadLen is the decoded size of a refresh token's body; the
// tampering tests need it to re-encode a changed token with a valid checksum.
const refreshPayloadLen = 44

var refreshPattern = regexp.MustCompile(`^rt_[0-9A-Za-z]{66}$`)

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

func TestLogin(t *testing.T) {
	e := newEnv(t)
	partner := e.newPartner(t, "Acme")
	company := e.newCompany(t, partner, "Widgets")
	seen := map[string]bool{}
	for _, p := range []principal{partner, company, partner} {
		pair := e.login(t, p)
		rt := pair.RefreshToken.Reveal()
		if !refreshPattern.MatchString(rt) {
			t.Fatalf("refresh token %q does not match %s", rt, refreshPattern)
		}
		if seen[rt] {
			t.Fatal("two logins got the same refresh token")
		}
		seen[rt] = true
		if !pair.ExpiresAt.Equal(t0.Add(testAccessTTL)) {
			t.Errorf("ExpiresAt %v, want %v", pair.ExpiresAt, t0.Add(testAccessTTL))
		}
		if !pair.RefreshTokenExpiration.Equal(t0.Add(e.cfg.refresh.TTL)) {
			t.Errorf("RefreshTokenExpiration %v, want %v", pair.RefreshTokenExpiration, t0.Add(e.cfg.refresh.TTL))
		}
		if c := mustVerify(t, e.jwt, pair.JWT.Reveal()); c.Principal() != p.Principal {
			t.Errorf("JWT speaks for %+v, want %+v", c.Principal(), p.Principal)
		}
	}
	for _, bad := range []string{"", "pk_nonsense", partner.apiKey + "x", keys.NewAPIKey(keys.PartnerKeyPrefix).Reveal()} {
		if _, err := e.svc.Login(t.Context(), bad, testAddr); !errors.Is(err, keys.ErrInvalidKey) {
			t.Errorf("Login(%.10q) = %v, want ErrInvalidKey", bad, err)
		}
	}
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
			if got, _ := e.svc.FamilyOf(next.RefreshToken.Reveal()); got != mustFamily(t, e, pair.RefreshToken) {
				t.Fatal("the successor belongs to another family")
			}
			pair = next
		}
	}
}

func mustFamily(tb testing.TB, e *env, tok keys.Secret) string {
	tb.Helper()
	id, ok := e.svc.FamilyOf(tok.Reveal())
	if !ok {
		tb.Fatalf("FamilyOf refused a token the service issued")
	}
	return id
}

func TestFamilyOf(t *testing.T) {
	e := newEnv(t)
	p := e.newPartner(t, "Acme")
	a, b := e.login(t, p), e.login(t, p)
	if mustFamily(t, e, a.RefreshToken) == mustFamily(t, e, b.RefreshToken) {
		t.Fatal("two logins share a family")
	}
	other := newEnv(t, func(c *envConfig) { c.masterKey = otherMasterKey })
	for _, bad := range []string{"", "rt_", p.apiKey, a.JWT.Reveal(), other.login(t, other.newPartner(t, "X")).RefreshToken.Reveal()} {
		if id, ok := e.svc.FamilyOf(bad); ok || id != "" {
			t.Errorf("FamilyOf(%.12q) = %q, %v", bad, id, ok)
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
	e := newEnv(t)
	p := e.newPartner(t, "Acme")
	stolen := e.login(t, p)
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
	ev.At = want.At
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
	const grace = 10 * time.Second
	t.Run("parent retried within grace gets the identical successor", func(t *testing.T) {
		e := newEnv(t, withGrace(grace))
		p := e.newPartner(t, "Acme")
		parent := e.login(t, p)
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
		parent := e.login(t, e.newPartner(t, "Acme"))
		child := e.refresh(t, parent.RefreshToken)
		e.clock.Advance(grace)
		if retry := e.refresh(t, parent.RefreshToken); retry.RefreshToken != child.RefreshToken {
			t.Fatal("a retry at the end of the grace window got a different successor")
		}
	})
	t.Run("parent outside grace is reuse", func(t *testing.T) {
		e := newEnv(t, withGrace(grace))
		parent := e.login(t, e.newPartner(t, "Acme"))
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
		grandparent := e.login(t, e.newPartner(t, "Acme"))
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
		parent := e.login(t, e.newPartner(t, "Acme"))
		child := e.refresh(t, parent.RefreshToken)
		e.refreshFails(t, parent.RefreshToken) // the same instant
		e.refreshFails(t, child.RefreshToken)
		if len(reuseEvents(t, e)) != 1 {
			t.Fatal("reuse with the grace window off was not recorded")
		}
	})
}

func TestRefreshConcurrent(t *testing.T) {
	const n = 50
	for _, tc := range []struct {
		name  string
		grace time.Duration
	}{
		{"with grace", 10 * time.Second},
		{"without grace", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, withGrace(tc.grace))
			pair := e.login(t, e.newPartner(t, "Acme"))
			results := make([]tokens.Pair, n)
			errs := make([]error, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					<-start
					results[i], errs[i] = e.svc.Refresh(context.Background(), pair.RefreshToken.Reveal(), testAddr)
				})
			}
			close(start)
			wg.Wait()

			var ok []tokens.Pair
			for i, err := range errs {
				switch {
				case err == nil:
					ok = append(ok, results[i])
				case !errors.Is(err, tokens.ErrInvalidRefreshToken):
					t.Fatalf("refresh %d: %v, want success or ErrInvalidRefreshToken", i, err)
				}
			}
			if tc.grace == 0 {
				if len(ok) != 1 {
					t.Fatalf("%d of %d simultaneous refreshes succeeded without grace, want exactly 1", len(ok), n)
				}
				return
			}
			if len(ok) != n {
				t.Fatalf("%d of %d simultaneous refreshes succeeded with grace, want all", len(ok), n)
			}
			for _, p := range ok {
				if p.RefreshToken != ok[0].RefreshToken {
					t.Fatal("simultaneous refreshes got different successors: the family forked")
				}
				mustVerify(t, e.jwt, p.JWT.Reveal())
			}
			// One rotation: the shared successor is live, and its own
			// successor is new.
			next := e.refresh(t, ok[0].RefreshToken)
			if next.RefreshToken == ok[0].RefreshToken {
				t.Fatal("the successor did not rotate")
			}
			if len(reuseEvents(t, e)) != 0 {
				t.Fatal("simultaneous refreshes within grace were recorded as reuse")
			}
		})
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

func TestLogout(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	p := e.newPartner(t, "Acme")
	a, b := e.login(t, p), e.login(t, p)
	a2 := e.refresh(t, a.RefreshToken)
	if err := e.svc.Logout(ctx, a2.RefreshToken.Reveal()); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	e.refreshFails(t, a2.RefreshToken)
	e.refreshFails(t, a.RefreshToken) // the parent, inside the grace window
	e.refresh(t, b.RefreshToken)

	other := newEnv(t) // same master key, another database: a well-formed unknown token
	unknown := other.login(t, other.newPartner(t, "Other")).RefreshToken.Reveal()
	for name, tok := range map[string]string{
		"already revoked": a2.RefreshToken.Reveal(),
		"revoked parent":  a.RefreshToken.Reveal(),
		"unknown family":  unknown,
		"empty":           "",
		"garbage":         "garbage",
		"prefix only":     "rt_",
		"API key":         p.apiKey,
		"JWT":             a.JWT.Reveal(),
		"tampered":        tamper(t, b.RefreshToken.Reveal(), 3),
	} {
		if err := e.svc.Logout(ctx, tok); err != nil {
			t.Errorf("Logout(%s) = %v, want nil", name, err)
		}
	}
	if len(reuseEvents(t, e)) != 0 {
		t.Fatal("logout or refresh of a revoked family was recorded as reuse")
	}
}

func TestRefreshUnknownFamily(t *testing.T) {
	e := newEnv(t)
	other := newEnv(t) // same master key, so the MAC is good
	tok := other.login(t, other.newPartner(t, "Other")).RefreshToken
	e.refreshFails(t, tok)
	other.refresh(t, tok)
}

// tamper flips one bit of a refresh token's payload and re-encodes it with
// a valid checksum, so the MAC alone must catch it.
func tamper(tb testing.TB, tok string, byteIndex int) string {
	tb.Helper()
	payload, err := keys.Decode(tok, keys.RefreshTokenPrefix, refreshPayloadLen)
	if err != nil {
		tb.Fatalf("decoding a refresh token: %v", err)
	}
	payload[byteIndex] ^= 1
	return keys.Encode(keys.RefreshTokenPrefix, payload).Reveal()
}

func TestRefreshRejectsTampered(t *testing.T) {
	e := newEnv(t)
	p := e.newPartner(t, "Acme")
	pair := e.login(t, p)
	otherFamily := e.login(t, p).RefreshToken.Reveal()
	child := e.refresh(t, pair.RefreshToken).RefreshToken.Reveal()

	cases := map[string]string{
		"empty":        "",
		"prefix only":  "rt_",
		"API key":      p.apiKey,
		"JWT":          pair.JWT.Reveal(),
		"truncated":    child[:len(child)-1],
		"extended":     child + "0",
		"wrong prefix": "pk_" + child[3:],
		"upper prefix": "RT_" + child[3:],
		"whitespace":   " " + child,
	}
	for i := len(keys.RefreshTokenPrefix); i < len(child); i++ {
		b := []byte(child)
		b[i] = "ab"[boolIndex(b[i] == 'a')] // one base62 character for another
		cases[fmt.Sprintf("character %d changed", i)] = string(b)
	}
	a, err := keys.Decode(child, keys.RefreshTokenPrefix, refreshPayloadLen)
	if err != nil {
		t.Fatal(err)
	}
	b, err := keys.Decode(otherFamily, keys.RefreshTokenPrefix, refreshPayloadLen)
	if err != nil {
		t.Fatal(err)
	}
	for i := range refreshPayloadLen {
		cases[fmt.Sprintf("payload byte %d changed", i)] = tamper(t, child, i)
		// One token's start with another family's end, such as its MAC.
		// Family ids may share a prefix (a timestamp): a splice that gives
		// back the other token whole is no forgery.
		if splice := append(append([]byte{}, a[:i]...), b[i:]...); !bytes.Equal(splice, b) {
			cases[fmt.Sprintf("spliced at byte %d", i)] = keys.Encode(keys.RefreshTokenPrefix, splice).Reveal()
		}
	}
	other := newEnv(t, func(c *envConfig) { c.masterKey = otherMasterKey })
	cases["from a gateway with another master key"] = other.login(t, other.newPartner(t, "X")).RefreshToken.Reveal()

	for name, bad := range cases {
		t.Run(name, func(t *testing.T) { e.refreshFails(t, keys.Secret(bad)) })
	}

	// The same database read with another master key accepts none of its tokens.
	otherMaster, err := tokens.NewMasterKey(otherMasterKey)
	if err != nil {
		t.Fatal(err)
	}
	svc := tokens.NewService(e.keys, e.db, e.jwt, otherMaster, e.cfg.refresh, e.clock.Now)
	if _, err := svc.Refresh(t.Context(), child, testAddr); !errors.Is(err, tokens.ErrInvalidRefreshToken) {
		t.Fatalf("a service with another master key: %v, want ErrInvalidRefreshToken", err)
	}

	// None of it was taken for reuse: the family still lives.
	if len(reuseEvents(t, e)) != 0 {
		t.Fatal("a tampered token was taken for reuse")
	}
	e.refresh(t, keys.Secret(child))
}

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
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			var w world
			w.partner = e.newPartner(t, "Acme")
			k2, err := e.keys.CreateKey(ctx, keys.Operator, w.partner.Owner())
			if err != nil {
				t.Fatal(err)
			}
			w.partnerKey2 = principalOf(k2)
			w.company = e.newCompany(t, w.partner, "Widgets")
			w.pFam = e.login(t, w.partner).RefreshToken
			w.p2Fam = e.login(t, w.partnerKey2).RefreshToken
			w.cFam = e.login(t, w.company).RefreshToken
			bystander := e.login(t, e.newPartner(t, "Bystander")).RefreshToken

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
				} else {
					e.refreshFails(t, f.tok)
				}
			}
		})
	}
}

func TestAuthorize(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	p := e.newPartner(t, "Acme")
	pair := e.login(t, p)
	sess, err := e.svc.Authorize(ctx, pair.JWT.Reveal())
	if err != nil {
		t.Fatalf("Authorize: %v", err)
	}
	if sess.Principal.ID != p.ID || sess.Principal.KeyID != p.KeyID || sess.Principal.Name != "Acme" || !sess.ExpiresAt.Equal(pair.ExpiresAt) {
		t.Fatalf("session %+v", sess)
	}
	for name, tok := range map[string]string{"refresh token": pair.RefreshToken.Reveal(), "API key": p.apiKey, "empty": ""} {
		if _, err := e.svc.Authorize(ctx, tok); !errors.Is(err, tokens.ErrInvalidToken) {
			t.Errorf("Authorize(%s) = %v, want ErrInvalidToken", name, err)
		}
	}
	if err := e.keys.RevokeKey(ctx, keys.Operator, p.Owner(), p.KeyID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Authorize(ctx, pair.JWT.Reveal()); !errors.Is(err, tokens.ErrInvalidToken) {
		t.Fatalf("Authorize after the key was revoked = %v, want ErrInvalidToken", err)
	}
}

func TestHousekeep(t *testing.T) {
	const retention = 24 * time.Hour
	e := newEnv(t, func(c *envConfig) {
		c.refresh.TTL, c.refresh.MaxLifetime, c.refresh.Retention = time.Hour, 10*time.Hour, retention
	})
	ctx := t.Context()
	p := e.newPartner(t, "Acme")
	logout := func(pair tokens.Pair) {
		t.Helper()
		if err := e.svc.Logout(ctx, pair.RefreshToken.Reveal()); err != nil {
			t.Fatal(err)
		}
	}

	e.clock.Set(t0)
	logout(e.login(t, p)) // revoked at t0
	e.login(t, p)         // expires at t0+1h
	e.clock.Set(t0.Add(10 * time.Hour))
	lateExpiry := e.login(t, p) // expires at t0+11h
	e.clock.Set(t0.Add(30 * time.Hour))
	live := e.login(t, p)
	logout(e.login(t, p)) // revoked at t0+30h

	// Retention ends at t0+6h: the two oldest are gone, the rest stay.
	if n, err := e.svc.Housekeep(ctx); err != nil || n != 2 {
		t.Fatalf("Housekeep = %d, %v; want 2 families deleted", n, err)
	}
	if n, err := e.svc.Housekeep(ctx); err != nil || n != 0 {
		t.Fatalf("second Housekeep = %d, %v; want nothing left to delete", n, err)
	}
	live = e.refresh(t, live.RefreshToken)
	e.clock.Set(t0.Add(11*time.Hour + retention))
	if n, err := e.svc.Housekeep(ctx); err != nil || n != 0 {
		t.Fatalf("Housekeep at the end of retention = %d, %v; want 0", n, err)
	}
	e.clock.Set(t0.Add(11*time.Hour + retention + time.Second))
	if n, err := e.svc.Housekeep(ctx); err != nil || n != 1 {
		t.Fatalf("Housekeep after lateExpiry's retention = %d, %v; want 1", n, err)
	}
	e.refreshFails(t, lateExpiry.RefreshToken)

	// Once the live family has expired and the recent logout is older than
	// the retention too, both go.
	e.clock.Set(t0.Add(30*time.Hour + retention + 2*time.Hour))
	if n, err := e.svc.Housekeep(ctx); err != nil || n != 2 {
		t.Fatalf("final Housekeep = %d, %v; want the last 2", n, err)
	}
}

// TestHousekeepBatches deletes one more dead family than a batch holds.
func TestHousekeepBatches(t *testing.T) {
	const dead = 501
	e := newEnv(t, func(c *envConfig) {
		c.refresh.TTL, c.refresh.Retention = time.Hour, time.Hour
		c.synchronous = "OFF" // only speed: nothing here survives a crash
	})
	p := e.newPartner(t, "Acme")
	var wg sync.WaitGroup
	errs := make(chan error, dead)
	for range dead {
		wg.Go(func() {
			_, err := e.svc.Login(context.Background(), p.apiKey, testAddr)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	e.clock.Advance(90 * time.Minute)
	live := e.login(t, p)
	e.clock.Advance(90 * time.Minute) // the first logins expired 2h ago
	if n, err := e.svc.Housekeep(t.Context()); err != nil || n != dead {
		t.Fatalf("Housekeep = %d, %v; want %d", n, err, dead)
	}
	e.clock.Advance(-time.Hour)
	e.refresh(t, live.RefreshToken)
}

// cascadeFreeStore hides the revocations the SQLite store cascades from a
// revoked key or a disabled owner to its families, as a store that only
// reports the principal's state would: the service must then refuse the
// refresh on its own.
type cascadeFreeStore struct{ tokens.FamilyStore }

func (s cascadeFreeStore) UpdateFamily(ctx context.Context, id string, decide func(f *tokens.Family) (tokens.Change, error)) error {
	return s.FamilyStore.UpdateFamily(ctx, id, func(f *tokens.Family) (tokens.Change, error) {
		switch f.RevokeReason {
		case "key_revoked", "company_disabled", "partner_disabled":
			f.RevokedAt, f.RevokeReason = nil, ""
		}
		return decide(f)
	})
}

func TestRefreshChecksPrincipalItself(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	svc := tokens.NewService(e.keys, cascadeFreeStore{e.db}, e.jwt, e.master, e.cfg.refresh, e.clock.Now)
	p := e.newPartner(t, "Acme")
	pair := e.login(t, p)
	if _, err := svc.Refresh(ctx, pair.RefreshToken.Reveal(), testAddr); err != nil {
		t.Fatalf("Refresh through the wrapper: %v", err)
	}
	other := e.login(t, p)
	if err := e.keys.RevokeKey(ctx, keys.Operator, p.Owner(), p.KeyID); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Refresh(ctx, other.RefreshToken.Reveal(), testAddr); !errors.Is(err, tokens.ErrInvalidRefreshToken) {
		t.Fatalf("Refresh after the key was revoked = %v, want ErrInvalidRefreshToken", err)
	}
}
