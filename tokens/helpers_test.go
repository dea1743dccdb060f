package tokens_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"math/big"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"keygate/keys"
	"keygate/sqlite"
	"keygate/tokens"
)

// t0 is where every test clock starts: whole seconds, so nothing is lost to
// the store's millisecond timestamps or the JWT's second-precision dates.
var t0 = time.Date(2026, 6, 26, 7, 56, 42, 0, time.UTC)

const (
	testMasterKey  = "test-master-key-0123456789abcdef-0123456789"
	otherMasterKey = "another-master-key-0123456789abcdef-01234567"
	testHMACSecret = "test-hmac-secret-0123456789abcdef-0123456789"
	testIssuer     = "keygate"
	testAudience   = "r-auth"
	testAccessTTL  = 15 * time.Minute
	testLeeway     = 30 * time.Second
	testDelay      = time.Hour
)

// testClock is the injected clock: tests move it, nothing sleeps.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock(at time.Time) *testClock { return &testClock{now: at} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *testClock) Set(at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = at
}

// envConfig is everything a test may change about the wiring.
type envConfig struct {
	alg         string
	hmacSecret  string
	masterKey   string
	dbPath      string
	synchronous string
	refresh     tokens.RefreshConfig
	clock       *testClock
}

func withAlg(alg string) func(*envConfig) { return func(c *envConfig) { c.alg = alg } }

func withGrace(d time.Duration) func(*envConfig) {
	return func(c *envConfig) { c.refresh.ReuseGrace = d }
}

// env is a gateway wired the way main.go's serve wires it, on a real
// SQLite file in a temporary directory.
type env struct {
	cfg    envConfig
	clock  *testClock
	db     *sqlite.DB
	master tokens.MasterKey
	keys   *keys.Service
	ring   *tokens.Keyring
	jwt    *tokens.JWT
	svc    *tokens.Service
}

func defaultEnvConfig() envConfig {
	return envConfig{
		alg:        tokens.ES256,
		hmacSecret: testHMACSecret,
		masterKey:  testMasterKey,
		refresh: tokens.RefreshConfig{
			TTL:         720 * time.Hour,
			MaxLifetime: 2160 * time.Hour,
			ReuseGrace:  10 * time.Second,
			Retention:   168 * time.Hour,
		},
	}
}

func newEnv(tb testing.TB, opts ...func(*envConfig)) *env {
	tb.Helper()
	cfg := defaultEnvConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.clock == nil {
		cfg.clock = newClock(t0)
	}
	if cfg.dbPath == "" {
		cfg.dbPath = filepath.Join(tb.TempDir(), "k.db")
	}
	ctx := context.Background()
	db, err := sqlite.Open(ctx, sqlite.Options{Path: cfg.dbPath, Synchronous: cfg.synchronous})
	if err != nil {
		tb.Fatalf("sqlite.Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("closing database: %v", err)
		}
	})
	master, err := tokens.NewMasterKey(cfg.masterKey)
	if err != nil {
		tb.Fatalf("NewMasterKey: %v", err)
	}
	e := &env{cfg: cfg, clock: cfg.clock, db: db, master: master}
	e.ring = e.newKeyring(master)
	if err := e.ring.EnsureKey(ctx); err != nil {
		tb.Fatalf("EnsureKey: %v", err)
	}
	if err := e.ring.Load(ctx); err != nil {
		tb.Fatalf("Load: %v", err)
	}
	e.jwt, err = tokens.NewJWT(tokens.JWTConfig{
		Issuer: testIssuer, Audience: testAudience, Algorithm: cfg.alg, AccessTTL: testAccessTTL, Leeway: testLeeway,
	}, e.ring, e.clock.Now)
	if err != nil {
		tb.Fatalf("NewJWT: %v", err)
	}
	e.keys = keys.NewService(db, nil, e.clock.Now, discardLogger())
	e.svc = tokens.NewService(e.keys, db, e.jwt, master, cfg.refresh, e.clock.Now)
	return e
}

