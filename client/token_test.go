package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"keygate/api"
	"keygate/client"
)

func TestLogsInLazilyAndOnce(t *testing.T) {
	k := startKeygate(t)
	c := newClient(t, k, client.Config{})
	if n := k.logins(); n != 0 {
		t.Fatalf("New logged in %d times", n)
	}
	tok := mustToken(t, c)
	for range 10 {
		if again := mustToken(t, c); again != tok {
			t.Fatal("a fresh token was replaced")
		}
	}
	if k.logins() != 1 || k.refreshes() != 0 {
		t.Errorf("%d logins, %d refreshes; want 1, 0", k.logins(), k.refreshes())
	}
	if issued := k.tokens(); len(issued) != 1 || issued[0].JWT != tok {
		t.Error("Token did not return the token keygate issued")
	}
}

// TestSingleFlight: 100 goroutines needing a token at once cause one login;
// once it is due, 100 goroutines cause one refresh.
func TestSingleFlight(t *testing.T) {
	k := startKeygate(t)
	clk := &offsetClock{}
	c := newClient(t, k, client.Config{Now: clk.Now})
	all := func() map[string]bool {
		var mu sync.Mutex
		got := map[string]bool{}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 100 {
			wg.Go(func() {
				<-start
				tok, err := c.Token(context.Background())
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				got[tok] = true
				mu.Unlock()
			})
		}
		close(start)
		wg.Wait()
		return got
	}
	if got := all(); len(got) != 1 || k.logins() != 1 {
		t.Fatalf("100 goroutines: %d tokens, %d logins; want 1, 1", len(got), k.logins())
	}
	clk.Advance(13 * time.Minute) // past 80% of 15 minutes
	if got := all(); len(got) != 1 || k.refreshes() != 1 || k.logins() != 1 {
		t.Fatalf("100 goroutines at refresh time: %d tokens, %d refreshes, %d logins; want 1, 1, 1", len(got), k.refreshes(), k.logins())
	}
}

// TestRefreshAheadOfExpiry: a token is refreshed once 80% of its lifetime
// has passed, or RefreshBefore ahead of its expiry.
func TestRefreshAheadOfExpiry(t *testing.T) {
	for _, tc := range []struct {
		name          string
		refreshBefore time.Duration
		due           time.Duration // after the login
	}{
		{"80% of the lifetime", 0, 12 * time.Minute},
		{"RefreshBefore 1m", time.Minute, 14 * time.Minute},
		{"RefreshBefore longer than the lifetime", time.Hour, 7*time.Minute + 30*time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := startKeygate(t)
			clk := &offsetClock{}
			c := newClient(t, k, client.Config{Now: clk.Now, RefreshBefore: tc.refreshBefore})
			first := mustToken(t, c)
			// The token's iat is its second, so up to a second of its
			// lifetime is gone already.
			clk.Advance(tc.due - 2*time.Second)
			if mustToken(t, c) != first || k.refreshes() != 0 {
				t.Fatalf("refreshed before %v", tc.due-2*time.Second)
			}
			clk.Advance(2 * time.Second)
			if mustToken(t, c) == first || k.refreshes() != 1 || k.logins() != 1 {
				t.Fatalf("not refreshed at %v: %d refreshes, %d logins", tc.due, k.refreshes(), k.logins())
			}
		})
	}
}

