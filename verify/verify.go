// Package verify checks R-Auth access tokens in services downstream of
// keygate: offline, against keygate's published keys, by exactly the rules
// keygate applies to its own endpoints (package accesstoken holds them, and
// keygate's tokens package calls the same code).
//
// A service makes one Verifier at start, wraps its handlers, and closes it
// on the way out:
//
//	v, err := verify.New(ctx, verify.Config{JWKSURL: "https://keygate.example/.well-known/jwks.json"})
//	if err != nil { ... }
//	defer v.Close()
//	mux.Handle("GET /orders", v.Middleware(orders))
//
// and reads who called with FromContext. Requests without a valid token get
// keygate's 401 body, {"error":"unauthorized","message":...} with the same
// message keygate sends (api.UnauthorizedMessage), and WWW-Authenticate:
// Bearer error="invalid_token"; why the token failed goes to the service's
// log at debug level, never to the caller.
//
// # Keys
//
// The Verifier caches keygate's JWK Set and refetches it when its
// Cache-Control max-age runs out (kept between 30 s and 1 h; 5 min without
// one). A token naming a kid it does not hold starts a fetch, at most one
// per 10 s: a token arriving within 10 s of the last such fetch waits for
// the one fetch scheduled for when the 10 s are up (and no longer than its
// context allows), so tokens naming random kids can neither make it hammer
// keygate nor keep it from learning a key keygate has just rotated in.
// Concurrent tokens share one fetch. When keygate cannot be reached it
// keeps the last key set it fetched, so tokens signed by known keys keep
// verifying; only a token naming a kid it has never seen is refused, once
// its fetch has failed, which takes at most 3 s (and within those 10 s, if
// the last fetch failed, happens at once). Fetches follow redirects on
// keygate's own scheme and host only, and read at most 1 MiB.
//
// Why not a JWKS library's cache: the key cache is written here, and only
// the JWK parsing is jwkset's, because keyfunc v3.9.2 (with jwkset v0.11.4)
// falls short of this contract, as measured against a test JWK Set:
//   - it refreshes on a fixed interval and ignores Cache-Control max-age;
//   - its unknown-kid limit is a rate.Limiter each verification waits on
//     in turn, not a shared fetch: of 50 concurrent first tokens of a new
//     key, 4 failed with a 3 s wait allowed and 45 (after 10 s) with 10 s;
//   - a genuinely new kid 1 s after a random one was refused at once (3 s
//     wait) or held 9 s (10 s wait);
//   - the unknown-kid fetch is bounded by that wait, not the fetch timeout,
//     and it reads the JWK Set without a size limit or redirect policy.
//
// keygate deployments signing with HS256 publish no keys; Verifier checks
// ES256, EdDSA and RS256 tokens only.
//
// The package imports neither Gin nor a database; package ginverify adapts
// the middleware to Gin.
package verify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"keygate/verify/accesstoken"
)

// Config says where keygate's keys are and what a token must carry.
type Config struct {
	// JWKSURL is keygate's JWK Set, http(s)://HOST/.well-known/jwks.json.
	// Required.
	JWKSURL string
	// Issuer is the iss tokens must carry; "keygate" if empty.
	Issuer string
	// Audience is a value the tokens' aud must contain; "r-auth" if empty.
	Audience string
	// Leeway is the clock skew allowed on exp, nbf and iat; 30s if zero.
	Leeway time.Duration
	// Header is the request header the middleware reads the token from;
	// "R-Auth" if empty. "Authorization" reads "Bearer <token>".
	Header string

	// HTTPClient fetches the JWK Set; a client without a timeout of its
	// own if nil (every fetch is bounded by 3 s regardless). The Verifier
	// uses a copy whose redirects must stay on JWKSURL's scheme and host.
	HTTPClient *http.Client
	// Logger receives why tokens were refused (at debug) and JWK Set
	// fetch failures (at warn); slog.Default() if nil.
	Logger *slog.Logger
	// Now is the clock tokens' exp, nbf and iat are judged by; time.Now if
	// nil. (The key cache's intervals run on the machine's clock.)
	Now func() time.Time
}

// Defaults of Config.
const (
	DefaultIssuer   = "keygate"
	DefaultAudience = "r-auth"
	DefaultLeeway   = 30 * time.Second
	DefaultHeader   = "R-Auth"
)

// algorithms are the signing algorithms of keygate's published keys; each
// key verifies its own only.
func algorithms() []string { return []string{"ES256", "EdDSA", "RS256"} }

