package verify_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"keygate/tokens"
	"keygate/verify"
	"keygate/verify/accesstoken/accesstokentest"
)

func TestFreshFor(t *testing.T) {
	cases := []struct {
		header []string
		age    string
		want   time.Duration
	}{
		{[]string{"public, max-age=300"}, "", 300 * time.Second},
		{[]string{"max-age=600"}, "", 600 * time.Second},
		{[]string{"Public, MAX-AGE=\"120\""}, "", 120 * time.Second},
		{[]string{"public", "max-age=90"}, "", 90 * time.Second},
		{[]string{"public, max-age=300"}, "100", 200 * time.Second},
		{[]string{"public, max-age=300"}, "290", 30 * time.Second},
		{[]string{"max-age=1"}, "", 30 * time.Second},
		{[]string{"max-age=0"}, "", 30 * time.Second},
		{[]string{"max-age=86400"}, "", time.Hour},
		{[]string{"max-age=99999999999999999999"}, "", 5 * time.Minute},
		{[]string{"max-age=-5"}, "", 5 * time.Minute},
		{[]string{"no-store"}, "", 30 * time.Second},
		{[]string{"no-cache, max-age=300"}, "", 30 * time.Second},
		{[]string{"public"}, "", 5 * time.Minute},
		{nil, "", 5 * time.Minute},
	}
	for _, tc := range cases {
		if got := verify.FreshFor(tc.header, tc.age); got != tc.want {
			t.Errorf("Cache-Control %q, Age %q: fresh for %v, want %v", tc.header, tc.age, got, tc.want)
		}
	}
}

// TestRefreshesWhenMaxAgeRunsOut: the verifier refetches the JWK Set when
// its max-age runs out, and so learns a key published after its first fetch
// without an unknown kid's fetch.
func TestRefreshesWhenMaxAgeRunsOut(t *testing.T) {
	clk := &clock{now: t0}
	k := startKeygate(t, tokens.ES256, clk, withActivationDelay(0))
	short := "public, max-age=0"
	k.maxAge.Store(&short)
	v := newVerifier(t, k, nil, verify.Timing{MinRefresh: 50 * time.Millisecond})
	tok := k.sign(t, k.partner)
	waitFor(t, "two more fetches of the JWK Set", 5*time.Second, func() bool { return k.fetches.Load() >= 3 })

	k.rotate(t)
	fresh := k.sign(t, k.partner)
	if accesstokentest.Header(t, fresh)["kid"] == accesstokentest.Header(t, tok)["kid"] {
		t.Fatal("the rotation did not change the signing key")
	}
	at := k.fetches.Load()
	waitFor(t, "two refreshes after the rotation", 5*time.Second, func() bool { return k.fetches.Load() >= at+2 })
	// With its context ended, Verify cannot wait for a fetch of its own:
	// only a refresh can have taught it the key.
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := v.Verify(done, fresh); err != nil {
		t.Fatalf("the new key was not learnt by a refresh: %v", err)
	}
	mustVerify(t, v, tok)
}

// withKID is tok with another kid in its header.
func withKID(t *testing.T, tok, kid string) string {
	t.Helper()
	h, c := accesstokentest.Header(t, tok), accesstokentest.Claims(t, tok)
	h["kid"] = kid
	_, _, s := accesstokentest.Split(t, tok)
	return accesstokentest.Encode(t, h) + "." + accesstokentest.Encode(t, c) + "." + s
}

