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
// that must never face partners. Everything else is 404 in the error
// shape.
func (s *Server) Admin(cfg AdminConfig) http.Handler {
	e := gin.New()
	e.HandleMethodNotAllowed = false
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	e.Use(s.recovery, s.headers)
	e.NoRoute(func(c *gin.Context) { s.fail(c, errNoRoute) })
	if cfg.Metrics != nil {
		get(e, "/metrics", gin.WrapH(cfg.Metrics))
	}
	// Introspection without client authentication: only operators and
	// their services reach this listener (as Ory Hydra's admin port).
	e.POST("/oauth2/introspect", s.limitBody, s.adminIntrospect)
	if cfg.Pprof {
		e.GET("/debug/pprof/", gin.WrapF(pprof.Index))
		e.GET("/debug/pprof/cmdline", gin.WrapF(pprof.Cmdline))
		e.GET("/debug/pprof/profile", gin.WrapF(pprof.Profile))
		e.GET("/debug/pprof/symbol", gin.WrapF(pprof.Symbol))
		e.POST("/debug/pprof/symbol", gin.WrapF(pprof.Symbol))
		e.GET("/debug/pprof/trace", gin.WrapF(pprof.Trace))
		e.GET("/debug/pprof/:profile", func(c *gin.Context) { pprof.Handler(c.Param("profile")).ServeHTTP(c.Writer, c.Request) })
	}
	return e
}
