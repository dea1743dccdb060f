package server_test

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/gin-gonic/gin"

	"keygate/api"
	"keygate/server"
)

// ginParam is a Gin path parameter, :id or *path.
var ginParam = regexp.MustCompile(`[:*]([A-Za-z0-9_]+)`)

// engineRoutes lists the engine's routes as "METHOD /path/{param}".
func engineRoutes(t *testing.T, h http.Handler) []string {
	t.Helper()
	engine, ok := h.(*gin.Engine)
	if !ok {
		t.Fatalf("the handler is a %T, not the Gin engine", h)
	}
	var out []string
	for _, r := range engine.Routes() {
		out = append(out, r.Method+" "+ginParam.ReplaceAllString(r.Path, "{$1}"))
	}
	slices.Sort(out)
	return out
}

// documentedRoutes lists the document's operations the same way.
func documentedRoutes(c *contract) []string {
	var out []string
	for _, p := range c.Paths {
		for _, m := range p.Methods() {
			out = append(out, m+" "+p.Template)
		}
	}
	slices.Sort(out)
	return out
}

// routeDrift returns the routes only one side has.
func routeDrift(served, documented []string) (undocumented, unserved []string) {
	for _, r := range served {
		if !slices.Contains(documented, r) {
			undocumented = append(undocumented, r)
		}
	}
	for _, r := range documented {
		if !slices.Contains(served, r) {
			unserved = append(unserved, r)
		}
	}
	return undocumented, unserved
}

// TestOpenAPIRoutesMatchTheEngine: the document lists exactly the routes
// the Gin engine serves, method by method, with every optional route on
// (server.public_url set: the OAuth server metadata; a leaked-key
// reporter configured: POST /api/v1/keys/leaked).
func TestOpenAPIRoutesMatchTheEngine(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withPublicURL(), withLeakHMAC())
	c := mustContract(t)
	served, documented := engineRoutes(t, e.handler), documentedRoutes(c)
	undocumented, unserved := routeDrift(served, documented)
	for _, r := range undocumented {
		t.Errorf("the engine serves %s; api/openapi.json does not document it", r)
	}
	for _, r := range unserved {
		t.Errorf("api/openapi.json documents %s; the engine does not serve it", r)
	}
	if len(served) < 25 || !slices.Contains(served, "GET /.well-known/oauth-authorization-server") || !slices.Contains(served, "POST /api/v1/keys/leaked") {
		t.Errorf("only %d routes: %v", len(served), served)
	}

	// The comparison sees a route added to the engine and one the
	// document lists in vain.
	extra := newEnv(t, withPublicURL(), withLeakHMAC())
	extra.handler.(*gin.Engine).PUT("/api/v1/companies/:id", func(*gin.Context) {})
	undocumented, unserved = routeDrift(engineRoutes(t, extra.handler), append(slices.Clone(documented), "GET /api/v1/nowhere"))
	if !slices.Equal(undocumented, []string{"PUT /api/v1/companies/{id}"}) || !slices.Equal(unserved, []string{"GET /api/v1/nowhere"}) {
		t.Errorf("drift not seen: undocumented %v, unserved %v", undocumented, unserved)
	}
}

// TestOpenAPIServed: GET /openapi.json serves the embedded document, as
// JSON that kin-openapi loads; HEAD answers the same headers.
func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rec := e.get("/openapi.json", "")
	wantStatus(t, rec, http.StatusOK)
	if !bytes.Equal(rec.Body.Bytes(), api.OpenAPI()) {
		t.Error("GET /openapi.json is not api/openapi.json")
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	doc, err := openapi3.NewLoader().LoadFromData(rec.Body.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatal(err)
	}
	head := e.do(request{method: http.MethodHead, path: "/openapi.json"})
	wantStatus(t, head, http.StatusOK)
	if head.Header().Get("Content-Type") != rec.Header().Get("Content-Type") {
		t.Errorf("HEAD Content-Type %q, GET %q", head.Header().Get("Content-Type"), rec.Header().Get("Content-Type"))
	}
}