// TestUnknownKIDRefetchLimit: well-formed tokens naming random kids,
// however many and however often, cause at most one fetch per interval,
// and every one is refused.
func TestUnknownKIDRefetchLimit(t *testing.T) {
	const every = 300 * time.Millisecond
	k := startKeygate(t, tokens.ES256, nil)
	v := newVerifier(t, k, nil, verify.Timing{UnknownKIDEvery: every})
	good := k.sign(t, k.partner)
	mustVerify(t, v, good)
	randomKID := func(i int) string { return withKID(t, good, fmt.Sprintf("kid_random%d", i)) }

	// Three waves of 100 concurrent random kids.
	var accepted atomic.Int64
	start := time.Now()
	for wave := range 3 {
		var wg sync.WaitGroup
		for i := range 100 {
			wg.Go(func() {
				if _, err := v.Verify(context.Background(), randomKID(100*wave+i)); err == nil {
					accepted.Add(1)
				}
			})
		}
		wg.Wait()
	}
	if accepted.Load() != 0 {
		t.Fatalf("%d tokens with random kids accepted", accepted.Load())
	}
	elapsed := time.Since(start)
	n := k.fetches.Load() - 1 // less New's
	if n < 1 {
		t.Fatalf("random kids caused no fetch of the JWK Set")
	}
	// Fetches for unknown kids start at least every apart, so n of them
	// take (n-1)*every at least.
	if time.Duration(n-1)*every > elapsed {
		t.Errorf("%d fetches for unknown kids in %v: more than one per %v", n, elapsed, every)
	}
	mustVerify(t, v, good)
}

// TestRandomKIDsThenRotation: a token of a genuinely new key arriving just
// after one naming a random kid (which used up the unknown-kid fetch)
// verifies, by the one fetch the limit allows next, and is not refused for
// the rest of the interval.
func TestRandomKIDsThenRotation(t *testing.T) {
	const every = time.Second
	k := startKeygate(t, tokens.ES256, nil, withActivationDelay(0))
	v := newVerifier(t, k, nil, verify.Timing{UnknownKIDEvery: every})
	good := k.sign(t, k.partner)
	mustVerify(t, v, good)
	start := time.Now()
	mustReject(t, v, withKID(t, good, "kid_random")) // the unknown-kid fetch of this interval
	if n := k.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want New's and the random kid's", n)
	}
	k.rotate(t)
	fresh := k.sign(t, k.partner)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 20 {
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), fresh); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Errorf("%d of 20 tokens of the rotated-in key refused", failed.Load())
	}
	if n := k.fetches.Load(); n != 3 {
		t.Errorf("%d fetches, want one more for the new key", n)
	}
	if d := time.Since(start); d < every {
		t.Errorf("the new key's fetch came within %v of the random kid's, inside the limit of %v", d, every)
	}
}

// TestNewKIDConcurrently: the first tokens of a new signing key, arriving
// together, share one fetch and all verify.
func TestNewKIDConcurrently(t *testing.T) {
	clk := &clock{now: t0}
	k := startKeygate(t, tokens.ES256, clk, withActivationDelay(time.Second))
	v := newVerifier(t, k, nil)
	mustVerify(t, v, k.sign(t, k.partner))
	info := k.rotate(t)
	clk.Advance(time.Second)
	tok := k.sign(t, k.partner)
	if kid := accesstokentest.Header(t, tok)["kid"]; kid != info.KID {
		t.Fatalf("signed with %v, want the new key %s", kid, info.KID)
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 50 {
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), tok); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Errorf("%d of 50 verifications of the new key's token failed", failed.Load())
	}
	if n := k.fetches.Load(); n != 2 {
		t.Errorf("%d fetches of the JWK Set, want 2", n)
	}
}

// TestKeygateStopped: with keygate gone, tokens of known keys keep
// verifying; an unknown kid fails fast.
func TestKeygateStopped(t *testing.T) {
	clk := &clock{now: t0}
	k := startKeygate(t, tokens.ES256, clk, withActivationDelay(0))
	v := newVerifier(t, k, nil)
	partner, company := k.sign(t, k.partner), k.sign(t, k.company)
	mustVerify(t, v, partner)

	k.srv.Close()
	k.rotate(t) // a key the verifier has never seen
	start := time.Now()
	unknown := k.sign(t, k.partner)
	mustReject(t, v, unknown)
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusing a token of an unknown key took %v with keygate stopped", d)
	}
	// Within the unknown-kid limit, and with the last fetch failed, the
	// next is refused at once, not held for the next allowed fetch.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := v.Verify(ctx, unknown); err == nil || ctx.Err() != nil {
		t.Errorf("a second token of the unknown key with keygate stopped: %v, waiting until its context ended: %v", err, ctx.Err() != nil)
	}
	mustVerify(t, v, partner)
	mustVerify(t, v, company)
}

