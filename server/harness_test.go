package server_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"keygate/gateway"
	"keygate/keys"
	"keygate/metrics"
	"keygate/server"
	"keygate/store"
	"keygate/tokens"
)

// epoch is the harness clock's start; its milliseconds make the timestamp
// format checks meaningful.
var epoch = time.Date(2026, 6, 26, 7, 56, 42, 199_000_000, time.UTC)

// stampPattern is the one timestamp format of the API.
var stampPattern = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+00:00$`)

// Lifetimes the harness configures, mirroring the defaults.
const (
	accessTTL   = 15 * time.Minute
	leeway      = 30 * time.Second
	refreshTTL  = 720 * time.Hour
	maxLifetime = 2160 * time.Hour
	reuseGrace  = 10 * time.Second
	retention   = 168 * time.Hour
)

// clock is a manually advanced time source shared by every service.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

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

// records parses the JSON log lines.
func (b *logBuffer) records(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(b.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		out = append(out, rec)
	}
	return out
}

// options tune one harness.
type options struct {
	limits         server.RateLimits
	trustedProxies []string
	maxBody        int64
	algorithm      string
	jwks           func(real func() []byte) func() []byte
	config         []func(*gateway.Config) // any other changes to the defaults
	wrapStore      func(store.Store) store.Store
}

// withConfig changes the gateway's configuration before it is built.
func withConfig(change func(*gateway.Config)) option {
	return func(o *options) { o.config = append(o.config, change) }
}

// testPublicURL is server.public_url where a test sets it.
const testPublicURL = "https://auth.example.com"

// withPublicURL sets server.public_url, which turns the OAuth server
// metadata on.
func withPublicURL() option {
	return withConfig(func(c *gateway.Config) { c.Server.PublicURL = testPublicURL })
}

type option func(*options)

// withStore gives the gateway wrap(db) instead of the store itself (tests
// that count what the services ask of it); env.db stays the store.
func withStore(wrap func(store.Store) store.Store) option {
	return func(o *options) { o.wrapStore = wrap }
}

func withLimits(l server.RateLimits) option { return func(o *options) { o.limits = l } }

func withTrustedProxies(p ...string) option {
	return func(o *options) { o.trustedProxies = p }
}

func withMaxBody(n int64) option { return func(o *options) { o.maxBody = n } }

func withAlgorithm(alg string) option { return func(o *options) { o.algorithm = alg } }

// withJWKS replaces the JWKS source; wrap receives the keyring's own.
func withJWKS(wrap func(real func() []byte) func() []byte) option {
	return func(o *options) { o.jwks = wrap }
}

// env is the whole stack wired by gateway.New, as keygate serve wires it,
// on a SQLite file in a temporary directory and a manual clock. Rate limits
// are off unless a test asks for them.
type env struct {
	t        testing.TB
	clock    *clock
	db       store.Store
	ring     *tokens.Keyring
	keys     *keys.Service
	tokens   *tokens.Service
	recorder *keys.Recorder
	srv      *server.Server
	handler  http.Handler
	logs     *logBuffer
	metrics  *metrics.Metrics // nil with admin.addr empty
}

func newEnv(t testing.TB, opts ...option) *env {
	t.Helper()
	o := options{algorithm: tokens.ES256}
	for _, opt := range opts {
		opt(&o)
	}
	ctx := context.Background()
	clk := &clock{t: epoch}
	logs := &logBuffer{}
	log := slog.New(server.LogHandler(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))

	dir := t.TempDir()
	cfg := gateway.DefaultConfig()
	cfg.Database.Path = filepath.Join(dir, "keygate.db")
	cfg.Tokens.Algorithm = o.algorithm
	cfg.Tokens.HMACSecret = "an-hmac-secret-of-at-least-32-bytes!"
	cfg.Server.TrustedProxies = o.trustedProxies
	if o.maxBody > 0 {
		cfg.Server.MaxBodyBytes = o.maxBody
	}
	cfg.RateLimit = gateway.RateLimitConfig{
		LoginFailuresPerMinute:    o.limits.LoginFailuresPerMinute,
		LoginPerKeyPerMinute:      o.limits.LoginPerKeyPerMinute,
		RefreshPerFamilyPerMinute: o.limits.RefreshPerFamilyPerMinute,
		APIPerMinute:              o.limits.APIPerMinute,
		MaxTracked:                cmp.Or(o.limits.MaxTracked, cfg.RateLimit.MaxTracked),
	}
	for _, change := range o.config {
		change(&cfg)
	}
	m := gateway.NewMetrics(cfg) // as serve wires them: before the store, to see its commits
	db, err := store.Open(ctx, cfg.Database, store.Options{Create: true, Log: log, Now: clk.Now, OnCommit: m.CommitObserver()})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("closing database: %v", err)
		}
	})
	master, err := tokens.LoadOrCreateMasterKeyFile(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatalf("master key: %v", err)
	}
	var st store.Store = db
	if o.wrapStore != nil {
		st = o.wrapStore(db)
	}
	gw, err := gateway.New(ctx, cfg, st, master, gateway.Options{Log: log, Now: clk.Now, WrapJWKS: o.jwks, Metrics: m})
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	t.Cleanup(func() { gw.Recorder.Flush(ctx) }) // runs before db.Close
	return &env{
		t: t, clock: clk, db: db, ring: gw.Keyring, keys: gw.Keys, tokens: gw.Tokens, recorder: gw.Recorder,
		srv: gw.Server, handler: gw.Handler(), logs: logs, metrics: gw.Metrics,
	}
}

// defaultAddr is the TCP peer of requests that do not name one.
const defaultAddr = "192.0.2.10:40000"

// request is one HTTP request to the handler.
type request struct {
	method      string
	path        string
	body        string
	contentType string // application/json when body is set and this is empty
	token       string // sent in R-Auth when set
	remote      string // TCP peer, defaultAddr when empty
	header      http.Header
}

func (e *env) do(r request) *httptest.ResponseRecorder {
	e.t.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req := httptest.NewRequest(r.method, r.path, body)
	if r.body != "" {
		ct := r.contentType
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	} else if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	if r.token != "" {
		req.Header.Set("R-Auth", r.token)
	}
	for k, vs := range r.header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.RemoteAddr = defaultAddr
	if r.remote != "" {
		req.RemoteAddr = r.remote
	}
	return e.serve(req)
}

// serve answers req, then writes the batched login audit and last uses, so
// that every test reads the audit trail and lastUsedAt as they stand after
// the request (serve batches them once a second). Every response is held
// to the OpenAPI document (contract_test.go): one it does not describe
// fails the test, whatever the request was.
func (e *env) serve(req *http.Request) *httptest.ResponseRecorder {
	var read bytes.Buffer
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = readBody{ReadCloser: req.Body, Into: &read}
	}
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, req)
	e.recorder.Flush(context.Background())
	c := mustContract(e.t)
	v := c.Check(context.Background(), exchange{Req: req, ReqBody: read.Bytes(), Status: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()})
	if v.Response != nil {
		e.t.Errorf("%s %s answered %d, which contradicts api/openapi.json: %v\nbody: %.400s", req.Method, req.URL, rec.Code, v.Response, rec.Body)
	}
	return rec
}

// validated wraps h, for a real listener (httptest.NewServer), so that
// every exchange it serves is held to the OpenAPI document as serve holds
// the recorder's: one it does not describe fails the test.
func (e *env) validated(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var read bytes.Buffer
		if req.Body != nil && req.Body != http.NoBody {
			req.Body = readBody{ReadCloser: req.Body, Into: &read}
		}
		tee := &teeWriter{ResponseWriter: w}
		h.ServeHTTP(tee, req)
		if tee.header == nil { // nothing written: net/http sends a 200
			tee.WriteHeader(http.StatusOK)
		}
		c := mustContract(e.t)
		x := exchange{Req: req, ReqBody: read.Bytes(), Status: tee.status, Header: tee.header, Body: tee.body.Bytes()}
		if v := c.Check(context.Background(), x); v.Response != nil {
			e.t.Errorf("%s %s answered %d over the network, which contradicts api/openapi.json: %v\nbody: %.400s", req.Method, req.URL, tee.status, v.Response, tee.body.Bytes())
		}
	})
}

// teeWriter keeps a copy of the response it passes on: the status, the
// headers as they were sent, and the body.
type teeWriter struct {
	http.ResponseWriter
	status int
	header http.Header
	body   bytes.Buffer
}

func (w *teeWriter) WriteHeader(status int) {
	if w.header == nil {
		w.status, w.header = status, w.ResponseWriter.Header().Clone()
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *teeWriter) Write(p []byte) (int, error) {
	if w.header == nil {
		w.WriteHeader(http.StatusOK)
	}
	w.body.Write(p)
	return w.ResponseWriter.Write(p)
}

func (w *teeWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (e *env) get(path, token string) *httptest.ResponseRecorder {
	e.t.Helper()
	return e.do(request{method: http.MethodGet, path: path, token: token})
}

func (e *env) post(path, body, token string) *httptest.ResponseRecorder {
	e.t.Helper()
	return e.do(request{method: http.MethodPost, path: path, body: body, token: token})
}

func (e *env) delete(path, token string) *httptest.ResponseRecorder {
	e.t.Helper()
	return e.do(request{method: http.MethodDelete, path: path, token: token})
}

// jsonString quotes s as a JSON string.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func loginBody(apiKey string) string { return `{"apiKey":` + jsonString(apiKey) + `}` }

func refreshBody(rt string) string { return `{"refreshToken":` + jsonString(rt) + `}` }

// partner mints a partner as the operator CLI does and returns it with its key.
func (e *env) partner(name string) (keys.Partner, string) {
	e.t.Helper()
	p, k, err := e.keys.CreatePartner(context.Background(), keys.Operator, keys.PartnerInput{Name: name})
	if err != nil {
		e.t.Fatalf("CreatePartner: %v", err)
	}
	return p, k.APIKey.Reveal()
}

// tokenPair is the body of a login or refresh.
type tokenPair struct {
	JWT                    string `json:"jwt"`
	ExpirationDate         string `json:"expirationDate"`
	RefreshToken           string `json:"refreshToken"`
	RefreshTokenExpiration string `json:"refreshTokenExpiration"`
}

func (e *env) login(apiKey string) tokenPair {
	e.t.Helper()
	rec := e.post("/api/v1/auth/login", loginBody(apiKey), "")
	if rec.Code != http.StatusOK {
		e.t.Fatalf("login: status %d, body %s", rec.Code, rec.Body)
	}
	return decodeInto[tokenPair](e.t, rec)
}

func (e *env) refresh(rt string) tokenPair {
	e.t.Helper()
	rec := e.post("/api/v1/auth/refresh", refreshBody(rt), "")
	if rec.Code != http.StatusOK {
		e.t.Fatalf("refresh: status %d, body %s", rec.Code, rec.Body)
	}
	return decodeInto[tokenPair](e.t, rec)
}

// createdCompany is the body of POST /api/v1/companies.
type createdCompany struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	ExternalID *string  `json:"externalId"`
	PartnerID  string   `json:"partnerId"`
	CreatedAt  string   `json:"createdAt"`
	Status     string   `json:"status"`
	APIKey     string   `json:"apiKey"`
	KeyID      string   `json:"keyId"`
	Scopes     []string `json:"scopes"`
}

type company struct {
	ID         string  `json:"id"`
	Name       string  `json:"name"`
	ExternalID *string `json:"externalId"`
	PartnerID  string  `json:"partnerId"`
	CreatedAt  string  `json:"createdAt"`
	Status     string  `json:"status"`
}

func (e *env) createCompany(partnerJWT, body string) createdCompany {
	e.t.Helper()
	rec := e.post("/api/v1/companies", body, partnerJWT)
	if rec.Code != http.StatusCreated {
		e.t.Fatalf("create company %s: status %d, body %s", body, rec.Code, rec.Body)
	}
	return decodeInto[createdCompany](e.t, rec)
}

// audit returns the whole audit trail, oldest first, once the batched
// login events are written.
func (e *env) audit() []keys.AuditEvent {
	e.t.Helper()
	e.recorder.Flush(context.Background())
	evs, err := e.keys.ListAudit(context.Background(), time.Time{})
	if err != nil {
		e.t.Fatalf("ListAudit: %v", err)
	}
	return evs
}

// decodeInto decodes a JSON response body, refusing members T lacks.
func decodeInto[T any](t testing.TB, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decoding %s: %v", rec.Body, err)
	}
	return v
}

// members returns the sorted member names of a JSON object body.
func members(t testing.TB, body []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body %s is not a JSON object: %v", body, err)
	}
	return slices.Sorted(maps.Keys(m))
}

// wantMembers fails unless body is an object with exactly the given members.
func wantMembers(t testing.TB, body []byte, want ...string) {
	t.Helper()
	got := members(t, body)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("members = %v, want %v (body %s)", got, want, body)
	}
}

// wantError checks status and the documented error shape, and returns the
// message.
func wantError(t testing.TB, rec *httptest.ResponseRecorder, status int, code string) string {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d (body %s)", rec.Code, status, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type = %q, want application/json", ct)
	}
	wantMembers(t, rec.Body.Bytes(), "error", "message")
	var body struct{ Error, Message string }
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if body.Error != code || body.Message == "" {
		t.Fatalf("error = %q message %q, want code %q and a message", body.Error, body.Message, code)
	}
	return body.Message
}

// wantStatus fails unless the response has the given status.
func wantStatus(t testing.TB, rec *httptest.ResponseRecorder, status int) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d (body %s)", rec.Code, status, rec.Body)
	}
}

// wantStamp fails unless v is a timestamp in the API's exact format.
func wantStamp(t testing.TB, field, v string) time.Time {
	t.Helper()
	if !stampPattern.MatchString(v) {
		t.Fatalf("%s = %q, not in the format 2026-06-26T07:56:42.199+00:00", field, v)
	}
	at, err := time.Parse("2006-01-02T15:04:05.000-07:00", v)
	if err != nil {
		t.Fatalf("%s = %q: %v", field, v, err)
	}
	return at
}

// claims decodes a JWT's payload without verifying it; verification is the
// server's job and is tested through /auth/me.
func claims(t testing.TB, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", jwt)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("JWT payload: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("JWT payload: %v", err)
	}
	return m
}

// flip changes the byte at i to another base62 character.
func flip(s string, i int) string {
	b := []byte(s)
	if b[i] == 'a' {
		b[i] = 'b'
	} else {
		b[i] = 'a'
	}
	return string(b)
}

func partnerKeyID(t *testing.T, e *env, partnerID string) string {
	t.Helper()
	ks, err := e.keys.ListKeys(context.Background(), keys.PartnerOwner(partnerID))
	if err != nil || len(ks) == 0 {
		t.Fatalf("ListKeys: %v %v", ks, err)
	}
	return ks[0].ID
}

// tenant is a partner with a logged-in session.
type tenant struct {
	partner keys.Partner
	apiKey  string
	pair    tokenPair
}

func (e *env) tenant(name string) tenant {
	e.t.Helper()
	p, k := e.partner(name)
	return tenant{partner: p, apiKey: k, pair: e.login(k)}
}
