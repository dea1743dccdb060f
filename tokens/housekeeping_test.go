package tokens_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"keygate/keys"
	"keygate/tokens"
)

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
	// started is a family with a row: logins write none.
	started := func() tokens.Pair { t.Helper(); return e.refresh(t, e.login(t, p).RefreshToken) }

	e.clock.Set(t0)
	logout(e.login(t, p)) // revoked at t0, its first token expires at t0+1h
	started()             // expires at t0+1h
	e.login(t, p)         // never used: no row to delete
	e.clock.Set(t0.Add(10 * time.Hour))
	lateExpiry := started() // expires at t0+11h
	e.clock.Set(t0.Add(30 * time.Hour))
	live := started()
	logout(started()) // revoked at t0+30h

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
			ctx := context.Background()
			pair, err := e.svc.Login(ctx, p.apiKey, testAddr)
			if err == nil { // the first refresh writes the family's row
				_, err = e.svc.Refresh(ctx, pair.RefreshToken.Reveal(), testAddr)
			}
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
	live := e.refresh(t, e.login(t, p).RefreshToken)
	e.clock.Advance(90 * time.Minute) // the first families expired 2h ago
	if n, err := e.svc.Housekeep(t.Context()); err != nil || n != dead {
		t.Fatalf("Housekeep = %d, %v; want %d", n, err, dead)
	}
	e.clock.Advance(-time.Hour)
	e.refresh(t, live.RefreshToken)
}

// TestHousekeepKeepsRevokedFamilies: a token of a revoked family is never
// accepted again. Housekeeping deletes a revoked family only once its
// first token (which could otherwise start the family afresh) has expired
// too, whether the family died by logout, by reuse or with its key.
func TestHousekeepKeepsRevokedFamilies(t *testing.T) {
	cases := []struct {
		name   string
		reason string
		// kill revokes the family of first and returns every token of it.
		kill func(t *testing.T, e *env, p principal, first tokens.Pair) []keys.Secret
	}{
		{"logout with the first token", "logout", func(t *testing.T, e *env, _ principal, first tokens.Pair) []keys.Secret {
			if err := e.svc.Logout(t.Context(), first.RefreshToken.Reveal()); err != nil {
				t.Fatal(err)
			}
			return []keys.Secret{first.RefreshToken}
		}},
		{"logout with a later token", "logout", func(t *testing.T, e *env, _ principal, first tokens.Pair) []keys.Secret {
			second := e.refresh(t, first.RefreshToken)
			e.clock.Advance(time.Minute)
			if err := e.svc.Logout(t.Context(), second.RefreshToken.Reveal()); err != nil {
				t.Fatal(err)
			}
			return []keys.Secret{first.RefreshToken, second.RefreshToken}
		}},
		{"reuse detected", "reuse", func(t *testing.T, e *env, _ principal, first tokens.Pair) []keys.Secret {
			second := e.refresh(t, first.RefreshToken)
			e.clock.Advance(time.Minute)
			third := e.refresh(t, second.RefreshToken)
			e.clock.Advance(time.Minute)
			e.refreshFails(t, first.RefreshToken)
			return []keys.Secret{first.RefreshToken, second.RefreshToken, third.RefreshToken}
		}},
		{"key revoked before the first refresh", "principal_inactive", func(t *testing.T, e *env, p principal, first tokens.Pair) []keys.Secret {
			if err := e.keys.RevokeKey(t.Context(), keys.Operator, p.Owner(), p.KeyID); err != nil {
				t.Fatal(err)
			}
			e.refreshFails(t, first.RefreshToken) // writes the row, revoked
			return []keys.Secret{first.RefreshToken}
		}},
	}
	eachBackend(t, func(t *testing.T, backend func(*envConfig)) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				e := newEnv(t, backend)
				ctx := t.Context()
				retention := e.cfg.refresh.Retention
				p := e.newPartner(t, "Acme")
				first := e.login(t, p)
				firstExpiry := first.RefreshTokenExpiration
				toks := tc.kill(t, e, p, first)
				dead, ok := e.family(t, first.RefreshToken)
				if !ok || dead.RevokedAt == nil || dead.RevokeReason != tc.reason || !dead.FirstExpiresAt.Equal(firstExpiry) {
					t.Fatalf("family after %s: %+v (row %v), want revoked for %q, first token expiring %v",
						tc.name, dead, ok, tc.reason, firstExpiry)
				}

				// Past the retention, inside the first token's lifetime: the row stays.
				e.clock.Set(dead.RevokedAt.Add(retention + time.Hour))
				if !e.clock.Now().Before(firstExpiry) {
					t.Fatal("the test needs the first token to outlive the retention")
				}
				if n, err := e.svc.Housekeep(ctx); err != nil || n != 0 {
					t.Fatalf("Housekeep = %d, %v; want the revoked family kept", n, err)
				}
				for _, tok := range toks {
					e.refreshFails(t, tok)
				}
				if f, ok := e.family(t, first.RefreshToken); !ok || !sameFamily(f, dead) {
					t.Fatalf("after housekeeping and refusals the row is %+v (%v), want %+v", f, ok, dead)
				}

				// Once the first token has expired and the retention passed
				// again, the row goes, and every token stays refused.
				e.clock.Set(firstExpiry.Add(retention))
				if n, err := e.svc.Housekeep(ctx); err != nil || n != 0 {
					t.Fatalf("Housekeep at the end of retention = %d, %v; want 0", n, err)
				}
				e.clock.Set(firstExpiry.Add(retention + time.Millisecond))
				if n, err := e.svc.Housekeep(ctx); err != nil || n != 1 {
					t.Fatalf("Housekeep = %d, %v; want the revoked family deleted", n, err)
				}
				for _, tok := range toks {
					e.refreshFails(t, tok)
					if err := e.svc.Logout(ctx, tok.Reveal()); err != nil {
						t.Fatalf("Logout: %v", err)
					}
				}
				if f, ok := e.family(t, first.RefreshToken); ok {
					t.Fatalf("a token of a deleted family brought its row back: %+v", f)
				}
			})
		}
	})
}

// TestHousekeepExpiredFamily: an expired family's row goes once its
// retention has passed, and neither its first token nor a later one starts
// it again.
func TestHousekeepExpiredFamily(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend func(*envConfig)) {
		e := newEnv(t, backend, func(c *envConfig) { c.refresh.TTL, c.refresh.Retention = time.Hour, time.Hour })
		ctx := t.Context()
		first := e.login(t, e.newPartner(t, "Acme"))
		e.clock.Advance(30 * time.Minute)
		second := e.refresh(t, first.RefreshToken) // the family now ends at +90m, its first token at +60m
		end := second.RefreshTokenExpiration
		e.clock.Set(end.Add(time.Hour))
		if n, err := e.svc.Housekeep(ctx); err != nil || n != 0 {
			t.Fatalf("Housekeep at the end of retention = %d, %v; want 0", n, err)
		}
		e.clock.Set(end.Add(time.Hour + time.Millisecond))
		if n, err := e.svc.Housekeep(ctx); err != nil || n != 1 {
			t.Fatalf("Housekeep = %d, %v; want the expired family deleted", n, err)
		}
		for _, tok := range []keys.Secret{first.RefreshToken, second.RefreshToken} {
			e.refreshFails(t, tok)
		}
		if _, ok := e.family(t, first.RefreshToken); ok {
			t.Fatal("a token of a deleted family brought its row back")
		}
	})
}
