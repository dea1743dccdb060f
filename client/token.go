package client

// The access token: logging in, refreshing ahead of expiry, one renewal
// at a time, and logging out.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"keygate/api"
)

// ErrLoggedOut is the error of the callers waiting for a login or refresh
// that Logout overtook: the tokens it got were revoked, not handed out.
var ErrLoggedOut = errors.New("keygate: logged out while the access token was being renewed")

// session is one access token with its refresh token. A session is never
// changed once made; a renewal makes a new one.
type session struct {
	jwt          string
	refreshAt    time.Time // when to renew it, ahead of expiry
	usableUntil  time.Time // when to stop handing it out: its expiry less a safety margin
	refreshToken string
	refreshUntil time.Time // when the refresh token expires
}

// renewal is a login or refresh under way; done closes when it has ended.
type renewal struct {
	done chan struct{}
	sess *session
	err  error
}

// Renewal timing.
const (
	// forcedEvery is the least time between renewals forced by a
	// downstream 401, so that a downstream refusing every token cannot
	// make the client refresh on every request.
	forcedEvery = 10 * time.Second
	// renewTimeout bounds one renewal (a refresh with its retries, and the
	// login after a refused refresh). A renewal runs on its own context,
	// not its caller's: a caller giving up must not lose the successor
	// keygate may already have rotated in.
	renewTimeout = 30 * time.Second
	// backoffMin and backoffMax space renewals ahead of expiry that failed
	// in a row, doubling; never later than half the time the token has
	// left.
	backoffMin = time.Second
	backoffMax = time.Minute
	// refreshAttempts is how often one refresh token is sent when keygate's
	// answer is lost; keygate's grace window (10 s) returns the same
	// successor to each.
	refreshAttempts = 3
	// maxSafetyMargin is how long before its expiry a token stops being
	// handed out (a tenth of its lifetime, if less), so that it does not
	// expire on its way to a downstream service.
	maxSafetyMargin = 2 * time.Second
)

// Token returns a valid access token, logging in first if there is none.
// A token due for its refresh but still valid is returned at once, and
// refreshed in the background. ctx bounds only the caller's wait: the login
// or refresh itself runs on, bounded by 30 s, for the callers after it.
func (c *Client) Token(ctx context.Context) (string, error) {
	s, err := c.session(ctx, "")
	if err != nil {
		return "", err
	}
	return s.jwt, nil
}

// session returns a session to use. With refused set (a token a
// downstream service refused), it renews unless that token has been
// replaced already; otherwise it waits for a renewal only when there is no
// valid token. Concurrent callers share one renewal.
func (c *Client) session(ctx context.Context, refused string) (*session, error) {
	for waits := 0; ; waits++ {
		c.mu.Lock()
		cur, now := c.sess, c.now()
		valid := cur != nil && now.Before(cur.usableUntil)
		forced := refused != "" && cur != nil && cur.jwt == refused
		switch {
		case valid && !forced:
			if refused == "" && !now.Before(cur.refreshAt) {
				c.renewInBackgroundLocked(ctx, cur, now)
			}
			c.mu.Unlock()
			return cur, nil
		case forced && c.renewing == nil && now.Sub(c.lastForced) < forcedEvery:
			c.mu.Unlock()
			return nil, errors.New("keygate: a token was refused moments after a forced refresh; not refreshing again")
		case c.renewing == nil && now.Before(c.notBefore):
			// keygate answered 429 moments ago: wait until it allows a
			// login or refresh again, if ctx does; else fail at once.
			limited, until := c.limited, c.notBefore
			c.mu.Unlock()
			if waits == maxRateWaits {
				return nil, limited
			}
			if err := c.waitUntil(ctx, until); err != nil {
				return nil, fmt.Errorf("%w (not retried: %w)", limited, err)
			}
			continue
		}
		r := c.renewing
		if r == nil {
			if forced {
				c.lastForced = now
			}
			r = c.startRenewalLocked(ctx, cur)
		}
		c.mu.Unlock()

		select {
		case <-r.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		var ae *APIError
		if errors.As(r.err, &ae) && ae.Status == http.StatusTooManyRequests && waits < maxRateWaits {
			continue // the next turn waits for Retry-After, or fails at once
		}
		if r.err != nil {
			return nil, r.err
		}
		return r.sess, nil
	}
}

// renewInBackgroundLocked starts renewing cur, still valid, unless a
// renewal is under way or failed ones, or keygate's 429, ask to wait;
// c.mu is held. Nobody waits for it.
func (c *Client) renewInBackgroundLocked(ctx context.Context, cur *session, now time.Time) {
	if c.renewing != nil || now.Before(c.retryAt) || now.Before(c.notBefore) {
		return
	}
	c.startRenewalLocked(ctx, cur)
}

// startRenewalLocked starts renewing cur (logging in if nil) on a context
// of its own, detached from ctx but for its values; c.mu is held.
func (c *Client) startRenewalLocked(ctx context.Context, cur *session) *renewal {
	r := &renewal{done: make(chan struct{})}
	c.renewing = r
	gen := c.gen
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), renewTimeout)
	go func() {
		defer cancel()
		s, err := c.renew(rctx, cur, gen)
		c.finish(rctx, r, gen, cur, s, err)
	}()
	return r
}