// TestOpenAPIStatusesEverywhere: what the middleware can answer on any
// route is documented on every operation, HEAD mirrors GET, and every
// response keygate writes documents its common headers.
func TestOpenAPIStatusesEverywhere(t *testing.T) {
	t.Parallel()
	c := mustContract(t)
	for _, p := range c.Paths {
		for method, op := range p.Item.Operations() {
			name := method + " " + p.Template
			for _, status := range []int{413, 431, 500} {
				if op.Responses.Status(status) == nil {
					t.Errorf("%s: no %d (the middleware answers it on every route)", name, status)
				}
			}
			secured := op.Security != nil && len(*op.Security) > 0
			for _, status := range []int{401, 429, 503} {
				if secured && op.Responses.Status(status) == nil {
					t.Errorf("%s: authenticated, but no %d", name, status)
				}
			}
			for code, ref := range op.Responses.Map() {
				if code == "431" {
					continue // Go's server, not keygate, answers it
				}
				for _, h := range []string{"X-Request-ID", "X-Content-Type-Options", "Referrer-Policy", "Cache-Control"} {
					if hr := ref.Value.Headers[h]; hr == nil || !hr.Value.Required {
						t.Errorf("%s %s: header %s is not documented as always present", name, code, h)
					}
				}
				if code == "401" && ref.Value.Headers["WWW-Authenticate"] == nil {
					t.Errorf("%s 401: no WWW-Authenticate", name)
				}
				if code == "429" && ref.Value.Headers["Retry-After"] == nil {
					t.Errorf("%s 429: no Retry-After", name)
				}
				if strings.HasPrefix(p.Template, "/oauth2/") && code != "413" {
					if hr := ref.Value.Headers["Pragma"]; hr == nil || !hr.Value.Required {
						t.Errorf("%s %s: an OAuth endpoint's response without Pragma", name, code)
					}
				}
				if method == http.MethodHead && len(ref.Value.Content) > 0 {
					t.Errorf("%s %s: a HEAD response with a body", name, code)
				}
			}
			if method != http.MethodHead {
				continue
			}
			get := p.Item.GetOperation(http.MethodGet)
			if get == nil {
				t.Errorf("%s: HEAD without GET", name)
				continue
			}
			var getCodes, headCodes []string
			for code := range get.Responses.Map() {
				getCodes = append(getCodes, code)
			}
			for code := range op.Responses.Map() {
				headCodes = append(headCodes, code)
			}
			slices.Sort(getCodes)
			slices.Sort(headCodes)
			if !slices.Equal(getCodes, headCodes) {
				t.Errorf("%s answers %v, GET %v", name, headCodes, getCodes)
			}
		}
	}
}

