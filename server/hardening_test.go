package server_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"keygate/server"
)

// endpoint is a POST endpoint that decodes a JSON body, with a body it
// accepts and the status it answers that body with.
type endpoint struct {
	path, member, value, token string
	okStatus                   int
}

func (ep endpoint) body(members ...string) string {
	return "{" + strings.Join(members, ",") + "}"
}

func (ep endpoint) valid() string { return ep.body(jsonString(ep.member) + ":" + jsonString(ep.value)) }

// postEndpoints returns one of each decoding endpoint, each with a fresh
// credential so that a positive control can spend it.
func postEndpoints(e *env) []endpoint {
	a := e.tenant("Hostile Input Partner")
	second := e.login(a.apiKey)
	return []endpoint{
		{path: "/api/v1/auth/login", member: "apiKey", value: a.apiKey, okStatus: http.StatusOK},
		{path: refreshPath, member: "refreshToken", value: a.pair.RefreshToken, okStatus: http.StatusOK},
		{path: logoutPath, member: "refreshToken", value: second.RefreshToken, okStatus: http.StatusNoContent},
		{path: companiesPath, member: "name", value: "Globex", token: a.pair.JWT, okStatus: http.StatusCreated},
	}
}

func TestBodyLimit(t *testing.T) {
	t.Parallel()
	const limit = 1024
	e := newEnv(t, withMaxBody(limit))
	for _, ep := range postEndpoints(e) {
		pad := func(n int) string {
			// A well-formed body of exactly n bytes: the value padded with spaces.
			b := ep.valid()
			return b[:len(b)-1] + strings.Repeat(" ", n-len(b)) + "}"
		}
		t.Run(ep.path+" declared", func(t *testing.T) {
			rec := e.do(request{method: http.MethodPost, path: ep.path, body: pad(limit + 1), token: ep.token})
			wantError(t, rec, http.StatusRequestEntityTooLarge, "payload_too_large")
		})
		t.Run(ep.path+" chunked", func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, ep.path, struct{ io.Reader }{strings.NewReader(pad(limit + 1))})
			req.ContentLength = -1 // unknown length: the limit must hold while reading
			req.Header.Set("Content-Type", "application/json")
			if ep.token != "" {
				req.Header.Set("R-Auth", ep.token)
			}
			wantError(t, e.serve(req), http.StatusRequestEntityTooLarge, "payload_too_large")
		})
		t.Run(ep.path+" declared, refused unread", func(t *testing.T) {
			body := &countingReader{r: strings.NewReader(pad(limit + 1))}
			req := httptest.NewRequest(http.MethodPost, ep.path, body)
			req.ContentLength = limit + 1
			req.Header.Set("Content-Type", "application/json")
			if ep.token != "" {
				req.Header.Set("R-Auth", ep.token)
			}
			wantError(t, e.serve(req), http.StatusRequestEntityTooLarge, "payload_too_large")
			if body.n != 0 {
				t.Errorf("%d bytes of a body declared too large were read", body.n)
			}
		})
		t.Run(ep.path+" megabytes", func(t *testing.T) {
			rec := e.do(request{method: http.MethodPost, path: ep.path, body: `{"` + ep.member + `":"` + strings.Repeat("A", 8<<20) + `"}`, token: ep.token})
			wantError(t, rec, http.StatusRequestEntityTooLarge, "payload_too_large")
		})
		t.Run(ep.path+" at the limit", func(t *testing.T) {
			rec := e.do(request{method: http.MethodPost, path: ep.path, body: pad(limit), token: ep.token})
			wantStatus(t, rec, ep.okStatus)
		})
	}

	t.Run("default limit is 64 KiB", func(t *testing.T) {
		e := newEnv(t)
		body := `{"apiKey":"` + strings.Repeat("A", 64<<10) + `"}`
		wantError(t, e.post("/api/v1/auth/login", body, ""), http.StatusRequestEntityTooLarge, "payload_too_large")
		body = `{"apiKey":"` + strings.Repeat("A", 60<<10) + `"}`
		wantError(t, e.post("/api/v1/auth/login", body, ""), http.StatusUnauthorized, "unauthorized")
	})
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestUnsupportedMediaType(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	eps := postEndpoints(e)
	for _, ep := range eps {
		for _, ct := range []string{"", "text/plain", "text/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
			"application/jsonx", "application/json-seq", "application/problem+json", "application", "json", ";;;", "application/json; charset"} {
			t.Run(ep.path+" "+ct, func(t *testing.T) {
				req := httptest.NewRequest(http.MethodPost, ep.path, strings.NewReader(ep.valid()))
				if ct != "" {
					req.Header.Set("Content-Type", ct)
				}
				if ep.token != "" {
					req.Header.Set("R-Auth", ep.token)
				}
				wantError(t, e.serve(req), http.StatusUnsupportedMediaType, "unsupported_media_type")
			})
		}
	}
	// Parameters and case do not matter: these are JSON.
	for i, ct := range []string{"application/json; charset=utf-8", "Application/JSON", "application/json ; charset=UTF-8", "application/json"} {
		ep := eps[i]
		t.Run("accepted "+ct, func(t *testing.T) {
			wantStatus(t, e.do(request{method: http.MethodPost, path: ep.path, body: ep.valid(), contentType: ct, token: ep.token}), ep.okStatus)
		})
	}
}

