package server_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestHeadWhereverGet: every GET route answers HEAD with the GET's status
// and headers and no body.
func TestHeadWhereverGet(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("Acme")
	co := e.createCompany(a.pair.JWT, `{"name":"Globex"}`)
	for _, path := range []string{
		"/health", "/ready", "/.well-known/jwks.json", "/api/v1/auth/me",
		companiesPath, companyPath(co.ID), keysPath(co.ID),
	} {
		t.Run(path, func(t *testing.T) {
			getRec := e.do(request{method: http.MethodGet, path: path, token: a.pair.JWT})
			headRec := e.do(request{method: http.MethodHead, path: path, token: a.pair.JWT})
			if headRec.Code != getRec.Code || headRec.Code != http.StatusOK {
				t.Fatalf("HEAD %d, GET %d", headRec.Code, getRec.Code)
			}
			for _, h := range []string{"Content-Type", "Cache-Control"} {
				if headRec.Header().Get(h) != getRec.Header().Get(h) {
					t.Errorf("%s: HEAD %q, GET %q", h, headRec.Header().Get(h), getRec.Header().Get(h))
				}
			}
		})
	}
	wantStatus(t, e.do(request{method: http.MethodHead, path: "/api/v1/auth/me"}), http.StatusUnauthorized)
}

// TestJWKSRevalidates: the JWKS carries a strong ETag, and If-None-Match
// with it (alone, in a list, or *) is 304 with no body.
func TestJWKSRevalidates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rec := e.get("/.well-known/jwks.json", "")
	etag := rec.Header().Get("ETag")
	if !strings.HasPrefix(etag, `"`) || !strings.HasSuffix(etag, `"`) || len(etag) < 10 {
		t.Fatalf("ETag = %q, want a strong quoted tag", etag)
	}
	for _, inm := range []string{etag, `"other", ` + etag, "*", "W/" + etag} {
		r := e.do(request{method: http.MethodGet, path: "/.well-known/jwks.json", header: http.Header{"If-None-Match": {inm}}})
		if r.Code != http.StatusNotModified || r.Body.Len() != 0 {
			t.Errorf("If-None-Match %s: %d with %d bytes, want 304 and none", inm, r.Code, r.Body.Len())
		}
		if r.Header().Get("ETag") != etag || r.Header().Get("Cache-Control") != rec.Header().Get("Cache-Control") {
			t.Errorf("If-None-Match %s: 304 headers %v", inm, r.Header())
		}
	}
	r := e.do(request{method: http.MethodGet, path: "/.well-known/jwks.json", header: http.Header{"If-None-Match": {`"stale"`}}})
	if r.Code != http.StatusOK || r.Body.String() != rec.Body.String() {
		t.Errorf("a stale tag: %d %s", r.Code, r.Body)
	}
	// A new signing key changes the set, and its tag.
	if _, err := e.ring.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := e.ring.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	if next := e.get("/.well-known/jwks.json", "").Header().Get("ETag"); next == etag {
		t.Errorf("the ETag did not change with the key set")
	}
}

// TestUnauthorizedChallenges: every 401 carries a Bearer challenge (RFC
// 6750 §3), with error="invalid_token" when an access token was presented.
func TestUnauthorizedChallenges(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("Acme")
	for _, tc := range []struct {
		name string
		r    request
		want string
	}{
		{"no token", request{method: http.MethodGet, path: "/api/v1/auth/me"}, `Bearer realm="keygate"`},
		{"bad token", request{method: http.MethodGet, path: "/api/v1/auth/me", token: a.pair.JWT + "x"}, `Bearer realm="keygate", error="invalid_token"`},
		{"bad API key", request{method: http.MethodPost, path: "/api/v1/auth/login", body: loginBody("pk_nope")}, `Bearer realm="keygate"`},
		{"bad refresh token", request{method: http.MethodPost, path: "/api/v1/auth/refresh", body: refreshBody("rt_nope")}, `Bearer realm="keygate"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.do(tc.r)
			wantError(t, rec, http.StatusUnauthorized, "unauthorized")
			if got := rec.Header().Get("WWW-Authenticate"); got != tc.want {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tc.want)
			}
		})
	}
}