// TestContractCatchesContradictions: the check the harness applies to
// every response fails on responses that contradict the document, so
// that its silence on the real ones means something.
func TestContractCatchesContradictions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withLimits(server.RateLimits{LoginFailuresPerMinute: 1}), withPublicURL())
	c := mustContract(t)
	a := e.tenant("Acme")
	const formType = "application/x-www-form-urlencoded"
	asA := basic(a.partner.ID, a.apiKey)

	type tamper func(x *exchange)
	setHeader := func(k, v string) tamper { return func(x *exchange) { x.Header.Set(k, v) } }
	delHeader := func(k string) tamper { return func(x *exchange) { x.Header.Del(k) } }
	setBody := func(b string) tamper { return func(x *exchange) { x.Body = []byte(b) } }
	setStatus := func(s int) tamper { return func(x *exchange) { x.Status = s } }

	for _, tc := range []struct {
		name    string
		r       request
		want    int
		tampers map[string]tamper
	}{
		{"login", request{method: http.MethodPost, path: "/api/v1/auth/login", body: loginBody(a.apiKey)}, 200, map[string]tamper{
			"extra member":        func(x *exchange) { x.Body = append(x.Body[:len(x.Body)-1], `,"extra":1}`...) },
			"no X-Request-ID":     delHeader("X-Request-ID"),
			"cacheable":           setHeader("Cache-Control", "max-age=60"),
			"undocumented status": setStatus(http.StatusTeapot),
			"timestamp format":    setBody(`{"jwt":"eyJa.b.c","expirationDate":"2026-06-26T08:11:42Z","refreshToken":"rt_a","refreshTokenExpiration":"2026-07-26T07:56:42.199+00:00"}`),
			"text body":           setHeader("Content-Type", "text/plain"),
		}},
		{"refused login", request{method: http.MethodPost, path: "/api/v1/auth/login", body: loginBody("pk_nope")}, 401, map[string]tamper{
			"no challenge":      delHeader("WWW-Authenticate"),
			"other code":        setBody(`{"error":"forbidden","message":"x"}`),
			"other message":     setBody(`{"error":"unauthorized","message":"unknown key"}`),
			"not the one shape": setBody(`{"error":"unauthorized"}`),
		}},
		{"limited login", request{method: http.MethodPost, path: "/api/v1/auth/login", body: loginBody("pk_nope")}, 429, map[string]tamper{
			"no Retry-After":   delHeader("Retry-After"),
			"Retry-After zero": setHeader("Retry-After", "0"),
		}},
		{"logout", request{method: http.MethodPost, path: logoutPath, body: refreshBody("rt_x")}, 204, map[string]tamper{
			"a body": setBody(`{}`),
		}},
		{"wrong method", request{method: http.MethodPut, path: "/health"}, 405, map[string]tamper{
			"Allow too short": setHeader("Allow", "GET"),
			"no Allow":        delHeader("Allow"),
		}},
		{"unrouted", request{method: http.MethodGet, path: "/api/v2/nothing"}, 404, map[string]tamper{
			"200": setStatus(http.StatusOK),
		}},
		{"JWKS", request{method: http.MethodGet, path: "/.well-known/jwks.json"}, 200, map[string]tamper{
			"no ETag":  delHeader("ETag"),
			"no-store": setHeader("Cache-Control", "no-store"),
			"a secret": setBody(`{"keys":[{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"c","kid":"kid_0IeIFELJe35XedzCISklMj","alg":"ES256","use":"sig"}]}`),
		}},
		{"JWKS not modified", request{method: http.MethodGet, path: "/.well-known/jwks.json", header: http.Header{"If-None-Match": {"*"}}}, 304, map[string]tamper{
			"no ETag": delHeader("ETag"),
			"a body":  setBody(`{"keys":[]}`),
		}},
		{"HEAD me", request{method: http.MethodHead, path: "/api/v1/auth/me", token: a.pair.JWT}, 200, map[string]tamper{
			"no X-Content-Type-Options": delHeader("X-Content-Type-Options"),
			"undocumented status":       setStatus(http.StatusConflict),
		}},
		{"create company", request{method: http.MethodPost, path: companiesPath, body: `{"name":"Globex"}`, token: a.pair.JWT}, 201, map[string]tamper{
			"accepted unknown member": func(x *exchange) { x.ReqBody = []byte(`{"name":"Globex","partnerId":"par_x"}`) },
			"accepted an empty name":  func(x *exchange) { x.ReqBody = []byte(`{"name":""}`) },
			"no credential":           func(x *exchange) { x.Req.Header.Del("R-Auth") },
			"externalId missing":      func(x *exchange) { x.Body = bytes.Replace(x.Body, []byte(`"externalId":null,`), nil, 1) },
		}},
		{"OAuth token", request{method: http.MethodPost, path: "/oauth2/token", body: form("grant_type", "client_credentials"), contentType: formType, header: asA}, 200, map[string]tamper{
			"no Pragma":             delHeader("Pragma"),
			"lower-case token_type": func(x *exchange) { x.Body = bytes.Replace(x.Body, []byte(`"Bearer"`), []byte(`"bearer"`), 1) },
			"keygate's shape":       setBody(`{"jwt":"eyJa.b.c","expirationDate":"2026-06-26T08:11:42.000+00:00","refreshToken":"rt_a","refreshTokenExpiration":"2026-07-26T07:56:42.199+00:00"}`),
			"accepted a password":   func(x *exchange) { x.ReqBody = []byte(form("grant_type", "password")) },
			"accepted a bad scope": func(x *exchange) {
				x.ReqBody = []byte(form("grant_type", "client_credentials", "scope", "orders/read"))
			},
		}},
		{"OAuth refused client", request{method: http.MethodPost, path: "/oauth2/token", body: form("grant_type", "client_credentials"), contentType: formType, header: basic(a.partner.ID, "pk_nope"), remote: "198.51.100.7:1000"}, 401, map[string]tamper{
			"Bearer challenge": setHeader("WWW-Authenticate", `Bearer realm="keygate"`),
			"no challenge":     delHeader("WWW-Authenticate"),
			"keygate's shape":  setBody(`{"error":"unauthorized","message":"invalid, expired or revoked credentials"}`),
			"as a 400":         setStatus(http.StatusBadRequest),
			"no description":   setBody(`{"error":"invalid_client"}`),
		}},
		{"OAuth introspection", request{method: http.MethodPost, path: "/oauth2/introspect", body: form("token", a.pair.JWT), contentType: formType, header: asA}, 200, map[string]tamper{
			"inactive, saying more": setBody(`{"active":false,"sub":"` + a.partner.ID + `"}`),
			"active, saying less":   setBody(`{"active":true,"token_type":"Bearer"}`),
			"a string for exp":      func(x *exchange) { x.Body = regexp.MustCompile(`"exp":\d+`).ReplaceAll(x.Body, []byte(`"exp":"soon"`)) },
		}},
		{"OAuth revocation", request{method: http.MethodPost, path: "/oauth2/revoke", body: form("token", "nonsense"), contentType: formType, header: asA}, 200, map[string]tamper{
			"a body":    setBody(`{}`),
			"no Pragma": delHeader("Pragma"),
		}},
		{"server metadata", request{method: http.MethodGet, path: "/.well-known/oauth-authorization-server"}, 200, map[string]tamper{
			"no-store": setHeader("Cache-Control", "no-store"),
			"an authorization grant": func(x *exchange) {
				x.Body = bytes.Replace(x.Body, []byte(`"response_types_supported":[]`), []byte(`"response_types_supported":["code"]`), 1)
			},
			"no introspection_endpoint": func(x *exchange) {
				x.Body = regexp.MustCompile(`"introspection_endpoint":"[^"]*",`).ReplaceAll(x.Body, nil)
			},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var read bytes.Buffer
			req := httptest.NewRequest(tc.r.method, tc.r.path, strings.NewReader(tc.r.body))
			if tc.r.body != "" {
				req.Header.Set("Content-Type", cmp.Or(tc.r.contentType, "application/json"))
			}
			if tc.r.remote != "" {
				req.RemoteAddr = tc.r.remote
			}
			if tc.r.token != "" {
				req.Header.Set("R-Auth", tc.r.token)
			}
			for k, vs := range tc.r.header {
				req.Header[k] = vs
			}
			req.Body = readBody{ReadCloser: req.Body, Into: &read}
			rec := httptest.NewRecorder()
			e.handler.ServeHTTP(rec, req)
			if tc.want == http.StatusTooManyRequests && rec.Code != tc.want { // spend the budget of one failure
				rec = httptest.NewRecorder()
				req = httptest.NewRequest(tc.r.method, tc.r.path, strings.NewReader(tc.r.body))
				req.Header.Set("Content-Type", "application/json")
				read.Reset()
				req.Body = readBody{ReadCloser: req.Body, Into: &read}
				e.handler.ServeHTTP(rec, req)
			}
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.want, rec.Body)
			}
			x := exchange{Req: req, ReqBody: read.Bytes(), Status: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
			if v := c.Check(t.Context(), x); v.Response != nil {
				t.Fatalf("the real response contradicts the document: %v", v.Response)
			}
			for name, tamper := range tc.tampers {
				y := x
				y.Req = x.Req.Clone(t.Context())
				y.Header = x.Header.Clone()
				y.Body = slices.Clone(x.Body)
				tamper(&y)
				if v := c.Check(t.Context(), y); v.Response == nil {
					t.Errorf("%s: the check did not see it", name)
				}
			}
		})
	}
}

