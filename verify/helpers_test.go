package verify_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"keygate/gateway"
	"keygate/keys"
	"keygate/memstore"
	"keygate/tokens"
	"keygate/verify"
	"keygate/verify/accesstoken/accesstokentest"
)

// t0 is where test clocks start: whole seconds, as tokens carry them.
var t0 = time.Date(2026, 6, 26, 7, 56, 42, 0, time.UTC)

const (
	testMasterKey  = "test-master-key-0123456789abcdef-0123456789"
	testAccessTTL  = 15 * time.Minute
	testLeeway     = 30 * time.Second
	jwksPath       = "/.well-known/jwks.json"
	testHMACSecret = "test-hmac-secret-0123456789abcdef-0123456789"
)

var discard = slog.New(slog.DiscardHandler)

// clock is a manual time source: tests move it, nothing sleeps.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = at
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// keygate is a real keygate, wired by gateway.New as keygate serve wires
// it (over the in-memory store), answering on a real listener. It counts
// the fetches of its JWK Set.
type keygate struct {
	gw      *gateway.Gateway
	srv     *httptest.Server
	clock   *clock // nil: real time
	fetches atomic.Int64
	hang    atomic.Bool            // the JWKS endpoint never answers
	fail    atomic.Bool            // the JWKS endpoint answers 503
	maxAge  atomic.Pointer[string] // replaces the JWKS's Cache-Control if set
	partner keys.Principal
	company keys.Principal
	apiKey  string // the partner's
}

type keygateOption func(*gateway.Config)

func withActivationDelay(d time.Duration) keygateOption {
	return func(c *gateway.Config) { c.Tokens.SigningKeyActivationDelay = d }
}

// startKeygate runs keygate signing with alg. With clk nil it runs on real
// time.
func startKeygate(tb testing.TB, alg string, clk *clock, opts ...keygateOption) *keygate {
	tb.Helper()
	ctx := context.Background()
	cfg := gateway.DefaultConfig()
	cfg.Tokens.Algorithm = alg
	cfg.Tokens.HMACSecret = keys.Secret(testHMACSecret)
	cfg.Tokens.AccessTTL, cfg.Tokens.Leeway = testAccessTTL, testLeeway
	cfg.RateLimit = gateway.RateLimitConfig{MaxTracked: cfg.RateLimit.MaxTracked}
	for _, o := range opts {
		o(&cfg)
	}
	master, err := tokens.NewMasterKey(testMasterKey)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now
	if clk != nil {
		now = clk.Now
	}
	gw, err := gateway.New(ctx, cfg, memstore.New(), master, gateway.Options{Log: slog.New(slog.DiscardHandler), Now: now})
	if err != nil {
		tb.Fatalf("gateway.New: %v", err)
	}
	k := &keygate{gw: gw, clock: clk}
	api := gw.Handler()
	k.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == jwksPath {
			k.fetches.Add(1)
			switch {
			case k.hang.Load():
				<-r.Context().Done()
				return
			case k.fail.Load():
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			case k.maxAge.Load() != nil:
				w = cacheControlWriter{w, *k.maxAge.Load()}
			}
		}
		api.ServeHTTP(w, r)
	}))
	tb.Cleanup(k.srv.Close)

	_, pk, err := gw.Keys.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "Acme"})
	if err != nil {
		tb.Fatalf("CreatePartner: %v", err)
	}
	k.partner, k.apiKey = keys.PrincipalOf(pk.ID, pk.Owner, ""), pk.APIKey.Reveal()
	_, ck, err := gw.Keys.CreateCompany(ctx, keys.ActorFor(k.partner, "192.0.2.1"), k.partner.ID, keys.CompanyInput{Name: "Globex"})
	if err != nil {
		tb.Fatalf("CreateCompany: %v", err)
	}
	k.company = keys.PrincipalOf(ck.ID, ck.Owner, "")
	return k
}

// cacheControlWriter replaces the Cache-Control a handler sets.
type cacheControlWriter struct {
	http.ResponseWriter
	value string
}

func (w cacheControlWriter) WriteHeader(status int) {
	w.Header().Set("Cache-Control", w.value)
	w.ResponseWriter.WriteHeader(status)
}