// finish records the outcome of renewal r, begun at generation gen from
// cur, and lets its waiters go.
func (c *Client) finish(ctx context.Context, r *renewal, gen int, cur, s *session, err error) {
	c.mu.Lock()
	stale := c.gen != gen
	c.mu.Unlock()
	switch {
	case stale && err == nil:
		// Logout overtook the renewal: revoke the family it started,
		// rather than leave it alive or hand its token out.
		if rerr := c.revoke(ctx, s.refreshToken); rerr != nil {
			c.log.WarnContext(ctx, "keygate: logged out during a login or refresh; revoking its refresh token failed", "err", rerr)
		}
		s, err = nil, ErrLoggedOut
	case stale:
		err = fmt.Errorf("%w (and the renewal failed: %w)", ErrLoggedOut, err)
	}

	c.mu.Lock()
	defer close(r.done)
	defer c.mu.Unlock()
	if c.renewing == r {
		c.renewing = nil
	}
	r.sess, r.err = s, err
	if stale {
		return
	}
	now := c.now()
	var ae *APIError
	switch {
	case err == nil:
		c.sess, c.failures, c.retryAt = s, 0, time.Time{}
		return
	case errors.As(err, &ae) && ae.Status == http.StatusTooManyRequests:
		c.notBefore, c.limited = now.Add(max(ae.RetryAfter, time.Second)), ae
	}
	if cur != nil && c.sess == cur && now.Before(cur.usableUntil) {
		// Renewing ahead of expiry failed (keygate unreachable, say): the
		// current token stays in use while it is valid; try again later,
		// backing off.
		c.failures++
		wait := min(backoffMin<<min(c.failures-1, 16), backoffMax, cur.usableUntil.Sub(now)/2)
		c.retryAt = now.Add(wait)
		c.log.WarnContext(ctx, "keygate: renewing the access token failed; using the current one until it expires",
			"err", err, "failures", c.failures, "retry_in", wait)
	}
}

// renew refreshes cur, or logs in when there is no refresh token to use or
// keygate refuses it, unless Logout has run since the renewal began at
// generation gen (which is likely why keygate refused the token).
func (c *Client) renew(ctx context.Context, cur *session, gen int) (*session, error) {
	if cur != nil && cur.refreshToken != "" && c.now().Before(cur.refreshUntil) {
		s, err := c.refresh(ctx, cur.refreshToken)
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
			return s, err
		}
		c.mu.Lock()
		stale := c.gen != gen
		c.mu.Unlock()
		if stale {
			return nil, ErrLoggedOut
		}
		c.log.InfoContext(ctx, "keygate refused the refresh token; logging in again with the API key")
	}
	return c.login(ctx)
}

func (c *Client) login(ctx context.Context) (*session, error) {
	var resp api.TokenResponse
	if err := c.do(ctx, http.MethodPost, "/api/v1/auth/login", api.LoginRequest{APIKey: &c.apiKey, Scope: c.scope}, &resp, "", false); err != nil {
		return nil, err
	}
	c.log.DebugContext(ctx, "keygate: logged in", "expires", resp.ExpirationDate.Time)
	return c.newSession(resp), nil
}

