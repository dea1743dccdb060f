package server

import (
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"keygate/api"
	"keygate/keys"
	"keygate/metrics"
	"keygate/tokens"
)

// The OAuth 2.0 face: the token endpoint (RFC 6749), revocation (RFC 7009),
// introspection (RFC 7662) and server metadata (RFC 8414), on the same
// keys, families and signing keys as /api/v1/auth. A client is a principal:
// its client_id is the partner's or company's id and its client_secret one
// of its API keys. Errors the endpoints answer are RFC 6749's ({"error",
// "error_description"}), not keygate's shape: OAuth clients parse those.
// What the HTTP layer answers before an endpoint runs keeps keygate's
// shape, as on every path: 404, 405, and 413 for a body over
// server.max_body_bytes (declared or streamed).

// OAuthConfig configures the OAuth face.
type OAuthConfig struct {
	// PublicURL is keygate's external base URL (server.public_url); the
	// metadata document is served only when it is set.
	PublicURL string
	// Issuer is tokens.issuer, the metadata's issuer.
	Issuer string
	// ClientCredentialsRefresh issues refresh tokens to the
	// client_credentials grant (oauth.client_credentials_refresh_tokens).
	ClientCredentialsRefresh bool
}

// oauthError is a refusal of an OAuth endpoint.
type oauthError struct {
	status      int
	code        string
	description string
}

func (e *oauthError) Error() string { return e.code + ": " + e.description }

func oauthErr(code, description string) *oauthError {
	status := http.StatusBadRequest
	if code == api.OAuthInvalidClient {
		status = http.StatusUnauthorized
	}
	return &oauthError{status: status, code: code, description: description}
}

var (
	errOAuthClient      = oauthErr(api.OAuthInvalidClient, "client authentication failed")
	errOAuthGrant       = oauthErr(api.OAuthInvalidGrant, "the refresh token is invalid, expired, revoked or not this client's")
	errOAuthUnavailable = &oauthError{http.StatusServiceUnavailable, api.OAuthTemporarilyUnavailable, "storage is unavailable, retry later"}
	errOAuthServer      = &oauthError{http.StatusInternalServerError, api.OAuthServerError, "internal error"}
)