func TestHostileJSON(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, ep := range postEndpoints(e) {
		m, v := jsonString(ep.member), jsonString(ep.value)
		escaped := `"` + fmt.Sprintf(`\u%04x`, ep.member[0]) + ep.member[1:] + `"`
		deep := strings.Repeat("[", 30_000) + strings.Repeat("]", 30_000)
		deepObj := strings.Repeat(`{"a":`, 10_001) + "1" + strings.Repeat("}", 10_001)
		bodies := map[string]string{
			"empty object":             `{}`,
			"malformed":                `{` + m + `:}`,
			"truncated":                `{` + m + `:` + v,
			"truncated string":         `{` + m + `:"` + ep.value[:4],
			"only an opening brace":    `{`,
			"deeply nested value":      `{` + m + `:` + deep + `}`,
			"deeply nested objects":    `{` + m + `:` + deepObj + `}`,
			"deeply nested array":      deep,
			"empty array":              `[]`,
			"array of the object":      `[{` + m + `:` + v + `}]`,
			"string":                   v,
			"number":                   `42`,
			"null":                     `null`,
			"true":                     `true`,
			"invalid UTF-8 in value":   `{` + m + `:"` + ep.value + "\xff" + `"}`,
			"invalid UTF-8 in name":    `{"` + ep.member + "\xfe" + `":` + v + `}`,
			"overlong UTF-8":           `{` + m + `:"` + "\xc0\xaf" + `"}`,
			"UTF-16 body":              "\xff\xfe{\x00}\x00",
			"byte order mark":          "\xef\xbb\xbf{" + m + `:` + v + `}`,
			"duplicate member":         `{` + m + `:` + v + `,` + m + `:` + v + `}`,
			"duplicate, escaped name":  `{` + m + `:` + v + `,` + escaped + `:` + v + `}`,
			"upper case member":        `{` + strings.ToUpper(m) + `:` + v + `}`,
			"all lower case member":    `{"` + strings.ToLower(ep.member) + `x":` + v + `}`,
			"title case member":        `{"` + strings.ToUpper(ep.member[:1]) + ep.member[1:] + `":` + v + `}`,
			"case variant beside":      `{` + m + `:` + v + `,` + strings.ToUpper(m) + `:` + v + `}`,
			"unknown member":           `{` + m + `:` + v + `,"extra":1}`,
			"empty member name":        `{` + m + `:` + v + `,"":1}`,
			"two objects":              `{` + m + `:` + v + `}{` + m + `:` + v + `}`,
			"trailing garbage":         `{` + m + `:` + v + `} x`,
			"trailing comma":           `{` + m + `:` + v + `,}`,
			"leading comma":            `{,` + m + `:` + v + `}`,
			"missing colon":            `{` + m + ` ` + v + `}`,
			"single quotes":            `{'` + ep.member + `':'x'}`,
			"comment":                  `{` + m + `:` + v + `/* hi */}`,
			"NaN":                      `{` + m + `:NaN}`,
			"unquoted name":            `{` + ep.member + `:` + v + `}`,
			"value is an object":       `{` + m + `:{}}`,
			"control char in string":   `{` + m + `:"a` + "\x01" + `b"}`,
			"NUL byte":                 "\x00",
			"whitespace then garbage":  "   \n\t x",
			"huge number":              `{` + m + `:1` + strings.Repeat("0", 5000) + `}`,
			"long unknown member name": `{"` + strings.Repeat("n", 10_000) + `":1}`,
		}
		for name, body := range bodies {
			t.Run(ep.path+" "+name, func(t *testing.T) {
				wantError(t, e.do(request{method: http.MethodPost, path: ep.path, body: body, token: ep.token}), http.StatusBadRequest, "validation_error")
			})
		}
		// The same member once, spelled right, is accepted: the refusals
		// above were about the hostile parts.
		t.Run(ep.path+" valid", func(t *testing.T) {
			wantStatus(t, e.do(request{method: http.MethodPost, path: ep.path, body: " \n" + ep.valid() + "\n ", token: ep.token}), ep.okStatus)
		})
	}
}