// refresh sends the refresh token, again if the answer is lost: a
// transport error or a 5xx may come after keygate used the token, and
// keygate answers a retry within its grace window with the same successor.
func (c *Client) refresh(ctx context.Context, token string) (*session, error) {
	var err error
	for attempt := range refreshAttempts {
		if attempt > 0 {
			if werr := sleep(ctx, time.Duration(attempt)*100*time.Millisecond); werr != nil {
				return nil, err
			}
		}
		var resp api.TokenResponse
		err = c.do(ctx, http.MethodPost, "/api/v1/auth/refresh", api.RefreshRequest{RefreshToken: &token}, &resp, "", false)
		if err == nil {
			c.log.DebugContext(ctx, "keygate: refreshed the access token", "expires", resp.ExpirationDate.Time)
			return c.newSession(resp), nil
		}
		var ae *APIError
		if errors.As(err, &ae) && ae.Status < 500 || ctx.Err() != nil {
			return nil, err
		}
	}
	return nil, err
}

// revoke logs a refresh token's family out at keygate.
func (c *Client) revoke(ctx context.Context, refreshToken string) error {
	return c.do(ctx, http.MethodPost, "/api/v1/auth/logout", api.RefreshRequest{RefreshToken: &refreshToken}, nil, "", true)
}

// newSession schedules the renewal of a new token: RefreshBefore ahead of
// its expiry, or once 80% of its lifetime has passed, and never in less
// than half of the time it has left.
func (c *Client) newSession(r api.TokenResponse) *session {
	now := c.now()
	left := r.ExpirationDate.Sub(now)
	lifetime, ok := lifetimeOf(r.JWT)
	if !ok {
		lifetime = left
	}
	if left <= 0 || left > lifetime {
		left = lifetime // the clocks disagree: trust the token's own lifetime
	}
	before := c.refreshBefore
	if before == 0 {
		before = lifetime / 5
	}
	return &session{
		jwt:          r.JWT,
		refreshAt:    now.Add(max(left-before, left/2)),
		usableUntil:  now.Add(left - min(maxSafetyMargin, lifetime/10)),
		refreshToken: r.RefreshToken,
		refreshUntil: r.RefreshTokenExpiration.Time,
	}
}

// lifetimeOf reads the lifetime keygate gave a token, exp - iat, from its
// claims. The client only schedules by it: keygate and the downstream
// services verify tokens, the client does not.
func lifetimeOf(token string) (time.Duration, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return 0, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return 0, false
	}
	var c struct {
		IssuedAt  float64 `json:"iat"`
		ExpiresAt float64 `json:"exp"`
	}
	if json.Unmarshal(raw, &c) != nil || c.ExpiresAt <= c.IssuedAt {
		return 0, false
	}
	return time.Duration((c.ExpiresAt - c.IssuedAt) * float64(time.Second)), true
}

// Logout revokes the refresh token's family at keygate and forgets the
// tokens; the next call that needs a token logs in again. A login or
// refresh under way is dropped: its callers get ErrLoggedOut, and the
// family it started is revoked. Access tokens already handed out stay
// valid until they expire.
func (c *Client) Logout(ctx context.Context) error {
	c.mu.Lock()
	s := c.sess
	c.sess = nil
	c.gen++
	c.renewing = nil // its goroutine finds the generation changed
	c.failures, c.retryAt = 0, time.Time{}
	c.mu.Unlock()
	if s == nil || s.refreshToken == "" {
		return nil
	}
	return c.revoke(ctx, s.refreshToken)
}

// waitUntil waits until the client's clock reaches at, unless ctx would
// end first: then it returns at once, rather than wait for nothing.
func (c *Client) waitUntil(ctx context.Context, at time.Time) error {
	d := at.Sub(c.now())
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < d {
		return context.DeadlineExceeded
	}
	return sleep(ctx, d)
}

// sleep waits d unless ctx ends first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