// TestShortLivedTokens: with tokens living 2 s, a client used for 4 s
// always holds a valid token, refreshing on its own.
func TestShortLivedTokens(t *testing.T) {
	k := startKeygate(t, withAccessTTL(2*time.Second))
	c := newClient(t, k, client.Config{})
	v := k.gw.JWT
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		tok := mustToken(t, c)
		if _, err := v.Verify(tok); err != nil {
			t.Fatalf("Token returned a token keygate refuses: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // the pace of a caller, not a wait for a condition
	}
	if k.logins() != 1 || k.refreshes() < 2 {
		t.Errorf("%d logins, %d refreshes in 4 s of 2 s tokens", k.logins(), k.refreshes())
	}
}

// TestDeadRefreshTokenLogsIn: a refresh token keygate refuses (here, its
// family logged out behind the client's back) is replaced by a login.
func TestDeadRefreshTokenLogsIn(t *testing.T) {
	k := startKeygate(t)
	clk := &offsetClock{}
	c := newClient(t, k, client.Config{Now: clk.Now})
	first := mustToken(t, c)
	if err := k.gw.Tokens.Logout(context.Background(), k.tokens()[0].RefreshToken); err != nil {
		t.Fatal(err)
	}
	clk.Advance(13 * time.Minute)
	if mustToken(t, c) == first {
		t.Fatal("the token was not renewed")
	}
	if k.refreshes() != 1 || k.logins() != 2 {
		t.Errorf("%d refreshes, %d logins; want 1 refused refresh and a second login", k.refreshes(), k.logins())
	}
}

// TestLostRefreshResponse: keygate rotates the refresh token but its answer
// never arrives; the client sends the same token again and keygate's grace
// window answers with the same successor, so the family lives on.
func TestLostRefreshResponse(t *testing.T) {
	k := startKeygate(t)
	clk := &offsetClock{}
	c := newClient(t, k, client.Config{Now: clk.Now})
	mustToken(t, c)
	var lost []byte
	k.setFault(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if r.URL.Path != "/api/v1/auth/refresh" || lost != nil {
			return false
		}
		rec := &recorder{ResponseWriter: discardWriter{}}
		next.ServeHTTP(rec, r) // keygate rotates the token...
		lost = rec.body.Bytes()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close() // ...and the answer is lost
		}
		return true
	})
	clk.Advance(13 * time.Minute)
	mustToken(t, c)
	if k.refreshes() != 2 || k.logins() != 1 {
		t.Fatalf("%d refreshes, %d logins; want the refresh sent twice and no new login", k.refreshes(), k.logins())
	}
	issued := k.tokens()
	got := issued[len(issued)-1]
	if lost == nil || !bytes.Contains(lost, []byte(got.RefreshToken)) {
		t.Fatalf("the retry got refresh token %.12s..., not the successor whose answer was lost", got.RefreshToken)
	}
	// The family was not flagged for reuse: it refreshes on.
	clk.Advance(13 * time.Minute)
	mustToken(t, c)
	if k.refreshes() != 3 || k.logins() != 1 {
		t.Errorf("next refresh: %d refreshes, %d logins", k.refreshes(), k.logins())
	}
}

type discardWriter struct{}

func (discardWriter) Header() http.Header         { return http.Header{} }
func (discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (discardWriter) WriteHeader(int)             {}

// rateLimited answers the first n logins as keygate does when a limit is
// hit: 429, its error body, Retry-After: 1.
func rateLimited(n int) func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
	var mu sync.Mutex
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path != "/api/v1/auth/login" || n == 0 {
			return false
		}
		n--
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = fmt.Fprintf(w, `{"error":%q,"message":"too many requests, retry later"}`, api.CodeRateLimited)
		return true
	}
}

