package server_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"keygate/keys"
)

const (
	refreshPath = "/api/v1/auth/refresh"
	logoutPath  = "/api/v1/auth/logout"
)

func TestRefreshRotates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("Partner A")
	other := e.login(a.apiKey) // a second family of the same partner

	e.clock.Advance(time.Hour)
	rec := e.post(refreshPath, refreshBody(a.pair.RefreshToken), "")
	wantStatus(t, rec, http.StatusOK)
	wantMembers(t, rec.Body.Bytes(), "jwt", "expirationDate", "refreshToken", "refreshTokenExpiration")
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	next := decodeInto[tokenPair](t, rec)
	if next.RefreshToken == a.pair.RefreshToken || !strings.HasPrefix(next.RefreshToken, keys.RefreshTokenPrefix) {
		t.Fatalf("successor %q", next.RefreshToken)
	}
	now := epoch.Add(time.Hour)
	if at := wantStamp(t, "expirationDate", next.ExpirationDate); !at.Equal(now.Truncate(time.Second).Add(accessTTL)) {
		t.Errorf("expirationDate = %s", at)
	}
	if at := wantStamp(t, "refreshTokenExpiration", next.RefreshTokenExpiration); !at.Equal(now.Add(refreshTTL)) {
		t.Errorf("refreshTokenExpiration = %s, want %s", at, now.Add(refreshTTL))
	}
	before, after := claims(t, a.pair.JWT), claims(t, next.JWT)
	for _, name := range []string{"sub", "client_id", "kind", "partner_id", "key_id", "iss", "aud"} {
		if !equalJSON(before[name], after[name]) {
			t.Errorf("claim %s changed from %v to %v", name, before[name], after[name])
		}
	}
	if before["jti"] == after["jti"] {
		t.Error("refreshed JWT reuses the jti")
	}
	wantStatus(t, e.get("/api/v1/auth/me", next.JWT), http.StatusOK)

	// Within the grace window the parent gets the identical successor back.
	e.clock.Advance(reuseGrace)
	retry := e.refresh(a.pair.RefreshToken)
	if retry.RefreshToken != next.RefreshToken {
		t.Errorf("retry within grace got %q, want the identical successor %q", retry.RefreshToken, next.RefreshToken)
	}
	// After it, the parent is a reuse: the family dies, descendant included.
	e.clock.Advance(time.Second)
	wantError(t, e.post(refreshPath, refreshBody(a.pair.RefreshToken), ""), http.StatusUnauthorized, "unauthorized")
	wantError(t, e.post(refreshPath, refreshBody(next.RefreshToken), ""), http.StatusUnauthorized, "unauthorized")
	// The partner's other family lives on.
	e.refresh(other.RefreshToken)

	var reuse []keys.AuditEvent
	for _, ev := range e.audit() {
		if ev.Action == "refresh.reuse_detected" {
			reuse = append(reuse, ev)
		}
	}
	if len(reuse) != 1 || reuse[0].ActorID != a.partner.ID || reuse[0].Addr != "192.0.2.10" {
		t.Errorf("reuse audit events = %+v, want one for %s", reuse, a.partner.ID)
	}
}

func equalJSON(a, b any) bool {
	as, aok := a.([]any)
	bs, bok := b.([]any)
	if aok && bok {
		return slices.Equal(as, bs)
	}
	return a == b
}

func TestRefreshAbsoluteLifetime(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("Partner A")
	rt := a.pair.RefreshToken
	step := 700 * time.Hour // under the inactivity limit, so only the absolute one bites
	for i := 1; i <= 3; i++ {
		e.clock.Advance(step)
		next := e.refresh(rt)
		want := epoch.Add(time.Duration(i) * step).Add(refreshTTL)
		if limit := epoch.Add(maxLifetime); limit.Before(want) {
			want = limit
		}
		if at := wantStamp(t, "refreshTokenExpiration", next.RefreshTokenExpiration); !at.Equal(want) {
			t.Fatalf("refresh %d: refreshTokenExpiration = %s, want %s", i, at, want)
		}
		rt = next.RefreshToken
	}
	e.clock.Advance(maxLifetime - 3*step) // exactly the family's end
	wantError(t, e.post(refreshPath, refreshBody(rt), ""), http.StatusUnauthorized, "unauthorized")
}

func TestRefreshValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, path := range []string{refreshPath, logoutPath} {
		for name, body := range map[string]string{
			"missing":      `{}`,
			"empty":        `{"refreshToken":""}`,
			"null":         `{"refreshToken":null}`,
			"number":       `{"refreshToken":1}`,
			"array":        `{"refreshToken":["rt_x"]}`,
			"object":       `{"refreshToken":{}}`,
			"boolean":      `{"refreshToken":false}`,
			"non-JSON":     `refreshToken=rt_x`,
			"bare string":  `"rt_x"`,
			"wrong member": `{"refresh_token":"rt_x"}`,
		} {
			t.Run(path+" "+name, func(t *testing.T) {
				wantError(t, e.post(path, body, ""), http.StatusBadRequest, "validation_error")
			})
		}
	}
}