var requestIDPattern = regexp.MustCompile(`^[0-9a-f]{24}$`)

func TestRequestID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withMaxBody(64))
	_, apiKey := e.partner("Acme")
	forged := "forged-request-id-0123456789"
	requests := []request{
		{method: http.MethodGet, path: "/health"},
		{method: http.MethodGet, path: "/nope"},
		{method: http.MethodPost, path: "/api/v1/auth/login", body: loginBody(apiKey)},
		{method: http.MethodPost, path: "/api/v1/auth/login", body: loginBody("pk_bad")},
		{method: http.MethodPost, path: "/api/v1/auth/login", body: loginBody(apiKey + strings.Repeat(" ", 64))},
		{method: http.MethodPost, path: "/api/v1/auth/login", body: "x", contentType: "text/plain"},
		{method: http.MethodGet, path: "/api/v1/auth/me"},
		{method: http.MethodGet, path: "/.well-known/jwks.json"},
	}
	seen := map[string]bool{}
	for _, r := range requests {
		for _, h := range []string{"X-Request-ID", "X-Request-Id", "X-Correlation-ID"} {
			r.header = http.Header{h: {forged}}
			rec := e.do(r)
			id := rec.Header().Get("X-Request-ID")
			if !requestIDPattern.MatchString(id) {
				t.Errorf("%s %s (%d): X-Request-ID = %q, want 24 hex digits", r.method, r.path, rec.Code, id)
			}
			if vs := rec.Header().Values("X-Request-ID"); len(vs) != 1 {
				t.Errorf("X-Request-ID sent %d times: %v", len(vs), vs)
			}
			if seen[id] {
				t.Errorf("request ID %s repeated", id)
			}
			seen[id] = true
		}
	}
	logs := e.logs.String()
	if strings.Contains(logs, forged) {
		t.Error("the client's request ID reached the logs")
	}
	// Every request's access line carries the ID it was answered with.
	logged := map[string]bool{}
	for _, rec := range e.logs.records(t) {
		if rec["msg"] == "request" {
			id, _ := rec["request_id"].(string)
			logged[id] = true
		}
	}
	for id := range seen {
		if !logged[id] {
			t.Errorf("no access line with request_id %s", id)
		}
	}
}

func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withMaxBody(256))
	a := e.tenant("Acme")
	co := e.createCompany(a.pair.JWT, `{"name":"Globex"}`)
	cases := []struct {
		name  string
		r     request
		cache string
	}{
		{"health", request{method: http.MethodGet, path: "/health"}, "no-store"},
		{"ready", request{method: http.MethodGet, path: "/ready"}, "no-store"},
		{"jwks", request{method: http.MethodGet, path: "/.well-known/jwks.json"}, "public, max-age=300"},
		{"login", request{method: http.MethodPost, path: "/api/v1/auth/login", body: loginBody(a.apiKey)}, "no-store"},
		{"login refused", request{method: http.MethodPost, path: "/api/v1/auth/login", body: loginBody("pk_x")}, "no-store"},
		{"refresh", request{method: http.MethodPost, path: refreshPath, body: refreshBody(e.login(a.apiKey).RefreshToken)}, "no-store"},
		{"me", request{method: http.MethodGet, path: "/api/v1/auth/me", token: a.pair.JWT}, "no-store"},
		{"create company", request{method: http.MethodPost, path: companiesPath, body: `{"name":"x"}`, token: a.pair.JWT}, "no-store"},
		{"company key", request{method: http.MethodPost, path: keysPath(co.ID), token: a.pair.JWT}, "no-store"},
		{"list", request{method: http.MethodGet, path: companiesPath, token: a.pair.JWT}, "no-store"},
		{"not found", request{method: http.MethodGet, path: "/nope"}, "no-store"},
		{"too large", request{method: http.MethodPost, path: "/api/v1/auth/login", body: loginBody(strings.Repeat("A", 300))}, "no-store"},
		{"media type", request{method: http.MethodPost, path: "/api/v1/auth/login", body: "x", contentType: "text/plain"}, "no-store"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.do(tc.r)
			if rec.Code >= 500 {
				t.Fatalf("status %d", rec.Code)
			}
			if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options = %q, want nosniff", got)
			}
			if got := rec.Header().Get("Cache-Control"); got != tc.cache {
				t.Errorf("Cache-Control = %q, want %q", got, tc.cache)
			}
		})
	}
}

