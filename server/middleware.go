package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"keygate/keys"
	"keygate/tokens"
)

type ctxKey int

const requestIDKey ctxKey = iota

// sessionKey is where the auth middleware leaves the caller's session.
const sessionKey = "keygate.session"

// RequestID returns the request ID stored in ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// LogHandler wraps h so that every record logged with a request's context
// carries its request ID.
func LogHandler(h slog.Handler) slog.Handler { return requestIDHandler{h} }

type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(as)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}

// requestID gives every request a fresh ID; a client's X-Request-ID is
// never trusted or echoed, since it could forge or collide with others.
func (s *Server) requestID(c *gin.Context) {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	c.Header("X-Request-ID", id)
	c.Request = c.Request.WithContext(context.WithValue(c.Request.Context(), requestIDKey, id))
	c.Next()
}

// headers sets the security headers every response carries. Responses
// are no-store unless a handler says otherwise (JWKS): API responses hold
// tokens and keys.
func (s *Server) headers(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	c.Next()
}

// limitBody refuses declared-oversize bodies at once and caps the rest, at
// the route's limit (bodyLimit).
func (s *Server) limitBody(c *gin.Context) {
	limit := s.bodyLimit(c)
	if c.Request.ContentLength > limit {
		s.fail(c, errTooLarge)
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, limit)
	c.Next()
}

// recovery turns a panic into a 500 with a fixed message, in RFC 6749's
// shape on the OAuth endpoints. Unlike gin's Recovery it never dumps the
// request, whose headers hold credentials.
func (s *Server) recovery(c *gin.Context) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.ErrorContext(c.Request.Context(), "panic", "panic", v, "stack", string(debug.Stack()))
			switch {
			case c.Writer.Written():
				c.Abort()
			case oauthRoute(c):
				s.oauthFail(c, errOAuthServer)
			default:
				c.AbortWithStatusJSON(http.StatusInternalServerError, internalError)
			}
		}
	}()
	c.Next()
}

// accessLog writes one line per request: never a header value or body.
func (s *Server) accessLog(c *gin.Context) {
	start := time.Now()
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	took := time.Since(start)
	s.metrics.Request(route, c.Request.Method, c.Writer.Status(), took)
	attrs := []slog.Attr{
		slog.String("method", c.Request.Method),
		slog.String("route", route),
		slog.Int("status", c.Writer.Status()),
		slog.Float64("latency_ms", float64(took.Microseconds())/1000),
		slog.String("client", c.ClientIP()),
	}
	if v, ok := c.Get(sessionKey); ok {
		attrs = append(attrs, slog.String("principal", v.(tokens.Session).Principal.ID))
	}
	if c.Writer.Status() == StatusClientClosedRequest {
		attrs = append(attrs, slog.Bool("client_closed", true))
	}
	s.log.LogAttrs(c.Request.Context(), slog.LevelInfo, "request", attrs...)
}

// authenticate requires a valid access token in R-Auth (or Authorization:
// Bearer) whose principal may still act.
func (s *Server) authenticate(c *gin.Context) {
	raw, ok := bearer(c.Request.Header)
	if !ok {
		s.fail(c, errUnauthorized)
		return
	}
	sess, err := s.tokens.Authorize(c.Request.Context(), raw)
	if err != nil {
		c.Set(tokenPresentedKey, true)
		s.fail(c, err)
		return
	}
	c.Set(sessionKey, sess)
	c.Next()
}

// partnerOnly lets only partner principals through.
func (s *Server) partnerOnly(c *gin.Context) {
	if session(c).Principal.Kind != keys.KindPartner {
		s.fail(c, errForbidden)
		return
	}
	c.Next()
}

// bearer extracts the access token. Two R-Auth headers are refused rather
// than guessed between.
func bearer(h http.Header) (string, bool) {
	if vs := h.Values("R-Auth"); len(vs) > 0 {
		if len(vs) != 1 || vs[0] == "" {
			return "", false
		}
		return strings.TrimSpace(vs[0]), true
	}
	vs := h.Values("Authorization")
	if len(vs) != 1 {
		return "", false
	}
	scheme, tok, ok := strings.Cut(vs[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

func session(c *gin.Context) tokens.Session {
	v, _ := c.Get(sessionKey)
	sess, _ := v.(tokens.Session)
	return sess
}
