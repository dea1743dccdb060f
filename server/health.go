package server

// Health, readiness and the published signing keys: the endpoints that
// need no credentials and touch no account.

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"keygate/api"
	"keygate/keys"
	"net/http"
	"strconv"
	"strings"
	"time"

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

// JWKSMaxAge is how long verifiers may cache the JWKS (its Cache-Control
// max-age): a new signing key must be published at least this long before
// it signs (tokens.signing_key_activation_delay).
const JWKSMaxAge = 300 * time.Second

func (s *Server) jwksHandler(c *gin.Context) {
	// The set is read before the response is marked cacheable, so a failure
	// to produce it is never kept by shared caches.
	set := s.jwks()
	sum := sha256.Sum256(set)
	etag := `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`
	c.Header("Cache-Control", "public, max-age="+strconv.Itoa(int(JWKSMaxAge/time.Second)))
	c.Header("ETag", etag)
	if matches(c.GetHeader("If-None-Match"), etag) {
		c.Status(http.StatusNotModified)
		return
	}
	c.Data(http.StatusOK, "application/jwk-set+json", set)
}

// matches reports whether an If-None-Match header names etag: by weak
// comparison, as RFC 9110 §13.1.2 asks of If-None-Match, or "*".
func matches(header, etag string) bool {
	for tag := range strings.SplitSeq(header, ",") {
		tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
		if tag == "*" || tag == etag {
			return true
		}
	}
	return false
}
