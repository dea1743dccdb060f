package ginverify_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"

	"github.com/gin-gonic/gin"

	"keygate/api"
	"keygate/gateway"
	"keygate/keys"
	"keygate/memstore"
	"keygate/tokens"
	"keygate/verify"
	"keygate/verify/ginverify"
)

// exampleKeygate runs a keygate for the example and returns its URL and
// access tokens it issued to a partner and to one of its companies.
func exampleKeygate() (url, partnerToken, companyToken string) {
	ctx := context.Background()
	master, err := tokens.NewMasterKey("example-master-key-0123456789abcdef-0123456789")
	if err != nil {
		panic(err)
	}
	gw, err := gateway.New(ctx, gateway.DefaultConfig(), memstore.New(), master, gateway.Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	_, pk, err := gw.Keys.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "Acme"})
	if err != nil {
		panic(err)
	}
	partner := keys.PrincipalOf(pk.ID, pk.Owner, "")
	_, ck, err := gw.Keys.CreateCompany(ctx, keys.ActorFor(partner, "192.0.2.1"), partner.ID, keys.CompanyInput{Name: "Globex"})
	if err != nil {
		panic(err)
	}
	p, err := gw.Tokens.Login(ctx, pk.APIKey.Reveal(), "192.0.2.1")
	if err != nil {
		panic(err)
	}
	c, err := gw.Tokens.Login(ctx, ck.APIKey.Reveal(), "192.0.2.1")
	if err != nil {
		panic(err)
	}
	return httptest.NewServer(gw.Handler()).URL, p.JWT.Reveal(), c.JWT.Reveal()
}

// A Gin service verifies every request, and lets only partners at /admin.
func ExampleMiddleware() {
	keygateURL, partner, company := exampleKeygate()
	v, err := verify.New(context.Background(), verify.Config{JWKSURL: keygateURL + "/.well-known/jwks.json"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = v.Close() }()

	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(ginverify.Middleware(v))
	r.GET("/whoami", func(c *gin.Context) {
		claims, _ := verify.FromContext(c.Request.Context())
		c.String(http.StatusOK, "hello, %s", claims.Kind)
	})
	r.GET("/admin", ginverify.RequireKind(api.KindPartner), func(c *gin.Context) { c.String(http.StatusOK, "welcome") })

	for _, call := range []struct{ path, token string }{
		{"/whoami", partner},
		{"/whoami", company},
		{"/admin", partner},
		{"/admin", company},
		{"/admin", "forged"},
	} {
		req := httptest.NewRequest(http.MethodGet, call.path, nil)
		req.Header.Set("R-Auth", call.token)
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		fmt.Println(call.path, rec.Code, rec.Body)
	}
	// Output:
	// /whoami 200 hello, partner
	// /whoami 200 hello, company
	// /admin 200 welcome
	// /admin 403 {"error":"forbidden","message":"this endpoint needs a partner token"}
	// /admin 401 {"error":"unauthorized","message":"invalid, expired or revoked credentials"}
}
