package client

// The access token: logging in, refreshing ahead of expiry, one renewal
// at a time, and logging out.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"keygate/api"
)

// session is one access token with its refresh token. A session is never
// changed once made; a renewal makes a new one.
type session struct {
	jwt          string
	refreshAt    time.Time // when to renew it, ahead of expiry
	expiresAt    time.Time // when it expires, by this machine's clock
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
	// retryFailedRenewal is how long a token still valid is used after a
	// renewal ahead of expiry failed, before the next attempt.
	retryFailedRenewal = time.Second
	// refreshAttempts is how often one refresh token is sent when keygate's
	// answer is lost; keygate's grace window (10 s) returns the same
	// successor to each.
	refreshAttempts = 3
)

// Token returns a valid access token, logging in or refreshing first if
// needed.
func (c *Client) Token(ctx context.Context) (string, error) {
	s, err := c.session(ctx, "")
	if err != nil {
		return "", err
	}
	return s.jwt, nil
}

// session returns a session to use. With refused set (a token a
// downstream service refused), it renews unless that token has been
// replaced already; otherwise it renews only when the session is due.
// Concurrent callers share one renewal.
func (c *Client) session(ctx context.Context, refused string) (*session, error) {
	for {
		c.mu.Lock()
		cur, now := c.sess, c.now()
		forced := cur != nil && refused != ""
		switch {
		case cur != nil && refused == "" && now.Before(cur.refreshAt):
			c.mu.Unlock()
			return cur, nil
		case forced && cur.jwt != refused:
			c.mu.Unlock()
			return cur, nil
		case forced && c.renewing == nil && now.Sub(c.lastForced) < forcedEvery:
			c.mu.Unlock()
			return nil, errors.New("keygate: a token was refused moments after a forced refresh; not refreshing again")
		}
		r, leader := c.renewing, false
		if r == nil {
			r, leader = &renewal{done: make(chan struct{})}, true
			c.renewing = r
			if forced {
				c.lastForced = now
			}
		}
		gen := c.gen
		c.mu.Unlock()

		if leader {
			r.sess, r.err = c.renew(ctx, cur)
			c.mu.Lock()
			c.renewing = nil
			if r.err == nil && c.gen == gen {
				c.sess = r.sess
			}
			if r.err != nil && refused == "" && cur != nil && c.sess == cur && c.now().Before(cur.expiresAt) {
				// Renewing ahead of expiry failed (keygate unreachable,
				// say): keep the token while it is valid, try again soon.
				c.log.WarnContext(ctx, "keygate: renewing the access token failed; using the current one until it expires", "err", r.err)
				next := *cur
				next.refreshAt = c.now().Add(retryFailedRenewal)
				c.sess = &next
				r.sess, r.err = &next, nil
			}
			c.mu.Unlock()
			close(r.done)
		} else {
			select {
			case <-r.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if r.err != nil {
			if !leader && ctx.Err() == nil && (errors.Is(r.err, context.Canceled) || errors.Is(r.err, context.DeadlineExceeded)) {
				continue // the goroutine renewing gave up on its own context; renew for ours
			}
			return nil, r.err
		}
		return r.sess, nil
	}
}

// renew refreshes cur, or logs in when there is no refresh token to use or
// keygate refuses it.
func (c *Client) renew(ctx context.Context, cur *session) (*session, error) {
	if cur != nil && cur.refreshToken != "" && c.now().Before(cur.refreshUntil) {
		s, err := c.refresh(ctx, cur.refreshToken)
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
			return s, err
		}
		c.log.InfoContext(ctx, "keygate refused the refresh token; logging in again with the API key")
	}
	return c.login(ctx)
}

func (c *Client) login(ctx context.Context) (*session, error) {
	var resp api.TokenResponse
	if err := c.do(ctx, http.MethodPost, "/api/v1/auth/login", api.LoginRequest{APIKey: &c.apiKey}, &resp, ""); err != nil {
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
		err = c.do(ctx, http.MethodPost, "/api/v1/auth/refresh", api.RefreshRequest{RefreshToken: &token}, &resp, "")
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
		expiresAt:    now.Add(left),
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
// tokens; the next call that needs a token logs in again. Access tokens
// already handed out stay valid until they expire.
func (c *Client) Logout(ctx context.Context) error {
	c.mu.Lock()
	s := c.sess
	c.sess = nil
	c.gen++
	c.mu.Unlock()
	if s == nil || s.refreshToken == "" {
		return nil
	}
	return c.do(ctx, http.MethodPost, "/api/v1/auth/logout", api.RefreshRequest{RefreshToken: &s.refreshToken}, nil, "")
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
