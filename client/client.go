// Package client is keygate for a partner's backend: it logs in with the
// API key, keeps a fresh access token, puts it in R-Auth on calls to
// downstream services, and offers keygate's partner API typed.
//
//	c, err := client.New(client.Config{BaseURL: "https://keygate.example", APIKey: os.Getenv("KEYGATE_API_KEY")})
//	if err != nil { ... }
//	hc := c.HTTPClient(nil) // every request carries R-Auth
//	resp, err := hc.Get("https://orders.example/orders")
//
// The client logs in on first use and refreshes ahead of expiry, by
// default once 80% of the token's lifetime has passed, in the background:
// while the token is valid, callers get it at once, even if keygate hangs.
// However many goroutines need a token at once, one login or refresh runs,
// on a context of its own (bounded by 30 s), so a caller giving up does not
// lose what keygate answers. A refresh token keygate refuses (expired,
// revoked, reused) is replaced by a new login with the API key; a refresh
// whose response was lost is retried with the same token, which keygate's
// grace window answers with the same successor; renewals that fail ahead
// of expiry are retried with exponential backoff while the token lasts.
// After keygate's 429 the client sends no login or refresh until
// Retry-After has passed: callers whose context allows wait for it, the
// others get the 429's *APIError at once. A downstream 401 causes one
// forced refresh and one retry, when the request can be sent again.
//
// Errors from keygate are *APIError. The client never logs or prints its
// API key or its tokens. It imports neither Gin nor a database.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"keygate/api"
)

// Config says which keygate to use and with which key.
type Config struct {
	// BaseURL is keygate's address, http(s)://HOST[:PORT][/PREFIX].
	BaseURL string
	// APIKey is the partner's (pk_...) or a company's (ck_...) API key.
	APIKey string
	// RefreshBefore is how long before the access token expires it is
	// refreshed; zero refreshes once 80% of its lifetime has passed. Either
	// way a token is used for at least half of the time it had left.
	RefreshBefore time.Duration
	// Scope, if set, down-scopes the session at login to these of the
	// key's scopes, space-separated (least privilege): its tokens carry no
	// more. A scope the key does not hold fails every Token call with
	// keygate's 403.
	Scope string

	// HTTPClient makes the calls to keygate; a client with a 30 s timeout
	// if nil. (HTTPClient(base) makes those to downstream services.)
	HTTPClient *http.Client
	// Logger receives logins, refreshes and their failures, never a
	// secret; slog.Default() if nil.
	Logger *slog.Logger
	// Now is the clock; time.Now if nil.
	Now func() time.Time
}

// String describes the configuration without its API key.
func (c Config) String() string {
	return fmt.Sprintf("client.Config{BaseURL: %q, APIKey: REDACTED, RefreshBefore: %v}", c.BaseURL, c.RefreshBefore)
}

// GoString is String, so that %#v does not print the key either.
func (c Config) GoString() string { return c.String() }

// LogValue logs the configuration without its API key.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(slog.String("base_url", c.BaseURL), slog.String("api_key", "REDACTED"), slog.Duration("refresh_before", c.RefreshBefore))
}

// APIError is an error response from keygate.
type APIError struct {
	Status     int           // the HTTP status
	Code       string        // keygate's error code (api.CodeUnauthorized, ...); empty if the body was not keygate's
	Message    string        // keygate's message, for people
	RetryAfter time.Duration // from Retry-After, on 429 and 503; zero if absent
}

func (e *APIError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("keygate: %d %s", e.Status, e.Message)
	}
	return fmt.Sprintf("keygate: %d %s: %s", e.Status, e.Code, e.Message)
}

// Client talks to keygate for one API key. It is safe for concurrent use.
type Client struct {
	base          string // BaseURL without a trailing slash
	apiKey        string
	scope         *string // the login's scope, nil for all
	refreshBefore time.Duration
	http          *http.Client
	log           *slog.Logger
	now           func() time.Time
	pageSize      int // companies per page of ListCompanies

	mu         sync.Mutex
	sess       *session  // nil before the first login and after Logout
	renewing   *renewal  // the login or refresh under way
	gen        int       // counts Logouts: a renewal started before one is dropped
	lastForced time.Time // the last renewal a downstream 401 forced
	failures   int       // renewals ahead of expiry failed in a row
	retryAt    time.Time // no renewal ahead of expiry before then
	notBefore  time.Time // keygate's 429: no login or refresh before then
	limited    *APIError // that 429
}

