package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"keygate/api"
	"keygate/client"
	"keygate/gateway"
	"keygate/keys"
	"keygate/store"
	"keygate/tokens"
)

const testMasterKey = "test-master-key-0123456789abcdef-0123456789"

// keygate is a real keygate, wired by gateway.New as keygate serve wires
// it, over a SQLite file in a temporary directory, on a real listener and
// real time. It counts the requests of each path, records every token it
// hands out (so that tests can check none leaks), and lets a test put a
// fault in front of a request.
type keygate struct {
	gw      *gateway.Gateway
	srv     *httptest.Server
	apiKey  string // the partner's
	partner keys.Principal

	mu     sync.Mutex
	calls  map[string]int
	issued []api.TokenResponse
	fault  func(w http.ResponseWriter, r *http.Request, next http.Handler) bool // true: it answered
}

type keygateOption func(*gateway.Config)

func withAccessTTL(d time.Duration) keygateOption {
	return func(c *gateway.Config) { c.Tokens.AccessTTL = d }
}

func withLoginsPerMinute(n int) keygateOption {
	return func(c *gateway.Config) { c.RateLimit.LoginPerKeyPerMinute = n }
}

func startKeygate(tb testing.TB, opts ...keygateOption) *keygate {
	tb.Helper()
	ctx := context.Background()
	cfg := gateway.DefaultConfig()
	cfg.Database.Path = filepath.Join(tb.TempDir(), "keygate.db")
	cfg.RateLimit = gateway.RateLimitConfig{MaxTracked: cfg.RateLimit.MaxTracked}
	for _, o := range opts {
		o(&cfg)
	}
	db, err := store.Open(ctx, cfg.Database, store.Options{Create: true})
	if err != nil {
		tb.Fatalf("store.Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("closing database: %v", err)
		}
	})
	master, err := tokens.NewMasterKey(testMasterKey)
	if err != nil {
		tb.Fatal(err)
	}
	gw, err := gateway.New(ctx, cfg, db, master, gateway.Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatalf("gateway.New: %v", err)
	}
	tb.Cleanup(func() { gw.Recorder.Flush(ctx) }) // runs before db.Close
	k := &keygate{gw: gw, calls: map[string]int{}}
	api := gw.Handler()
	k.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.mu.Lock()
		k.calls[r.URL.Path]++
		fault := k.fault
		k.mu.Unlock()
		if fault != nil && fault(w, r, api) {
			return
		}
		rec := &recorder{ResponseWriter: w}
		api.ServeHTTP(rec, r)
		k.record(r, rec.body.Bytes())
	}))
	tb.Cleanup(k.srv.Close)

	_, pk, err := gw.Keys.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "Acme"})
	if err != nil {
		tb.Fatalf("CreatePartner: %v", err)
	}
	k.apiKey, k.partner = pk.APIKey.Reveal(), keys.PrincipalOf(pk.ID, pk.Owner, "")
	return k
}

// recorder keeps a copy of the body it writes.
type recorder struct {
	http.ResponseWriter
	body bytes.Buffer
}

func (r *recorder) Write(b []byte) (int, error) {
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}

func (k *keygate) record(r *http.Request, body []byte) {
	if r.URL.Path != "/api/v1/auth/login" && r.URL.Path != "/api/v1/auth/refresh" {
		return
	}
	var tr api.TokenResponse
	if json.Unmarshal(body, &tr) == nil && tr.JWT != "" {
		k.mu.Lock()
		k.issued = append(k.issued, tr)
		k.mu.Unlock()
	}
}

// count is how many requests of path keygate got.
func (k *keygate) count(path string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.calls[path]
}

func (k *keygate) logins() int    { return k.count("/api/v1/auth/login") }
func (k *keygate) refreshes() int { return k.count("/api/v1/auth/refresh") }

// tokens are every token keygate handed out so far.
func (k *keygate) tokens() []api.TokenResponse {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]api.TokenResponse(nil), k.issued...)
}

func (k *keygate) setFault(f func(w http.ResponseWriter, r *http.Request, next http.Handler) bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.fault = f
}

// offsetClock is real time moved on by the test: the client's clock, so
// that a test reaches a token's refresh time without waiting for it.
type offsetClock struct{ offset atomic.Int64 }

func (c *offsetClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *offsetClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// newClient makes a client of k with the partner's key.
func newClient(tb testing.TB, k *keygate, cfg client.Config) *client.Client {
	tb.Helper()
	cfg.BaseURL = k.srv.URL
	if cfg.APIKey == "" {
		cfg.APIKey = k.apiKey
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c, err := client.New(cfg)
	if err != nil {
		tb.Fatalf("client.New: %v", err)
	}
	return c
}

func mustToken(tb testing.TB, c *client.Client) string {
	tb.Helper()
	tok, err := c.Token(context.Background())
	if err != nil {
		tb.Fatalf("Token: %v", err)
	}
	return tok
}

// assertNoSecrets fails if any of the secrets appears in any text.
func assertNoSecrets(tb testing.TB, secrets []string, texts map[string]string) {
	tb.Helper()
	for name, text := range texts {
		for _, s := range secrets {
			if s != "" && strings.Contains(text, s) {
				tb.Errorf("%s holds a secret (%.8s...)", name, s)
			}
		}
	}
}

// logBuffer collects log output written from concurrent goroutines.
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
