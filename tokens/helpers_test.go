package tokens_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"keygate/gateway"
	"keygate/keys"
	"keygate/memstore"
	"keygate/store"
	"keygate/tokens"
	"keygate/verify/accesstoken/accesstokentest"
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
	memstore    bool                          // the in-memory store instead of SQLite
	wrap        func(store.Store) store.Store // what the gateway sees of the store
}

func withAlg(alg string) func(*envConfig) { return func(c *envConfig) { c.alg = alg } }

func withGrace(d time.Duration) func(*envConfig) {
	return func(c *envConfig) { c.refresh.ReuseGrace = d }
}

// withMemstore runs the env on the in-memory store, the second backend.
func withMemstore() func(*envConfig) { return func(c *envConfig) { c.memstore = true } }

// withSpy puts spy between the gateway and its store.
func withSpy(spy *spyStore) func(*envConfig) {
	return func(c *envConfig) {
		c.wrap = func(st store.Store) store.Store { spy.Store = st; return spy }
	}
}

// withDB opens the database file of another env, as a second process on
// the same machine would.
func withDB(other *env) func(*envConfig) {
	return func(c *envConfig) { c.dbPath, c.clock = other.cfg.dbPath, other.clock }
}

// backends are the stores the invariants of refresh-token families are
// checked on: the SQLite file keygate serves from, and the in-memory store
// that passes the same contract.
var backends = []struct {
	name string
	opt  func(*envConfig)
}{
	{"sqlite", func(*envConfig) {}},
	{"memstore", withMemstore()},
}

// eachBackend runs test once per backend, passing the option that selects it.
func eachBackend(t *testing.T, test func(t *testing.T, backend func(*envConfig))) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { test(t, b.opt) })
	}
}

// env is a gateway wired by gateway.New, as keygate serve wires it, on a
// real SQLite file in a temporary directory (or, withMemstore, in memory).
type env struct {
	cfg    envConfig
	clock  *testClock
	db     store.Store
	master tokens.MasterKey
	// refreshKey is the refresh tokens' MAC key: the one master derives
	// (newEnv starts every database with a placeholder, see there).
	refreshKey tokens.RefreshKey
	gw         *gateway.Gateway
	keys       *keys.Service
	ring       *tokens.Keyring
	jwt        *tokens.JWT
	svc        *tokens.Service
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
	c := gateway.DefaultConfig()
	c.Database.Path = cfg.dbPath
	if cfg.synchronous != "" {
		c.Database.Synchronous = cfg.synchronous
	}
	c.Tokens.Algorithm = cfg.alg
	c.Tokens.HMACSecret = keys.Secret(cfg.hmacSecret)
	c.Tokens.Issuer, c.Tokens.Audience = testIssuer, testAudience
	c.Tokens.AccessTTL, c.Tokens.Leeway, c.Tokens.SigningKeyActivationDelay = testAccessTTL, testLeeway, testDelay
	c.Tokens.RefreshTTL, c.Tokens.RefreshMaxLifetime = cfg.refresh.TTL, cfg.refresh.MaxLifetime
	c.Tokens.RefreshReuseGrace, c.Tokens.Retention = cfg.refresh.ReuseGrace, cfg.refresh.Retention

	ctx := context.Background()
	var db store.Store = memstore.New()
	if !cfg.memstore {
		var err error
		if db, err = store.Open(ctx, c.Database, store.Options{Create: true, Now: cfg.clock.Now}); err != nil {
			tb.Fatalf("store.Open: %v", err)
		}
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
	// Tests build refresh tokens under the MAC key a master key derives
	// (refreshtoken_test.go), and two databases under one master key
	// accept each other's well-formed tokens: each starts as a database
	// used before keygate stored the key, with a placeholder. Fresh ones
	// get a random key: secrets_test.go.
	if _, err := db.AddSealedSecret(ctx, tokens.SealedSecret{Name: tokens.RefreshMACSecret, CreatedAt: cfg.clock.Now()}); err != nil {
		tb.Fatalf("AddSealedSecret: %v", err)
	}
	seen := db
	if cfg.wrap != nil {
		seen = cfg.wrap(db)
	}
	gw, err := gateway.New(ctx, c, seen, master, gateway.Options{Log: discardLogger(), Now: cfg.clock.Now})
	if err != nil {
		tb.Fatalf("gateway.New: %v", err)
	}
	tb.Cleanup(func() { gw.Recorder.Flush(ctx) }) // runs before db.Close
	refresh, err := tokens.LoadRefreshKey(ctx, db, master, cfg.clock.Now)
	if err != nil {
		tb.Fatalf("LoadRefreshKey: %v", err)
	}
	return &env{cfg: cfg, clock: cfg.clock, db: db, master: master, refreshKey: refresh, gw: gw, keys: gw.Keys, ring: gw.Keyring, jwt: gw.JWT, svc: gw.Tokens}
}

// audit returns the whole audit trail, oldest first, once the batched
// login events are written.
func (e *env) audit(tb testing.TB) []keys.AuditEvent {
	tb.Helper()
	e.gw.Recorder.Flush(context.Background())
	evs, err := e.keys.ListAudit(context.Background(), time.Time{})
	if err != nil {
		tb.Fatalf("ListAudit: %v", err)
	}
	return evs
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

// spyStore counts the calls that take the store's writer, by method, and
// the family decisions that wrote: enough to prove a path writes nothing.
type spyStore struct {
	store.Store

	mu            sync.Mutex
	calls         map[string]int
	familyWrites  int
	familyInserts int // writes of a family that had no row (a seed)
}

// writerCalls is how many calls took the writer so far, by method.
func (s *spyStore) writerCalls() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.calls))
	for m, n := range s.calls {
		out[m] = n
	}
	return out
}

