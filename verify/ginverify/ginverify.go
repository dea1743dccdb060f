// Package ginverify adapts package verify's middleware to Gin, for services
// built on Gin; net/http services use verify alone and do not build Gin.
//
//	r.Use(ginverify.Middleware(v))
//	r.GET("/orders", func(c *gin.Context) {
//		claims, _ := verify.FromContext(c.Request.Context())
//		...
//	})
package ginverify

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"keygate/verify"
)

// Middleware is (*verify.Verifier).Middleware for Gin: a request whose
// token verifies goes on with the claims in c.Request's context
// (verify.FromContext); any other is answered with the same 401 and
// aborted.
func Middleware(v *verify.Verifier) gin.HandlerFunc {
	return adapt(v.Middleware)
}

// RequireKind is verify.RequireKind for Gin.
func RequireKind(kind string) gin.HandlerFunc {
	return adapt(verify.RequireKind(kind))
}

// RequireScope is verify.RequireScope for Gin.
func RequireScope(scopes ...string) gin.HandlerFunc {
	return adapt(verify.RequireScope(scopes...))
}

// adapt runs a net/http middleware around the rest of Gin's chain, so that
// both kinds of service get exactly the same responses.
func adapt(mw func(http.Handler) http.Handler) gin.HandlerFunc {
	return func(c *gin.Context) {
		passed := false
		mw(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			passed = true
			c.Request = r
			c.Next()
		})).ServeHTTP(c.Writer, c.Request)
		if !passed {
			c.Abort()
		}
	}
}
