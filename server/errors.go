package server

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"keygate/api"
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
// message. fail walks it first to last and takes the first entry the error
// matches (errors.Is), so an error that wraps two listed errors gets the
// earlier one's status: credential failures come first, so that no error
// that also carries, say, keys.ErrNotFound can tell a caller more than the
// one 401. Anything not listed is a 500 with a fixed message.
var errorTable = []struct {
	err     error
	status  int
	code    string
	message string
}{
	{keys.ErrInvalidKey, http.StatusUnauthorized, api.CodeUnauthorized, unauthorizedMessage},
	{tokens.ErrInvalidRefreshToken, http.StatusUnauthorized, api.CodeUnauthorized, unauthorizedMessage},
	{tokens.ErrInvalidToken, http.StatusUnauthorized, api.CodeUnauthorized, unauthorizedMessage},
	{errUnauthorized, http.StatusUnauthorized, api.CodeUnauthorized, unauthorizedMessage},
	{errForbidden, http.StatusForbidden, api.CodeForbidden, "this endpoint needs a partner token"},
	{keys.ErrNotFound, http.StatusNotFound, api.CodeNotFound, "resource not found"},
	{errNoRoute, http.StatusNotFound, api.CodeNotFound, "no such route"},
	{keys.ErrDisabled, http.StatusConflict, api.CodeConflict, "the owner is disabled"},
	{keys.ErrConflict, http.StatusConflict, api.CodeConflict, "a company with this externalId already exists"},
	{errTooLarge, http.StatusRequestEntityTooLarge, api.CodePayloadTooLarge, "request body too large"},
	{errMediaType, http.StatusUnsupportedMediaType, api.CodeUnsupportedMedia, "request body must be application/json"},
	{errRateLimited, http.StatusTooManyRequests, api.CodeRateLimited, "too many requests, retry later"},
	{keys.ErrUnavailable, http.StatusServiceUnavailable, api.CodeServiceUnavailable, "storage is unavailable, retry later"},
}

// internalError is the one body of every 500.
var internalError = api.Error{Error: api.CodeInternal, Message: "internal error"}

// fail renders err in the documented shape. Validation errors name their
// field; unmapped errors are logged with the request ID and answered with a
// fixed message, never err.Error().
func (s *Server) fail(c *gin.Context, err error) {
	var ve *keys.ValidationError
	if errors.As(err, &ve) {
		c.AbortWithStatusJSON(http.StatusBadRequest, api.Error{Error: api.CodeValidation, Message: ve.Error()})
		return
	}
	for _, e := range errorTable {
		if errors.Is(err, e.err) {
			if e.status >= 500 {
				s.log.ErrorContext(c.Request.Context(), "request failed", "err", err)
			} else if e.status == http.StatusUnauthorized {
				s.log.DebugContext(c.Request.Context(), "credentials refused", "err", err)
			}
			c.AbortWithStatusJSON(e.status, api.Error{Error: e.code, Message: e.message})
			return
		}
	}
	s.log.ErrorContext(c.Request.Context(), "internal error", "err", err)
	c.AbortWithStatusJSON(http.StatusInternalServerError, internalError)
}
