package server_test

import (
	"bytes"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"keygate/api"
	"keygate/server"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ from the responses")

// normalizer replaces what differs from run to run (ids, keys, tokens,
// signatures) with stable placeholders, numbering ids in order of first
// appearance so that equal ids stay visibly equal.
type normalizer struct {
	ids map[string]string
	n   map[string]int
}

var (
	jwtPattern     = regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+`)
	secretPattern  = regexp.MustCompile(`\b(pk|ck|rt)_[0-9A-Za-z]{20,}`)
	hintPattern    = regexp.MustCompile(`"hint":"(pk|ck)_[0-9A-Za-z]{4}"`)
	idPattern      = regexp.MustCompile(`\b(par|com|key|kid)_[0-9A-Za-z]{22}\b`)
	jwkCoordinates = regexp.MustCompile(`"(x|y|n|e)":"[A-Za-z0-9_-]+"`)
	jtiPattern     = regexp.MustCompile(`"jti":"[^"]+"`)
)

func (z *normalizer) normalize(body []byte) []byte {
	body = jwtPattern.ReplaceAll(body, []byte("<jwt>"))
	body = secretPattern.ReplaceAll(body, []byte("<${1}_secret>"))
	body = hintPattern.ReplaceAll(body, []byte(`"hint":"<${1}_hint>"`))
	body = jwkCoordinates.ReplaceAll(body, []byte(`"$1":"<b64>"`))
	body = jtiPattern.ReplaceAll(body, []byte(`"jti":"<jti>"`))
	return idPattern.ReplaceAllFunc(body, func(id []byte) []byte {
		if z.ids == nil {
			z.ids, z.n = map[string]string{}, map[string]int{}
		}
		s := string(id)
		if v, ok := z.ids[s]; ok {
			return []byte(v)
		}
		prefix := s[:bytes.IndexByte(id, '_')]
		z.n[prefix]++
		v := fmt.Sprintf("<%s_%d>", prefix, z.n[prefix])
		z.ids[s] = v
		return []byte(v)
	})
}

// golden compares a response's status and exact body, normalized, with
// testdata/name.golden (or rewrites it with -update).
func golden(t *testing.T, z *normalizer, name string, rec *httptest.ResponseRecorder) {
	t.Helper()
	got := fmt.Appendf(nil, "%d\n%s\n", rec.Code, z.normalize(rec.Body.Bytes()))
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./server -run TestGolden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: response differs from %s\ngot:\n%s\nwant:\n%s", name, path, got, want)
	}
}

