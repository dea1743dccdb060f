package verify_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"keygate/api"
	"keygate/tokens"
	"keygate/verify"
)

// logBuffer collects log output written from concurrent requests.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// whoami answers with the verified claims, as a service's handler would.
var whoami = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	c, ok := verify.FromContext(r.Context())
	if !ok {
		http.Error(w, "no claims", http.StatusInternalServerError)
		return
	}
	_, _ = w.Write([]byte(c.Kind + " " + c.Subject))
})

func serve(h http.Handler, header http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "/whoami?x=1", nil)
	req.Header = header
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestMiddleware(t *testing.T) {
	clk := &clock{now: t0}
	k := startKeygate(t, tokens.ES256, clk)
	logs := &logBuffer{}
	v := newVerifier(t, k, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	h := v.Middleware(whoami)
	expired := k.sign(t, k.partner)
	clk.Advance(time.Hour)
	partner, company := k.sign(t, k.partner), k.sign(t, k.company)

	for _, tc := range []struct {
		name   string
		header http.Header
		want   string
	}{
		{"partner", http.Header{"R-Auth": {partner}}, "partner " + k.partner.ID},
		{"company", http.Header{"R-Auth": {company}}, "company " + k.company.ID},
		{"spaces around the token", http.Header{"R-Auth": {"  " + partner + " "}}, "partner " + k.partner.ID},
	} {
		rec := serve(h, tc.header)
		if rec.Code != http.StatusOK || rec.Body.String() != tc.want {
			t.Errorf("%s: %d %q, want 200 %q", tc.name, rec.Code, rec.Body, tc.want)
		}
	}

	refused := map[string]http.Header{
		"no header":                  {},
		"empty R-Auth":               {"R-Auth": {""}},
		"two R-Auth headers":         {"R-Auth": {partner, partner}},
		"Authorization Bearer only":  {"Authorization": {"Bearer " + partner}},
		"Bearer prefix in R-Auth":    {"R-Auth": {"Bearer " + partner}},
		"expired":                    {"R-Auth": {expired}},
		"garbage":                    {"R-Auth": {"not a token"}},
		"tampered":                   {"R-Auth": {partner[:len(partner)-4] + "AAAA"}},
		"API key":                    {"R-Auth": {k.apiKey}},
		"truncated":                  {"R-Auth": {partner[:len(partner)/2]}},
		"a token in a second header": {"R-Auth": {"x"}, "Authorization": {"Bearer " + partner}},
	}
	var firstBody string
	for name, header := range refused {
		rec := serve(h, header)
		checkUnauthorized(t, name, rec)
		if firstBody == "" {
			firstBody = rec.Body.String()
		} else if rec.Body.String() != firstBody {
			t.Errorf("%s: body %q differs from %q", name, rec.Body, firstBody)
		}
	}

	log := logs.String()
	for _, reason := range []string{"token is expired", "2 R-Auth headers", "0 R-Auth headers"} {
		if !strings.Contains(log, reason) {
			t.Errorf("the debug log does not say %q:\n%s", reason, log)
		}
	}
	for _, secret := range []string{partner, company, expired, k.apiKey, partner[:len(partner)/2]} {
		if strings.Contains(log, secret) {
			t.Errorf("the log holds a token or key")
		}
	}
	if strings.Contains(log, "x=1") {
		t.Error("the log holds the query string")
	}
}

// checkUnauthorized checks keygate's 401: its body, its headers, and no word
// of why.
func checkUnauthorized(t *testing.T, name string, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("%s: status %d, want 401", name, rec.Code)
		return
	}
	var body api.Error
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.Error != api.CodeUnauthorized || body.Message != api.UnauthorizedMessage {
		t.Errorf("%s: body %+v (%v)", name, body, err)
	}
	for h, want := range map[string]string{
		"WWW-Authenticate":       `Bearer error="invalid_token"`,
		"Content-Type":           "application/json; charset=utf-8",
		"Cache-Control":          "no-store",
		"X-Content-Type-Options": "nosniff",
	} {
		if got := rec.Header().Get(h); got != want {
			t.Errorf("%s: %s %q, want %q", name, h, got, want)
		}
	}
}

