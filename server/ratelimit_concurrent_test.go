package server_test

import (
	"net/http"
	"sync"
	"testing"

	"keygate/keys"
	"keygate/server"
)

// TestConcurrentGuessesCannotOutrunFailureLimit: once an address has
// failed, every attempt holds a token of its failure budget while in
// flight, so a burst of concurrent bad logins gets no more tries than the
// budget has left.
func TestConcurrentGuessesCannotOutrunFailureLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withLimits(server.RateLimits{LoginFailuresPerMinute: 3}))
	const attacker = "198.51.100.7:5000"
	wantStatus(t, loginFrom(e, keys.NewAPIKey(keys.PartnerKeyPrefix).Reveal(), attacker, nil), http.StatusUnauthorized)

	codes := burst(e, 30, func() string { return keys.NewAPIKey(keys.PartnerKeyPrefix).Reveal() }, attacker)
	if codes[http.StatusUnauthorized] > 2 || codes[http.StatusUnauthorized]+codes[http.StatusTooManyRequests] != 30 {
		t.Errorf("30 concurrent guesses after one failure with a budget of 3: %v, want at most 2 answered 401 and the rest 429", codes)
	}
}

// TestConcurrentLoginsOfOneAddressNotLimited: addresses are limited only
// for what fails; a partner logging in for many companies at once from one
// address is never refused.
func TestConcurrentLoginsOfOneAddressNotLimited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withLimits(server.RateLimits{LoginFailuresPerMinute: 3}))
	a := e.tenant("Acme")
	codes := burst(e, 30, func() string { return a.apiKey }, "192.0.2.10:7000")
	if codes[http.StatusOK] != 30 {
		t.Errorf("30 concurrent good logins from one address: %v, want 30 answered 200", codes)
	}
}

func burst(e *env, n int, key func() string, remote string) map[int]int {
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		k := key()
		wg.Go(func() {
			<-start
			rec := loginFrom(e, k, remote, nil)
			mu.Lock()
			codes[rec.Code]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	return codes
}

// TestFreshAddressBurstBecomesDebt: failures admitted before the first one
// was counted are all charged, into debt, so the address stays locked out
// for as long as its burst was large.
func TestFreshAddressBurstBecomesDebt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withLimits(server.RateLimits{LoginFailuresPerMinute: 3}))
	const attacker = "198.51.100.8:5000"
	codes := burst(e, 30, func() string { return keys.NewAPIKey(keys.PartnerKeyPrefix).Reveal() }, attacker)
	admitted := codes[http.StatusUnauthorized]
	secs := retryAfter(t, loginFrom(e, keys.NewAPIKey(keys.PartnerKeyPrefix).Reveal(), attacker, nil))
	// Three tokens, one every 20 s: after n failures the next token is
	// (n-2)*20 s away.
	if want := (admitted - 2) * 20; secs < want {
		t.Errorf("after %d failures (budget 3/min): Retry-After %d s, want at least %d", admitted, secs, want)
	}
}