// TestGoldenResponses pins the exact JSON of every response shape of the
// API (api/), both faces, member order and formats included, so that a
// change to a wire type shows up as a diff a reviewer must accept with
// -update.
func TestGoldenResponses(t *testing.T) {
	e := newEnv(t, withLimits(server.RateLimits{LoginPerKeyPerMinute: 3}), withPublicURL())
	var z normalizer
	a := e.tenant("Acme")
	e.clock.Advance(time.Minute)

	golden(t, &z, "health", e.get("/health", ""))
	golden(t, &z, "ready", e.get("/ready", ""))
	golden(t, &z, "jwks", e.get("/.well-known/jwks.json", ""))

	login := e.post("/api/v1/auth/login", loginBody(a.apiKey), "")
	golden(t, &z, "login", login)
	pair := decodeInto[tokenPair](t, login)
	e.clock.Advance(time.Minute)
	golden(t, &z, "refresh", e.post("/api/v1/auth/refresh", refreshBody(pair.RefreshToken), ""))
	golden(t, &z, "me_partner", e.get("/api/v1/auth/me", a.pair.JWT))

	created := e.post(companiesPath, `{"name":"Globex","externalId":"crm-42"}`, a.pair.JWT)
	golden(t, &z, "company_created", created)
	co := decodeInto[createdCompany](t, created)
	e.clock.Advance(time.Minute)
	e.createCompany(a.pair.JWT, `{"name":"Initech"}`)
	golden(t, &z, "company", e.get(companyPath(co.ID), a.pair.JWT))
	golden(t, &z, "company_list_first_page", e.get(companiesPath+"?limit=1", a.pair.JWT))
	golden(t, &z, "company_list_last_page", e.get(companiesPath, a.pair.JWT))

	golden(t, &z, "key_created", e.post(keysPath(co.ID), "", a.pair.JWT))
	session := e.login(co.APIKey)
	golden(t, &z, "me_company", e.get("/api/v1/auth/me", session.JWT))
	golden(t, &z, "error_forbidden", e.get(companiesPath, session.JWT))
	wantStatus(t, e.delete(keyPath(co.ID, co.KeyID), a.pair.JWT), http.StatusNoContent)
	golden(t, &z, "key_list", e.get(keysPath(co.ID), a.pair.JWT))

	// One of each error, in the one error shape.
	golden(t, &z, "error_validation", e.post("/api/v1/auth/login", `{"apiKey":1}`, ""))
	golden(t, &z, "error_unauthorized", e.post("/api/v1/auth/login", loginBody("pk_nope"), ""))
	golden(t, &z, "error_not_found", e.get(companyPath("com_unknown"), a.pair.JWT))
	golden(t, &z, "error_no_route", e.get("/api/v1/nothing", ""))
	golden(t, &z, "error_conflict", e.post(companiesPath, `{"name":"Again","externalId":"crm-42"}`, a.pair.JWT))
	golden(t, &z, "error_unsupported_media_type", e.do(request{method: http.MethodPost, path: "/api/v1/auth/login", body: "apiKey=x", contentType: "application/x-www-form-urlencoded"}))
	for range 3 {
		e.post("/api/v1/auth/login", loginBody(a.apiKey), "")
	}
	golden(t, &z, "error_rate_limited", e.post("/api/v1/auth/login", loginBody(a.apiKey), ""))
	golden(t, &z, "error_method_not_allowed", e.do(request{method: http.MethodPut, path: "/api/v1/auth/login"}))

	// The OAuth face, with a company of its own: Acme's key is spent.
	oc := e.createCompany(a.pair.JWT, `{"name":"Umbrella"}`)
	asOC := basic(oc.ID, oc.APIKey)
	golden(t, &z, "oauth_metadata", e.get("/.well-known/oauth-authorization-server", ""))
	token := postForm(e, "/oauth2/token", form("grant_type", "client_credentials"), asOC)
	golden(t, &z, "oauth_token", token)
	ocSession := e.login(oc.APIKey)
	golden(t, &z, "oauth_token_refreshed", postForm(e, "/oauth2/token", form("grant_type", "refresh_token", "refresh_token", ocSession.RefreshToken), asOC))
	golden(t, &z, "oauth_introspection_active", postForm(e, "/oauth2/introspect", form("token", decodeInto[api.OAuthToken](t, token).AccessToken), asOC))
	golden(t, &z, "oauth_introspection_active_refresh", postForm(e, "/oauth2/introspect", form("token", e.login(oc.APIKey).RefreshToken), asOC))
	golden(t, &z, "oauth_introspection_inactive", postForm(e, "/oauth2/introspect", form("token", a.pair.JWT), asOC))
	golden(t, &z, "oauth_revocation", postForm(e, "/oauth2/revoke", form("token", ocSession.RefreshToken), asOC))
	golden(t, &z, "oauth_error_invalid_request", postForm(e, "/oauth2/revoke", form(), asOC))
	golden(t, &z, "oauth_error_invalid_client", postForm(e, "/oauth2/token", form("grant_type", "client_credentials"), basic(oc.ID, "pk_nope")))
	golden(t, &z, "oauth_error_invalid_grant", postForm(e, "/oauth2/token", form("grant_type", "refresh_token", "refresh_token", ocSession.RefreshToken), asOC))
	golden(t, &z, "oauth_error_unsupported_grant_type", postForm(e, "/oauth2/token", form("grant_type", "password"), asOC))
	golden(t, &z, "oauth_error_invalid_scope", postForm(e, "/oauth2/token", form("grant_type", "client_credentials", "scope", "orders/read"), asOC))
}