// retryAfter checks a 429 and returns its Retry-After in seconds.
func retryAfter(t *testing.T, rec *httptest.ResponseRecorder) int {
	t.Helper()
	wantError(t, rec, http.StatusTooManyRequests, "rate_limited")
	v := rec.Header().Get("Retry-After")
	secs, err := strconv.Atoi(v)
	if err != nil || secs < 1 {
		t.Fatalf("Retry-After = %q, want whole seconds, at least 1", v)
	}
	return secs
}

func loginFrom(e *env, apiKey, remote string, header http.Header) *httptest.ResponseRecorder {
	e.t.Helper()
	return e.do(request{method: http.MethodPost, path: "/api/v1/auth/login", body: loginBody(apiKey), remote: remote, header: header})
}

func refreshFrom(e *env, rt, remote string, header http.Header) *httptest.ResponseRecorder {
	e.t.Helper()
	return e.do(request{method: http.MethodPost, path: refreshPath, body: refreshBody(rt), remote: remote, header: header})
}

func TestFailedLoginLimitPerAddress(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withLimits(server.RateLimits{LoginFailuresPerMinute: 3}))
	a := e.tenant("Acme")
	const attacker, bystander = "198.51.100.7:5000", "203.0.113.9:6000"

	for i := range 3 {
		wantError(t, loginFrom(e, fmt.Sprintf("pk_guess%d", i), attacker, nil), http.StatusUnauthorized, "unauthorized")
	}
	// The budget is spent: guesses from the address are refused without a
	// lookup until a token refills...
	if secs := retryAfter(t, loginFrom(e, "pk_guess", attacker, nil)); secs != 20 {
		t.Errorf("Retry-After = %d, want 20 (one of 3 per minute)", secs)
	}
	retryAfter(t, refreshFrom(e, "rt_guess", attacker, nil))
	// ...and a valid key that has not logged in lately too (telling it
	// from a guess would take a lookup)...
	_, fresh := e.partner("Fresh")
	retryAfter(t, loginFrom(e, fresh, attacker, nil))
	// ...but a key keygate knows to be valid is no guess: a partner behind
	// the attacker's NAT still logs in and refreshes, and spends nothing.
	for range 3 {
		wantStatus(t, loginFrom(e, a.apiKey, attacker, nil), http.StatusOK)
	}
	wantStatus(t, refreshFrom(e, a.pair.RefreshToken, attacker, nil), http.StatusOK)
	// Another address is not affected, and successes spend nothing.
	for range 10 {
		wantStatus(t, loginFrom(e, a.apiKey, bystander, nil), http.StatusOK)
	}
	// Time refills the bucket.
	e.clock.Advance(19 * time.Second)
	if secs := retryAfter(t, loginFrom(e, "pk_guess", attacker, nil)); secs != 1 {
		t.Errorf("Retry-After = %d after 19s, want 1", secs)
	}
	e.clock.Advance(time.Second)
	wantStatus(t, loginFrom(e, fresh, attacker, nil), http.StatusOK)

	// Failed refreshes spend the same budget.
	const other = "198.51.100.8:5000"
	for range 3 {
		wantError(t, refreshFrom(e, "rt_nothing", other, nil), http.StatusUnauthorized, "unauthorized")
	}
	retryAfter(t, loginFrom(e, "pk_guess", other, nil))
	retryAfter(t, refreshFrom(e, "rt_guess", other, nil))
}

func TestLoginLimitPerKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withLimits(server.RateLimits{LoginPerKeyPerMinute: 2}))
	_, k1 := e.partner("One")
	_, k2 := e.partner("Two")
	wantStatus(t, loginFrom(e, k1, "192.0.2.1:1", nil), http.StatusOK)
	wantStatus(t, loginFrom(e, k1, "192.0.2.2:1", nil), http.StatusOK)
	// Changing address does not help: the limit follows the key.
	if secs := retryAfter(t, loginFrom(e, k1, "192.0.2.3:1", nil)); secs != 30 {
		t.Errorf("Retry-After = %d, want 30 (one of 2 per minute)", secs)
	}
	wantStatus(t, loginFrom(e, k2, "192.0.2.3:1", nil), http.StatusOK)
	e.clock.Advance(30 * time.Second)
	wantStatus(t, loginFrom(e, k1, "192.0.2.3:1", nil), http.StatusOK)
	retryAfter(t, loginFrom(e, k1, "192.0.2.3:1", nil))
}

func TestRefreshLimitPerFamily(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withLimits(server.RateLimits{RefreshPerFamilyPerMinute: 2}))
	a := e.tenant("Acme")
	other := e.login(a.apiKey)
	rt := a.pair.RefreshToken
	for range 2 {
		rt = e.refresh(rt).RefreshToken
	}
	// The family's budget is spent, whichever generation asks.
	retryAfter(t, refreshFrom(e, rt, "", nil))
	// Another family of the same partner has its own.
	e.refresh(other.RefreshToken)
	e.clock.Advance(30 * time.Second)
	e.refresh(rt)
}

func TestAPILimitPerPrincipal(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withLimits(server.RateLimits{APIPerMinute: 3}))
	a, b := e.tenant("A"), e.tenant("B")
	wantStatus(t, e.get("/api/v1/auth/me", a.pair.JWT), http.StatusOK)
	wantStatus(t, e.get(companiesPath, a.pair.JWT), http.StatusOK)
	// A second session of the same principal shares the budget.
	wantStatus(t, e.get("/api/v1/auth/me", e.login(a.apiKey).JWT), http.StatusOK)
	if secs := retryAfter(t, e.get("/api/v1/auth/me", a.pair.JWT)); secs != 20 {
		t.Errorf("Retry-After = %d, want 20", secs)
	}
	retryAfter(t, e.post(companiesPath, `{"name":"x"}`, a.pair.JWT))
	wantStatus(t, e.get("/api/v1/auth/me", b.pair.JWT), http.StatusOK)
	e.clock.Advance(20 * time.Second)
	wantStatus(t, e.get("/api/v1/auth/me", a.pair.JWT), http.StatusOK)
}

func TestForwardedForIgnoredWithoutTrustedProxies(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withLimits(server.RateLimits{LoginFailuresPerMinute: 2}))
	_, apiKey := e.partner("Acme")
	const peer = "198.51.100.7:5000"
	for i := range 2 {
		forged := http.Header{
			"X-Forwarded-For": {fmt.Sprintf("203.0.113.%d", i+1)},
			"X-Real-Ip":       {fmt.Sprintf("203.0.114.%d", i+1)},
			"Forwarded":       {fmt.Sprintf("for=203.0.115.%d", i+1)},
			"True-Client-Ip":  {fmt.Sprintf("203.0.116.%d", i+1)},
		}
		wantError(t, loginFrom(e, "pk_guess", peer, forged), http.StatusUnauthorized, "unauthorized")
	}
	retryAfter(t, loginFrom(e, apiKey, peer, http.Header{"X-Forwarded-For": {"203.0.113.99"}}))
	for _, ev := range e.audit() {
		if ev.Action == "login" && ev.Addr != "198.51.100.7" {
			t.Errorf("login audited from %q, want the TCP peer 198.51.100.7", ev.Addr)
		}
	}
}