func TestMiddlewareAuthorizationHeader(t *testing.T) {
	clk := &clock{now: t0}
	k := startKeygate(t, tokens.ES256, clk)
	v := startVerifier(t, verify.Config{JWKSURL: k.jwksURL(), Header: "authorization", Now: clk.Now, Logger: discard}, verify.Timing{})
	h := v.Middleware(whoami)
	tok := k.sign(t, k.partner)
	for _, scheme := range []string{"Bearer", "bearer", "BEARER"} {
		if rec := serve(h, http.Header{"Authorization": {scheme + " " + tok}}); rec.Code != http.StatusOK {
			t.Errorf("Authorization: %s <token>: %d", scheme, rec.Code)
		}
	}
	for name, header := range map[string]http.Header{
		"no scheme":     {"Authorization": {tok}},
		"Basic":         {"Authorization": {"Basic " + tok}},
		"empty Bearer":  {"Authorization": {"Bearer "}},
		"R-Auth":        {"R-Auth": {tok}},
		"two of them":   {"Authorization": {"Bearer " + tok, "Bearer " + tok}},
		"Bearer Bearer": {"Authorization": {"Bearer Bearer " + tok}},
	} {
		checkUnauthorized(t, name, serve(h, header))
	}
}

func TestRequireKind(t *testing.T) {
	clk := &clock{now: t0}
	k := startKeygate(t, tokens.ES256, clk)
	v := newVerifier(t, k, nil)
	partnerOnly := v.Middleware(verify.RequireKind(api.KindPartner)(whoami))
	companyOnly := v.Middleware(verify.RequireKind(api.KindCompany)(whoami))
	partner, company := http.Header{"R-Auth": {k.sign(t, k.partner)}}, http.Header{"R-Auth": {k.sign(t, k.company)}}

	if rec := serve(partnerOnly, partner); rec.Code != http.StatusOK {
		t.Errorf("partner on a partner endpoint: %d", rec.Code)
	}
	if rec := serve(companyOnly, company); rec.Code != http.StatusOK {
		t.Errorf("company on a company endpoint: %d", rec.Code)
	}
	for name, rec := range map[string]*httptest.ResponseRecorder{
		"company on a partner endpoint": serve(partnerOnly, company),
		"partner on a company endpoint": serve(companyOnly, partner),
	} {
		var body api.Error
		if err := json.Unmarshal(rec.Body.Bytes(), &body); rec.Code != http.StatusForbidden || err != nil || body.Error != api.CodeForbidden {
			t.Errorf("%s: %d %s", name, rec.Code, rec.Body)
		}
	}
	checkUnauthorized(t, "no token", serve(partnerOnly, http.Header{}))
	checkUnauthorized(t, "RequireKind without Middleware", serve(verify.RequireKind(api.KindPartner)(whoami), partner))
}

// TestRequireKindPanicsOnUnknownKind: a misspelt kind fails when the
// routes are built, not by refusing every caller.
func TestRequireKindPanicsOnUnknownKind(t *testing.T) {
	for _, kind := range []string{"", "partners", "Partner", "operator"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("RequireKind(%q) did not panic", kind)
				}
			}()
			verify.RequireKind(kind)
		}()
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for _, cfg := range []verify.Config{
		{},
		{JWKSURL: "keygate.example/.well-known/jwks.json"},
		{JWKSURL: "ftp://keygate.example/jwks.json"},
		{JWKSURL: "http:///jwks.json"},
		{JWKSURL: "http://keygate.example/.well-known/jwks.json", Leeway: -time.Second},
	} {
		if v, err := verify.New(t.Context(), cfg); err == nil {
			_ = v.Close()
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}