func (w cacheControlWriter) Write(b []byte) (int, error) {
	w.Header().Set("Cache-Control", w.value)
	return w.ResponseWriter.Write(b)
}

func (k *keygate) jwksURL() string { return k.srv.URL + jwksPath }

func (k *keygate) now() time.Time {
	if k.clock == nil {
		return time.Now()
	}
	return k.clock.Now()
}

// sign issues an access token for p as keygate does, at keygate's now.
func (k *keygate) sign(tb testing.TB, p keys.Principal) string {
	tb.Helper()
	return k.signAt(tb, p, k.now())
}

// issued is what k issued to its partner at a login: the material of the
// attack tables.
func (k *keygate) issued(tb testing.TB) accesstokentest.Issued {
	tb.Helper()
	pair, err := k.gw.Tokens.Login(context.Background(), k.apiKey, "192.0.2.1")
	if err != nil {
		tb.Fatalf("Login: %v", err)
	}
	return accesstokentest.Issued{
		AccessToken: pair.JWT.Reveal(), RefreshToken: pair.RefreshToken.Reveal(), APIKey: k.apiKey, JWKS: k.gw.Keyring.JWKS(),
	}
}

func (k *keygate) signAt(tb testing.TB, p keys.Principal, at time.Time) string {
	tb.Helper()
	tok, _, err := k.gw.JWT.Sign(p, "", at)
	if err != nil {
		tb.Fatalf("Sign: %v", err)
	}
	return tok
}

// rotate adds a signing key that signs after delay and reloads the key set,
// as `keygate signing-key rotate` and the next reload do.
func (k *keygate) rotate(tb testing.TB) tokens.SigningKeyInfo {
	tb.Helper()
	info, err := k.gw.Keyring.Rotate(context.Background())
	if err != nil {
		tb.Fatalf("Rotate: %v", err)
	}
	if err := k.gw.Keyring.Load(context.Background()); err != nil {
		tb.Fatalf("Load: %v", err)
	}
	return info
}

// newVerifier makes a Verifier of k's tokens on k's clock, logging to log
// (discarded if nil), closed when the test ends.
func newVerifier(tb testing.TB, k *keygate, log *slog.Logger, timing ...verify.Timing) *verify.Verifier {
	tb.Helper()
	if log == nil {
		log = discard
	}
	cfg := verify.Config{JWKSURL: k.jwksURL(), Logger: log}
	if k.clock != nil {
		cfg.Now = k.clock.Now
	}
	var tm verify.Timing
	if len(timing) > 0 {
		tm = timing[0]
	}
	return startVerifier(tb, cfg, tm)
}

// startVerifier is verify.New with shorter intervals, closed when the test
// ends. Unless tm says otherwise, unknown kids fetch at most every 100 ms,
// not 10 s: a token naming a kid the verifier does not hold, within that
// time of the last one's fetch, waits for the next.
func startVerifier(tb testing.TB, cfg verify.Config, tm verify.Timing) *verify.Verifier {
	tb.Helper()
	if tm.UnknownKIDEvery == 0 {
		tm.UnknownKIDEvery = 100 * time.Millisecond
	}
	v, err := verify.NewWithTiming(context.Background(), cfg, tm)
	if err != nil {
		tb.Fatalf("verify.New: %v", err)
	}
	tb.Cleanup(func() { _ = v.Close() })
	return v
}

func mustVerify(tb testing.TB, v *verify.Verifier, tok string) *verify.Claims {
	tb.Helper()
	c, err := v.Verify(context.Background(), tok)
	if err != nil {
		tb.Fatalf("Verify refused a good token: %v", err)
	}
	return c
}

func mustReject(tb testing.TB, v *verify.Verifier, tok string) {
	tb.Helper()
	c, err := v.Verify(context.Background(), tok)
	if err == nil || c != nil {
		tb.Fatalf("Verify(%.80q) = %v, %v; want ErrInvalidToken", tok, c, err)
	}
	if !errors.Is(err, verify.ErrInvalidToken) {
		tb.Fatalf("Verify(%.80q) = %v, want ErrInvalidToken", tok, err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, what string, within time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