// ErrInvalidToken covers every reason a token is refused; the cause is
// wrapped for the logs. It is the error keygate's own verifier returns.
var ErrInvalidToken = accesstoken.ErrInvalid

// Claims are the claims of a verified token. Kind is "partner" or
// "company"; Subject (and ClientID) the principal's id; PartnerID the
// partner (itself for a partner); CompanyID is set for companies only;
// KeyID is the API key that logged in.
type Claims = accesstoken.Claims

// Verifier verifies access tokens against keygate's published keys. It is
// safe for concurrent use.
type Verifier struct {
	rules  *accesstoken.Rules
	keys   *keySource
	header string
	bearer bool // the header is Authorization: strip "Bearer "
	log    *slog.Logger
}

// New makes a Verifier and fetches keygate's keys once, waiting for that
// fetch at most 3 s, or until ctx ends. If it fails, New still returns the
// Verifier (and logs a warning): it keeps trying in the background, so a
// service may start before keygate. Only a malformed Config is an error.
//
// ctx bounds that first wait only: the Verifier refreshes its keys until
// Close, whatever becomes of ctx.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	return newVerifier(ctx, cfg, defaultTiming)
}

func newVerifier(ctx context.Context, cfg Config, t timing) (*Verifier, error) {
	u, err := url.Parse(cfg.JWKSURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("verify: JWKSURL %q is not an http(s) URL", cfg.JWKSURL)
	}
	if cfg.Issuer == "" {
		cfg.Issuer = DefaultIssuer
	}
	if cfg.Audience == "" {
		cfg.Audience = DefaultAudience
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.Leeway < 0 {
		return nil, errors.New("verify: negative Leeway")
	}
	if cfg.Header == "" {
		cfg.Header = DefaultHeader
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	rules, err := accesstoken.NewRules(accesstoken.Config{
		Issuer: cfg.Issuer, Audience: cfg.Audience, Leeway: cfg.Leeway, Algorithms: algorithms(), Now: cfg.Now,
	})
	if err != nil {
		return nil, err
	}
	v := &Verifier{
		rules:  rules,
		keys:   newKeySource(ctx, u.String(), sameOrigin(cfg.HTTPClient, u), cfg.Logger, t),
		header: http.CanonicalHeaderKey(cfg.Header),
		log:    cfg.Logger,
	}
	v.bearer = v.header == "Authorization"
	v.keys.start(ctx)
	return v, nil
}

// Close stops refreshing the keys and waits for any fetch under way to
// end. Tokens of the keys held keep verifying; a token naming another kid
// is refused. It returns nil.
func (v *Verifier) Close() error {
	v.keys.close()
	return nil
}

// sameOrigin is a copy of c (a new client if nil) that follows redirects
// only on u's scheme and host: a redirect elsewhere is an error, and the
// fetch keeps the last good key set.
func sameOrigin(c *http.Client, u *url.URL) *http.Client {
	cp := &http.Client{}
	if c != nil {
		*cp = *c
	}
	next := cp.CheckRedirect
	cp.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme != u.Scheme || req.URL.Host != u.Host {
			return fmt.Errorf("redirected to %s://%s, away from %s://%s", req.URL.Scheme, req.URL.Host, u.Scheme, u.Host)
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return cp
}

// Verify checks token and returns its claims. Every failure is
// ErrInvalidToken, with the cause wrapped; show it to no caller. ctx bounds
// the wait for keygate's keys when the token names a kid not yet known.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	return v.rules.Verify(token, func(kid string) (accesstoken.Key, error) { return v.keys.key(ctx, kid) })
}

// tokenOf reads the token from the configured header: exactly one value,
// and for Authorization the Bearer scheme.
func (v *Verifier) tokenOf(r *http.Request) (string, error) {
	vs := r.Header.Values(v.header)
	if len(vs) != 1 {
		return "", fmt.Errorf("%w: %d %s headers", ErrInvalidToken, len(vs), v.header)
	}
	tok := strings.TrimSpace(vs[0])
	if v.bearer {
		scheme, rest, ok := strings.Cut(tok, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return "", fmt.Errorf("%w: not a Bearer token", ErrInvalidToken)
		}
		tok = strings.TrimSpace(rest)
	}
	if tok == "" {
		return "", fmt.Errorf("%w: empty %s header", ErrInvalidToken, v.header)
	}
	return tok, nil
}
