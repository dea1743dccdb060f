package gateway_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"keygate/gateway"
	"keygate/keys"
	"keygate/memstore"
	"keygate/store"
	"keygate/tokens"
)

// scrape returns the admin listener's /metrics as "name{labels} value" lines.
func scrape(t *testing.T, h http.Handler) map[string]string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		out[line[:i]] = line[i+1:]
	}
	return out
}

// TestMetricsMoveWithTraffic drives real requests through the gateway,
// wired as keygate serve wires it (the metrics made before the store, so
// that they see its commits), and reads what the admin listener serves.
func TestMetricsMoveWithTraffic(t *testing.T) {
	ctx := t.Context()
	cfg := gateway.DefaultConfig()
	cfg.Database.Path = filepath.Join(t.TempDir(), "k.db")
	cfg.RateLimit.LoginPerKeyPerMinute = 3
	cfg.RateLimit.LoginFailuresPerMinute = 2
	cfg.RateLimit.RefreshPerFamilyPerMinute = 3
	cfg.RateLimit.APIPerMinute = 2
	cfg.Tokens.SigningKeyActivationDelay = time.Hour
	m := gateway.NewMetrics(cfg)
	st, err := store.Open(ctx, cfg.Database, store.Options{Create: true, OnCommit: m.CommitObserver()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	master, err := tokens.NewMasterKey("metrics-test-master-key-0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now()}
	gw, err := gateway.New(ctx, cfg, st, master, gateway.Options{Metrics: m, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	p, k, err := gw.Keys.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	api := gw.Handler()
	admin := gw.Server.Admin(gateway.ServerAdmin(gw))
	// Each call comes from an address of its own unless it names one, so
	// that only the calls meant to spend an address's failure budget do.
	calls := 0
	callFrom := func(addr, method, path, body string, header ...string) *httptest.ResponseRecorder {
		t.Helper()
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		req := httptest.NewRequest(method, path, r)
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		calls++
		req.RemoteAddr = addr
		if addr == "" {
			req.RemoteAddr = fmt.Sprintf("192.0.2.%d:1234", calls)
		}
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		return rec
	}
	call := func(method, path, body string, header ...string) *httptest.ResponseRecorder {
		t.Helper()
		return callFrom("", method, path, body, header...)
	}
	login := func(key string) *httptest.ResponseRecorder {
		return call(http.MethodPost, "/api/v1/auth/login", `{"apiKey":"`+key+`"}`)
	}
	first := login(k.APIKey.Reveal())
	var pair struct{ RefreshToken string }
	_ = json.Unmarshal(first.Body.Bytes(), &pair)
	login("ck_" + strings.Repeat("a", 55)) // malformed company key
	login(keys.NewAPIKey(keys.PartnerKeyPrefix).Reveal())
	login(k.APIKey.Reveal())
	login(k.APIKey.Reveal())
	login(k.APIKey.Reveal()) // the fourth within a minute: limited per key
	refresh := func(rt string) *httptest.ResponseRecorder {
		return call(http.MethodPost, "/api/v1/auth/refresh", `{"refreshToken":"`+rt+`"}`)
	}
	commits := func() (int, int) {
		t.Helper()
		got := scrape(t, admin)
		n, _ := strconv.Atoi(got["keygate_store_commit_duration_seconds_count"])
		b, _ := strconv.Atoi(got["keygate_store_batch_size_count"])
		return n, b
	}
	commitsBefore, batchesBefore := commits()
	second := decodePair(t, refresh(pair.RefreshToken))
	if n, b := commits(); n <= commitsBefore || b <= batchesBefore {
		t.Errorf("a refresh wrote its family, yet commits %d -> %d, batches %d -> %d", commitsBefore, n, batchesBefore, b)
	}
	refresh(pair.RefreshToken) // again, inside the grace window
	refresh("rt_nonsense")
	clk.Advance(time.Minute) // out of the grace window: reuse, which revokes the family
	refresh(pair.RefreshToken)
	refresh(second.RefreshToken) // the family is dead now
	// An expired refresh token.
	fresh := decodePair(t, login(k.APIKey.Reveal()))
	clk.Advance(cfg.Tokens.RefreshTTL + time.Minute)
	refresh(fresh.RefreshToken)
	// The per-family limit: a family of its own, four refreshes a minute.
	live := decodePair(t, login(k.APIKey.Reveal()))
	for range 4 {
		if rec := refresh(live.RefreshToken); rec.Code == http.StatusOK {
			live = decodePair(t, rec)
		}
	}
	// The per-principal API limit: three calls a minute.
	for range 3 {
		call(http.MethodGet, "/api/v1/auth/me", "", "R-Auth", live.JWT)
	}
	// An address's failure budget: two failures, then the third is refused.
	for range 3 {
		callFrom("198.51.100.9:1", http.MethodPost, "/api/v1/auth/login", `{"apiKey":"pk_guess"}`)
	}
	// The OAuth face counts into the same series.
	oauth := func(body string) *httptest.ResponseRecorder {
		return call(http.MethodPost, "/oauth2/token", body, "Content-Type", "application/x-www-form-urlencoded")
	}
	oauth("grant_type=client_credentials&client_id=" + p.ID + "&client_secret=" + k.APIKey.Reveal())
	oauth("grant_type=client_credentials&client_id=" + p.ID + "&client_secret=" + keys.NewAPIKey(keys.CompanyKeyPrefix).Reveal())
	oauth("grant_type=refresh_token&refresh_token=" + live.RefreshToken + "&client_id=" + p.ID + "&client_secret=" + k.APIKey.Reveal())
	call("BREW", "/api/v1/auth/login", "")
	call(http.MethodGet, "/nope", "")

	got := scrape(t, admin)
	for series, want := range map[string]string{
		`keygate_logins_total{kind="partner",outcome="ok"}`:           "6", // 3, 2 after a minute, 1 on OAuth
		`keygate_logins_total{kind="partner",outcome="invalid_key"}`:  "3", // 1, and 2 guesses from one address
		`keygate_logins_total{kind="company",outcome="invalid_key"}`:  "2", // 1, and 1 on OAuth
		`keygate_logins_total{kind="partner",outcome="rate_limited"}`: "2", // per key, and the third guess
		`keygate_logins_total{kind="unknown",outcome="ok"}`:           "0", // there from the start
		`keygate_rate_limited_total{limit="login_per_key"}`:           "1",
		`keygate_rate_limited_total{limit="login_failures"}`:          "1",
		`keygate_rate_limited_total{limit="refresh_per_family"}`:      "2", // the fourth, and the OAuth refresh
		`keygate_rate_limited_total{limit="api"}`:                     "1",
		`keygate_refreshes_total{outcome="ok"}`:                       "4", // 1, and 3 of the family of its own
		`keygate_refreshes_total{outcome="grace_retry"}`:              "1",
		`keygate_refreshes_total{outcome="reuse_detected"}`:           "1",
		`keygate_refreshes_total{outcome="expired"}`:                  "1",
		`keygate_refreshes_total{outcome="invalid"}`:                  "2", // junk, and the revoked family's
		`keygate_refreshes_total{outcome="rate_limited"}`:             "2",
		`keygate_refreshes_total{outcome="error"}`:                    "0",
		`http_server_request_duration_seconds_count{http_request_method="POST",http_response_status_code="200",http_route="/api/v1/auth/login"}`: "5",
		`http_server_request_duration_seconds_count{http_request_method="POST",http_response_status_code="200",http_route="/oauth2/token"}`:      "1",
		`http_server_request_duration_seconds_count{http_request_method="POST",http_response_status_code="401",http_route="/oauth2/token"}`:      "1",
		`http_server_request_duration_seconds_count{http_request_method="POST",http_response_status_code="429",http_route="/oauth2/token"}`:      "1",
		`http_server_request_duration_seconds_count{http_request_method="_OTHER",http_response_status_code="405",http_route="unmatched"}`:        "1",
		`http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_code="404",http_route="unmatched"}`:           "1",
		`keygate_signing_keys{state="active"}`:  "1",
		`keygate_signing_keys{state="pending"}`: "0",
		`keygate_store_failing`:                 "0",
	} {
		if got := got[series]; got != want {
			t.Errorf("%s = %q, want %s", series, got, want)
		}
	}
	var buildInfo bool
	for series := range got {
		buildInfo = buildInfo || strings.HasPrefix(series, "keygate_build_info{goversion=")
		for _, secret := range []string{k.APIKey.Reveal(), pair.RefreshToken, k.ID} {
			if strings.Contains(series, secret) {
				t.Errorf("a label carries a key, token or id: %s", series)
			}
		}
	}
	if !buildInfo || got["go_goroutines"] == "" || got["process_resident_memory_bytes"] == "" {
		t.Errorf("build info, Go or process collectors missing")
	}

	// A rotation: one key pending until it activates.
	if _, err := gw.Keyring.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := gw.Keyring.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if got := scrape(t, admin)[`keygate_signing_keys{state="pending"}`]; got != "1" {
		t.Errorf("after a rotation, pending keys = %q, want 1", got)
	}
}

// clock is a manually advanced time source.
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

// decodePair reads a login's or refresh's tokens, failing unless it is a 200.
func decodePair(t *testing.T, rec *httptest.ResponseRecorder) struct{ JWT, RefreshToken string } {
	t.Helper()
	var pair struct{ JWT, RefreshToken string }
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &pair) != nil {
		t.Fatalf("want tokens, got %d %s", rec.Code, rec.Body)
	}
	return pair
}

// TestWarnsOfAShortActivationDelay: a signing key that signs before the
// JWKS caches downstream have seen it is worth one warning at start.
func TestWarnsOfAShortActivationDelay(t *testing.T) {
	for _, tc := range []struct {
		delay time.Duration
		warn  bool
	}{{5 * time.Second, true}, {time.Hour, false}} {
		cfg := gateway.DefaultConfig()
		cfg.Tokens.SigningKeyActivationDelay = tc.delay
		var logs strings.Builder
		log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
		master, _ := tokens.NewMasterKey("metrics-test-master-key-0123456789abcdef")
		if _, err := gateway.New(t.Context(), cfg, memstore.New(), master, gateway.Options{Log: log}); err != nil {
			t.Fatal(err)
		}
		lines := strings.Count(logs.String(), "level=WARN")
		named := strings.Contains(logs.String(), "signing_key_activation_delay="+tc.delay.String()) && strings.Contains(logs.String(), "jwks_max_age=5m0s")
		if tc.warn && (lines != 1 || !named) || !tc.warn && lines != 0 {
			t.Errorf("delay %s: logs %q", tc.delay, logs.String())
		}
	}
}

// TestWarnsOfAnIssuerOAuthClientsRefuse: with server.public_url set, the
// metadata's issuer (tokens.issuer) must be that URL, and https (RFC 8414
// §2, §3.3); anything else is worth one warning at start.
func TestWarnsOfAnIssuerOAuthClientsRefuse(t *testing.T) {
	for _, tc := range []struct {
		publicURL, issuer string
		warn              bool
	}{
		{"", "keygate", false},
		{"https://auth.example.com", "https://auth.example.com", false},
		{"https://auth.example.com", "keygate", true},
		{"https://auth.example.com", "https://auth.example.com/", true},
		{"https://auth.example.com", "https://other.example.com", true},
		{"http://auth.example.com", "http://auth.example.com", true},
	} {
		cfg := gateway.DefaultConfig()
		cfg.Server.PublicURL, cfg.Tokens.Issuer = tc.publicURL, tc.issuer
		var logs strings.Builder
		log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
		master, _ := tokens.NewMasterKey("metrics-test-master-key-0123456789abcdef")
		if _, err := gateway.New(t.Context(), cfg, memstore.New(), master, gateway.Options{Log: log}); err != nil {
			t.Fatal(err)
		}
		lines := strings.Count(logs.String(), "level=WARN")
		named := strings.Contains(logs.String(), "issuer="+tc.issuer) && strings.Contains(logs.String(), "public_url="+tc.publicURL) &&
			strings.Contains(logs.String(), "RFC 8414")
		if tc.warn && (lines != 1 || !named) || !tc.warn && lines != 0 {
			t.Errorf("public_url %q, issuer %q: logs %q", tc.publicURL, tc.issuer, logs.String())
		}
	}
}
