package verify

import (
	"context"
	"net/http"
	"time"
)

// Timing shortens the intervals of the key cache for tests; zero fields
// keep the defaults.
type Timing struct {
	FetchTimeout    time.Duration
	MinRefresh      time.Duration
	RetryMax        time.Duration
	UnknownKIDEvery time.Duration
}

// NewWithTiming is New with shorter intervals.
func NewWithTiming(ctx context.Context, cfg Config, t Timing) (*Verifier, error) {
	tm := defaultTiming
	if t.FetchTimeout > 0 {
		tm.fetchTimeout = t.FetchTimeout
	}
	if t.MinRefresh > 0 {
		tm.minRefresh = t.MinRefresh
	}
	if t.UnknownKIDEvery > 0 {
		tm.unknownKIDEvery = t.UnknownKIDEvery
	}
	if t.RetryMax > 0 {
		tm.retryMin, tm.retryMax = min(tm.retryMin, t.RetryMax), t.RetryMax
	}
	return newVerifier(ctx, cfg, tm)
}

// FreshFor is how long a JWK Set with these Cache-Control values and Age
// stays fresh, with the default bounds.
func FreshFor(cacheControl []string, age string) time.Duration {
	h := http.Header{"Cache-Control": cacheControl}
	if age != "" {
		h.Set("Age", age)
	}
	return (&keySource{t: defaultTiming}).freshFor(h)
}
