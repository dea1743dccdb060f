package server

import (
	"errors"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"keygate/api"
	"keygate/keys"
	"keygate/metrics"
	"keygate/tokens"
)

// Logins, refreshes, logouts and /auth/me: the session endpoints.

func validateLogin(r *api.LoginRequest) error {
	if err := requiredString("apiKey", r.APIKey); err != nil {
		return err
	}
	_, err := scopeRequest("scope", r.Scope)
	return err
}

// scopeRequest reads a login's optional space-separated scope: absent,
// all of its key's scopes; present, only those (at least one).
func scopeRequest(field string, v *string) (keys.ScopeRequest, error) {
	if v == nil {
		return keys.ScopeRequest{}, nil
	}
	set, err := keys.ParseScopeParam(field, *v)
	if err != nil {
		return keys.ScopeRequest{}, err
	}
	if set.Empty() {
		return keys.ScopeRequest{}, &keys.ValidationError{Field: field, Message: "must name at least one scope, or be left out for all of the key's"}
	}
	return keys.Only(set), nil
}

func validateRefresh(r *api.RefreshRequest) error {
	return requiredString("refreshToken", r.RefreshToken)
}

// jsonContentType is what c.JSON sends, for the responses written by hand.
const jsonContentType = "application/json; charset=utf-8"

func (s *Server) tokenResponse(c *gin.Context, p tokens.Pair) {
	resp := api.TokenResponse{
		JWT:                    p.JWT.Reveal(),
		ExpirationDate:         api.NewTime(p.ExpiresAt),
		RefreshToken:           p.RefreshToken.Reveal(),
		RefreshTokenExpiration: api.NewTime(p.RefreshTokenExpiration),
	}
	c.Data(http.StatusOK, jsonContentType, resp.AppendJSON(make([]byte, 0, 1024)))
}

// credentialFailure reports whether err is a refused credential, which
// spends the client address's failure budget.
func credentialFailure(err error) bool {
	return errors.Is(err, keys.ErrInvalidKey) || errors.Is(err, tokens.ErrInvalidRefreshToken)
}

func (s *Server) login(c *gin.Context) {
	var req api.LoginRequest
	if !bind(s, c, &req, validateLogin) {
		return
	}
	kind := loginKind(*req.APIKey)
	if ok, wait := s.limits.login.allow(secretKey(*req.APIKey)); !ok {
		s.metrics.Login(kind, metrics.OutcomeRateLimited)
		s.rateLimited(c, wait, metrics.LimitLoginPerKey)
		return
	}
	try, ok, wait := s.limits.failures.begin(clientKey(c.ClientIP()))
	if !ok && !s.keys.KnownActive(*req.APIKey) {
		s.metrics.Login(kind, metrics.OutcomeRateLimited)
		s.rateLimited(c, wait, metrics.LimitLoginFailures)
		return
	}
	scope, _ := scopeRequest("scope", req.Scope) // validateLogin has checked it
	pair, err := s.tokens.LoginWith(c.Request.Context(), *req.APIKey, c.ClientIP(), tokens.LoginOptions{Scope: scope})
	try.end(credentialFailure(err))
	if err != nil {
		outcome := metrics.OutcomeError
		if errors.Is(err, keys.ErrInvalidKey) || errors.Is(err, keys.ErrScopeNotAllowed) {
			outcome = metrics.OutcomeInvalidKey // a good key, but not good for that
		}
		s.metrics.Login(kind, outcome)
		s.fail(c, err)
		return
	}
	s.metrics.Login(kind, metrics.OutcomeOK)
	s.tokenResponse(c, pair)
}

// loginKind is the metrics' kind of a presented key, by its prefix alone.
func loginKind(apiKey string) string {
	switch {
	case strings.HasPrefix(apiKey, keys.PartnerKeyPrefix):
		return metrics.KindPartner
	case strings.HasPrefix(apiKey, keys.CompanyKeyPrefix):
		return metrics.KindCompany
	}
	return metrics.KindUnknown
}

func (s *Server) refresh(c *gin.Context) {
	var req api.RefreshRequest
	if !bind(s, c, &req, validateRefresh) {
		return
	}
	rt, parsed := s.tokens.ParseRefreshToken(*req.RefreshToken)
	if parsed {
		if ok, wait := s.limits.refresh.allow(rt.Family()); !ok {
			s.metrics.Refresh(metrics.OutcomeRateLimited)
			s.rateLimited(c, wait, metrics.LimitRefreshPerFamily)
			return
		}
	}
	// A token whose MAC checks out is no guess: it passes an address's
	// failure limit like a known key does (see keys.Service.KnownActive).
	try, ok, wait := s.limits.failures.begin(clientKey(c.ClientIP()))
	if !ok && !parsed {
		s.metrics.Refresh(metrics.OutcomeRateLimited)
		s.rateLimited(c, wait, metrics.LimitLoginFailures)
		return
	}
	pair, err := s.tokens.RefreshParsed(c.Request.Context(), rt, c.ClientIP())
	try.end(credentialFailure(err))
	s.metrics.Refresh(refreshOutcome(pair, err))
	if err != nil {
		s.fail(c, err)
		return
	}
	s.tokenResponse(c, pair)
}

// refreshOutcome is the metrics' outcome of a refresh.
func refreshOutcome(p tokens.Pair, err error) string {
	switch {
	case err == nil && p.GraceRetry:
		return metrics.OutcomeGraceRetry
	case err == nil:
		return metrics.OutcomeOK
	case errors.Is(err, tokens.ErrReused):
		return metrics.OutcomeReuseDetected
	case errors.Is(err, tokens.ErrExpired):
		return metrics.OutcomeExpired
	case errors.Is(err, tokens.ErrInvalidRefreshToken):
		return metrics.OutcomeInvalid
	}
	return metrics.OutcomeError
}

func (s *Server) logout(c *gin.Context) {
	var req api.RefreshRequest
	if !bind(s, c, &req, validateRefresh) {
		return
	}
	if err := s.tokens.Logout(c.Request.Context(), *req.RefreshToken); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) me(c *gin.Context) {
	sess := session(c)
	p := sess.Principal
	resp := api.Me{Type: string(p.Kind), ID: p.ID, Name: p.Name, KeyID: p.KeyID, Scopes: p.Scopes.List(), ExpirationDate: api.NewTime(sess.ExpiresAt)}
	if p.Kind == keys.KindCompany {
		resp.PartnerID = p.PartnerID
	}
	c.Data(http.StatusOK, jsonContentType, resp.AppendJSON(make([]byte, 0, 256)))
}
