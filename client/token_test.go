package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
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
// once it is due, they all get it while one refresh runs in the background;
// once it has expired, 100 goroutines wait for one refresh.
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
	got := all()
	if len(got) != 1 || k.logins() != 1 {
		t.Fatalf("100 goroutines: %d tokens, %d logins; want 1, 1", len(got), k.logins())
	}
	var first string
	for tok := range got {
		first = tok
	}

	clk.Advance(13 * time.Minute) // past 80% of 15 minutes
	if got := all(); len(got) != 1 || !got[first] {
		t.Fatalf("100 goroutines at refresh time: %d tokens; want the current one to all", len(got))
	}
	second := renewed(t, c, first)
	if k.refreshes() != 1 || k.logins() != 1 {
		t.Fatalf("at refresh time: %d refreshes, %d logins; want 1, 1", k.refreshes(), k.logins())
	}

	clk.Advance(16 * time.Minute) // past the second token's expiry
	if got := all(); len(got) != 1 || got[second] || k.refreshes() != 2 || k.logins() != 1 {
		t.Fatalf("100 goroutines after expiry: %d tokens (the expired one: %t), %d refreshes, %d logins; want 1, false, 2, 1",
			len(got), got[second], k.refreshes(), k.logins())
	}
}

// renewed polls Token until it returns a token other than old: until the
// background refresh a due token started has landed.
func renewed(tb testing.TB, c *client.Client, old string) string {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if tok := mustToken(tb, c); tok != old {
			return tok
		}
		if time.Now().After(deadline) {
			tb.Fatal("the token was not renewed within 10 s")
		}
		time.Sleep(5 * time.Millisecond) // polling for a condition, with a deadline
	}
}

// idle polls until no renewal is under way.
func idle(tb testing.TB, c *client.Client) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for client.Renewing(c) {
		if time.Now().After(deadline) {
			tb.Fatal("a renewal still under way after 10 s")
		}
		time.Sleep(5 * time.Millisecond) // polling for a condition, with a deadline
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
			if mustToken(t, c) != first {
				t.Fatalf("at %v, the token still valid was not returned at once", tc.due)
			}
			renewed(t, c, first)
			if k.refreshes() != 1 || k.logins() != 1 {
				t.Fatalf("refreshed at %v: %d refreshes, %d logins; want 1, 1", tc.due, k.refreshes(), k.logins())
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
	renewed(t, c, first)
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
	first := mustToken(t, c)
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
	second := renewed(t, c, first)
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
	renewed(t, c, second)
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
	return rateLimitedFor(n, "1")
}

// rateLimitedFor is rateLimited with the Retry-After given.
func rateLimitedFor(n int, retryAfter string) func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
	var mu sync.Mutex
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path != "/api/v1/auth/login" || n == 0 {
			return false
		}
		n--
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
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
	idle(t, c)
	if tok := mustToken(t, c); tok != first {
		t.Fatal("a different token after the failed refresh")
	}
	clk.Advance(3 * time.Minute)
	if _, err := c.Token(context.Background()); err == nil {
		t.Fatal("Token returned an expired token")
	}
}

// hang makes keygate's answers to path never come, until the test ends.
func hang(t *testing.T, k *keygate, path string) {
	t.Helper()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // before the listener closes: it waits for handlers
	k.setFault(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if r.URL.Path != path {
			return false
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
		return true
	})
}

// TestKeygateHangsAheadOfExpiry: a keygate that takes the refresh and never
// answers delays no caller while the token is valid: they all get it at
// once, and one refresh hangs in the background.
func TestKeygateHangsAheadOfExpiry(t *testing.T) {
	k := startKeygate(t)
	clk := &offsetClock{}
	c := newClient(t, k, client.Config{Now: clk.Now})
	first := mustToken(t, c)
	hang(t, k, "/api/v1/auth/refresh")
	clk.Advance(13 * time.Minute)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			tok, err := c.Token(ctx)
			if err != nil || tok != first {
				t.Errorf("Token with the refresh hanging: %v (the current token: %t)", err, tok == first)
			}
			if ctx.Err() != nil {
				t.Error("Token waited until its context ended")
			}
		})
	}
	wg.Wait()
	waitForCount(t, "the refresh", func() int { return k.refreshes() }, 1)
	if !client.Renewing(c) || k.refreshes() != 1 || k.logins() != 1 {
		t.Errorf("renewing %t, %d refreshes, %d logins; want one refresh hanging", client.Renewing(c), k.refreshes(), k.logins())
	}
}

// waitForCount polls count until it reaches want, failing if it does not
// within 10 s.
func waitForCount(tb testing.TB, what string, count func() int, want int) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for count() < want {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: %d, not %d within 10 s", what, count(), want)
		}
		time.Sleep(5 * time.Millisecond) // polling for a condition, with a deadline
	}
}

