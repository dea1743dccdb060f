// Package server is keygate's HTTP face and the only importer of Gin: the
// engine, middleware, thin handlers and the error-to-status table.
package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"keygate/keys"
	"keygate/metrics"
	"keygate/tokens"
)

// Config is the HTTP layer's share of the configuration.
type Config struct {
	// TrustedProxies are the CIDRs or addresses whose X-Forwarded-For and
	// X-Real-IP are believed; empty means the TCP peer is the client.
	TrustedProxies []string
	MaxBodyBytes   int64
	RateLimits     RateLimits
	OAuth          OAuthConfig
}

// Deps are the services the handlers call.
type Deps struct {
	Keys   *keys.Service
	Tokens *tokens.Service
	JWKS   func() []byte
	Ready  func(context.Context) error
	Log    *slog.Logger
	Now    func() time.Time
	// Metrics, if not nil, records requests, logins, refreshes and limits.
	Metrics *metrics.Metrics
	// Reporters, if not nil, are the secret scanners whose leaked-key
	// reports POST /api/v1/keys/leaked takes; nil: no such route.
	Reporters *keys.Reporters
}

// Server holds the Gin engine and what its handlers need.
type Server struct {
	cfg     Config
	keys    *keys.Service
	tokens  *tokens.Service
	jwks    func() []byte
	ready   func(context.Context) error
	log     *slog.Logger
	now     func() time.Time
	oauth   OAuthConfig
	metrics *metrics.Metrics
	limits  rateLimiters
	engine  *gin.Engine

	reporters *keys.Reporters // of leaked-key reports; nil: no such route
}

// New builds the engine and its routes.
func New(cfg Config, d Deps) (*Server, error) {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 64 << 10
	}
	if cfg.RateLimits.MaxTracked <= 0 {
		cfg.RateLimits.MaxTracked = 100_000
	}
	gin.SetMode(gin.ReleaseMode)
	s := &Server{
		cfg:     cfg,
		keys:    d.Keys,
		tokens:  d.Tokens,
		jwks:    d.JWKS,
		ready:   d.Ready,
		log:     d.Log,
		now:     d.Now,
		oauth:   cfg.OAuth,
		metrics: d.Metrics,
		limits:  newRateLimiters(cfg.RateLimits, d.Now),
		engine:  gin.New(),

		reporters: d.Reporters,
	}
	e := s.engine
	// Never gin's default of trusting every proxy: clients could then forge
	// their address and dodge the per-address limits.
	if err := e.SetTrustedProxies(cfg.TrustedProxies); err != nil {
		return nil, fmt.Errorf("server.trusted_proxies: %w", err)
	}
	e.ForwardedByClientIP = len(cfg.TrustedProxies) > 0
	e.RemoteIPHeaders = []string{"X-Forwarded-For", "X-Real-IP"}
	// A known path with another method is 405 with Allow (RFC 9110 §15.5.6).
	e.HandleMethodNotAllowed = true
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	e.ContextWithFallback = true

	// accessLog sits outside recovery so that a request whose handler
	// panicked still gets its access line, with the 500 it was answered with.
	e.Use(s.requestID, s.accessLog, s.recovery, s.headers, s.limitBody)
	e.NoRoute(func(c *gin.Context) { s.fail(c, errNoRoute) })
	e.NoMethod(func(c *gin.Context) { s.fail(c, errMethodNotAllowed) })

	get(e, "/health", s.health)
	get(e, "/ready", s.readiness)
	get(e, "/.well-known/jwks.json", s.jwksHandler)
	get(e, "/openapi.json", s.openAPI)

	v1 := e.Group("/api/v1")
	v1.POST("/auth/login", s.login)
	v1.POST("/auth/refresh", s.refresh)
	v1.POST("/auth/logout", s.logout)

	oauth := e.Group("/oauth2", oauthHeaders)
	oauth.POST("/token", s.token)
	oauth.POST("/revoke", s.revoke)
	oauth.POST("/introspect", s.introspect)
	if cfg.OAuth.PublicURL != "" {
		get(e, "/.well-known/oauth-authorization-server", s.metadata)
	}
	if d.Reporters != nil {
		e.POST(leakedPath, s.reportLeaked)
	}

	authed := v1.Group("", s.authenticate, s.limitAPI)
	get(authed, "/auth/me", s.me)

	partners := authed.Group("/companies", s.partnerOnly)
	partners.POST("", s.createCompany)
	get(partners, "", s.listCompanies)
	get(partners, "/:id", s.getCompany)
	partners.DELETE("/:id", s.disableCompany)
	partners.POST("/:id/keys", s.createCompanyKey)
	get(partners, "/:id/keys", s.listCompanyKeys)
	partners.DELETE("/:id/keys/:keyId", s.revokeCompanyKey)
	return s, nil
}

// get routes GET and HEAD to the same handlers: HEAD works wherever GET
// does (net/http sends no body for HEAD).
func get(r gin.IRoutes, path string, handlers ...gin.HandlerFunc) {
	r.GET(path, handlers...)
	r.HEAD(path, handlers...)
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler { return s.engine }