// TestHeaderFieldsTooLarge: Go's server answers oversized headers with a
// 431 before keygate sees them, in plain text and without keygate's
// headers; the document says so on every operation.
func TestHeaderFieldsTooLarge(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := mustContract(t)
	ts := httptest.NewUnstartedServer(e.handler)
	ts.Config.MaxHeaderBytes = 1024
	ts.Start()
	t.Cleanup(ts.Close)
	for _, r := range []struct{ method, path, body string }{
		{http.MethodGet, "/health", ""},
		{http.MethodPost, "/api/v1/auth/login", loginBody("pk_x")},
		{http.MethodDelete, "/api/v1/companies/com_x/keys/key_x", ""},
	} {
		req, err := http.NewRequestWithContext(t.Context(), r.method, ts.URL+r.path, strings.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("R-Auth", strings.Repeat("A", 16<<10))
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", r.method, r.path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("%s %s: status %d, want 431", r.method, r.path, resp.StatusCode)
		}
		if v := c.Check(t.Context(), exchange{Req: req, Status: resp.StatusCode, Header: resp.Header, Body: body}); v.Response != nil {
			t.Errorf("%s %s: the 431 contradicts the document: %v", r.method, r.path, v.Response)
		}
	}
}

// recordingTB keeps the errors reported to it instead of failing.
type recordingTB struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestValidatedCatchesContradictions: the wrapper that holds a real
// listener's exchanges to the document reports one it does not describe,
// and stays silent on keygate's own.
func TestValidatedCatchesContradictions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rec := &recordingTB{TB: t}
	watched := *e
	watched.t = rec
	h := watched.validated(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			w.WriteHeader(http.StatusTeapot)
			return
		}
		e.handler.ServeHTTP(w, r)
	}))
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	for _, path := range []string{"/ready", "/health"} {
		resp, err := ts.Client().Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], "GET /health answered 418") {
		t.Errorf("reported %q, want only the 418 of /health", rec.errs)
	}
}
