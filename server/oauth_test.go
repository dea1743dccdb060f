package server_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"keygate/api"
	"keygate/gateway"
	"keygate/keys"
	"keygate/server"
)

// oauthServer serves e's engine on a real listener, for OAuth 2.0 client
// libraries nobody here wrote, every exchange held to the document.
func oauthServer(t *testing.T, e *env) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(e.validated(e.handler))
	t.Cleanup(srv.Close)
	return srv
}

func form(values ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(values); i += 2 {
		v.Add(values[i], values[i+1])
	}
	return v.Encode()
}

func postForm(e *env, path, body string, header http.Header) *httptest.ResponseRecorder {
	return e.do(request{method: http.MethodPost, path: path, body: body, contentType: "application/x-www-form-urlencoded", header: header})
}

func basic(id, secret string) http.Header {
	raw := url.QueryEscape(id) + ":" + url.QueryEscape(secret)
	return http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(raw))}}
}

// wantOAuthError checks an RFC 6749 §5.2 error: status, code, and the
// headers that go with it.
func wantOAuthError(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status %d, want %d (%s)", rec.Code, status, rec.Body)
	}
	var body struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error != code || body.ErrorDescription == "" {
		t.Fatalf("body %s, want error %q with a description", rec.Body, code)
	}
	if rec.Header().Get("Cache-Control") != "no-store" || rec.Header().Get("Pragma") != "no-cache" {
		t.Errorf("Cache-Control %q, Pragma %q", rec.Header().Get("Cache-Control"), rec.Header().Get("Pragma"))
	}
	if status == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") != `Basic realm="keygate"` {
		t.Errorf("WWW-Authenticate = %q", rec.Header().Get("WWW-Authenticate"))
	}
}

// TestClientCredentialsWithAStockClient: golang.org/x/oauth2's
// clientcredentials gets a token with the principal's id and API key, in
// the header and in the body, and the token calls keygate's API.
func TestClientCredentialsWithAStockClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("Acme")
	co := e.createCompany(a.pair.JWT, `{"name":"Globex"}`)
	srv := oauthServer(t, e)
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		for _, client := range []struct{ id, secret, kind string }{{a.partner.ID, a.apiKey, "partner"}, {co.ID, co.APIKey, "company"}} {
			cfg := clientcredentials.Config{ClientID: client.id, ClientSecret: client.secret, TokenURL: srv.URL + "/oauth2/token", AuthStyle: style}
			tok, err := cfg.Token(context.Background())
			if err != nil {
				t.Fatalf("%s, style %d: %v", client.kind, style, err)
			}
			if tok.TokenType != "Bearer" || tok.RefreshToken != "" || time.Until(tok.Expiry) < 10*time.Minute {
				t.Errorf("token %+v: want Bearer, no refresh token, ~15 minutes", tok)
			}
			rec := e.get("/api/v1/auth/me", tok.AccessToken)
			wantStatus(t, rec, http.StatusOK)
			if me := decodeInto[map[string]any](t, rec); me["type"] != client.kind || me["id"] != client.id {
				t.Errorf("/auth/me with the OAuth token: %v", me)
			}
		}
	}
	// The response itself, exactly.
	rec := postForm(e, "/oauth2/token", form("grant_type", "client_credentials"), basic(a.partner.ID, a.apiKey))
	wantStatus(t, rec, http.StatusOK)
	wantMembers(t, rec.Body.Bytes(), "access_token", "token_type", "expires_in")
	if rec.Header().Get("Cache-Control") != "no-store" || rec.Header().Get("Pragma") != "no-cache" {
		t.Errorf("token response headers: %v", rec.Header())
	}
	if body := decodeInto[map[string]any](t, rec); body["expires_in"] != float64(accessTTL/time.Second) {
		t.Errorf("expires_in = %v", body["expires_in"])
	}
}

func TestClientCredentialsRefreshTokensWhenConfigured(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withConfig(func(c *gateway.Config) { c.OAuth.ClientCredentialsRefreshTokens = true }))
	a := e.tenant("Acme")
	rec := postForm(e, "/oauth2/token", form("grant_type", "client_credentials"), basic(a.partner.ID, a.apiKey))
	wantStatus(t, rec, http.StatusOK)
	wantMembers(t, rec.Body.Bytes(), "access_token", "token_type", "expires_in", "refresh_token")
}

