package tokens_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"keygate/keys"
	"keygate/tokens"
)

func mustScopes(tb testing.TB, s string) keys.Scopes {
	tb.Helper()
	v, err := keys.ParseScopeString("scope", s)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// scopedPartner is a partner allowed "a b c" whose own first key holds
// them all, and a second key of it holding "a c".
func scopedPartner(tb testing.TB, e *env) (all, ac principal) {
	tb.Helper()
	ctx := context.Background()
	_, k, err := e.keys.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "Acme", Scopes: mustScopes(tb, "a b c")})
	if err != nil {
		tb.Fatalf("CreatePartner: %v", err)
	}
	held := mustScopes(tb, "a c")
	k2, err := e.keys.CreateKey(ctx, keys.Operator, k.Owner, keys.KeyInput{Scopes: &held})
	if err != nil {
		tb.Fatalf("CreateKey: %v", err)
	}
	return principalOf(k), principalOf(k2)
}

func scopeClaim(tb testing.TB, tok keys.Secret) any { return claimsOf(tb, tok.Reveal())["scope"] }

// TestScopesFromLoginToRefresh: a token carries the scopes its key may
// obtain, or a down-scoped subset the login asked for; a scope the key
// does not hold is refused; refreshes keep the family's scopes, through
// the generation-0 token and after it; narrowing the partner's scopes
// narrows every session's next token.
func TestScopesFromLoginToRefresh(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend func(*envConfig)) {
		e := newEnv(t, backend)
		ctx := context.Background()
		all, ac := scopedPartner(t, e)

		full, err := e.svc.Login(ctx, all.apiKey, testAddr)
		if err != nil || scopeClaim(t, full.JWT) != "a b c" {
			t.Fatalf("login with all scopes: scope %v, %v; want \"a b c\"", scopeClaim(t, full.JWT), err)
		}
		down, err := e.svc.LoginWith(ctx, ac.apiKey, testAddr, tokens.LoginOptions{Scope: keys.Only(mustScopes(t, "c"))})
		if err != nil || scopeClaim(t, down.JWT) != "c" || down.Principal.Scopes.String() != "c" {
			t.Fatalf("down-scoped login: scope %v (pair %q), %v; want \"c\"", scopeClaim(t, down.JWT), down.Principal.Scopes, err)
		}
		_, err = e.svc.LoginWith(ctx, ac.apiKey, testAddr, tokens.LoginOptions{Scope: keys.Only(mustScopes(t, "a b"))})
		var se *keys.ScopeError
		if !errors.As(err, &se) || se.Scope != "b" {
			t.Fatalf("login asking for a scope the key lacks: %v, want a ScopeError naming b", err)
		}

		// The generation-0 token carries the request; its refresh keeps it.
		next, err := e.svc.Refresh(ctx, down.RefreshToken.Reveal(), testAddr)
		if err != nil || scopeClaim(t, next.JWT) != "c" {
			t.Fatalf("first refresh of a down-scoped login: scope %v, %v; want \"c\"", scopeClaim(t, next.JWT), err)
		}
		if f, ok := e.family(t, next.RefreshToken); !ok || f.Scope.All() || f.Scope.Scopes().String() != "c" {
			t.Errorf("the family's row keeps scope all %v %q, want only c", f.Scope.All(), f.Scope.Scopes())
		}
		if retry, err := e.svc.Refresh(ctx, down.RefreshToken.Reveal(), testAddr); err != nil || !retry.GraceRetry || scopeClaim(t, retry.JWT) != "c" {
			t.Errorf("grace retry: scope %v, %v", scopeClaim(t, retry.JWT), err)
		}
		later, err := e.svc.Refresh(ctx, next.RefreshToken.Reveal(), testAddr)
		if err != nil || scopeClaim(t, later.JWT) != "c" {
			t.Fatalf("second refresh: scope %v, %v", scopeClaim(t, later.JWT), err)
		}

		// The partner is narrowed to "a b": the "c" session's next token
		// carries nothing, the full session's "a b", a new login of the
		// "a c" key "a".
		if err := e.keys.SetPartnerScopes(ctx, keys.Operator, all.PartnerID, mustScopes(t, "a b")); err != nil {
			t.Fatal(err)
		}
		narrowed, err := e.svc.Refresh(ctx, later.RefreshToken.Reveal(), testAddr)
		if err != nil || scopeClaim(t, narrowed.JWT) != nil {
			t.Errorf("refresh after narrowing: scope %v, %v; want none", scopeClaim(t, narrowed.JWT), err)
		}
		if got, err := e.svc.Refresh(ctx, full.RefreshToken.Reveal(), testAddr); err != nil || scopeClaim(t, got.JWT) != "a b" {
			t.Errorf("the full session after narrowing: scope %v, %v; want \"a b\"", scopeClaim(t, got.JWT), err)
		}
		if got, err := e.svc.Login(ctx, ac.apiKey, testAddr); err != nil || scopeClaim(t, got.JWT) != "a" {
			t.Errorf("login after narrowing: scope %v, %v; want \"a\"", scopeClaim(t, got.JWT), err)
		}
		// Widening again gives no key more than it holds.
		if err := e.keys.SetPartnerScopes(ctx, keys.Operator, all.PartnerID, mustScopes(t, "a b c d")); err != nil {
			t.Fatal(err)
		}
		if got, err := e.svc.Login(ctx, ac.apiKey, testAddr); err != nil || scopeClaim(t, got.JWT) != "a c" {
			t.Errorf("login after widening: scope %v, %v; want the key's own \"a c\"", scopeClaim(t, got.JWT), err)
		}
		// A key without scopes logs in, and its tokens carry none.
		plain := e.newPartner(t, "Plain")
		if got := e.login(t, plain); scopeClaim(t, got.JWT) != nil {
			t.Errorf("a key without scopes: scope %v", scopeClaim(t, got.JWT))
		}
	})
}

