// Package verify checks R-Auth access tokens in services downstream of
// keygate: offline, against keygate's published keys, by exactly the rules
// keygate applies to its own endpoints (package accesstoken holds them, and
// keygate's tokens package calls the same code).
//
// A service makes one Verifier at start and wraps its handlers:
//
//	v, err := verify.New(ctx, verify.Config{JWKSURL: "https://keygate.example/.well-known/jwks.json"})
//	if err != nil { ... }
//	mux.Handle("GET /orders", v.Middleware(orders))
//
// and reads who called with FromContext. Requests without a valid token get
// keygate's 401 body, {"error":"unauthorized","message":...}, with
// WWW-Authenticate: Bearer error="invalid_token"; why the token failed goes
// to the service's log at debug level, never to the caller.
//
// The Verifier caches keygate's JWK Set and refetches it when its
// Cache-Control max-age runs out (kept between 30 s and 1 h), and when a
// token names a kid it does not know, at most once per 10 s (tokens naming
// random kids cannot make it hammer keygate). When keygate cannot be
// reached it keeps the last key set it fetched, so tokens signed by known
// keys keep verifying; only a token naming a kid it has never seen is
// refused, once the fetch for it has failed, which takes at most 3 s.
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
	// own if nil (every fetch is bounded by 3 s regardless).
	HTTPClient *http.Client
	// Logger receives why tokens were refused (at debug) and JWK Set
	// fetch failures (at warn); slog.Default() if nil.
	Logger *slog.Logger
	// Now is the clock; time.Now if nil.
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

// New makes a Verifier and fetches keygate's keys once, waiting at most
// 3 s. If that fails, New still returns the Verifier (and logs a warning):
// it keeps trying in the background, so a service may start before
// keygate. Only a malformed Config is an error. The Verifier refreshes its
// keys until ctx ends.
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
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
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
		keys:   newKeySource(ctx, u.String(), cfg.HTTPClient, cfg.Logger, cfg.Now, t),
		header: http.CanonicalHeaderKey(cfg.Header),
		log:    cfg.Logger,
	}
	v.bearer = v.header == "Authorization"
	v.keys.start()
	return v, nil
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