// TestRefreshWithAStockClient: golang.org/x/oauth2 refreshes an expired
// token with a keygate refresh token (from either face), rotating it.
func TestRefreshWithAStockClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("Acme")
	srv := oauthServer(t, e)
	cfg := oauth2.Config{ClientID: a.partner.ID, ClientSecret: a.apiKey, Endpoint: oauth2.Endpoint{TokenURL: srv.URL + "/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader}}
	expired := &oauth2.Token{AccessToken: a.pair.JWT, RefreshToken: a.pair.RefreshToken, Expiry: time.Now().Add(-time.Minute)}
	tok, err := cfg.TokenSource(context.Background(), expired).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if tok.RefreshToken == "" || tok.RefreshToken == a.pair.RefreshToken || tok.AccessToken == a.pair.JWT {
		t.Fatalf("refreshed token %+v: want a new access token and the successor refresh token", tok)
	}
	wantStatus(t, e.get("/api/v1/auth/me", tok.AccessToken), http.StatusOK)
	// The successor works on keygate's own face too; the used one is gone.
	e.refresh(tok.RefreshToken)
	wantError(t, e.post("/api/v1/auth/refresh", refreshBody(a.pair.RefreshToken), ""), http.StatusUnauthorized, "unauthorized")
}

// TestOAuthErrors: each RFC 6749 §5.2 error keygate returns, with its
// status. keygate never returns unauthorized_client: every client may use
// both grants.
func TestOAuthErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("Acme")
	b := e.tenant("Bolt")
	co := e.createCompany(a.pair.JWT, `{"name":"Globex"}`)
	for _, tc := range []struct {
		name   string
		body   string
		header http.Header
		ctype  string
		status int
		code   string
	}{
		{"no grant_type", form("client_id", a.partner.ID, "client_secret", a.apiKey), nil, "", 400, "invalid_request"},
		{"repeated parameter", form("grant_type", "client_credentials", "grant_type", "client_credentials"), basic(a.partner.ID, a.apiKey), "", 400, "invalid_request"},
		{"JSON body", `{"grant_type":"client_credentials"}`, basic(a.partner.ID, a.apiKey), "application/json", 400, "invalid_request"},
		{"two authentication methods", form("grant_type", "client_credentials", "client_id", a.partner.ID, "client_secret", a.apiKey), basic(a.partner.ID, a.apiKey), "", 400, "invalid_request"},
		{"refresh without refresh_token", form("grant_type", "refresh_token"), basic(a.partner.ID, a.apiKey), "", 400, "invalid_request"},
		{"unsupported grant", form("grant_type", "password", "username", "u", "password", "p"), basic(a.partner.ID, a.apiKey), "", 400, "unsupported_grant_type"},
		{"scope", form("grant_type", "client_credentials", "scope", "orders:read"), basic(a.partner.ID, a.apiKey), "", 400, "invalid_scope"},
		{"no client authentication", form("grant_type", "client_credentials"), nil, "", 401, "invalid_client"},
		{"wrong secret", form("grant_type", "client_credentials"), basic(a.partner.ID, b.apiKey), "", 401, "invalid_client"},
		{"id that does not own the key", form("grant_type", "client_credentials"), basic(co.ID, a.apiKey), "", 401, "invalid_client"},
		{"malformed secret", form("grant_type", "client_credentials"), basic(a.partner.ID, "hunter2"), "", 401, "invalid_client"},
		{"secret in the body, no id", form("grant_type", "client_credentials", "client_secret", a.apiKey), nil, "", 401, "invalid_client"},
		{"not Basic", form("grant_type", "client_credentials"), http.Header{"Authorization": {"Bearer " + a.pair.JWT}}, "", 401, "invalid_client"},
		{"bad refresh token", form("grant_type", "refresh_token", "refresh_token", "rt_nope"), basic(a.partner.ID, a.apiKey), "", 400, "invalid_grant"},
		{"another client's refresh token", form("grant_type", "refresh_token", "refresh_token", b.pair.RefreshToken), basic(a.partner.ID, a.apiKey), "", 400, "invalid_grant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := request{method: http.MethodPost, path: "/oauth2/token", body: tc.body, header: tc.header, contentType: tc.ctype}
			if r.contentType == "" {
				r.contentType = "application/x-www-form-urlencoded"
			}
			wantOAuthError(t, e.do(r), tc.status, tc.code)
		})
	}
	// Another client's token changed nothing: its owner still refreshes.
	e.refresh(b.pair.RefreshToken)
}