// TestFailedRenewalsBackOff: refreshes that fail ahead of expiry are
// retried 1 s, then 2 s later, by the client's clock, not on every call.
func TestFailedRenewalsBackOff(t *testing.T) {
	k := startKeygate(t)
	clk := &offsetClock{}
	c := newClient(t, k, client.Config{Now: clk.Now})
	first := mustToken(t, c)
	k.setFault(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if r.URL.Path != "/api/v1/auth/refresh" {
			return false
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		return true
	})
	renewals := 0
	step := func(advance time.Duration, wantRenewal bool) {
		t.Helper()
		clk.Advance(advance)
		if tok := mustToken(t, c); tok != first {
			t.Fatal("Token did not return the token still valid")
		}
		if started := client.Renewing(c); started != wantRenewal {
			t.Fatalf("after %d renewals and %v more: a renewal started %t, want %t", renewals, advance, started, wantRenewal)
		}
		if wantRenewal {
			renewals++
			idle(t, c)
		}
		for range 10 { // calls in the backoff start nothing
			mustToken(t, c)
		}
		if client.Renewing(c) {
			t.Fatalf("a call within the backoff started a renewal")
		}
	}
	step(13*time.Minute, true)                // due: the first attempt, failing
	step(1100*time.Millisecond, true)         // 1 s later: the second
	step(time.Second, false)                  // 2 s after that: not yet
	step(1100*time.Millisecond, true)         // now
	if want := 3 * 3; k.refreshes() != want { // each renewal sends the refresh 3 times on a 5xx
		t.Errorf("%d refresh requests, want %d", k.refreshes(), want)
	}
}

// TestRateLimitedLoginSingleFlight: a 429 to a login shared by 100
// goroutines whose contexts end before Retry-After is not resent by each
// of them: they all get the 429 at once, and so do callers after them until
// Retry-After has passed.
func TestRateLimitedLoginSingleFlight(t *testing.T) {
	k := startKeygate(t)
	k.setFault(rateLimitedFor(1000, "30"))
	c := newClient(t, k, client.Config{})
	call := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.Token(ctx)
		var ae *client.APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusTooManyRequests || ae.RetryAfter != 30*time.Second {
			t.Errorf("Token: %v, want the 429", err)
		}
		if ctx.Err() != nil {
			t.Error("Token waited until its context ended")
		}
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 100 {
		wg.Go(func() {
			<-start
			call()
		})
	}
	close(start)
	wg.Wait()
	call()
	if n := k.logins(); n != 1 {
		t.Errorf("%d login requests, want 1", n)
	}
}

// TestRateLimitedLoginWaitedOut: callers whose contexts allow it wait out
// Retry-After together; one login follows.
func TestRateLimitedLoginWaitedOut(t *testing.T) {
	k := startKeygate(t)
	k.setFault(rateLimited(1))
	c := newClient(t, k, client.Config{})
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := c.Token(ctx); err != nil {
				t.Errorf("Token: %v", err)
			}
		})
	}
	wg.Wait()
	if n := k.logins(); n != 2 {
		t.Errorf("%d login requests, want the limited one and one after Retry-After", n)
	}
}

// TestTimeoutSingleFlight: a login that times out (http.Client.Timeout,
// which also reads as context.DeadlineExceeded) fails every goroutine that
// shared it, rather than each sending its own and waiting a timeout in
// turn.
func TestTimeoutSingleFlight(t *testing.T) {
	k := startKeygate(t)
	hang(t, k, "/api/v1/auth/login")
	c := newClient(t, k, client.Config{HTTPClient: &http.Client{Timeout: 300 * time.Millisecond}})
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 10 {
		wg.Go(func() {
			<-start
			if _, err := c.Token(context.Background()); err == nil {
				t.Error("Token succeeded with keygate hanging")
			}
		})
	}
	close(start)
	wg.Wait()
	if n := k.logins(); n != 1 {
		t.Errorf("%d login requests, want 1", n)
	}
}

// TestCancelledCallerKeepsTheSuccessor: a caller that gives up after
// keygate rotated its refresh token, before the answer arrived, does not
// lose the successor: the next caller gets it without another refresh.
func TestCancelledCallerKeepsTheSuccessor(t *testing.T) {
	k := startKeygate(t)
	clk := &offsetClock{}
	c := newClient(t, k, client.Config{Now: clk.Now})
	mustToken(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	returned := make(chan struct{})
	k.setFault(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if r.URL.Path != "/api/v1/auth/refresh" {
			return false
		}
		rec := &recorder{ResponseWriter: discardWriter{}}
		next.ServeHTTP(rec, r) // keygate rotates the token...
		cancel()               // ...the caller gives up...
		select {               // ...and only then does the answer arrive.
		case <-returned:
		case <-time.After(10 * time.Second):
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(rec.body.Bytes())
		k.record(r, rec.body.Bytes())
		return true
	})
	clk.Advance(16 * time.Minute) // the token has expired: the caller waits for the refresh
	if _, err := c.Token(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Token with its context cancelled: %v", err)
	}
	close(returned)
	tok := mustToken(t, c)
	issued := k.tokens()
	if k.refreshes() != 1 || k.logins() != 1 || tok != issued[len(issued)-1].JWT {
		t.Errorf("%d refreshes, %d logins, the successor's token %t; want the one refresh's successor kept",
			k.refreshes(), k.logins(), tok == issued[len(issued)-1].JWT)
	}
}

// logoutOvertaking calls c.Token, holds the request it makes to path
// until c.Logout has returned, then lets it reach keygate as sent, and
// returns what Token returned.
func logoutOvertaking(t *testing.T, k *keygate, c *client.Client, path string) error {
	t.Helper()
	arrived, release := make(chan struct{}), make(chan struct{})
	k.setFault(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if r.URL.Path != path {
			return false
		}
		close(arrived)
		<-release // Logout has revoked the family meanwhile
		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		k.record(r, rec.body.Bytes())
		return true
	})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Token(context.Background())
		errc <- err
	}()
	<-arrived
	if err := c.Logout(context.Background()); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	k.setFault(nil)
	close(release)
	return <-errc
}

