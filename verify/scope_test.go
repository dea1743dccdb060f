package verify_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"keygate/api"
	"keygate/keys"
	"keygate/tokens"
	"keygate/verify"
)

// TestRequireScope: only tokens carrying every scope required get through;
// a verified token lacking one gets 403 with the RFC 6750 challenge, an
// unverified request the 401.
func TestRequireScope(t *testing.T) {
	clk := &clock{now: t0}
	k := startKeygate(t, tokens.ES256, clk)
	v := newVerifier(t, k, nil)
	h := v.Middleware(verify.RequireScope("orders:read", "orders:write")(whoami))
	withScopes := func(s string) http.Header {
		p := k.company
		p.Scopes = keys.StoredScopes(s)
		return http.Header{"R-Auth": {k.sign(t, p)}}
	}
	if rec := serve(h, withScopes("orders:read orders:write users:read")); rec.Code != http.StatusOK {
		t.Errorf("a token with both scopes and more: %d %s", rec.Code, rec.Body)
	}
	for name, header := range map[string]http.Header{
		"one of the two": withScopes("orders:read"),
		"none":           withScopes(""),
		"a prefix":       withScopes("orders"),
	} {
		rec := serve(h, header)
		var body api.Error
		if err := json.Unmarshal(rec.Body.Bytes(), &body); rec.Code != http.StatusForbidden || err != nil || body.Error != api.CodeForbidden {
			t.Errorf("%s: %d %s", name, rec.Code, rec.Body)
		}
		if got, want := rec.Header().Get("WWW-Authenticate"), `Bearer error="insufficient_scope", scope="orders:read orders:write"`; got != want {
			t.Errorf("%s: WWW-Authenticate %q, want %q", name, got, want)
		}
	}
	checkUnauthorized(t, "no token", serve(h, http.Header{}))
	checkUnauthorized(t, "RequireScope without Middleware", serve(verify.RequireScope("orders:read")(whoami), withScopes("orders:read")))

	for _, bad := range [][]string{nil, {""}, {"orders read"}, {"orders/read"}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("RequireScope(%q) did not panic", bad)
				}
			}()
			verify.RequireScope(bad...)
		}()
	}
}