// TestCompanyKeysWithinTheirPartner: a company's keys hold only what its
// partner allows; by default all of it.
func TestCompanyKeysWithinTheirPartner(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	all, _ := scopedPartner(t, e)
	actor := keys.ActorFor(all.Principal, testAddr)
	_, k, err := e.keys.CreateCompany(ctx, actor, all.PartnerID, keys.CompanyInput{Name: "Globex"})
	if err != nil || k.Scopes.String() != "a b c" {
		t.Fatalf("company key by default: %q, %v; want its partner's \"a b c\"", k.Scopes, err)
	}
	wider := mustScopes(t, "a z")
	_, _, err = e.keys.CreateCompany(ctx, actor, all.PartnerID, keys.CompanyInput{Name: "Initech", Scopes: &wider})
	var se *keys.ScopeError
	if !errors.As(err, &se) || se.Scope != "z" {
		t.Fatalf("company with a scope its partner lacks: %v, want a ScopeError naming z", err)
	}
	if _, err := e.keys.CreateKey(ctx, actor, k.Owner, keys.KeyInput{Scopes: &wider}); !errors.As(err, &se) {
		t.Fatalf("company key with a scope its partner lacks: %v", err)
	}
	none := keys.Scopes{}
	if k2, err := e.keys.CreateKey(ctx, actor, k.Owner, keys.KeyInput{Scopes: &none}); err != nil || !k2.Scopes.Empty() {
		t.Errorf("a key asking for no scopes: %q, %v", k2.Scopes, err)
	}
}