// TestRateLimitWaitsRetryAfter: keygate's 429 is waited out when the
// caller's context allows, and returned at once when it does not.
func TestRateLimitWaitsRetryAfter(t *testing.T) {
	k := startKeygate(t)
	c := newClient(t, k, client.Config{})
	k.setFault(rateLimited(1))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := c.Token(ctx); err != nil {
		t.Fatalf("Token: %v", err)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("Token returned after %v, before Retry-After", d)
	}
	if k.logins() != 2 {
		t.Errorf("%d login requests, want the limited one and its retry", k.logins())
	}

	c2 := newClient(t, k, client.Config{})
	k.setFault(rateLimited(1))
	ctx, cancel = context.WithTimeout(context.Background(), 900*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err := c2.Token(ctx)
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusTooManyRequests || ae.Code != api.CodeRateLimited || ae.RetryAfter != time.Second {
		t.Fatalf("Token with 900 ms to spare: %v, want the 429", err)
	}
	if d := time.Since(start); d > 600*time.Millisecond {
		t.Errorf("Token waited %v for a Retry-After beyond its deadline, not returning at once", d)
	}
}

// TestKeygatesOwnRateLimit: keygate's real per-key login limit.
func TestKeygatesOwnRateLimit(t *testing.T) {
	k := startKeygate(t, withLoginsPerMinute(1))
	mustToken(t, newClient(t, k, client.Config{}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := newClient(t, k, client.Config{}).Token(ctx)
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusTooManyRequests || ae.RetryAfter < time.Second {
		t.Fatalf("second login within the minute: %v", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not say the wait would pass the deadline", err)
	}
}

func TestBadAPIKey(t *testing.T) {
	k := startKeygate(t)
	c := newClient(t, k, client.Config{APIKey: "pk_notarealkey"})
	_, err := c.Token(context.Background())
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized || ae.Code != api.CodeUnauthorized || ae.Message == "" {
		t.Fatalf("Token with a bad key: %v", err)
	}
}

// TestKeygateDownAheadOfExpiry: when keygate cannot be reached at refresh
// time, the token keeps being used until it expires; then Token fails.
func TestKeygateDownAheadOfExpiry(t *testing.T) {
	k := startKeygate(t)
	clk := &offsetClock{}
	c := newClient(t, k, client.Config{Now: clk.Now})
	first := mustToken(t, c)
	k.srv.Close()
	clk.Advance(13 * time.Minute)
	if tok := mustToken(t, c); tok != first {
		t.Fatal("a different token with keygate down")
	}
	clk.Advance(3 * time.Minute)
	if _, err := c.Token(context.Background()); err == nil {
		t.Fatal("Token returned an expired token")
	}
}

func TestLogout(t *testing.T) {
	k := startKeygate(t)
	c := newClient(t, k, client.Config{})
	mustToken(t, c)
	rt := k.tokens()[0].RefreshToken
	if err := c.Logout(context.Background()); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	if _, err := k.gw.Tokens.Refresh(context.Background(), rt, "192.0.2.1"); err == nil {
		t.Error("the refresh token still works after Logout")
	}
	mustToken(t, c)
	if k.logins() != 2 {
		t.Errorf("%d logins, want a second one after Logout", k.logins())
	}
	if err := newClient(t, k, client.Config{}).Logout(context.Background()); err != nil {
		t.Errorf("Logout before any login: %v", err)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for _, cfg := range []client.Config{
		{APIKey: "pk_x"},
		{BaseURL: "keygate.example", APIKey: "pk_x"},
		{BaseURL: "ftp://keygate.example", APIKey: "pk_x"},
		{BaseURL: "http://keygate.example?x=1", APIKey: "pk_x"},
		{BaseURL: "http://keygate.example"},
		{BaseURL: "http://keygate.example", APIKey: " pk_x"},
		{BaseURL: "http://keygate.example", APIKey: "pk_x", RefreshBefore: -time.Second},
	} {
		if _, err := client.New(cfg); err == nil {
			t.Errorf("New(%v) succeeded", cfg)
		}
	}
}

// TestNoSecretsPrinted: logs at debug, errors, and the client and its
// configuration printed every way carry no key and no token.
func TestNoSecretsPrinted(t *testing.T) {
	k := startKeygate(t)
	logs := &logBuffer{}
	clk := &offsetClock{}
	cfg := client.Config{Now: clk.Now, Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	c := newClient(t, k, cfg)
	mustToken(t, c)
	clk.Advance(13 * time.Minute)
	mustToken(t, c) // a refresh
	if err := k.gw.Tokens.Logout(context.Background(), k.tokens()[1].RefreshToken); err != nil {
		t.Fatal(err)
	}
	clk.Advance(13 * time.Minute)
	mustToken(t, c) // a refused refresh and a login
	_, badErr := newClient(t, k, client.Config{APIKey: k.apiKey + "x", Logger: cfg.Logger}).Token(context.Background())
	k.srv.Close()
	clk.Advance(13 * time.Minute)
	mustToken(t, c) // a failed refresh, logged

	cfg.APIKey, cfg.BaseURL = k.apiKey, k.srv.URL
	secrets := []string{k.apiKey}
	for _, tr := range k.tokens() {
		secrets = append(secrets, tr.JWT, tr.RefreshToken)
	}
	if len(logs.String()) == 0 {
		t.Fatal("nothing logged")
	}
	assertNoSecrets(t, secrets, map[string]string{
		"the log":             logs.String(),
		"the bad key's error": badErr.Error(),
		"Config %v":           fmt.Sprintf("%v", cfg),
		"Config %+v":          fmt.Sprintf("%+v", cfg),
		"Config %#v":          fmt.Sprintf("%#v", cfg),
		"Client %v":           fmt.Sprintf("%v", c),
		"Client %+v":          fmt.Sprintf("%+v", c),
		"slog of both":        logOf(cfg, c),
	})
}

func logOf(args ...any) string {
	var b logBuffer
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "cfg", args[0], "client", args[1])
	return b.String()
}
