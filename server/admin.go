package server

import (
	"net/http"
	"net/http/pprof"

	"github.com/gin-gonic/gin"
)

// AdminConfig configures the operators' listener.
type AdminConfig struct {
	// Metrics, if set, serves GET /metrics (Prometheus' text format).
	Metrics http.Handler
	// Pprof serves /debug/pprof/: profiles expose memory contents, so only
	// when an operator asks for them.
	Pprof bool
}

// Admin returns the handler of the admin listener: operators' endpoints
// that must never face partners. It answers like the main listener where
// they overlap: HEAD wherever GET, 405 with Allow for a known path's other
// methods, 404 in the error shape for everything else.
func (s *Server) Admin(cfg AdminConfig) http.Handler {
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	e.ContextWithFallback = true
	e.Use(s.requestID, s.recovery, s.headers)
	e.NoRoute(func(c *gin.Context) { s.fail(c, errNoRoute) })
	e.NoMethod(func(c *gin.Context) { s.fail(c, errMethodNotAllowed) })
	if cfg.Metrics != nil {
		get(e, "/metrics", gin.WrapH(cfg.Metrics))
	}
	// Introspection without client authentication: only operators and
	// their services reach this listener (as Ory Hydra's admin port).
	e.POST("/oauth2/introspect", s.limitBody, oauthHeaders, s.adminIntrospect)
	if cfg.Pprof {
		get(e, "/debug/pprof/", gin.WrapF(pprof.Index))
		get(e, "/debug/pprof/cmdline", gin.WrapF(pprof.Cmdline))
		get(e, "/debug/pprof/profile", gin.WrapF(pprof.Profile))
		get(e, "/debug/pprof/symbol", gin.WrapF(pprof.Symbol))
		e.POST("/debug/pprof/symbol", gin.WrapF(pprof.Symbol))
		get(e, "/debug/pprof/trace", gin.WrapF(pprof.Trace))
		get(e, "/debug/pprof/:profile", func(c *gin.Context) { pprof.Handler(c.Param("profile")).ServeHTTP(c.Writer, c.Request) })
	}
	return e
}