// newKeyring makes another keyring over the same store, as a second process
// (the CLI) or a restarted server would.
func (e *env) newKeyring(master tokens.MasterKey) *tokens.Keyring {
	return tokens.NewKeyring(tokens.KeyringConfig{
		Algorithm:       e.cfg.alg,
		HMACSecret:      e.cfg.hmacSecret,
		AccessTTL:       testAccessTTL,
		Leeway:          testLeeway,
		ActivationDelay: testDelay,
	}, master, e.db, e.clock.Now, discardLogger())
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// principal is a partner or company with its API key.
type principal struct {
	keys.Principal
	apiKey string
}

func (e *env) newPartner(tb testing.TB, name string) principal {
	tb.Helper()
	_, k, err := e.keys.CreatePartner(context.Background(), keys.Operator, name)
	if err != nil {
		tb.Fatalf("CreatePartner: %v", err)
	}
	return e.authenticate(tb, k.APIKey.Reveal())
}

func (e *env) newCompany(tb testing.TB, partner principal, name string) principal {
	tb.Helper()
	actor := keys.Actor{Type: string(keys.KindPartner), ID: partner.ID, Addr: "192.0.2.1"}
	_, k, err := e.keys.CreateCompany(context.Background(), actor, partner.ID, keys.CompanyInput{Name: name})
	if err != nil {
		tb.Fatalf("CreateCompany: %v", err)
	}
	return e.authenticate(tb, k.APIKey.Reveal())
}

func (e *env) authenticate(tb testing.TB, apiKey string) principal {
	tb.Helper()
	p, err := e.db.LookupKey(context.Background(), keys.DigestOf(apiKey))
	if err != nil {
		tb.Fatalf("LookupKey: %v", err)
	}
	p.Name = "" // tokens carry no names
	return principal{Principal: p, apiKey: apiKey}
}

func (e *env) login(tb testing.TB, p principal) tokens.Pair {
	tb.Helper()
	pair, err := e.svc.Login(context.Background(), p.apiKey, "192.0.2.1")
	if err != nil {
		tb.Fatalf("Login: %v", err)
	}
	return pair
}

func (e *env) sign(tb testing.TB, p keys.Principal) string {
	tb.Helper()
	tok, _, err := e.jwt.Sign(p, e.clock.Now())
	if err != nil {
		tb.Fatalf("Sign: %v", err)
	}
	return tok
}

// mustVerify verifies tok and fails the test if it is refused.
func mustVerify(tb testing.TB, j *tokens.JWT, tok string) *tokens.Claims {
	tb.Helper()
	c, err := j.Verify(tok)
	if err != nil {
		tb.Fatalf("Verify refused a good token: %v", err)
	}
	return c
}

// mustReject verifies tok and fails the test unless it is refused with
// ErrInvalidToken.
func mustReject(tb testing.TB, j *tokens.JWT, tok string) error {
	tb.Helper()
	c, err := j.Verify(tok)
	if !errors.Is(err, tokens.ErrInvalidToken) {
		tb.Fatalf("Verify(%.80q) = %v, want ErrInvalidToken", tok, err)
	}
	if c != nil {
		tb.Fatalf("Verify returned claims with an error")
	}
	return err
}

var b64 = base64.RawURLEncoding

// splitJWT returns a token's three segments.
func splitJWT(tb testing.TB, tok string) (header, claims, sig string) {
	tb.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		tb.Fatalf("token has %d segments", len(parts))
	}
	return parts[0], parts[1], parts[2]
}

