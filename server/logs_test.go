package server_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"keygate/server"
)

func TestPanicIsA500WithoutHeadersInLogs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withJWKS(func(func() []byte) func() []byte {
		return func() []byte { panic("jwks source exploded") }
	}))
	a := e.tenant("Acme")
	secretHeaders := http.Header{
		"Authorization": {"Bearer " + a.pair.JWT},
		"Cookie":        {"session=cookie-secret-value"},
		"X-Api-Key":     {a.apiKey},
	}
	rec := e.do(request{method: http.MethodGet, path: "/.well-known/jwks.json", token: a.pair.JWT, header: secretHeaders})
	if msg := wantError(t, rec, http.StatusInternalServerError, "internal_error"); msg != "internal error" {
		t.Errorf("message = %q, want the fixed %q", msg, "internal error")
	}
	if strings.Contains(rec.Body.String(), "exploded") {
		t.Errorf("the panic's detail reached the client: %s", rec.Body)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q on a 500: a shared cache could keep the failure", cc)
	}
	id := rec.Header().Get("X-Request-ID")

	var panicLogged, accessLogged bool
	for _, r := range e.logs.records(t) {
		if r["request_id"] != id {
			continue
		}
		switch r["msg"] {
		case "panic":
			panicLogged = r["level"] == "ERROR" && strings.Contains(r["panic"].(string), "exploded")
		case "request":
			accessLogged = r["status"] == float64(http.StatusInternalServerError) && r["route"] == "/.well-known/jwks.json"
		}
	}
	if !panicLogged {
		t.Errorf("no ERROR record of the panic with request_id %s in\n%s", id, e.logs)
	}
	if !accessLogged {
		t.Errorf("no access line with status 500 for request %s in\n%s", id, e.logs)
	}
	logs := e.logs.String()
	for _, secret := range []string{a.pair.JWT, a.apiKey, "cookie-secret-value", strings.Split(a.pair.JWT, ".")[2]} {
		if strings.Contains(logs, secret) {
			t.Errorf("a request header's value reached the logs: %.20s...", secret)
		}
	}
	// The server carries on.
	wantStatus(t, e.get("/health", ""), http.StatusOK)
	wantStatus(t, e.get("/api/v1/auth/me", a.pair.JWT), http.StatusOK)
}

// secretShapes match any keygate secret, whether or not the test knows it.
var secretShapes = regexp.MustCompile(`(pk|ck|rt)_[0-9A-Za-z]{16,}|eyJ[0-9A-Za-z_-]{8,}`)

// TestLogsHoldNoSecrets captures every log record of a full session,
// failures included, and looks for every secret handed out or sent.
func TestLogsHoldNoSecrets(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withLimits(server.RateLimits{LoginFailuresPerMinute: 5, APIPerMinute: 100}))
	var secrets []string
	keep := func(s ...string) { secrets = append(secrets, s...) }
	pair := func(p tokenPair) tokenPair { keep(p.JWT, p.RefreshToken); return p }

	a := e.tenant("Acme") // minted as the operator's CLI does
	keep(a.apiKey)
	pair(a.pair)
	wantStatus(t, e.get("/api/v1/auth/me", a.pair.JWT), http.StatusOK)
	co := e.createCompany(a.pair.JWT, `{"name":"Globex","externalId":"g-1"}`)
	keep(co.APIKey)
	companySession := pair(e.login(co.APIKey))
	wantStatus(t, e.get("/api/v1/auth/me", companySession.JWT), http.StatusOK)
	second := decodeInto[newKeyBody](t, e.post(keysPath(co.ID), "", a.pair.JWT))
	keep(second.APIKey)
	_, fresh := e.partner("Fresh") // a valid key that never logged in
	keep(fresh)
	wantStatus(t, e.get(keysPath(co.ID), a.pair.JWT), http.StatusOK)
	wantStatus(t, e.get(companiesPath+"?limit=1", a.pair.JWT), http.StatusOK)
	next := pair(e.refresh(companySession.RefreshToken))
	wantStatus(t, e.post(logoutPath, refreshBody(next.RefreshToken), ""), http.StatusNoContent)

	// Failures, each carrying a secret or a near miss of one.
	failures := []struct {
		r      request
		status int
	}{
		{request{method: http.MethodPost, path: "/api/v1/auth/login", body: loginBody(a.apiKey[:len(a.apiKey)-1])}, http.StatusUnauthorized},
		{request{method: http.MethodPost, path: "/api/v1/auth/login", body: loginBody(flip(co.APIKey, 20))}, http.StatusUnauthorized},
		{request{method: http.MethodPost, path: "/api/v1/auth/login", body: `{"apiKey":"x",` + jsonString(second.APIKey) + `:1}`}, http.StatusBadRequest},
		{request{method: http.MethodPost, path: "/api/v1/auth/login", body: `{"apiKey":` + jsonString(a.apiKey) + `,"apiKey":"x"}`}, http.StatusBadRequest},
		{request{method: http.MethodPost, path: "/api/v1/auth/login", body: loginBody(a.apiKey), contentType: "text/plain"}, http.StatusUnsupportedMediaType},
		{request{method: http.MethodPost, path: refreshPath, body: refreshBody(companySession.RefreshToken)}, http.StatusUnauthorized}, // reused, after logout
		{request{method: http.MethodPost, path: refreshPath, body: refreshBody(a.apiKey)}, http.StatusUnauthorized},
		{request{method: http.MethodPost, path: refreshPath, body: refreshBody(a.pair.JWT)}, http.StatusUnauthorized},
		{request{method: http.MethodGet, path: "/api/v1/auth/me", token: a.pair.JWT + "x"}, http.StatusUnauthorized},
		{request{method: http.MethodGet, path: "/api/v1/auth/me", token: a.pair.RefreshToken}, http.StatusUnauthorized},
		{request{method: http.MethodGet, path: companiesPath, token: companySession.JWT}, http.StatusForbidden},
		{request{method: http.MethodGet, path: companiesPath + "?cursor=" + a.apiKey, token: a.pair.JWT}, http.StatusBadRequest},
		{request{method: http.MethodGet, path: "/nope?apiKey=" + a.apiKey}, http.StatusNotFound},
		{request{method: http.MethodPost, path: "/api/v1/auth/login", body: loginBody(fresh)}, http.StatusTooManyRequests},
	}
	for _, f := range failures {
		wantStatus(t, e.do(f.r), f.status)
	}
	e.audit() // flush the recorder, which logs too

	logs := e.logs.String()
	records := e.logs.records(t)
	requests := 0
	for _, r := range records {
		if r["msg"] == "request" {
			requests++
		}
	}
	if want := 10 + len(failures); requests != want {
		t.Fatalf("%d access lines captured, want %d: the capture is broken\n%s", requests, want, logs)
	}
	for _, s := range secrets {
		for _, piece := range []string{s, s[3:19], s[len(s)-16:]} {
			if strings.Contains(logs, piece) {
				t.Errorf("the logs hold a secret (%.10s...)", piece)
			}
		}
	}
	if m := secretShapes.FindAllString(logs, -1); len(m) > 0 {
		t.Errorf("the logs hold secret-shaped strings: %q", m)
	}
}