// TestRevocation: RFC 7009 — a client revokes its refresh token's family;
// 200 whether or not the token was valid; another client's token changes
// nothing; an access token, its own included, is 200 and changes nothing
// (it ends at exp).
func TestRevocation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("Acme")
	b := e.tenant("Bolt")
	revoke := func(token string, h http.Header) *httptest.ResponseRecorder {
		return postForm(e, "/oauth2/revoke", form("token", token), h)
	}
	for _, junk := range []string{"nonsense", "rt_" + strings.Repeat("a", 80), a.apiKey} {
		wantStatus(t, revoke(junk, basic(a.partner.ID, a.apiKey)), http.StatusOK)
	}
	// Bolt's token through Acme's credentials: 200, and nothing happens.
	wantStatus(t, revoke(b.pair.RefreshToken, basic(a.partner.ID, a.apiKey)), http.StatusOK)
	next := e.refresh(b.pair.RefreshToken)
	// Acme's own: its family dies.
	wantStatus(t, revoke(a.pair.RefreshToken, basic(a.partner.ID, a.apiKey)), http.StatusOK)
	wantError(t, e.post("/api/v1/auth/refresh", refreshBody(a.pair.RefreshToken), ""), http.StatusUnauthorized, "unauthorized")
	for _, jwt := range []string{a.pair.JWT, b.pair.JWT} { // its own, and another's: no oracle either way
		rec := revoke(jwt, basic(a.partner.ID, a.apiKey))
		wantStatus(t, rec, http.StatusOK)
		if rec.Body.Len() != 0 || rec.Header().Get("Pragma") != "no-cache" {
			t.Errorf("revoking an access token: body %q, headers %v", rec.Body, rec.Header())
		}
		wantStatus(t, e.get("/api/v1/auth/me", jwt), http.StatusOK)
	}
	wantOAuthError(t, revoke(next.RefreshToken, basic(b.partner.ID, a.apiKey)), 401, "invalid_client")
	wantOAuthError(t, postForm(e, "/oauth2/revoke", form(), basic(a.partner.ID, a.apiKey)), 400, "invalid_request")
	e.refresh(next.RefreshToken) // Bolt's family lived through all of it
}

