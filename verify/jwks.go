package verify

// keygate's JWK Set, as last fetched: refreshed when its max-age runs out
// and when a token names a kid it does not hold.

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"

	"keygate/verify/accesstoken"
)

// timing holds the intervals of the key cache; tests shorten them.
type timing struct {
	fetchTimeout    time.Duration // one fetch of the JWK Set
	minRefresh      time.Duration // the bounds max-age is kept within
	maxRefresh      time.Duration
	defaultRefresh  time.Duration // without a usable max-age
	unknownKIDEvery time.Duration // the least time between fetches for unknown kids
	retryMin        time.Duration // after a failed refresh, doubling up to retryMax
	retryMax        time.Duration
}

var defaultTiming = timing{
	fetchTimeout:    3 * time.Second,
	minRefresh:      30 * time.Second,
	maxRefresh:      time.Hour,
	defaultRefresh:  5 * time.Minute,
	unknownKIDEvery: 10 * time.Second,
	retryMin:        time.Second,
	retryMax:        30 * time.Second,
}

// maxJWKSBytes bounds the JWK Set read; keygate's holds a few keys.
const maxJWKSBytes = 1 << 20

// errClosed is why a Verifier that was closed fetches no more keys.
var errClosed = errors.New("the verifier is closed")

// keySource holds the last good key set. Reads are one atomic load; fetches
// are single-flight: a verification that needs a fetch under way waits for
// it rather than starting another. Its intervals run on the machine's
// monotonic clock, not Config.Now, which only judges tokens.
type keySource struct {
	life   context.Context // ends with Close: fetches and refreshes end with it
	stop   context.CancelFunc
	wg     sync.WaitGroup // the refresh loop, fetches, the deferred fetch
	url    string
	client *http.Client
	log    *slog.Logger
	t      timing

	keys atomic.Pointer[map[string]accesstoken.Key]

	mu          sync.Mutex
	fetching    *fetch    // the fetch under way, nil if none
	deferred    *fetch    // the unknown-kid fetch waiting for the limit to allow it, nil if none
	lastUnknown time.Time // when an unknown kid last started a fetch
	lastErr     error     // how the last fetch that ended failed; nil if it succeeded
	closed      bool
}

// fetch is one fetch of the JWK Set; done closes when it has ended.
type fetch struct {
	done   chan struct{}
	err    error
	maxAge time.Duration // how long the result is fresh
}

func newKeySource(base context.Context, url string, client *http.Client, log *slog.Logger, t timing) *keySource {
	// The cache lives until Close, not until the context New was given
	// ends: a start-up context with a timeout must not stop the refreshes.
	life, stop := context.WithCancel(context.WithoutCancel(base))
	s := &keySource{life: life, stop: stop, url: url, client: client, log: log, t: t}
	s.keys.Store(&map[string]accesstoken.Key{})
	return s
}

// start fetches the keys once, waiting for that fetch while ctx allows,
// and refreshes them in the background until close.
func (s *keySource) start(ctx context.Context) {
	s.mu.Lock()
	f := s.startLocked()
	s.mu.Unlock()
	s.wg.Go(func() { s.run(f) })
	_ = s.wait(ctx, f) // a failure is logged; the refresh loop retries it
}

// close stops the refreshes and waits for every fetch to end. The keys
// held stay in use.
func (s *keySource) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.stop()
	s.wg.Wait()
}

