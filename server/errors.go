package server

import (
	"context"
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"keygate/api"
	"keygate/keys"
	"keygate/tokens"
)

// Errors the HTTP layer raises itself.
var (
	errForbidden        = errors.New("partner token required")
	errRateLimited      = errors.New("rate limited")
	errUnauthorized     = errors.New("missing or malformed credentials")
	errNoRoute          = errors.New("no such route")
	errMethodNotAllowed = errors.New("method not allowed")
	errTooLarge         = errors.New("body too large")
	errMediaType        = errors.New("unsupported media type")
)

// unauthorizedMessage is the one body of every credential failure, whatever
// the reason, so a response never tells a revoked key from an unknown one.
// package verify answers with the same.
const unauthorizedMessage = api.UnauthorizedMessage

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
	{keys.ErrBadSignature, http.StatusUnauthorized, api.CodeUnauthorized, "missing or invalid report signature"},
	{errForbidden, http.StatusForbidden, api.CodeForbidden, "this endpoint needs a partner token"},
	{keys.ErrNotFound, http.StatusNotFound, api.CodeNotFound, "resource not found"},
	{errNoRoute, http.StatusNotFound, api.CodeNotFound, "no such route"},
	{errMethodNotAllowed, http.StatusMethodNotAllowed, api.CodeMethodNotAllowed, "method not allowed on this route (see Allow)"},
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
	if clientGone(c, err) {
		c.AbortWithStatus(StatusClientClosedRequest)
		return
	}
	var ve *keys.ValidationError
	if errors.As(err, &ve) {
		c.AbortWithStatusJSON(http.StatusBadRequest, api.Error{Error: api.CodeValidation, Message: ve.Error()})
		return
	}
	var se *keys.ScopeError // a good credential asking for more than it may have
	if errors.As(err, &se) {
		c.AbortWithStatusJSON(http.StatusForbidden, api.Error{Error: api.CodeForbidden, Message: se.Error()})
		return
	}
	for _, e := range errorTable {
		if errors.Is(err, e.err) {
			if e.status >= 500 {
				s.log.ErrorContext(c.Request.Context(), "request failed", "err", err)
			} else if e.status == http.StatusUnauthorized {
				s.log.DebugContext(c.Request.Context(), "credentials refused", "err", err)
				c.Header("WWW-Authenticate", challenge(c))
			}
			c.AbortWithStatusJSON(e.status, api.Error{Error: e.code, Message: e.message})
			return
		}
	}
	s.log.ErrorContext(c.Request.Context(), "internal error", "err", err)
	c.AbortWithStatusJSON(http.StatusInternalServerError, internalError)
}

// StatusClientClosedRequest is the status of a request whose client went
// away before it was answered (nginx's 499): what the access log and the
// metrics record, never a 5xx. Nothing reaches the client.
const StatusClientClosedRequest = 499

// clientGone reports whether err is the request's own cancellation: its
// client closed the connection. A write already handed to the store has
// completed or rolled back as a whole by then (the store waits for it).
func clientGone(c *gin.Context, err error) bool {
	return errors.Is(err, context.Canceled) && c.Request.Context().Err() != nil
}

// tokenPresentedKey marks a request whose access token was presented and
// refused, for its WWW-Authenticate challenge.
const tokenPresentedKey = "keygate.tokenPresented"

// challenge is the WWW-Authenticate header of a 401 (RFC 6750 §3): the
// realm, and error="invalid_token" when an access token was presented.
func challenge(c *gin.Context) string {
	if c.GetBool(tokenPresentedKey) {
		return `Bearer realm="keygate", error="invalid_token"`
	}
	return `Bearer realm="keygate"`
}