// familyChanges is how many family decisions wrote, and how many of those
// wrote a family's first row.
func (s *spyStore) familyChanges() (writes, inserts int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.familyWrites, s.familyInserts
}

func (s *spyStore) called(method string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.calls == nil {
		s.calls = map[string]int{}
	}
	s.calls[method]++
}

func (s *spyStore) UpdateFamily(ctx context.Context, id string, seed *tokens.Family, decide func(f *tokens.Family) (tokens.Change, error)) error {
	s.called("UpdateFamily")
	return s.Store.UpdateFamily(ctx, id, seed, func(f *tokens.Family) (tokens.Change, error) {
		// A seeded family is still at generation 0 and unrevoked when
		// decide sees it; no stored row ever is (logout writes a revoked one).
		first := seed != nil && f.Generation == 0 && f.RevokedAt == nil
		ch, err := decide(f)
		if ch.Write {
			s.mu.Lock()
			s.familyWrites++
			if first {
				s.familyInserts++
			}
			s.mu.Unlock()
		}
		return ch, err
	})
}

func (s *spyStore) DeleteFamilies(ctx context.Context, before time.Time, limit int) (int, error) {
	s.called("DeleteFamilies")
	return s.Store.DeleteFamilies(ctx, before, limit)
}

func (s *spyStore) AddSigningKey(ctx context.Context, k tokens.SigningKeyRecord) error {
	s.called("AddSigningKey")
	return s.Store.AddSigningKey(ctx, k)
}

func (s *spyStore) RecordUsage(ctx context.Context, lastUsed map[string]time.Time, events []keys.AuditEvent) error {
	s.called("RecordUsage")
	return s.Store.RecordUsage(ctx, lastUsed, events)
}

func (s *spyStore) CreatePartner(ctx context.Context, p keys.Partner, k keys.Key, digest keys.Digest, ev []keys.AuditEvent) error {
	s.called("CreatePartner")
	return s.Store.CreatePartner(ctx, p, k, digest, ev)
}

func (s *spyStore) DisablePartner(ctx context.Context, id string, at time.Time, ev keys.AuditEvent) error {
	s.called("DisablePartner")
	return s.Store.DisablePartner(ctx, id, at, ev)
}

func (s *spyStore) CreateCompany(ctx context.Context, c keys.Company, k keys.Key, digest keys.Digest, ev []keys.AuditEvent) error {
	s.called("CreateCompany")
	return s.Store.CreateCompany(ctx, c, k, digest, ev)
}

