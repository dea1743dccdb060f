package ginverify_test

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"

	"keygate/api"
	"keygate/verify"
	"keygate/verify/ginverify"
)

// A Gin service verifies every request, and lets only partners at /admin.
func ExampleMiddleware() {
	v, err := verify.New(context.Background(), verify.Config{JWKSURL: "http://127.0.0.1:8080/.well-known/jwks.json"})
	if err != nil {
		panic(err)
	}
	r := gin.New()
	r.Use(ginverify.Middleware(v))
	r.GET("/whoami", func(c *gin.Context) {
		claims, _ := verify.FromContext(c.Request.Context())
		c.JSON(http.StatusOK, gin.H{"kind": claims.Kind, "sub": claims.Subject})
	})
	r.GET("/admin", ginverify.RequireKind(api.KindPartner), func(c *gin.Context) { c.Status(http.StatusNoContent) })
	_ = r.Run("127.0.0.1:8081")
}
