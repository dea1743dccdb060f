package server

// Health, readiness and the published signing keys: the endpoints that
// need no credentials and touch no account.

import (
	"errors"
	"keygate/api"
	"keygate/keys"
	"net/http"

	"github.com/gin-gonic/gin"
)

func (s *Server) health(c *gin.Context) {
	c.JSON(http.StatusOK, api.Status{Status: "ok"})
}

func (s *Server) readiness(c *gin.Context) {
	if err := s.ready(c.Request.Context()); err != nil {
		s.fail(c, errors.Join(keys.ErrUnavailable, err))
		return
	}
	c.JSON(http.StatusOK, api.Status{Status: "ready"})
}

func (s *Server) jwksHandler(c *gin.Context) {
	// The set is read before the response is marked cacheable, so a failure
	// to produce it is never kept by shared caches.
	set := s.jwks()
	c.Header("Cache-Control", "public, max-age=300")
	c.Data(http.StatusOK, "application/jwk-set+json", set)
}
