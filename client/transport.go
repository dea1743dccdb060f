package client

// Calls to downstream services, with R-Auth.

import (
	"io"
	"net/http"
	"net/url"
	"strings"
)

// HTTPClient returns an http.Client whose requests carry the access token
// in R-Auth, sent through base (http.DefaultTransport if nil). A request
// answered 401 is sent once more with a freshly refreshed token, if it can
// be sent again: it has no body, or GetBody set (as http.NewRequest sets
// for bytes, strings and bytes.Buffer bodies). A redirect gets the token
// only if it stays on the scheme and host of the request the caller made,
// however many hops it took to get there.
//
// Use it for R-Auth services only: every host it calls sees the token.
func (c *Client) HTTPClient(base http.RoundTripper) *http.Client {
	if base == nil {
		base = http.DefaultTransport
	}
	return &http.Client{Transport: &transport{c: c, base: base}}
}

type transport struct {
	c    *Client
	base http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !sameOrigin(originOf(req).URL, req.URL) {
		return t.base.RoundTrip(req) // a redirect to another host or scheme: no token
	}
	s, err := t.c.session(req.Context(), "")
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close() // RoundTrip must close it, even on errors
		}
		return nil, err
	}
	resp, err := t.base.RoundTrip(withToken(req, s.jwt))
	if err != nil || resp.StatusCode != http.StatusUnauthorized || !replayable(req) {
		return resp, err
	}
	fresh, err := t.c.session(req.Context(), s.jwt)
	if err != nil {
		t.c.log.DebugContext(req.Context(), "keygate: a downstream service refused the token; not retrying", "host", req.URL.Host, "err", err)
		return resp, nil // the 401 as it came
	}
	retry := withToken(req, fresh.jwt)
	if req.GetBody != nil && req.Body != nil && req.Body != http.NoBody {
		if retry.Body, err = req.GetBody(); err != nil {
			return resp, nil
		}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	_ = resp.Body.Close()
	return t.base.RoundTrip(retry)
}

// withToken is a copy of req carrying token in R-Auth: a RoundTripper must
// not change the request it is given.
func withToken(req *http.Request, token string) *http.Request {
	r := req.Clone(req.Context())
	r.Header.Set("R-Auth", token)
	return r
}

// replayable reports whether req can be sent again.
func replayable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// originOf is the request the caller made, of which req may be a redirect,
// a hop or several away: http.Client links each redirect to the response
// that caused it.
func originOf(req *http.Request) *http.Request {
	for req.Response != nil && req.Response.Request != nil {
		req = req.Response.Request
	}
	return req
}

// sameOrigin reports whether a and b have one scheme, host and port.
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Hostname(), b.Hostname()) && portOf(a) == portOf(b)
}

// portOf is u's port, the scheme's default if it names none.
func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "https") {
		return "443"
	}
	return "80"
}