// String names the client's keygate, and nothing secret.
func (c *Client) String() string { return "keygate client for " + c.base }

// LogValue logs the client as String does.
func (c *Client) LogValue() slog.Value { return slog.StringValue(c.String()) }

// New makes a client; it does not log in until a token is needed.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("client: BaseURL %q is not an http(s) URL", cfg.BaseURL)
	}
	if cfg.APIKey == "" || strings.TrimSpace(cfg.APIKey) != cfg.APIKey {
		return nil, errors.New("client: APIKey is empty or has spaces around it")
	}
	if cfg.RefreshBefore < 0 {
		return nil, errors.New("client: negative RefreshBefore")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var scope *string
	if cfg.Scope != "" {
		scope = &cfg.Scope
	}
	return &Client{
		base:          strings.TrimRight(cfg.BaseURL, "/"),
		apiKey:        cfg.APIKey,
		scope:         scope,
		refreshBefore: cfg.RefreshBefore,
		http:          cfg.HTTPClient,
		log:           cfg.Logger,
		now:           cfg.Now,
		pageSize:      200, // keygate's largest
	}, nil
}

// Limits of the calls to keygate.
const (
	maxResponseBytes = 1 << 20         // keygate's largest response is a page of 200 companies
	maxRateWaits     = 5               // 429s waited out in one call
	maxRetryAfter    = 2 * time.Minute // the longest Retry-After believed
)

// do sends one request to keygate: body (if not nil) as JSON, token (if
// not empty) in R-Auth, and decodes a 2xx body into out (if not nil). With
// waitLimited, keygate's 429 is waited out while ctx allows; any other
// error status is an *APIError.
func (c *Client) do(ctx context.Context, method, path string, body, out any, token string, waitLimited bool) error {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return err
		}
	}
	for waits := 0; ; waits++ {
		var rd io.Reader = http.NoBody
		if body != nil {
			rd = bytes.NewReader(payload)
		}
		req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
		if err != nil {
			return err
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("Accept", "application/json")
		if token != "" {
			req.Header.Set("R-Auth", token)
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return err
		}
		err = c.read(resp, out)
		var ae *APIError
		if !waitLimited || !errors.As(err, &ae) || ae.Status != http.StatusTooManyRequests || waits == maxRateWaits {
			return err
		}
		if werr := waitRetryAfter(ctx, ae.RetryAfter); werr != nil {
			return fmt.Errorf("%w (not retried: %w)", ae, werr)
		}
	}
}

// read decodes a response and closes its body.
func (c *Client) read(resp *http.Response, out any) error {
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(body, out); err != nil {
			return fmt.Errorf("keygate: decoding its %d response: %w", resp.StatusCode, err)
		}
		return nil
	}
	ae := &APIError{Status: resp.StatusCode, Message: http.StatusText(resp.StatusCode)}
	var e api.Error
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		ae.Code, ae.Message = e.Error, e.Message
	}
	ae.RetryAfter = c.retryAfter(resp.Header.Get("Retry-After"))
	return ae
}

// retryAfter reads a Retry-After header, seconds or an HTTP date, capped
// at maxRetryAfter; zero if absent or unreadable.
func (c *Client) retryAfter(h string) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.ParseUint(h, 10, 63); err == nil || errors.Is(err, strconv.ErrRange) {
		if err != nil || s > uint64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		return time.Duration(s) * time.Second
	}
	if at, err := http.ParseTime(h); err == nil {
		return min(max(at.Sub(c.now()), 0), maxRetryAfter)
	}
	return 0
}

// waitRetryAfter waits d (at least a second) unless ctx would end first:
// then it returns at once, rather than wait for nothing.
func waitRetryAfter(ctx context.Context, d time.Duration) error {
	d = max(d, time.Second)
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < d {
		return context.DeadlineExceeded
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