// TestKeygateFailingKeepsKeys: refreshes that fail (keygate answering 503)
// leave the last good key set in use.
func TestKeygateFailingKeepsKeys(t *testing.T) {
	k := startKeygate(t, tokens.ES256, nil)
	short := "max-age=0"
	k.maxAge.Store(&short)
	v := newVerifier(t, k, nil, verify.Timing{MinRefresh: 20 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	tok := k.sign(t, k.partner)
	mustVerify(t, v, tok)
	k.fail.Store(true)
	at := k.fetches.Load()
	waitFor(t, "three failed refreshes", 5*time.Second, func() bool { return k.fetches.Load() >= at+3 })
	mustVerify(t, v, tok)
	mustVerify(t, v, k.sign(t, k.company))
}

// TestKeygateHangingFailsFast: a keygate that accepts connections and never
// answers delays a token of an unknown kid by the fetch timeout at most.
func TestKeygateHangingFailsFast(t *testing.T) {
	clk := &clock{now: t0}
	k := startKeygate(t, tokens.ES256, clk, withActivationDelay(0))
	v := newVerifier(t, k, nil, verify.Timing{FetchTimeout: 200 * time.Millisecond})
	known := k.sign(t, k.partner)
	k.hang.Store(true)
	k.rotate(t)
	start := time.Now()
	mustReject(t, v, k.sign(t, k.partner))
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("refusing a token of an unknown key took %v with keygate hanging", d)
	}
	mustVerify(t, v, known)
}

// TestStartsBeforeKeygate: New succeeds while keygate is unreachable, and
// the verifier picks the keys up once keygate answers.
func TestStartsBeforeKeygate(t *testing.T) {
	k := startKeygate(t, tokens.ES256, nil)
	k.fail.Store(true)
	v := newVerifier(t, k, nil, verify.Timing{RetryMax: 20 * time.Millisecond})
	tok := k.sign(t, k.partner)
	if _, err := v.Verify(context.Background(), tok); err == nil {
		t.Fatal("verified a token without keys")
	}
	k.fail.Store(false)
	waitFor(t, "the keys fetched in the background", 5*time.Second, func() bool {
		_, err := v.Verify(context.Background(), tok)
		return err == nil
	})
}

// TestRotationMidStream verifies a stream of fresh tokens while keygate
// rotates its signing key with a 1 s activation delay: no verification
// fails, and the stream moves to the new key.
func TestRotationMidStream(t *testing.T) {
	k := startKeygate(t, tokens.ES256, nil, withActivationDelay(time.Second))
	v := newVerifier(t, k, nil)
	oldKID := accesstokentest.Header(t, k.sign(t, k.partner))["kid"]
	var info tokens.SigningKeyInfo
	seen := map[any]int{}
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		if i == 10 {
			info = k.rotate(t)
		}
		tok := k.sign(t, k.partner)
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatalf("verification %d failed: %v", i, err)
		}
		kid := accesstokentest.Header(t, tok)["kid"]
		seen[kid]++
		if info.KID != "" && kid == info.KID && seen[kid] >= 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new key never signed: %v", seen)
		}
		time.Sleep(20 * time.Millisecond) // the pace of a stream, not a wait for a condition
	}
	if seen[oldKID] < 10 {
		t.Errorf("kids seen %v", seen)
	}
	if n := k.fetches.Load(); n != 2 {
		t.Errorf("%d fetches of the JWK Set, want 2 (the first, and one for the new kid)", n)
	}
}