// run refreshes the key set when it goes stale, and after a failed fetch
// retries with backoff while the last good set stays in use.
func (s *keySource) run(f *fetch) {
	retry := s.t.retryMin
	for {
		select {
		case <-f.done:
		case <-s.life.Done():
			return
		}
		next := f.maxAge
		if f.err != nil {
			next, retry = retry, min(2*retry, s.t.retryMax)
		} else {
			retry = s.t.retryMin
		}
		timer := time.NewTimer(next)
		select {
		case <-s.life.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		s.mu.Lock()
		f = s.startLocked()
		s.mu.Unlock()
	}
}

// key returns the key kid names. A kid not in the set starts a fetch, or
// joins the one under way. Within unknownKIDEvery of the last fetch an
// unknown kid started, it starts none: it waits for the one fetch
// scheduled for when the limit allows (so that tokens naming random kids
// cannot make the verifier hammer keygate, nor keep it from learning a
// genuinely new key), unless the last fetch failed: then keygate is
// unreachable and it fails at once.
func (s *keySource) key(ctx context.Context, kid string) (accesstoken.Key, error) {
	if k, ok := (*s.keys.Load())[kid]; ok {
		return k, nil
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return accesstoken.Key{}, fmt.Errorf("unknown kid: %w", errClosed)
	}
	var f *fetch
	now := time.Now()
	switch {
	case s.fetching != nil:
		f = s.fetching
	case s.lastUnknown.IsZero() || now.Sub(s.lastUnknown) >= s.t.unknownKIDEvery:
		s.lastUnknown = now
		f = s.startLocked()
	default:
		f = s.deferLocked(now)
		if err := s.lastErr; err != nil {
			s.mu.Unlock()
			return accesstoken.Key{}, fmt.Errorf("unknown kid; the JWK Set could not be fetched moments ago, next try in %v: %w",
				s.lastUnknown.Add(s.t.unknownKIDEvery).Sub(now).Round(time.Millisecond), err)
		}
	}
	s.mu.Unlock()

	if err := s.wait(ctx, f); err != nil {
		return accesstoken.Key{}, fmt.Errorf("unknown kid; fetching the JWK Set: %w", err)
	}
	if k, ok := (*s.keys.Load())[kid]; ok {
		return k, nil
	}
	return accesstoken.Key{}, errors.New("unknown kid")
}

// deferLocked returns the fetch that starts once unknownKIDEvery has
// passed since the last unknown kid's, scheduling it if it is not yet;
// s.mu is held.
func (s *keySource) deferLocked(now time.Time) *fetch {
	if s.deferred != nil {
		return s.deferred
	}
	d := &fetch{done: make(chan struct{})}
	s.deferred = d
	wait := s.lastUnknown.Add(s.t.unknownKIDEvery).Sub(now)
	s.wg.Go(func() {
		defer close(d.done)
		timer := time.NewTimer(wait)
		defer timer.Stop()
		select {
		case <-s.life.Done():
			s.mu.Lock()
			s.deferred = nil
			s.mu.Unlock()
			d.err = errClosed
			return
		case <-timer.C:
		}
		s.mu.Lock()
		s.deferred = nil
		s.lastUnknown = time.Now()
		f := s.startLocked()
		s.mu.Unlock()
		<-f.done
		d.err, d.maxAge = f.err, f.maxAge
	})
	return d
}

// startLocked starts a fetch unless one is under way; s.mu is held.
func (s *keySource) startLocked() *fetch {
	if s.fetching != nil {
		return s.fetching
	}
	f := &fetch{done: make(chan struct{})}
	s.fetching = f
	s.wg.Go(func() {
		keys, maxAge, err := s.fetch()
		if err != nil {
			s.log.WarnContext(s.life, "verify: fetching keygate's JWK Set failed; keeping the last good one", "url", s.url, "err", err)
		} else {
			s.keys.Store(&keys)
		}
		f.err, f.maxAge = err, maxAge
		s.mu.Lock()
		s.fetching, s.lastErr = nil, err
		s.mu.Unlock()
		close(f.done)
	})
	return f
}

func (s *keySource) wait(ctx context.Context, f *fetch) error {
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fetch reads the JWK Set and how long it stays fresh.
func (s *keySource) fetch() (map[string]accesstoken.Key, time.Duration, error) {
	ctx, cancel := context.WithTimeout(s.life, s.t.fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	var set jwkset.JWKSMarshal
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxJWKSBytes)).Decode(&set); err != nil {
		return nil, 0, fmt.Errorf("decoding the JWK Set: %w", err)
	}
	if set.Keys == nil {
		return nil, 0, errors.New(`the JWK Set has no "keys" member`)
	}
	return s.parse(set), s.freshFor(resp.Header), nil
}

// parse keeps the usable signing keys of set by kid, each with the one
// algorithm it verifies. A key that is malformed, of another type, meant
// for encryption, or whose kid repeats is left out.
func (s *keySource) parse(set jwkset.JWKSMarshal) map[string]accesstoken.Key {
	keys := make(map[string]accesstoken.Key, len(set.Keys))
	repeated := map[string]bool{}
	for _, m := range set.Keys {
		jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			s.log.WarnContext(s.life, "verify: skipping a malformed key of the JWK Set", "kid", m.KID, "err", err)
			continue
		}
		alg, ok := algorithmOf(jwk.Key())
		switch {
		case m.KID == "" || !ok || m.ALG != "" && string(m.ALG) != alg || m.USE != "" && m.USE != jwkset.UseSig:
			s.log.WarnContext(s.life, "verify: skipping a key of the JWK Set it cannot use", "kid", m.KID, "kty", m.KTY, "alg", m.ALG)
			continue
		case repeated[m.KID]:
			continue
		}
		if _, dup := keys[m.KID]; dup {
			s.log.WarnContext(s.life, "verify: skipping keys whose kid repeats in the JWK Set", "kid", m.KID)
			delete(keys, m.KID)
			repeated[m.KID] = true
			continue
		}
		keys[m.KID] = accesstoken.Key{Algorithm: alg, Public: jwk.Key()}
	}
	return keys
}

// algorithmOf is the one algorithm keygate signs with keys of this type.
func algorithmOf(key any) (string, bool) {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		return "ES256", k.Curve == elliptic.P256()
	case ed25519.PublicKey:
		return "EdDSA", true
	case *rsa.PublicKey:
		return "RS256", k.N.BitLen() >= 2048
	}
	return "", false
}

// freshFor is how long a response stays fresh by its Cache-Control
// max-age less its Age, kept within the bounds; no-store or no-cache count
// as zero.
func (s *keySource) freshFor(h http.Header) time.Duration {
	age, found := time.Duration(0), false
	for _, v := range h.Values("Cache-Control") {
		for d := range strings.SplitSeq(v, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
			switch strings.ToLower(name) {
			case "no-store", "no-cache":
				return s.t.minRefresh
			case "max-age":
				if n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64); err == nil && n >= 0 && !found {
					age, found = time.Duration(min(n, 1<<31))*time.Second, true
				}
			}
		}
	}
	if !found {
		return s.t.defaultRefresh
	}
	if n, err := strconv.ParseInt(h.Get("Age"), 10, 64); err == nil && n > 0 {
		age -= time.Duration(min(n, 1<<31)) * time.Second
	}
	return min(max(age, s.t.minRefresh), s.t.maxRefresh)
}
