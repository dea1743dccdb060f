package tokens_test

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"keygate/keys"
	"keygate/tokens"
)

func TestLogin(t *testing.T) {
	e := newEnv(t)
	partner := e.newPartner(t, "Acme")
	company := e.newCompany(t, partner, "Widgets")
	seen := map[string]bool{}
	for _, p := range []principal{partner, company, partner} {
		pair := e.login(t, p)
		rt := pair.RefreshToken.Reveal()
		if !firstPattern.MatchString(rt) {
			t.Fatalf("refresh token %q does not match %s", rt, firstPattern)
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

// TestLoginWritesNothing: a login takes no store writer and leaves no
// family row; its audit event waits for the recorder's batch, and the
// family's row is written by the first refresh, from the token alone.
func TestLoginWritesNothing(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend func(*envConfig)) {
		spy := &spyStore{}
		e := newEnv(t, backend, withSpy(spy))
		partner := e.newPartner(t, "Acme")
		company := e.newCompany(t, partner, "Widgets")
		e.gw.Recorder.Flush(t.Context())
		before := spy.writerCalls()

		var pairs []tokens.Pair
		for _, p := range []principal{partner, company, partner} {
			pairs = append(pairs, e.login(t, p))
		}
		if after := spy.writerCalls(); !maps.Equal(after, before) {
			t.Fatalf("logins took the writer: calls %v before, %v after", before, after)
		}
		for i, pair := range pairs {
			if _, ok := e.family(t, pair.RefreshToken); ok {
				t.Fatalf("login %d wrote its family's row", i)
			}
		}
		logins := 0
		for _, ev := range e.audit(t) { // flushes the batch: one write for all
			if ev.Action == "login" && ev.Outcome == keys.OutcomeSuccess {
				logins++
			}
		}
		if logins != len(pairs) {
			t.Fatalf("%d login events, want %d", logins, len(pairs))
		}

		// The first refresh writes the family's row as the token describes it.
		login := e.clock.Now()
		e.clock.Advance(time.Minute)
		next := e.refresh(t, pairs[1].RefreshToken)
		f, ok := e.family(t, pairs[1].RefreshToken)
		if !ok {
			t.Fatal("the first refresh wrote no family row")
		}
		want := tokens.Family{
			ID:              mustFamily(t, e, pairs[1].RefreshToken),
			Principal:       company.Principal,
			CreatedAt:       login,
			Generation:      1,
			RotatedAt:       e.clock.Now(),
			ExpiresAt:       next.RefreshTokenExpiration,
			ParentExpiresAt: pairs[1].RefreshTokenExpiration,
			FirstExpiresAt:  pairs[1].RefreshTokenExpiration,
			PrincipalActive: true,
		}
		if !sameFamily(f, want) {
			t.Fatalf("family row %+v,\nwant %+v", f, want)
		}
	})
}

// TestLoginRefusedKeys: a key that is malformed, unknown, revoked, or of a
// disabled company or partner gets ErrInvalidKey and no tokens, and the
// attempt takes no writer: its audit event waits for the batch.
func TestLoginRefusedKeys(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		key  func(t *testing.T, e *env) string
	}{
		{"malformed", func(*testing.T, *env) string { return "pk_nonsense" }},
		{"unknown", func(*testing.T, *env) string { return keys.NewAPIKey(keys.PartnerKeyPrefix).Reveal() }},
		{"revoked", func(t *testing.T, e *env) string {
			p := e.newPartner(t, "Acme")
			e.login(t, p) // cached as active first: the revocation must reach the cache
			if err := e.keys.RevokeKey(ctx, keys.Operator, p.Owner(), p.KeyID); err != nil {
				t.Fatal(err)
			}
			return p.apiKey
		}},
		{"company disabled", func(t *testing.T, e *env) string {
			p := e.newPartner(t, "Acme")
			c := e.newCompany(t, p, "Widgets")
			e.login(t, c)
			if err := e.keys.DisableCompany(ctx, keys.Operator, p.ID, c.CompanyID); err != nil {
				t.Fatal(err)
			}
			return c.apiKey
		}},
		{"partner disabled, company key", func(t *testing.T, e *env) string {
			p := e.newPartner(t, "Acme")
			c := e.newCompany(t, p, "Widgets")
			e.login(t, c)
			if err := e.keys.DisablePartner(ctx, keys.Operator, p.ID); err != nil {
				t.Fatal(err)
			}
			return c.apiKey
		}},
	}
	eachBackend(t, func(t *testing.T, backend func(*envConfig)) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				spy := &spyStore{}
				e := newEnv(t, backend, withSpy(spy))
				key := tc.key(t, e)
				e.gw.Recorder.Flush(ctx)
				failures := countFailedLogins(t, e)
				before := spy.writerCalls()

				pair, err := e.svc.Login(ctx, key, testAddr)
				if !errors.Is(err, keys.ErrInvalidKey) {
					t.Fatalf("Login = %v, want ErrInvalidKey", err)
				}
				if pair != (tokens.Pair{}) {
					t.Fatal("a refused login returned tokens")
				}
				if after := spy.writerCalls(); !maps.Equal(after, before) {
					t.Fatalf("a refused login took the writer: calls %v before, %v after", before, after)
				}
				if n := countFailedLogins(t, e); n != failures+1 {
					t.Fatalf("%d failed-login events after the attempt, want %d", n, failures+1)
				}
			})
		}
	})
}

func countFailedLogins(tb testing.TB, e *env) int {
	tb.Helper()
	n := 0
	for _, ev := range e.audit(tb) {
		if ev.Action == "login" && ev.Outcome == keys.OutcomeFailure {
			n++
		}
	}
	return n
}
