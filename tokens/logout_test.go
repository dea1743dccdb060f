package tokens_test

import (
	"testing"
	"time"
)

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
	otherFirst := other.login(t, other.newPartner(t, "Other")).RefreshToken
	otherLater := other.refresh(t, otherFirst).RefreshToken
	for name, tok := range map[string]string{
		"already revoked":        a2.RefreshToken.Reveal(),
		"revoked parent":         a.RefreshToken.Reveal(),
		"unknown family":         otherLater.Reveal(),
		"unknown key and family": otherFirst.Reveal(),
		"empty":                  "",
		"garbage":                "garbage",
		"prefix only":            "rt_",
		"API key":                p.apiKey,
		"JWT":                    a.JWT.Reveal(),
		"tampered":               tamper(t, b.RefreshToken.Reveal(), 3),
	} {
		if err := e.svc.Logout(ctx, tok); err != nil {
			t.Errorf("Logout(%s) = %v, want nil", name, err)
		}
	}
	if _, ok := e.family(t, otherFirst); ok {
		t.Fatal("logout with a token of an unknown key wrote a family row")
	}
	if len(reuseEvents(t, e)) != 0 {
		t.Fatal("logout or refresh of a revoked family was recorded as reuse")
	}
}

// TestLogoutFirstToken: logging out with a login's token before any
// refresh writes the family's row, revoked at generation 0, which keeps
// the token refused; after a refresh it revokes the row; an expired first
// token of a family without a row needs no row and gets none.
func TestLogoutFirstToken(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend func(*envConfig)) {
		spy := &spyStore{}
		e := newEnv(t, backend, withSpy(spy))
		ctx := t.Context()
		p := e.newPartner(t, "Acme")
		pair, bystander := e.login(t, p), e.login(t, p)
		e.clock.Advance(time.Minute)
		if err := e.svc.Logout(ctx, pair.RefreshToken.Reveal()); err != nil {
			t.Fatalf("Logout: %v", err)
		}
		f, ok := e.family(t, pair.RefreshToken)
		if !ok {
			t.Fatal("logout with a first token wrote no row")
		}
		if f.Generation != 0 || f.RevokedAt == nil || !f.RevokedAt.Equal(e.clock.Now()) || f.RevokeReason != "logout" ||
			!f.FirstExpiresAt.Equal(pair.RefreshTokenExpiration) || f.Principal != p.Principal {
			t.Fatalf("family after logout: %+v", f)
		}
		e.refreshFails(t, pair.RefreshToken)
		if err := e.svc.Logout(ctx, pair.RefreshToken.Reveal()); err != nil {
			t.Fatalf("second Logout: %v", err)
		}
		if again, _ := e.family(t, pair.RefreshToken); !sameFamily(again, f) {
			t.Fatalf("a second logout changed the row: %+v, was %+v", again, f)
		}
		// With a row, logging out with the first token ends its successors.
		next := e.refresh(t, bystander.RefreshToken)
		if err := e.svc.Logout(ctx, bystander.RefreshToken.Reveal()); err != nil {
			t.Fatalf("Logout: %v", err)
		}
		e.refreshFails(t, next.RefreshToken)
		if f, ok := e.family(t, bystander.RefreshToken); !ok || f.RevokedAt == nil || f.Generation != 1 {
			t.Fatalf("family after logout with its first token: %+v (row %v), want generation 1 revoked", f, ok)
		}
		e.refresh(t, e.login(t, p).RefreshToken) // another family of the same key lives

		// An expired first token cannot start its family: a logout with it
		// looks for a row to end, and writes none.
		late := e.login(t, p)
		e.clock.Set(late.RefreshTokenExpiration)
		if err := e.svc.Logout(ctx, late.RefreshToken.Reveal()); err != nil {
			t.Fatalf("Logout of an expired first token: %v", err)
		}
		if f, ok := e.family(t, late.RefreshToken); ok {
			t.Fatalf("logout of an expired first token wrote a row: %+v", f)
		}
		if len(reuseEvents(t, e)) != 0 {
			t.Fatal("logout was recorded as reuse")
		}
	})
}

// TestLogoutWithAnExpiredToken: logging out with an expired token of a
// family that lives on (through later tokens) still ends the family.
func TestLogoutWithAnExpiredToken(t *testing.T) {
	for _, s := range starts {
		t.Run(s.name, func(t *testing.T) {
			e := newEnv(t, func(c *envConfig) { c.refresh.TTL = time.Hour })
			stale := s.start(t, e, e.newPartner(t, "Acme"))
			e.clock.Advance(50 * time.Minute)
			live := e.refresh(t, stale.RefreshToken)
			e.clock.Set(stale.RefreshTokenExpiration.Add(time.Minute)) // stale expired, live not
			if err := e.svc.Logout(t.Context(), stale.RefreshToken.Reveal()); err != nil {
				t.Fatal(err)
			}
			if f, _ := e.family(t, live.RefreshToken); f.RevokedAt == nil {
				t.Errorf("logout with an expired token left the family live: %+v", f)
			}
		})
	}
}
