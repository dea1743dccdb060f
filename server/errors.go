package server

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"keygate/keys"
	"keygate/tokens"
)

// Errors the HTTP layer raises itself.
var (
	errForbidden    = errors.New("partner token required")
	errRateLimited  = errors.New("rate limited")
	errUnauthorized = errors.New("missing or malformed credentials")
	errNoRoute      = errors.New("no such route")
	errTooLarge     = errors.New("body too large")
	errMediaType    = errors.New("unsupported media type")
)

// unauthorizedMessage is the one body of every credential failure, whatever
// the reason, so a response never tells a revoked key from an unknown one.
const unauthorizedMessage = "invalid, expired or revoked credentials"

// errorTable maps every domain and HTTP error to its status, code and fixed
// message. Anything not listed is a 500 with a fixed message.
var errorTable = []struct {
	err     error
	status  int
	code    string
	message string
}{
	{keys.ErrInvalidKey, http.StatusUnauthorized, "unauthorized", unauthorizedMessage},
	{tokens.ErrInvalidRefreshToken, http.StatusUnauthorized, "unauthorized", unauthorizedMessage},
	{tokens.ErrInvalidToken, http.StatusUnauthorized, "unauthorized", unauthorizedMessage},
	{errUnauthorized, http.StatusUnauthorized, "unauthorized", unauthorizedMessage},
	{errForbidden, http.StatusForbidden, "forbidden", "this endpoint needs a partner token"},
	{keys.ErrNotFound, http.StatusNotFound, "not_found", "resource not found"},
	{errNoRoute, http.StatusNotFound, "not_found", "no such route"},
	{keys.ErrDisabled, http.StatusConflict, "conflict", "the owner is disabled"},
	{keys.ErrConflict, http.StatusConflict, "conflict", "a company with this externalId already exists"},
	{errTooLarge, http.StatusRequestEntityTooLarge, "payload_too_large", "request body too large"},
	{errMediaType, http.StatusUnsupportedMediaType, "unsupported_media_type", "request body must be application/json"},
	{errRateLimited, http.StatusTooManyRequests, "rate_limited", "too many requests, retry later"},
	{keys.ErrUnavailable, http.StatusServiceUnavailable, "service_unavailable", "storage is unavailable, retry later"},
}

type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// fail renders err in the documented shape. Validation errors name their
// field; unmapped errors are logged with the request ID and answered with a
// fixed message, never err.Error().
func (s *Server) fail(c *gin.Context, err error) {
	var ve *keys.ValidationError
	if errors.As(err, &ve) {
		c.AbortWithStatusJSON(http.StatusBadRequest, errorBody{"validation_error", ve.Error()})
		return
	}
	for _, e := range errorTable {
		if errors.Is(err, e.err) {
			if e.status >= 500 {
				s.log.ErrorContext(c.Request.Context(), "request failed", "err", err)
			} else if e.status == http.StatusUnauthorized {
				s.log.DebugContext(c.Request.Context(), "credentials refused", "err", err)
			}
			c.AbortWithStatusJSON(e.status, errorBody{e.code, e.message})
			return
		}
	}
	s.log.ErrorContext(c.Request.Context(), "internal error", "err", err)
	c.AbortWithStatusJSON(http.StatusInternalServerError, errorBody{"internal_error", "internal error"})
}