// oauthFail renders err as RFC 6749 §5.2 says. Errors that are not an
// *oauthError are mapped: an unavailable store is 503
// temporarily_unavailable, anything else a 500 server_error, logged. An
// oversized body is the HTTP layer's 413, in keygate's shape.
func (s *Server) oauthFail(c *gin.Context, err error) {
	if clientGone(c, err) {
		c.AbortWithStatus(StatusClientClosedRequest)
		return
	}
	if errors.Is(err, errTooLarge) {
		s.fail(c, err)
		return
	}
	var oe *oauthError
	if !errors.As(err, &oe) {
		if errors.Is(err, keys.ErrUnavailable) {
			oe = errOAuthUnavailable
			s.log.ErrorContext(c.Request.Context(), "request failed", "err", err)
		} else {
			oe = errOAuthServer
			s.log.ErrorContext(c.Request.Context(), "internal error", "err", err)
		}
	}
	if oe.status == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Basic realm="keygate"`)
	}
	c.AbortWithStatusJSON(oe.status, api.OAuthError{Error: oe.code, ErrorDescription: oe.description})
}

// oauthHeaders marks every response of an OAuth endpoint uncacheable for
// HTTP/1.0 caches too (RFC 6749 §5.1); the headers middleware has already
// said no-store.
func oauthHeaders(c *gin.Context) {
	c.Header("Pragma", "no-cache")
	c.Next()
}

// oauthRoute reports whether c is routed to an OAuth endpoint, whose
// errors are RFC 6749's.
func oauthRoute(c *gin.Context) bool { return strings.HasPrefix(c.FullPath(), "/oauth2/") }

// oauthForm reads an application/x-www-form-urlencoded body. Parameters
// sent twice are refused (RFC 6749 §3.2); unknown ones are ignored.
func (s *Server) oauthForm(c *gin.Context) (url.Values, error) {
	mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, oauthErr(api.OAuthInvalidRequest, "the body must be application/x-www-form-urlencoded")
	}
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, errTooLarge
		}
		return nil, oauthErr(api.OAuthInvalidRequest, "the body could not be read")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, oauthErr(api.OAuthInvalidRequest, "the body is not a well-formed form")
	}
	for name, vs := range form {
		if len(vs) > 1 {
			return nil, oauthErr(api.OAuthInvalidRequest, "parameter "+truncate(name)+" is repeated")
		}
	}
	return form, nil
}

// clientCredentials reads the client's id and secret, from HTTP Basic
// (client_secret_basic, both form-urlencoded first) or from the form
// (client_secret_post): exactly one of them (RFC 6749 §2.3.1). An empty
// parameter is as if omitted (§3.1).
func clientCredentials(c *gin.Context, form url.Values) (id, secret string, err error) {
	header := c.GetHeader("Authorization")
	inForm := form.Get("client_secret") != ""
	switch {
	case header != "" && inForm:
		return "", "", oauthErr(api.OAuthInvalidRequest, "use one client authentication method, not two")
	case header != "":
		scheme, value, ok := strings.Cut(header, " ")
		if !ok || !strings.EqualFold(scheme, "Basic") {
			return "", "", errOAuthClient
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(value))
		if err != nil {
			return "", "", errOAuthClient
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return "", "", errOAuthClient
		}
		if id, err = url.QueryUnescape(user); err != nil {
			return "", "", errOAuthClient
		}
		if secret, err = url.QueryUnescape(pass); err != nil {
			return "", "", errOAuthClient
		}
		if formID := form.Get("client_id"); formID != "" && formID != id {
			return "", "", oauthErr(api.OAuthInvalidRequest, "client_id differs from the authenticated client")
		}
	case inForm:
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	if id == "" || secret == "" {
		return "", "", errOAuthClient
	}
	return id, secret, nil
}

// authenticateClient checks a client's id and secret (one of its API
// keys) without issuing anything, for revocation, introspection and the
// refresh_token grant. A failure is audited like a failed login, with the
// key's hint.
func (s *Server) authenticateClient(c *gin.Context, id, secret string) (keys.Principal, error) {
	ctx := c.Request.Context()
	hint := keys.HintMalformed
	if _, err := keys.ParseAPIKey(secret); err == nil {
		hint = keys.Hint(secret)
		p, err := s.keys.Authenticate(ctx, secret)
		if err == nil && subtle.ConstantTimeCompare([]byte(id), []byte(p.ID)) == 1 {
			return p, nil
		}
		if err != nil && !errors.Is(err, keys.ErrInvalidKey) {
			return keys.Principal{}, err
		}
	}
	s.keys.RecordLogin(ctx, keys.Principal{}, hint, c.ClientIP(), false)
	return keys.Principal{}, errOAuthClient
}

// token is POST /oauth2/token.
func (s *Server) token(c *gin.Context) {
	form, err := s.oauthForm(c)
	if err != nil {
		s.oauthFail(c, err)
		return
	}
	grant := form.Get("grant_type")
	switch grant {
	case "client_credentials", "refresh_token":
	case "":
		s.oauthFail(c, oauthErr(api.OAuthInvalidRequest, "grant_type is required"))
		return
	default:
		s.oauthFail(c, oauthErr(api.OAuthUnsupportedGrantType, "grant_type must be client_credentials or refresh_token"))
		return
	}
	id, secret, err := clientCredentials(c, form)
	if err != nil {
		s.oauthFail(c, err)
		return
	}
	var scope keys.ScopeRequest
	if raw := form.Get("scope"); raw != "" {
		set, err := keys.ParseScopeParam("scope", raw)
		var ve *keys.ValidationError
		if errors.As(err, &ve) {
			s.oauthFail(c, oauthErr(api.OAuthInvalidScope, ve.Message))
			return
		}
		scope = keys.Only(set)
	}
	if grant == "client_credentials" {
		s.clientCredentialsGrant(c, id, secret, scope)
	} else {
		s.refreshTokenGrant(c, form, id, secret, scope)
	}
}

// clientCredentialsGrant logs the client in with its key, down-scoped to
// scope if it asks (invalid_scope for a scope its key does not hold).
func (s *Server) clientCredentialsGrant(c *gin.Context, id, secret string, scope keys.ScopeRequest) {
	kind := loginKind(secret)
	if ok, wait := s.limits.login.allow(secretKey(secret)); !ok {
		s.metrics.Login(kind, metrics.OutcomeRateLimited)
		s.oauthRateLimited(c, wait, metrics.LimitLoginPerKey)
		return
	}
	try, ok, wait := s.limits.failures.begin(clientKey(c.ClientIP()))
	if !ok && !s.keys.KnownActive(secret) {
		s.metrics.Login(kind, metrics.OutcomeRateLimited)
		s.oauthRateLimited(c, wait, metrics.LimitLoginFailures)
		return
	}
	pair, err := s.tokens.LoginWith(c.Request.Context(), secret, c.ClientIP(), tokens.LoginOptions{
		ClientID: id, NoRefresh: !s.oauth.ClientCredentialsRefresh, Scope: scope,
	})
	try.end(credentialFailure(err))
	if err != nil {
		var se *keys.ScopeError
		switch {
		case errors.Is(err, keys.ErrInvalidKey):
			s.metrics.Login(kind, metrics.OutcomeInvalidKey)
			err = errOAuthClient
		case errors.As(err, &se):
			s.metrics.Login(kind, metrics.OutcomeInvalidKey)
			err = oauthErr(api.OAuthInvalidScope, se.Error())
		default:
			s.metrics.Login(kind, metrics.OutcomeError)
		}
		s.oauthFail(c, err)
		return
	}
	s.metrics.Login(kind, metrics.OutcomeOK)
	s.oauthToken(c, pair)
}

// refreshTokenGrant is /api/v1/auth/refresh for an authenticated client,
// under the same limits. Two credentials arrive here, so a request passes
// an address's failure limit only when neither is a guess: the refresh
// token's MAC checks out and the secret is a key known to be active. The
// family's budget is spent only once the client has authenticated, so
// that holding someone's refresh token does not let one drain its owner's.
func (s *Server) refreshTokenGrant(c *gin.Context, form url.Values, id, secret string, scope keys.ScopeRequest) {
	raw := form.Get("refresh_token")
	if raw == "" {
		s.oauthFail(c, oauthErr(api.OAuthInvalidRequest, "refresh_token is required"))
		return
	}
	rt, parsed := s.tokens.ParseRefreshToken(raw)
	try, ok, wait := s.limits.failures.begin(clientKey(c.ClientIP()))
	if !ok && !(parsed && s.keys.KnownActive(secret)) {
		s.metrics.Refresh(metrics.OutcomeRateLimited)
		s.oauthRateLimited(c, wait, metrics.LimitLoginFailures)
		return
	}
	client, err := s.authenticateClient(c, id, secret)
	if err != nil {
		try.end(errors.Is(err, errOAuthClient))
		s.oauthFail(c, err)
		return
	}
	if parsed {
		if ok, wait := s.limits.refresh.allow(rt.Family()); !ok {
			try.end(false)
			s.metrics.Refresh(metrics.OutcomeRateLimited)
			s.oauthRateLimited(c, wait, metrics.LimitRefreshPerFamily)
			return
		}
	}
	pair, err := s.tokens.RefreshAs(c.Request.Context(), rt, client.ID, scope, c.ClientIP())
	try.end(credentialFailure(err))
	s.metrics.Refresh(refreshOutcome(pair, err))
	if err != nil {
		var se *keys.ScopeError
		switch {
		case errors.Is(err, tokens.ErrInvalidRefreshToken):
			err = errOAuthGrant
		case errors.As(err, &se):
			err = oauthErr(api.OAuthInvalidScope, se.Error())
		}
		s.oauthFail(c, err)
		return
	}
	s.oauthToken(c, pair)
}

func (s *Server) oauthToken(c *gin.Context, p tokens.Pair) {
	c.JSON(http.StatusOK, api.OAuthToken{
		AccessToken:  p.JWT.Reveal(),
		TokenType:    "Bearer",
		ExpiresIn:    int64(p.ExpiresAt.Sub(s.now()).Round(1e9).Seconds()),
		RefreshToken: p.RefreshToken.Reveal(),
		Scope:        p.Principal.Scopes.String(),
	})
}

// oauthRateLimited is a 429 in RFC 6749's shape, with Retry-After.
func (s *Server) oauthRateLimited(c *gin.Context, wait time.Duration, limit string) {
	s.metrics.RateLimited(limit)
	c.Header("Retry-After", retryAfter(wait))
	c.AbortWithStatusJSON(http.StatusTooManyRequests, api.OAuthError{Error: api.OAuthInvalidRequest, ErrorDescription: "too many requests, retry later"})
}

// revoke is POST /oauth2/revoke (RFC 7009): 200 whether or not the token
// was valid (§2.2), and a token of another client changes nothing. A
// refresh token of the client ends its family; anything else, its own
// access tokens included, changes nothing: a JWT is verified offline and
// ends at exp, and telling the client so would answer which strings are
// its live tokens.
func (s *Server) revoke(c *gin.Context) {
	form, client, ok := s.oauthClientRequest(c)
	if !ok {
		return
	}
	raw := form.Get("token")
	if raw == "" {
		s.oauthFail(c, oauthErr(api.OAuthInvalidRequest, "token is required"))
		return
	}
	if _, isRefresh := s.tokens.ParseRefreshToken(raw); !isRefresh {
		c.Status(http.StatusOK)
		return
	}
	if err := s.tokens.RevokeAs(c.Request.Context(), raw, client.ID); err != nil {
		s.oauthFail(c, err)
		return
	}
	c.Status(http.StatusOK)
}

// introspect is POST /oauth2/introspect (RFC 7662) on the main listener: a
// client sees its own tokens and, a partner, its companies'.
func (s *Server) introspect(c *gin.Context) {
	form, client, ok := s.oauthClientRequest(c)
	if !ok {
		return
	}
	s.introspectAs(c, form, tokens.AsClient(client))
}

// adminIntrospect is POST /oauth2/introspect on the admin listener, which
// takes no client authentication (it is not reachable by partners).
func (s *Server) adminIntrospect(c *gin.Context) {
	form, err := s.oauthForm(c)
	if err != nil {
		s.oauthFail(c, err)
		return
	}
	s.introspectAs(c, form, tokens.AsOperator())
}

func (s *Server) introspectAs(c *gin.Context, form url.Values, viewer tokens.Viewer) {
	raw := form.Get("token")
	if raw == "" {
		s.oauthFail(c, oauthErr(api.OAuthInvalidRequest, "token is required"))
		return
	}
	in, err := s.tokens.Introspect(c.Request.Context(), raw, viewer)
	if err != nil {
		s.oauthFail(c, err)
		return
	}
	out := api.Introspection{Active: in.Active}
	if in.Active {
		p := in.Principal
		out.ClientID, out.Sub, out.Iss, out.Aud, out.TokenType, out.Jti = p.ID, p.ID, in.Issuer, in.Audience, in.TokenType, in.ID
		out.Kind, out.PartnerID, out.CompanyID = string(p.Kind), p.PartnerID, p.CompanyID
		out.Scope = p.Scopes.String()
		out.Exp, out.Iat = unix(in.ExpiresAt), unix(in.IssuedAt)
		out.Nbf = unix(in.NotBefore)
	}
	c.JSON(http.StatusOK, out)
}

// oauthClientRequest reads the form and authenticates the client of a
// revocation or introspection, counting failures against the address, and
// letting a key known to be active through it, as a login does.
func (s *Server) oauthClientRequest(c *gin.Context) (url.Values, keys.Principal, bool) {
	form, err := s.oauthForm(c)
	if err != nil {
		s.oauthFail(c, err)
		return nil, keys.Principal{}, false
	}
	id, secret, err := clientCredentials(c, form)
	if err != nil {
		s.oauthFail(c, err)
		return nil, keys.Principal{}, false
	}
	try, ok, wait := s.limits.failures.begin(clientKey(c.ClientIP()))
	if !ok && !s.keys.KnownActive(secret) {
		s.oauthRateLimited(c, wait, metrics.LimitLoginFailures)
		return nil, keys.Principal{}, false
	}
	client, err := s.authenticateClient(c, id, secret)
	try.end(errors.Is(err, errOAuthClient))
	if err != nil {
		s.oauthFail(c, err)
		return nil, keys.Principal{}, false
	}
	return form, client, true
}

// unix is t in seconds, 0 for the zero time (then omitted).
func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// metadata is GET /.well-known/oauth-authorization-server (RFC 8414).
func (s *Server) metadata(c *gin.Context) {
	base := strings.TrimSuffix(s.oauth.PublicURL, "/")
	methods := []string{"client_secret_basic", "client_secret_post"}
	c.Header("Cache-Control", "public, max-age=3600")
	c.JSON(http.StatusOK, api.ServerMetadata{
		Issuer:                                 s.oauth.Issuer,
		TokenEndpoint:                          base + "/oauth2/token",
		JWKSURI:                                base + "/.well-known/jwks.json",
		RevocationEndpoint:                     base + "/oauth2/revoke",
		IntrospectionEndpoint:                  base + "/oauth2/introspect",
		GrantTypesSupported:                    []string{"client_credentials", "refresh_token"},
		TokenEndpointAuthMethodsSupported:      methods,
		RevocationEndpointAuthMethodsSupported: methods,
		IntrospectionEndpointAuthMethodsSupported: methods,
		ResponseTypesSupported:                    []string{},
	})
}