func (s *spyStore) DisableCompany(ctx context.Context, partnerID, id string, at time.Time, ev keys.AuditEvent) error {
	s.called("DisableCompany")
	return s.Store.DisableCompany(ctx, partnerID, id, at, ev)
}

func (s *spyStore) CreateKey(ctx context.Context, k keys.Key, digest keys.Digest, ev keys.AuditEvent) error {
	s.called("CreateKey")
	return s.Store.CreateKey(ctx, k, digest, ev)
}

func (s *spyStore) RevokeKey(ctx context.Context, o keys.Owner, keyID string, at time.Time, ev keys.AuditEvent) error {
	s.called("RevokeKey")
	return s.Store.RevokeKey(ctx, o, keyID, at, ev)
}

// family reads the row of tok's family, if it has one. The store has no
// plain read of a family: a decision that writes nothing is one.
func (e *env) family(tb testing.TB, tok keys.Secret) (tokens.Family, bool) {
	tb.Helper()
	id, ok := familyOf(e.svc, tok.Reveal())
	if !ok {
		tb.Fatalf("FamilyOf refused a token the service issued")
	}
	var f tokens.Family
	err := e.db.UpdateFamily(context.Background(), id, nil, func(got *tokens.Family) (tokens.Change, error) {
		f = *got
		return tokens.Change{}, nil
	})
	if errors.Is(err, keys.ErrNotFound) {
		return tokens.Family{}, false
	}
	if err != nil {
		tb.Fatalf("reading family %s: %v", id, err)
	}
	return f, true
}

// sameFamily compares families by instant, not by time.Time's fields.
func sameFamily(a, b tokens.Family) bool {
	times := func(f tokens.Family) []time.Time {
		return []time.Time{f.CreatedAt, f.RotatedAt, f.ExpiresAt, f.ParentExpiresAt, f.FirstExpiresAt}
	}
	for i, at := range times(a) {
		if !at.Equal(times(b)[i]) {
			return false
		}
	}
	if (a.RevokedAt == nil) != (b.RevokedAt == nil) || a.RevokedAt != nil && !a.RevokedAt.Equal(*b.RevokedAt) {
		return false
	}
	return a.ID == b.ID && a.Principal == b.Principal && a.Generation == b.Generation &&
		a.RevokeReason == b.RevokeReason && a.PrincipalActive == b.PrincipalActive
}

// principal is a partner or company with its API key.
type principal struct {
	keys.Principal
	apiKey string
}

func (e *env) newPartner(tb testing.TB, name string) principal {
	tb.Helper()
	_, k, err := e.keys.CreatePartner(context.Background(), keys.Operator, keys.PartnerInput{Name: name})
	if err != nil {
		tb.Fatalf("CreatePartner: %v", err)
	}
	return principalOf(k)
}

func (e *env) newCompany(tb testing.TB, partner principal, name string) principal {
	tb.Helper()
	actor := keys.ActorFor(partner.Principal, "192.0.2.1")
	_, k, err := e.keys.CreateCompany(context.Background(), actor, partner.ID, keys.CompanyInput{Name: name})
	if err != nil {
		tb.Fatalf("CreateCompany: %v", err)
	}
	return principalOf(k)
}

// principalOf is who a new key speaks for, as a token names it: no name.
func principalOf(k keys.NewKey) principal {
	return principal{Principal: keys.PrincipalOf(k.ID, k.Owner, ""), apiKey: k.APIKey.Reveal()}
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
	tok, _, err := e.jwt.Sign(p, "", e.clock.Now())
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

// The token-surgery helpers the attack tables are built with, shared with
// verify's tests.
var (
	splitJWT      = accesstokentest.Split
	encodeSegment = accesstokentest.Encode
	headerOf      = accesstokentest.Header
	claimsOf      = accesstokentest.Claims
	hs256         = accesstokentest.HS256
	forgeHS256    = accesstokentest.ForgeHS256
	flipUnusedBit = accesstokentest.FlipUnusedBit
	publicKeyOf   = accesstokentest.PublicKey
)

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

// familyOf is the family id of a refresh token the service accepts.
func familyOf(svc *tokens.Service, raw string) (string, bool) {
	t, ok := svc.ParseRefreshToken(raw)
	if !ok {
		return "", false
	}
	return t.Family(), true
}