// TestIntrospection: RFC 7662 — the tenant rules on the main listener,
// active=false for every way a token stops, and the admin listener's
// introspection without client authentication.
func TestIntrospection(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("Acme")
	b := e.tenant("Bolt")
	co := e.createCompany(a.pair.JWT, `{"name":"Globex"}`)
	coPair := e.login(co.APIKey)
	introspect := func(token string, h http.Header) map[string]any {
		t.Helper()
		rec := postForm(e, "/oauth2/introspect", form("token", token), h)
		wantStatus(t, rec, http.StatusOK)
		return decodeInto[map[string]any](t, rec)
	}
	asA, asCo := basic(a.partner.ID, a.apiKey), basic(co.ID, co.APIKey)

	got := introspect(a.pair.JWT, asA)
	wantMembers(t, mustJSON(t, got), "active", "client_id", "sub", "exp", "iat", "nbf", "iss", "aud", "token_type", "jti", "kind", "partner_id")
	if got["active"] != true || got["sub"] != a.partner.ID || got["kind"] != "partner" || got["token_type"] != "Bearer" || got["iss"] != "keygate" {
		t.Errorf("Acme's own access token: %v", got)
	}
	if got := introspect(coPair.JWT, asA); got["active"] != true || got["company_id"] != co.ID || got["partner_id"] != a.partner.ID {
		t.Errorf("Acme's company's token, as Acme: %v", got)
	}
	if got := introspect(coPair.RefreshToken, asA); got["active"] != true || got["token_type"] != "refresh_token" || got["sub"] != co.ID {
		t.Errorf("Acme's company's refresh token, as Acme: %v", got)
	}
	for name, tc := range map[string]struct {
		token string
		as    http.Header
	}{
		"another partner's token":         {b.pair.JWT, asA},
		"another partner's refresh token": {b.pair.RefreshToken, asA},
		"the partner's token, as company": {a.pair.JWT, asCo},
		"junk":                            {"nonsense", asA},
		"an API key":                      {a.apiKey, asA},
	} {
		if got := introspect(tc.token, tc.as); len(got) != 1 || got["active"] != false {
			t.Errorf("%s: %v, want only active=false", name, got)
		}
	}
	wantOAuthError(t, postForm(e, "/oauth2/introspect", form("token", a.pair.JWT), basic(a.partner.ID, b.apiKey)), 401, "invalid_client")

	// Every way a token stops.
	inactive := func(name, token string, h http.Header) {
		t.Helper()
		if got := introspect(token, h); got["active"] != false {
			t.Errorf("%s: %v, want active=false", name, got)
		}
	}
	used := e.refresh(a.pair.RefreshToken)
	inactive("a used refresh token", a.pair.RefreshToken, asA)
	wantStatus(t, e.post("/api/v1/auth/logout", refreshBody(used.RefreshToken), ""), http.StatusNoContent)
	inactive("a refresh token of a revoked family", used.RefreshToken, asA)
	inactive("an access token of a logged-out session", a.pair.JWT, asA)
	inactive("the later access token of a logged-out session", used.JWT, asA)
	a.pair = e.login(a.apiKey) // a live session again
	wantStatus(t, e.delete(keyPath(co.ID, co.KeyID), a.pair.JWT), http.StatusNoContent)
	inactive("an access token of a revoked key", coPair.JWT, asA)
	inactive("a refresh token of a revoked key", coPair.RefreshToken, asA)
	co2 := e.createCompany(a.pair.JWT, `{"name":"Initech"}`)
	co2Pair := e.login(co2.APIKey)
	wantStatus(t, e.delete(companyPath(co2.ID), a.pair.JWT), http.StatusNoContent)
	inactive("a disabled company's token", co2Pair.JWT, asA)
	if err := e.keys.DisablePartner(t.Context(), keys.Operator, b.partner.ID); err != nil {
		t.Fatal(err)
	}
	// The admin listener: no client authentication, every tenant.
	admin := e.srv.Admin(server.AdminConfigForTests())
	adminIntrospect := func(token string) map[string]any {
		t.Helper()
		req := httptest.NewRequest(http.MethodPost, "/oauth2/introspect", strings.NewReader(form("token", token)))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		admin.ServeHTTP(rec, req)
		wantStatus(t, rec, http.StatusOK)
		return decodeInto[map[string]any](t, rec)
	}
	if got := adminIntrospect(a.pair.JWT); got["active"] != true || got["sub"] != a.partner.ID {
		t.Errorf("admin introspection of Acme's token: %v", got)
	}
	if got := adminIntrospect(b.pair.JWT); got["active"] != false {
		t.Errorf("admin introspection of a disabled partner's token: %v", got)
	}
	e.clock.Advance(accessTTL + leeway + time.Second)
	if got := adminIntrospect(a.pair.JWT); got["active"] != false {
		t.Errorf("admin introspection of an expired token: %v", got)
	}
}