func TestTrustedProxy(t *testing.T) {
	t.Parallel()
	e := newEnv(t,
		withTrustedProxies("10.0.0.0/8", "192.0.2.1"),
		withLimits(server.RateLimits{LoginFailuresPerMinute: 2}))
	_, apiKey := e.partner("Acme")
	const proxy = "10.0.0.5:443"
	xff := func(v string) http.Header { return http.Header{"X-Forwarded-For": {v}} }

	// The client forges hops to the left; the rightmost untrusted one is
	// what the trusted proxies saw.
	wantError(t, loginFrom(e, "pk_guess", proxy, xff("1.1.1.1, 203.0.113.7")), http.StatusUnauthorized, "unauthorized")
	wantError(t, loginFrom(e, "pk_guess", proxy, xff("2.2.2.2, 203.0.113.7, 10.9.9.9")), http.StatusUnauthorized, "unauthorized")
	retryAfter(t, loginFrom(e, "pk_guess", proxy, xff("203.0.113.7")))
	retryAfter(t, loginFrom(e, "pk_guess", "192.0.2.1:443", xff("3.3.3.3, 203.0.113.7, 192.0.2.1")))
	retryAfter(t, loginFrom(e, "pk_guess", proxy, http.Header{"X-Real-Ip": {"203.0.113.7"}}))
	// Other clients behind the same proxy are not affected.
	wantStatus(t, loginFrom(e, apiKey, proxy, xff("203.0.113.7, 198.51.100.1")), http.StatusOK)
	wantStatus(t, loginFrom(e, apiKey, proxy, xff("198.51.100.2")), http.StatusOK)
	// The proxy's own address is not limited by its clients' failures.
	wantStatus(t, loginFrom(e, apiKey, proxy, nil), http.StatusOK)
	// An untrusted peer's header is not believed.
	wantError(t, loginFrom(e, "pk_guess", "198.51.100.50:1", xff("198.51.100.51")), http.StatusUnauthorized, "unauthorized")
	wantError(t, loginFrom(e, "pk_guess", "198.51.100.50:1", xff("198.51.100.52")), http.StatusUnauthorized, "unauthorized")
	retryAfter(t, loginFrom(e, "pk_guess", "198.51.100.50:1", xff("198.51.100.53")))

	var addrs []string
	for _, ev := range e.audit() {
		if ev.Action == "login" {
			addrs = append(addrs, ev.Addr)
		}
	}
	want := []string{"203.0.113.7", "203.0.113.7", "198.51.100.1", "198.51.100.2", "10.0.0.5", "198.51.100.50", "198.51.100.50"}
	if strings.Join(addrs, " ") != strings.Join(want, " ") {
		t.Errorf("logins audited from %v, want %v", addrs, want)
	}
}

func TestIPv6ClientsShareTheirSlash64(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withLimits(server.RateLimits{LoginFailuresPerMinute: 2}))
	_, apiKey := e.partner("Acme")
	wantError(t, loginFrom(e, "pk_guess", "[2001:db8:1:2::1]:5000", nil), http.StatusUnauthorized, "unauthorized")
	wantError(t, loginFrom(e, "pk_guess", "[2001:db8:1:2:ffff:ffff:ffff:ffff]:5000", nil), http.StatusUnauthorized, "unauthorized")
	retryAfter(t, loginFrom(e, "pk_guess", "[2001:db8:1:2:abcd::99]:5000", nil))
	retryAfter(t, loginFrom(e, "pk_guess", "[2001:DB8:1:2::2]:5000", nil))
	wantStatus(t, loginFrom(e, apiKey, "[2001:db8:1:3::1]:5000", nil), http.StatusOK)

	// IPv4 clients seen through a dual-stack socket are the IPv4 address.
	wantError(t, loginFrom(e, "pk_guess", "[::ffff:192.0.2.77]:5000", nil), http.StatusUnauthorized, "unauthorized")
	wantError(t, loginFrom(e, "pk_guess", "192.0.2.77:5000", nil), http.StatusUnauthorized, "unauthorized")
	retryAfter(t, loginFrom(e, "pk_guess", "192.0.2.77:5001", nil))
	wantStatus(t, loginFrom(e, apiKey, "192.0.2.78:5000", nil), http.StatusOK)
}