// TestSkipsKeysItCannotUse: of a JWK Set's keys, only signing keys of
// keygate's algorithms, with a kid of their own, verify anything.
func TestSkipsKeysItCannotUse(t *testing.T) {
	clk := &clock{now: t0}
	k := startKeygate(t, tokens.ES256, clk)
	a := newAttacker(t)
	secret := []byte("a-shared-secret-0123456789abcdef")
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384Point, err := p384.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	with := func(members map[string]any) map[string]any {
		m := maps.Clone(a.jwk)
		maps.Copy(m, members)
		return m
	}
	set, err := json.Marshal(map[string]any{"keys": []map[string]any{
		with(map[string]any{"kid": "good"}),
		with(map[string]any{"kid": "enc", "use": "enc"}),
		with(map[string]any{"kid": "rs256", "alg": "RS256"}),
		with(map[string]any{"kid": "dup"}),
		with(map[string]any{"kid": "dup"}),
		with(map[string]any{"kid": "no-alg", "alg": nil}),
		{"kty": "oct", "kid": "oct", "k": b64(secret), "alg": "HS256"},
		{"kty": "EC", "crv": "P-384", "kid": "p384", "x": b64(p384Point[1:49]), "y": b64(p384Point[49:])},
		{"kty": "EC", "crv": "P-256", "kid": "off-curve", "x": b64(make([]byte, 32)), "y": b64(make([]byte, 32))},
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(set) }))
	defer srv.Close()
	v := startVerifier(t, verify.Config{JWKSURL: srv.URL, Now: clk.Now, Logger: discard}, verify.Timing{})
	tok := k.sign(t, k.partner)
	forged := func(kid, alg string) string {
		h, c := accesstokentest.Header(t, tok), accesstokentest.Claims(t, tok)
		h["kid"], h["alg"] = kid, alg
		if alg == "HS256" {
			return accesstokentest.ForgeHS256(t, h, c, secret)
		}
		return a.forge(t, h, c)
	}
	mustVerify(t, v, forged("good", "ES256"))
	mustVerify(t, v, forged("no-alg", "ES256"))
	for _, kid := range []string{"enc", "rs256", "dup", "p384", "off-curve"} {
		mustReject(t, v, forged(kid, "ES256"))
	}
	mustReject(t, v, forged("oct", "HS256"))
}

// TestStartupContextDoesNotStopRefreshes: the context given to New bounds
// the first fetch only; refreshes go on after it ends, until Close.
func TestStartupContextDoesNotStopRefreshes(t *testing.T) {
	k := startKeygate(t, tokens.ES256, nil)
	short := "max-age=0"
	k.maxAge.Store(&short)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	v, err := verify.NewWithTiming(ctx, verify.Config{JWKSURL: k.jwksURL(), Logger: discard}, verify.Timing{MinRefresh: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cancel() // the start-up context ends
	at := k.fetches.Load()
	waitFor(t, "refreshes after the start-up context ended", 5*time.Second, func() bool { return k.fetches.Load() >= at+3 })

	tok := k.sign(t, k.partner)
	mustVerify(t, v, tok)
	if err := v.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Close waited for every fetch: none can come after it.
	at = k.fetches.Load()
	mustVerify(t, v, tok) // the keys held keep verifying
	mustReject(t, v, withKID(t, tok, "kid_other"))
	if n := k.fetches.Load(); n != at {
		t.Errorf("%d fetches after Close", n-at)
	}
}

// TestJWKSRedirects: a JWK Set that redirects within keygate's own scheme
// and host is followed; one redirecting to another host is not fetched
// from there.
func TestJWKSRedirects(t *testing.T) {
	clk := &clock{now: t0}
	k := startKeygate(t, tokens.ES256, clk)
	a := newAttacker(t)
	var attackerHits atomic.Int64
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attackerHits.Add(1)
		a.srv.Config.Handler.ServeHTTP(w, r)
	}))
	defer elsewhere.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/moved":
			http.Redirect(w, r, jwksPath, http.StatusFound)
		case jwksPath:
			a.srv.Config.Handler.ServeHTTP(w, r)
		default:
			http.Redirect(w, r, elsewhere.URL+jwksPath, http.StatusFound)
		}
	}))
	defer redirector.Close()
	tok := k.sign(t, k.partner)
	h, c := accesstokentest.Header(t, tok), accesstokentest.Claims(t, tok)
	h["kid"] = a.kid
	forged := a.forge(t, h, c)

	same := startVerifier(t, verify.Config{JWKSURL: redirector.URL + "/moved", Now: clk.Now, Logger: discard}, verify.Timing{})
	mustVerify(t, same, forged) // the attacker's set stands in for keygate's here

	other := startVerifier(t, verify.Config{JWKSURL: redirector.URL + "/elsewhere", Now: clk.Now, Logger: discard}, verify.Timing{})
	mustReject(t, other, forged)
	if n := attackerHits.Load(); n != 0 {
		t.Errorf("the verifier followed a redirect to another host %d times", n)
	}
}