// TestServerMetadata: with server.public_url, RFC 8414 metadata whose
// every URL resolves on keygate; without it, no document.
func TestServerMetadata(t *testing.T) {
	t.Parallel()
	wantStatus(t, newEnv(t).get("/.well-known/oauth-authorization-server", ""), http.StatusNotFound)

	var public string
	e := newEnv(t, withConfig(func(c *gateway.Config) { c.Server.PublicURL = "https://auth.example.com" }))
	rec := e.get("/.well-known/oauth-authorization-server", "")
	wantStatus(t, rec, http.StatusOK)
	md := decodeInto[map[string]any](t, rec)
	public = "https://auth.example.com"
	if md["issuer"] != "keygate" {
		t.Errorf("issuer = %v, want tokens.issuer", md["issuer"])
	}
	if rt, ok := md["response_types_supported"].([]any); !ok || len(rt) != 0 {
		t.Errorf("response_types_supported = %v, want []", md["response_types_supported"])
	}
	a := e.tenant("Acme")
	for _, member := range []string{"token_endpoint", "jwks_uri", "revocation_endpoint", "introspection_endpoint"} {
		u, _ := md[member].(string)
		path, ok := strings.CutPrefix(u, public)
		if !ok {
			t.Fatalf("%s = %q, not under %s", member, u, public)
		}
		method, body, h := http.MethodPost, form("token", "x"), basic(a.partner.ID, a.apiKey)
		if member == "token_endpoint" {
			body = form("grant_type", "client_credentials")
		}
		if member == "jwks_uri" {
			method, body, h = http.MethodGet, "", nil
		}
		r := request{method: method, path: path, body: body, header: h}
		if body != "" {
			r.contentType = "application/x-www-form-urlencoded"
		}
		if rec := e.do(r); rec.Code != http.StatusOK {
			t.Errorf("%s %s: %d %s", member, u, rec.Code, rec.Body)
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStockClientFromTheMetadataAlone: a golang.org/x/oauth2 client that
// knows only keygate's public URL reads the server metadata (RFC 8414),
// takes its token endpoint and authentication method from it, gets a
// token, and checks it at the metadata's introspection endpoint.
func TestStockClientFromTheMetadataAlone(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	public := "http://" + ln.Addr().String()
	e := newEnv(t, withConfig(func(c *gateway.Config) { c.Server.PublicURL, c.Tokens.Issuer = public, public }))
	srv := httptest.NewUnstartedServer(e.validated(e.handler))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	co := e.createCompany(e.tenant("Acme").pair.JWT, `{"name":"Globex"}`)

	resp, err := srv.Client().Get(public + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	var md api.ServerMetadata
	err = json.NewDecoder(resp.Body).Decode(&md)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("metadata: %d %v", resp.StatusCode, err)
	}
	if md.Issuer != public {
		t.Errorf("issuer %q, want %q", md.Issuer, public)
	}
	style := oauth2.AuthStyleInParams
	if slices.Contains(md.TokenEndpointAuthMethodsSupported, "client_secret_basic") {
		style = oauth2.AuthStyleInHeader
	}
	cfg := clientcredentials.Config{ClientID: co.ID, ClientSecret: co.APIKey, TokenURL: md.TokenEndpoint, AuthStyle: style}
	tok, err := cfg.Token(context.WithValue(t.Context(), oauth2.HTTPClient, srv.Client()))
	if err != nil {
		t.Fatalf("token from %s: %v", md.TokenEndpoint, err)
	}
	if iss := claims(t, tok.AccessToken)["iss"]; iss != md.Issuer {
		t.Errorf("the token's iss %v is not the metadata's issuer %q", iss, md.Issuer)
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, md.IntrospectionEndpoint, strings.NewReader(form("token", tok.AccessToken)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(co.ID), url.QueryEscape(co.APIKey))
	resp, err = srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var in api.Introspection
	err = json.NewDecoder(resp.Body).Decode(&in)
	resp.Body.Close()
	if err != nil || !in.Active || in.Sub != co.ID || in.Kind != "company" || in.Iss != md.Issuer {
		t.Errorf("introspection at %s: %+v %v", md.IntrospectionEndpoint, in, err)
	}
}

// oauthRefresh is a refresh_token grant of client (id, secret).
func oauthRefresh(e *env, id, secret, rt string) *httptest.ResponseRecorder {
	return postForm(e, "/oauth2/token", form("grant_type", "refresh_token", "refresh_token", rt), basic(id, secret))
}

// TestOAuthRefreshGraceAndReuse: the refresh_token grant rotates exactly
// as /api/v1/auth/refresh does: the token just used, again within the
// grace window, gets the identical successor; outside it, the reuse
// revokes the family, the successor included.
func TestOAuthRefreshGraceAndReuse(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("Acme")
	first := oauthRefresh(e, a.partner.ID, a.apiKey, a.pair.RefreshToken)
	wantStatus(t, first, http.StatusOK)
	next := decodeInto[api.OAuthToken](t, first)
	e.clock.Advance(reuseGrace / 2)
	again := decodeInto[api.OAuthToken](t, oauthRefresh(e, a.partner.ID, a.apiKey, a.pair.RefreshToken))
	if again.RefreshToken != next.RefreshToken || again.AccessToken == next.AccessToken {
		t.Errorf("a retry within the grace window: successor %q, want %q, with a fresh access token", again.RefreshToken, next.RefreshToken)
	}
	e.clock.Advance(reuseGrace)
	wantOAuthError(t, oauthRefresh(e, a.partner.ID, a.apiKey, a.pair.RefreshToken), http.StatusBadRequest, "invalid_grant")
	wantOAuthError(t, oauthRefresh(e, a.partner.ID, a.apiKey, next.RefreshToken), http.StatusBadRequest, "invalid_grant")
	wantError(t, e.post(refreshPath, refreshBody(next.RefreshToken), ""), http.StatusUnauthorized, "unauthorized")
	var reused bool
	for _, ev := range e.audit() {
		reused = reused || ev.Action == "refresh.reuse_detected"
	}
	if !reused {
		t.Error("no refresh.reuse_detected in the audit trail")
	}
}

// TestOAuthAnotherClientsUsedToken: a client presenting another's used
// refresh token changes nothing: no rotation, no reuse detection on the
// owner's family, whose live token still refreshes.
func TestOAuthAnotherClientsUsedToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b := e.tenant("Acme"), e.tenant("Bolt")
	live := e.refresh(b.pair.RefreshToken) // b's first token is used now
	e.clock.Advance(time.Minute)           // out of the grace window: from b, it would be reuse
	wantOAuthError(t, oauthRefresh(e, a.partner.ID, a.apiKey, b.pair.RefreshToken), http.StatusBadRequest, "invalid_grant")
	wantOAuthError(t, oauthRefresh(e, a.partner.ID, a.apiKey, live.RefreshToken), http.StatusBadRequest, "invalid_grant")
	e.refresh(live.RefreshToken)
	for _, ev := range e.audit() {
		if ev.Action == "refresh.reuse_detected" {
			t.Errorf("another client's presentation was taken for reuse: %+v", ev)
		}
	}
}

// TestIntrospectionOfOwnAndExpiredTokens: a company sees its own tokens
// active; a refresh token past its lifetime is inactive.
func TestIntrospectionOfOwnAndExpiredTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("Acme")
	co := e.createCompany(a.pair.JWT, `{"name":"Globex"}`)
	session := e.login(co.APIKey)
	asCo := basic(co.ID, co.APIKey)
	introspect := func(token string, h http.Header) map[string]any {
		t.Helper()
		rec := postForm(e, "/oauth2/introspect", form("token", token), h)
		wantStatus(t, rec, http.StatusOK)
		return decodeInto[map[string]any](t, rec)
	}
	if got := introspect(session.JWT, asCo); got["active"] != true || got["sub"] != co.ID || got["company_id"] != co.ID || got["token_type"] != "Bearer" {
		t.Errorf("the company's own access token: %v", got)
	}
	got := introspect(session.RefreshToken, asCo)
	wantMembers(t, mustJSON(t, got), "active", "client_id", "sub", "exp", "iat", "iss", "token_type", "kind", "partner_id", "company_id")
	if got["active"] != true || got["token_type"] != "refresh_token" || got["exp"] != float64(epoch.Add(refreshTTL).Unix()) {
		t.Errorf("the company's own refresh token: %v", got)
	}
	e.clock.Advance(refreshTTL + time.Second)
	if got := introspect(session.RefreshToken, asCo); len(got) != 1 || got["active"] != false {
		t.Errorf("an expired refresh token: %v, want only active=false", got)
	}
	// A successor, too, once its own tokens.refresh_ttl has passed.
	next := e.refresh(e.login(co.APIKey).RefreshToken)
	if got := introspect(next.RefreshToken, asCo); got["active"] != true {
		t.Errorf("a live successor: %v", got)
	}
	e.clock.Advance(refreshTTL + time.Second)
	if got := introspect(next.RefreshToken, asCo); got["active"] != false {
		t.Errorf("an expired successor: %v", got)
	}
}

// TestOAuthRateLimitParity: the OAuth endpoints sit under the limits of
// login and refresh, with the same exemptions: a client whose key keygate
// knows to be active passes an address's spent failure budget, and so
// does a refresh token whose MAC checks out (with such a key); only an
// authenticated client spends a family's refresh budget.
func TestOAuthRateLimitParity(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withLimits(server.RateLimits{LoginFailuresPerMinute: 2, RefreshPerFamilyPerMinute: 2}))
	a := e.tenant("Acme") // logged in: its key is known to be active
	_, fresh := e.partner("Fresh")
	const attacker = "198.51.100.7:5000"
	from := func(path, body string, h http.Header) *httptest.ResponseRecorder {
		return e.do(request{method: http.MethodPost, path: path, body: body, contentType: "application/x-www-form-urlencoded", header: h, remote: attacker})
	}
	asA := basic(a.partner.ID, a.apiKey)
	for range 2 {
		wantOAuthError(t, from("/oauth2/introspect", form("token", "x"), basic(a.partner.ID, "pk_guess")), http.StatusUnauthorized, "invalid_client")
	}
	// The address's budget is spent: guesses are refused unread...
	for _, path := range []string{"/oauth2/token", "/oauth2/revoke", "/oauth2/introspect"} {
		rec := from(path, form("grant_type", "client_credentials", "token", "x"), basic(a.partner.ID, "pk_guess"))
		wantOAuthError(t, rec, http.StatusTooManyRequests, "invalid_request")
		if rec.Header().Get("Retry-After") == "" {
			t.Errorf("%s: 429 without Retry-After", path)
		}
	}
	wantOAuthError(t, from("/oauth2/token", form("grant_type", "refresh_token", "refresh_token", "rt_guess"), asA), http.StatusTooManyRequests, "invalid_request")
	wantOAuthError(t, from("/oauth2/token", form("grant_type", "refresh_token", "refresh_token", a.pair.RefreshToken), basic(a.partner.ID, fresh)), http.StatusTooManyRequests, "invalid_request")
	// ...but a known active key is no guess, nor is a MAC-valid refresh
	// token presented with one.
	wantStatus(t, from("/oauth2/introspect", form("token", a.pair.JWT), asA), http.StatusOK)
	wantStatus(t, from("/oauth2/revoke", form("token", "x"), asA), http.StatusOK)
	wantStatus(t, from("/oauth2/token", form("grant_type", "client_credentials"), asA), http.StatusOK)
	rec := from("/oauth2/token", form("grant_type", "refresh_token", "refresh_token", a.pair.RefreshToken), asA)
	wantStatus(t, rec, http.StatusOK)
	rt := decodeInto[api.OAuthToken](t, rec).RefreshToken

	// Someone holding Acme's refresh token without its credentials cannot
	// drain the family's budget: refused as a client, spending nothing of
	// the family's.
	for i := range 5 {
		rec := e.do(request{method: http.MethodPost, path: "/oauth2/token", body: form("grant_type", "refresh_token", "refresh_token", rt),
			contentType: "application/x-www-form-urlencoded", header: basic(a.partner.ID, "pk_guess"), remote: fmt.Sprintf("203.0.113.%d:1", i)})
		wantOAuthError(t, rec, http.StatusUnauthorized, "invalid_client")
	}
	rt = decodeInto[api.OAuthToken](t, oauthRefresh(e, a.partner.ID, a.apiKey, rt)).RefreshToken // the family's second this minute
	wantOAuthError(t, oauthRefresh(e, a.partner.ID, a.apiKey, rt), http.StatusTooManyRequests, "invalid_request")
}

// TestOAuthHTTPLayerKeepsKeygatesShape: what the HTTP layer answers before
// an OAuth endpoint runs is keygate's error shape, as on every path (the
// document says so): 413 for a body over the limit, declared or streamed,
// and 405 with Allow for another method. A panic inside an endpoint is a
// 500 in RFC 6749's shape.
func TestOAuthHTTPLayerKeepsKeygatesShape(t *testing.T) {
	t.Parallel()
	const limit = 1024
	e := newEnv(t, withMaxBody(limit))
	a := e.tenant("Acme")
	big := form("grant_type", "client_credentials", "pad", strings.Repeat("a", limit))
	for _, path := range []string{"/oauth2/token", "/oauth2/revoke", "/oauth2/introspect"} {
		wantError(t, postForm(e, path, big, basic(a.partner.ID, a.apiKey)), http.StatusRequestEntityTooLarge, "payload_too_large")
		req := httptest.NewRequest(http.MethodPost, path, struct{ io.Reader }{strings.NewReader(big)})
		req.ContentLength = -1 // streamed: the limit holds while the form is read
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header["Authorization"] = basic(a.partner.ID, a.apiKey)["Authorization"]
		wantError(t, e.serve(req), http.StatusRequestEntityTooLarge, "payload_too_large")
		for _, method := range []string{http.MethodGet, http.MethodPut} {
			rec := e.do(request{method: method, path: path})
			wantError(t, rec, http.StatusMethodNotAllowed, "method_not_allowed")
			if rec.Header().Get("Allow") != "POST" {
				t.Errorf("%s %s: Allow %q", method, path, rec.Header().Get("Allow"))
			}
		}
		rec := e.do(request{method: http.MethodHead, path: path})
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "POST" {
			t.Errorf("HEAD %s: %d, Allow %q", path, rec.Code, rec.Header().Get("Allow"))
		}
	}
	// A route of the test's own, on the OAuth face, that panics.
	e.handler.(*gin.Engine).POST("/oauth2/explode", func(*gin.Context) { panic("the endpoint exploded") })
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/oauth2/explode", nil))
	if rec.Code != http.StatusInternalServerError || rec.Body.String() != `{"error":"server_error","error_description":"internal error"}` {
		t.Errorf("a panic on the OAuth face: %d %s", rec.Code, rec.Body)
	}
}

// TestAdminListener: the admin handler answers like the main listener
// where they overlap: HEAD wherever GET, 405 with Allow for another
// method, 404 in the error shape; profiles only when asked for.
func TestAdminListener(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	serve := func(h http.Handler, method, path string) *httptest.ResponseRecorder {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		return rec
	}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "up 1\n") })
	off := e.srv.Admin(server.AdminConfig{Metrics: metrics})
	on := e.srv.Admin(server.AdminConfig{Metrics: metrics, Pprof: true})
	for _, h := range []http.Handler{off, on} {
		wantStatus(t, serve(h, http.MethodGet, "/metrics"), http.StatusOK)
		wantStatus(t, serve(h, http.MethodHead, "/metrics"), http.StatusOK) // net/http drops the body
		for _, tc := range []struct{ method, path, allow string }{
			{http.MethodPost, "/metrics", "GET, HEAD"},
			{http.MethodGet, "/oauth2/introspect", "POST"},
		} {
			rec := serve(h, tc.method, tc.path)
			wantError(t, rec, http.StatusMethodNotAllowed, "method_not_allowed")
			if rec.Header().Get("Allow") != tc.allow {
				t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, rec.Header().Get("Allow"), tc.allow)
			}
		}
		rec := serve(h, http.MethodGet, "/api/v1/auth/me")
		wantError(t, rec, http.StatusNotFound, "not_found")
		if rec.Header().Get("X-Request-ID") == "" || rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("the admin listener's 404 lacks the main listener's headers: %v", rec.Header())
		}
	}
	// Profiles only with admin.pprof.
	wantError(t, serve(off, http.MethodGet, "/debug/pprof/"), http.StatusNotFound, "not_found")
	wantError(t, serve(off, http.MethodGet, "/debug/pprof/heap"), http.StatusNotFound, "not_found")
	wantStatus(t, serve(on, http.MethodGet, "/debug/pprof/"), http.StatusOK)
	wantStatus(t, serve(on, http.MethodGet, "/debug/pprof/heap"), http.StatusOK)
	if rec := serve(on, http.MethodHead, "/debug/pprof/"); rec.Code != http.StatusOK {
		t.Errorf("HEAD /debug/pprof/: %d", rec.Code)
	}
	// The main listener serves neither.
	for _, path := range []string{"/metrics", "/debug/pprof/"} {
		wantError(t, e.get(path, ""), http.StatusNotFound, "not_found")
	}
}