// TestKeyExpiry: no access or refresh token outlives its key, and once the
// key has expired it logs in, refreshes and authorizes like a revoked one.
func TestKeyExpiry(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend func(*envConfig)) {
		e := newEnv(t, backend)
		ctx := context.Background()
		p := e.newPartner(t, "Acme")
		expires := e.clock.Now().Add(10 * time.Minute) // sooner than the access TTL
		k, err := e.keys.CreateKey(ctx, keys.Operator, keys.PartnerOwner(p.PartnerID), keys.KeyInput{Name: "short-lived", ExpiresAt: &expires})
		if err != nil {
			t.Fatal(err)
		}
		short := principalOf(k)
		pair := e.login(t, short)
		if !pair.ExpiresAt.Equal(expires.Truncate(time.Second)) || fmt.Sprint(claimsOf(t, pair.JWT.Reveal())["exp"]) != fmt.Sprint(expires.Unix()) {
			t.Errorf("JWT expires %v (claim %v), want the key's %v", pair.ExpiresAt, claimsOf(t, pair.JWT.Reveal())["exp"], expires)
		}
		if !pair.RefreshTokenExpiration.Equal(expires.Truncate(time.Millisecond)) {
			t.Errorf("refresh token expires %v, want the key's %v", pair.RefreshTokenExpiration, expires)
		}
		e.clock.Advance(5 * time.Minute)
		next, err := e.svc.Refresh(ctx, pair.RefreshToken.Reveal(), testAddr)
		if err != nil || next.RefreshTokenExpiration.After(expires) || next.ExpiresAt.After(expires) {
			t.Fatalf("refresh before expiry: %v; tokens until %v and %v, key until %v", err, next.ExpiresAt, next.RefreshTokenExpiration, expires)
		}
		if _, err := e.svc.Authorize(ctx, next.JWT.Reveal()); err != nil {
			t.Fatalf("Authorize before expiry: %v", err)
		}

		e.clock.Set(expires)
		if _, err := e.svc.Login(ctx, short.apiKey, testAddr); !errors.Is(err, keys.ErrInvalidKey) {
			t.Errorf("login with an expired key: %v, want ErrInvalidKey (as a revoked key)", err)
		}
		if _, err := e.svc.Refresh(ctx, next.RefreshToken.Reveal(), testAddr); !errors.Is(err, tokens.ErrInvalidRefreshToken) {
			t.Errorf("refresh after the key expired: %v", err)
		}
		if _, err := e.keys.ActivePrincipal(ctx, next.Principal); !errors.Is(err, keys.ErrInactive) {
			t.Errorf("ActivePrincipal of an expired key: %v, want ErrInactive", err)
		}
		e.login(t, p) // the partner's other key is unaffected

		past := e.clock.Now().Add(-time.Second)
		var ve *keys.ValidationError
		if _, err := e.keys.CreateKey(ctx, keys.Operator, keys.PartnerOwner(p.PartnerID), keys.KeyInput{ExpiresAt: &past}); !errors.As(err, &ve) || ve.Field != "expiresAt" {
			t.Errorf("a key expiring in the past: %v, want a validation error of expiresAt", err)
		}
	})
}

// TestSessionID: an access token that comes with a refresh token names its
// session (the family), which stays the same across refreshes.
func TestSessionID(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	p := e.newPartner(t, "Acme")
	pair := e.login(t, p)
	sid, _ := claimsOf(t, pair.JWT.Reveal())["sid"].(string)
	if family, ok := familyOf(e.svc, pair.RefreshToken.Reveal()); !ok || sid == "" || sid != family {
		t.Fatalf("login's sid %q, its family %q", sid, family)
	}
	next, err := e.svc.Refresh(ctx, pair.RefreshToken.Reveal(), testAddr)
	if err != nil || claimsOf(t, next.JWT.Reveal())["sid"] != sid {
		t.Errorf("refresh: sid %v, %v; want %q", claimsOf(t, next.JWT.Reveal())["sid"], err, sid)
	}
	bare, err := e.svc.LoginWith(ctx, p.apiKey, testAddr, tokens.LoginOptions{NoRefresh: true})
	if err != nil || claimsOf(t, bare.JWT.Reveal())["sid"] != nil {
		t.Errorf("a login without a refresh token: sid %v, %v; want none", claimsOf(t, bare.JWT.Reveal())["sid"], err)
	}
}
