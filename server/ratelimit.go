package server

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"keygate/metrics"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"
)

// RateLimits are per-minute budgets; 0 turns a limit off.
type RateLimits struct {
	LoginFailuresPerMinute    int
	LoginPerKeyPerMinute      int
	RefreshPerFamilyPerMinute int
	APIPerMinute              int
	MaxTracked                int
}

// limiters holds one token bucket per key (address, API key, family or
// principal). Memory is bounded: buckets idle long enough to have refilled
// are forgotten, and past max the oldest-looking ones go first.
type limiters struct {
	perMinute int
	max       int
	now       func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time
}

func newLimiters(perMinute, maxTracked int, now func() time.Time) *limiters {
	return &limiters{perMinute: perMinute, max: maxTracked, now: now, buckets: make(map[string]*bucket)}
}

// allow spends one token for key; when none is left it returns how long
// until one is.
func (l *limiters) allow(key string) (bool, time.Duration) {
	if l == nil || l.perMinute <= 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.bucket(key, now)
	if b.lim.AllowN(now, 1) {
		return true, 0
	}
	return false, l.wait(b, now)
}

// attempt is a login or refresh in flight against the failure budget.
type attempt struct {
	l   *limiters
	key string
	r   *rate.Reservation // nil: the address had no recent failure
}

// begin admits an attempt that may fail. An address with no recent
// failure passes freely, so a partner logging in for hundreds of companies
// at once is never held back; once an address has failed, every attempt
// holds a token until it ends, so a burst of concurrent guesses cannot all
// slip past one check before the first failure is counted.
func (l *limiters) begin(key string) (attempt, bool, time.Duration) {
	if l == nil || l.perMinute <= 0 {
		return attempt{}, true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.buckets[key]
	if !ok || b.lim.TokensAt(now) >= float64(b.lim.Burst()) {
		return attempt{l: l, key: key}, true, 0
	}
	b.last = now
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); !r.OK() || d > 0 {
		r.CancelAt(now)
		return attempt{}, false, d
	}
	return attempt{l: l, key: key, r: r}, true, 0
}

// end settles an attempt: a failure keeps (or takes) its token, a success
// gives the held token back.
func (a attempt) end(failed bool) {
	switch {
	case a.l == nil:
	case a.r != nil && !failed:
		a.r.CancelAt(a.l.now())
	case a.r == nil && failed:
		a.l.spend(a.key)
	}
}

// spend takes one token from key, into debt if there is none left: a
// burst of failures admitted before the first one was counted then locks
// the address out for as long as the burst was large.
func (l *limiters) spend(key string) {
	if l == nil || l.perMinute <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.bucket(key, now).lim.ReserveN(now, 1)
}

func (l *limiters) wait(b *bucket, now time.Time) time.Duration {
	missing := 1 - b.lim.TokensAt(now)
	return time.Duration(missing / float64(b.lim.Limit()) * float64(time.Second))
}

func (l *limiters) bucket(key string, now time.Time) *bucket {
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.max {
			l.evict(now)
		}
		b = &bucket{lim: rate.NewLimiter(rate.Limit(float64(l.perMinute)/60), l.perMinute)}
		l.buckets[key] = b
	}
	b.last = now
	return b
}

// evict drops buckets that have refilled (forgetting them changes nothing),
// then, if still at the cap, arbitrary ones down to 90% of it.
func (l *limiters) evict(now time.Time) {
	for k, b := range l.buckets {
		if now.Sub(b.last) > time.Minute {
			delete(l.buckets, k)
		}
	}
	for k := range l.buckets {
		if len(l.buckets) < l.max*9/10 {
			break
		}
		delete(l.buckets, k)
	}
}

func (l *limiters) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// rateLimited renders a 429 with Retry-After in whole seconds, at least 1.
func (s *Server) rateLimited(c *gin.Context, wait time.Duration, limit string) {
	s.metrics.RateLimited(limit)
	c.Header("Retry-After", retryAfter(wait))
	s.fail(c, errRateLimited)
}

// retryAfter is a Retry-After value: whole seconds, at least 1.
func retryAfter(wait time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(wait.Seconds()))))
}

// clientKey buckets a client address: IPv6 clients by their /64, since one
// host commonly owns a whole /64.
func clientKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// secretKey buckets a credential without keeping it in memory.
func secretKey(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:12])
}

// limitAPI applies the per-principal budget of authenticated endpoints.
func (s *Server) limitAPI(c *gin.Context) {
	if ok, wait := s.limits.api.allow(session(c).Principal.ID); !ok {
		s.rateLimited(c, wait, metrics.LimitAPI)
		return
	}
	c.Next()
}

type rateLimiters struct {
	failures *limiters // per client address, spent by failed logins and refreshes
	login    *limiters // per API key
	refresh  *limiters // per token family
	api      *limiters // per principal
}

func newRateLimiters(cfg RateLimits, now func() time.Time) rateLimiters {
	return rateLimiters{
		failures: newLimiters(cfg.LoginFailuresPerMinute, cfg.MaxTracked, now),
		login:    newLimiters(cfg.LoginPerKeyPerMinute, cfg.MaxTracked, now),
		refresh:  newLimiters(cfg.RefreshPerFamilyPerMinute, cfg.MaxTracked, now),
		api:      newLimiters(cfg.APIPerMinute, cfg.MaxTracked, now),
	}
}