// decodeSegment decodes a JSON segment, keeping numbers as json.Number so
// that re-encoding it changes nothing.
func decodeSegment(tb testing.TB, seg string) map[string]any {
	tb.Helper()
	raw, err := b64.Strict().DecodeString(seg)
	if err != nil {
		tb.Fatalf("decoding segment: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	m := map[string]any{}
	if err := dec.Decode(&m); err != nil {
		tb.Fatalf("decoding segment JSON: %v", err)
	}
	return m
}

func encodeSegment(tb testing.TB, v any) string {
	tb.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		tb.Fatalf("encoding segment: %v", err)
	}
	return b64.EncodeToString(raw)
}

func headerOf(tb testing.TB, tok string) map[string]any {
	tb.Helper()
	h, _, _ := splitJWT(tb, tok)
	return decodeSegment(tb, h)
}

func claimsOf(tb testing.TB, tok string) map[string]any {
	tb.Helper()
	_, c, _ := splitJWT(tb, tok)
	return decodeSegment(tb, c)
}

// hs256 signs a signing input (header.claims) with an HMAC secret.
func hs256(input string, secret []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(input))
	return b64.EncodeToString(m.Sum(nil))
}

// forgeHS256 builds a token from header and claims and signs it with the
// secret: with the gateway's own secret it isolates every check but the
// signature's.
func forgeHS256(tb testing.TB, header, claims map[string]any, secret []byte) string {
	tb.Helper()
	input := encodeSegment(tb, header) + "." + encodeSegment(tb, claims)
	return input + "." + hs256(input, secret)
}

// flipUnusedBit changes the last character of a base64url segment so that
// it decodes to the same bytes when trailing bits are ignored: only strict
// decoding tells the two apart.
func flipUnusedBit(tb testing.TB, seg string) string {
	tb.Helper()
	if len(seg)%4 == 0 || len(seg)%4 == 1 {
		tb.Fatalf("segment of length %d has no unused bits", len(seg))
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, seg[len(seg)-1])
	return seg[:len(seg)-1] + string(alphabet[i^1])
}

// padded adds the '=' padding that base64url in JWTs must not carry.
func padded(seg string) string {
	return seg + strings.Repeat("=", (4-len(seg)%4)%4)
}

// parseJWKS decodes a JWK Set into its members, as any verifier would.
func parseJWKS(tb testing.TB, data []byte) []map[string]any {
	tb.Helper()
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&set); err != nil {
		tb.Fatalf("JWKS %s: %v", data, err)
	}
	if set.Keys == nil {
		tb.Fatalf("JWKS %s has no keys member", data)
	}
	return set.Keys
}

// publicKeyOf builds a verification key from a JWK the way an independent
// verifier does, from the published members only.
func publicKeyOf(tb testing.TB, k map[string]any) crypto.PublicKey {
	tb.Helper()
	member := func(name string) []byte {
		s, ok := k[name].(string)
		if !ok {
			tb.Fatalf("JWK %v: member %q missing", k, name)
		}
		b, err := b64.Strict().DecodeString(s)
		if err != nil {
			tb.Fatalf("JWK member %q: %v", name, err)
		}
		return b
	}
	switch k["kty"] {
	case "EC":
		if k["crv"] != "P-256" {
			tb.Fatalf("EC JWK with crv %v", k["crv"])
		}
		x, y := member("x"), member("y")
		if len(x) != 32 || len(y) != 32 {
			tb.Fatalf("EC JWK coordinates of %d and %d bytes, want 32", len(x), len(y))
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			tb.Fatalf("EC JWK: %v", err)
		}
		return pub
	case "OKP":
		if k["crv"] != "Ed25519" {
			tb.Fatalf("OKP JWK with crv %v", k["crv"])
		}
		x := member("x")
		if len(x) != ed25519.PublicKeySize {
			tb.Fatalf("Ed25519 JWK of %d bytes", len(x))
		}
		return ed25519.PublicKey(x)
	case "RSA":
		return &rsa.PublicKey{N: new(big.Int).SetBytes(member("n")), E: int(new(big.Int).SetBytes(member("e")).Int64())}
	}
	tb.Fatalf("JWK of unknown kty %v", k["kty"])
	return nil
}
