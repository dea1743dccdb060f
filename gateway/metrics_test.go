package gateway_test

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
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

// TestMetricsMoveWithTraffic drives real requests through the gateway and
// reads the counters the admin listener serves.
func TestMetricsMoveWithTraffic(t *testing.T) {
	ctx := t.Context()
	cfg := gateway.DefaultConfig()
	cfg.Database.Path = filepath.Join(t.TempDir(), "k.db")
	cfg.RateLimit.LoginPerKeyPerMinute = 3
	cfg.Tokens.SigningKeyActivationDelay = time.Hour
	st, err := store.Open(ctx, cfg.Database, store.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	master, err := tokens.NewMasterKey("metrics-test-master-key-0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(ctx, cfg, st, master, gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, k, err := gw.Keys.CreatePartner(ctx, keys.Operator, "Acme")
	if err != nil {
		t.Fatal(err)
	}
	api := gw.Handler()
	admin := gw.Server.Admin(gateway.ServerAdmin(gw))
	call := func(method, path, body string) *httptest.ResponseRecorder {
		t.Helper()
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		req := httptest.NewRequest(method, path, r)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		return rec
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
	refresh(pair.RefreshToken)
	refresh(pair.RefreshToken) // again, inside the grace window
	refresh("rt_nonsense")
	call("BREW", "/api/v1/auth/login", "")
	call(http.MethodGet, "/nope", "")

	m := scrape(t, admin)
	for series, want := range map[string]string{
		`keygate_logins_total{kind="partner",outcome="ok"}`:           "3",
		`keygate_logins_total{kind="partner",outcome="invalid_key"}`:  "1",
		`keygate_logins_total{kind="company",outcome="invalid_key"}`:  "1",
		`keygate_logins_total{kind="partner",outcome="rate_limited"}`: "1",
		`keygate_rate_limited_total{limit="login_per_key"}`:           "1",
		`keygate_refreshes_total{outcome="ok"}`:                       "1",
		`keygate_refreshes_total{outcome="grace_retry"}`:              "1",
		`keygate_refreshes_total{outcome="invalid"}`:                  "1",
		`http_server_request_duration_seconds_count{http_request_method="POST",http_response_status_code="200",http_route="/api/v1/auth/login"}`: "3",
		`http_server_request_duration_seconds_count{http_request_method="_OTHER",http_response_status_code="405",http_route="unmatched"}`:        "1",
		`http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_code="404",http_route="unmatched"}`:           "1",
		`keygate_signing_keys{state="active"}`:  "1",
		`keygate_signing_keys{state="pending"}`: "0",
		`keygate_store_failing`:                 "0",
	} {
		if got := m[series]; got != want {
			t.Errorf("%s = %q, want %s", series, got, want)
		}
	}
	var buildInfo bool
	for series := range m {
		buildInfo = buildInfo || strings.HasPrefix(series, "keygate_build_info{goversion=")
		for _, secret := range []string{k.APIKey.Reveal(), pair.RefreshToken, k.ID} {
			if strings.Contains(series, secret) {
				t.Errorf("a label carries a key, token or id: %s", series)
			}
		}
	}
	if !buildInfo || m["go_goroutines"] == "" || m["process_resident_memory_bytes"] == "" {
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