// TestLogoutDuringLogin: Logout while a login is under way revokes the
// family that login started, and its waiters get an error, not its token.
func TestLogoutDuringLogin(t *testing.T) {
	k := startKeygate(t)
	c := newClient(t, k, client.Config{})
	if err := logoutOvertaking(t, k, c, "/api/v1/auth/login"); !errors.Is(err, client.ErrLoggedOut) {
		t.Fatalf("Token overtaken by Logout: %v, want ErrLoggedOut", err)
	}
	issued := k.tokens()
	if len(issued) != 1 {
		t.Fatalf("%d logins answered", len(issued))
	}
	if _, err := k.gw.Tokens.Refresh(context.Background(), issued[0].RefreshToken, "192.0.2.1"); err == nil {
		t.Error("the refresh token of the login Logout overtook still works")
	}
	if tok := mustToken(t, c); tok == issued[0].JWT || k.logins() != 2 {
		t.Errorf("after Logout: the revoked login's token %t, %d logins; want a new login", tok == issued[0].JWT, k.logins())
	}
}

// TestLogoutDuringRefresh: Logout while a refresh is under way revokes the
// family, so keygate refuses that refresh; the renewal then ends with
// ErrLoggedOut instead of logging in again with the API key.
func TestLogoutDuringRefresh(t *testing.T) {
	k := startKeygate(t)
	clk := &offsetClock{}
	c := newClient(t, k, client.Config{Now: clk.Now})
	mustToken(t, c)
	clk.Advance(16 * time.Minute) // expired: the caller waits for the refresh
	if err := logoutOvertaking(t, k, c, "/api/v1/auth/refresh"); !errors.Is(err, client.ErrLoggedOut) {
		t.Fatalf("Token overtaken by Logout: %v, want ErrLoggedOut", err)
	}
	if n := k.logins(); n != 1 {
		t.Errorf("%d logins, want 1: a refresh refused after Logout must not log in again", n)
	}
}

// TestRetryAfterForms: Retry-After in seconds or as an HTTP date, capped.
func TestRetryAfterForms(t *testing.T) {
	for _, tc := range []struct {
		name     string
		header   func() string
		min, max time.Duration
	}{
		{"seconds", func() string { return "7" }, 7 * time.Second, 7 * time.Second},
		{"HTTP date", func() string { return time.Now().Add(5 * time.Second).UTC().Format(http.TimeFormat) }, 3 * time.Second, 5 * time.Second},
		{"date in the past", func() string { return time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat) }, 0, 0},
		{"a day", func() string { return "86400" }, client.MaxRetryAfter, client.MaxRetryAfter},
		{"beyond int64", func() string { return "99999999999999999999999" }, client.MaxRetryAfter, client.MaxRetryAfter},
		{"a date a year ahead", func() string { return time.Now().AddDate(1, 0, 0).UTC().Format(http.TimeFormat) }, client.MaxRetryAfter, client.MaxRetryAfter},
		{"negative", func() string { return "-5" }, 0, 0},
		{"garbage", func() string { return "soon" }, 0, 0},
		{"absent", func() string { return "" }, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := startKeygate(t)
			k.setFault(rateLimitedFor(1000, tc.header()))
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			_, err := newClient(t, k, client.Config{}).Token(ctx)
			var ae *client.APIError
			if !errors.As(err, &ae) || ae.Status != http.StatusTooManyRequests {
				t.Fatalf("Token: %v, want the 429", err)
			}
			if ae.RetryAfter < tc.min || ae.RetryAfter > tc.max {
				t.Errorf("RetryAfter %v, want within [%v, %v]", ae.RetryAfter, tc.min, tc.max)
			}
		})
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
	first := mustToken(t, c)
	clk.Advance(13 * time.Minute)
	second := renewed(t, c, first) // a refresh
	if err := k.gw.Tokens.Logout(context.Background(), k.tokens()[1].RefreshToken); err != nil {
		t.Fatal(err)
	}
	clk.Advance(13 * time.Minute)
	renewed(t, c, second) // a refused refresh and a login
	_, badErr := newClient(t, k, client.Config{APIKey: k.apiKey + "x", Logger: cfg.Logger}).Token(context.Background())
	k.srv.Close()
	clk.Advance(13 * time.Minute)
	mustToken(t, c) // a failed refresh, logged
	idle(t, c)
	if !strings.Contains(logs.String(), "renewing the access token failed") {
		t.Error("the failed refresh was not logged")
	}

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