// TestRateLimiterMemoryBounded sprays ten times max_tracked distinct
// addresses and keys through a trusted proxy.
func TestRateLimiterMemoryBounded(t *testing.T) {
	t.Parallel()
	const maxTracked = 100
	e := newEnv(t, withTrustedProxies("10.0.0.1"), withLimits(server.RateLimits{
		LoginFailuresPerMinute: 5, LoginPerKeyPerMinute: 5, RefreshPerFamilyPerMinute: 5, APIPerMinute: 5, MaxTracked: maxTracked,
	}))
	_, apiKey := e.partner("Acme")
	peak := map[string]int{}
	for i := range 10 * maxTracked {
		addr := fmt.Sprintf("198.%d.%d.%d", 18+i/65536, i/256%256, i%256)
		if i%2 == 1 {
			addr = fmt.Sprintf("2001:db8:%x::1", i)
		}
		rec := loginFrom(e, fmt.Sprintf("pk_guess%d", i), "10.0.0.1:443", http.Header{"X-Forwarded-For": {addr}})
		wantError(t, rec, http.StatusUnauthorized, "unauthorized")
		for name, n := range e.srv.TrackedBuckets() {
			peak[name] = max(peak[name], n)
		}
	}
	for name, n := range peak {
		if n > maxTracked {
			t.Errorf("%s limiter tracked %d buckets, cap %d", name, n, maxTracked)
		}
	}
	if peak["failures"] < maxTracked*9/10 || peak["login"] < maxTracked*9/10 {
		t.Errorf("peaks %v: the spray did not reach the cap, so the test proves nothing", peak)
	}
	// Limiting still works after the evictions.
	for range 5 {
		wantError(t, loginFrom(e, "pk_guess", "10.0.0.1:443", http.Header{"X-Forwarded-For": {"203.0.113.1"}}), http.StatusUnauthorized, "unauthorized")
	}
	retryAfter(t, loginFrom(e, apiKey, "10.0.0.1:443", http.Header{"X-Forwarded-For": {"203.0.113.1"}}))

	// Buckets idle long enough to have refilled are the first to go: once
	// the cap is reached again, only the recent ones remain.
	e.clock.Advance(2 * time.Minute)
	blocked := http.Header{"X-Forwarded-For": {"203.0.113.2"}}
	for range 5 {
		wantError(t, loginFrom(e, "pk_guess", "10.0.0.1:443", blocked), http.StatusUnauthorized, "unauthorized")
	}
	for i := range 50 {
		rec := loginFrom(e, fmt.Sprintf("pk_late%d", i), "10.0.0.1:443", http.Header{"X-Forwarded-For": {fmt.Sprintf("203.0.114.%d", i)}})
		wantError(t, rec, http.StatusUnauthorized, "unauthorized")
	}
	if n := e.srv.TrackedBuckets()["failures"]; n != 51 {
		t.Errorf("failures limiter holds %d buckets, want the 51 recent ones after evicting the stale", n)
	}
	retryAfter(t, loginFrom(e, apiKey, "10.0.0.1:443", blocked))
}

func TestNewRefusesBadTrustedProxies(t *testing.T) {
	t.Parallel()
	for _, proxies := range [][]string{{"not-an-address"}, {"10.0.0.0/99"}, {"10.0.0.1", "::1/200"}} {
		_, err := server.New(server.Config{TrustedProxies: proxies}, server.Deps{Now: time.Now})
		if err == nil || !strings.Contains(err.Error(), "server.trusted_proxies") {
			t.Errorf("New with trusted proxies %q: err = %v, want one naming server.trusted_proxies", proxies, err)
		}
	}
}

// TestOverTheNetwork runs a session through a real listener, where the
// client address is a real TCP peer and bodies arrive in chunks.
func TestOverTheNetwork(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withMaxBody(1024), withLimits(server.RateLimits{LoginFailuresPerMinute: 1}))
	ts := httptest.NewServer(e.validated(e.handler))
	t.Cleanup(ts.Close)
	_, apiKey := e.partner("Acme")
	post := func(path string, body io.Reader) *http.Response {
		t.Helper()
		resp, err := ts.Client().Post(ts.URL+path, "application/json", body)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}

	resp := post("/api/v1/auth/login", strings.NewReader(loginBody(apiKey)))
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("login: %d %v", resp.StatusCode, resp.Header)
	}
	// A body of unknown length is cut off at the limit while it streams in.
	pr, pw := io.Pipe()
	go func() {
		_, _ = io.WriteString(pw, `{"apiKey":"`+strings.Repeat("A", 4096)+`"}`)
		pw.Close()
	}()
	if resp := post("/api/v1/auth/login", pr); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked oversized body: %d, want 413", resp.StatusCode)
	}
	// The TCP peer is the client: one failure from it spends its budget.
	post("/api/v1/auth/login", strings.NewReader(loginBody("pk_guess")))
	resp = post("/api/v1/auth/login", strings.NewReader(loginBody("pk_guess")))
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("after a failure from 127.0.0.1: %d, want 429 with Retry-After", resp.StatusCode)
	}
	for _, ev := range e.audit() {
		if ev.Action == "login" && ev.Addr != "127.0.0.1" {
			t.Errorf("login audited from %q, want 127.0.0.1", ev.Addr)
		}
	}
}