// TestRefreshRefusesWithOneBody checks that every refused refresh gets the
// very same 401 as a refused login.
func TestRefreshRefusesWithOneBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("Partner A")
	co := e.createCompany(a.pair.JWT, `{"name":"Globex"}`)
	ctx := context.Background()

	reused := e.login(a.apiKey)
	e.refresh(reused.RefreshToken)
	e.clock.Advance(reuseGrace + time.Second)

	loggedOut := e.login(a.apiKey)
	wantStatus(t, e.post(logoutPath, refreshBody(loggedOut.RefreshToken), ""), http.StatusNoContent)

	// A family that housekeeping has deleted: the token's MAC is valid but
	// its row is gone.
	deleted := e.login(a.apiKey)
	wantStatus(t, e.post(logoutPath, refreshBody(deleted.RefreshToken), ""), http.StatusNoContent)
	expiring := e.login(a.apiKey)

	other := newEnv(t)
	_, otherKey := other.partner("Elsewhere")
	foreign := other.login(otherKey)

	random := make([]byte, 44)
	_, _ = rand.Read(random)

	good := e.login(a.apiKey)
	cases := map[string]string{
		"unknown":           keys.Encode(keys.RefreshTokenPrefix, random).Reveal(),
		"other gateway's":   foreign.RefreshToken,
		"truncated":         good.RefreshToken[:len(good.RefreshToken)-1],
		"checksum typo":     flip(good.RefreshToken, len(good.RefreshToken)-1),
		"body typo":         flip(good.RefreshToken, 12),
		"partner API key":   a.apiKey,
		"company API key":   co.APIKey,
		"JWT":               good.JWT,
		"reused":            reused.RefreshToken,
		"logged out":        loggedOut.RefreshToken,
		"garbage":           "hello",
		"prefix only":       "rt_",
		"wrong prefix":      "pk_" + good.RefreshToken[3:],
		"surrounding space": " " + good.RefreshToken,
	}
	body := e.post("/api/v1/auth/login", loginBody("pk_unknown"), "").Body.String()
	check := func(name, rt string) {
		t.Helper()
		rec := e.post(refreshPath, refreshBody(rt), "")
		wantError(t, rec, http.StatusUnauthorized, "unauthorized")
		if rec.Body.String() != body {
			t.Errorf("%s: body %s differs from a refused login's %s", name, rec.Body, body)
		}
	}
	for name, rt := range cases {
		check(name, rt)
	}

	live := e.refresh(expiring.RefreshToken).RefreshToken // alive until its inactivity limit...
	e.clock.Advance(refreshTTL)
	check("expired", live) // ...and not a moment after it

	// A logged-out family's row outlives its login's token (so that token
	// cannot start it again), then housekeeping deletes it.
	e.clock.Advance(retention + time.Second)
	if n, err := e.tokens.Housekeep(ctx); err != nil || n == 0 {
		t.Fatalf("Housekeep = %d, %v", n, err)
	}
	check("deleted family", deleted.RefreshToken)
	wantStatus(t, e.post(logoutPath, refreshBody(deleted.RefreshToken), ""), http.StatusNoContent)
	check("deleted family after a logout", deleted.RefreshToken)

	// The refusals were about the tokens: a fresh session refreshes.
	e.refresh(e.login(a.apiKey).RefreshToken)
}

func TestLogout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("Partner A")
	other := e.login(a.apiKey)
	next := e.refresh(a.pair.RefreshToken)

	rec := e.post(logoutPath, refreshBody(next.RefreshToken), "")
	wantStatus(t, rec, http.StatusNoContent)
	if rec.Body.Len() != 0 {
		t.Errorf("204 with body %q", rec.Body)
	}
	// The whole family is gone: the live token and its parent, grace or not.
	wantError(t, e.post(refreshPath, refreshBody(next.RefreshToken), ""), http.StatusUnauthorized, "unauthorized")
	wantError(t, e.post(refreshPath, refreshBody(a.pair.RefreshToken), ""), http.StatusUnauthorized, "unauthorized")
	// Access tokens live out their short lifetime.
	wantStatus(t, e.get("/api/v1/auth/me", next.JWT), http.StatusOK)
	// Other sessions are untouched.
	e.refresh(other.RefreshToken)

	random := make([]byte, 44)
	_, _ = rand.Read(random)
	for name, rt := range map[string]string{
		"again":          next.RefreshToken,
		"parent":         a.pair.RefreshToken,
		"unknown":        keys.Encode(keys.RefreshTokenPrefix, random).Reveal(),
		"garbage":        "not a token",
		"API key":        a.apiKey,
		"JWT":            next.JWT,
		"checksum typo":  flip(other.RefreshToken, len(other.RefreshToken)-1),
		"truncated form": other.RefreshToken[:20],
	} {
		rec := e.post(logoutPath, refreshBody(rt), "")
		if rec.Code != http.StatusNoContent || rec.Body.Len() != 0 {
			t.Errorf("logout %s: %d %s, want 204 and no body", name, rec.Code, rec.Body)
		}
	}
	// The mangled copies of other's token did not revoke it.
	e.refresh(other.RefreshToken)
}

// TestConcurrentRefresh sends one token many times at once: one request
// rotates the family, and within the grace window every other one gets the
// identical successor, never a fork.
func TestConcurrentRefresh(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("Acme")
	const n = 20
	codes := make([]int, n)
	successors := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			rec := e.post(refreshPath, refreshBody(a.pair.RefreshToken), "")
			codes[i] = rec.Code
			var p tokenPair
			if json.Unmarshal(rec.Body.Bytes(), &p) == nil {
				successors[i] = p.RefreshToken
			}
		})
	}
	wg.Wait()
	for i := range n {
		if codes[i] != http.StatusOK || successors[i] != successors[0] {
			t.Errorf("request %d: %d with successor %.12s..., want 200 and the one successor %.12s...", i, codes[i], successors[i], successors[0])
		}
	}
	// The one successor is the live token.
	e.clock.Advance(reuseGrace + time.Second)
	e.refresh(successors[0])
}
