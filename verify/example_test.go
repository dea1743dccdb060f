package verify_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"

	"keygate/gateway"
	"keygate/keys"
	"keygate/memstore"
	"keygate/tokens"
	"keygate/verify"
)

// exampleKeygate runs a keygate for the examples and returns its URL and
// an access token it issued to a partner.
func exampleKeygate() (url, token string) {
	ctx := context.Background()
	master, err := tokens.NewMasterKey(testMasterKey)
	if err != nil {
		panic(err)
	}
	gw, err := gateway.New(ctx, gateway.DefaultConfig(), memstore.New(), master, gateway.Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	_, k, err := gw.Keys.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "Acme"})
	if err != nil {
		panic(err)
	}
	pair, err := gw.Tokens.Login(ctx, k.APIKey.Reveal(), "192.0.2.1")
	if err != nil {
		panic(err)
	}
	return httptest.NewServer(gw.Handler()).URL, pair.JWT.Reveal()
}

// A service puts the middleware in front of its handlers, which read the
// verified claims from the request's context.
func ExampleVerifier_Middleware() {
	keygateURL, token := exampleKeygate()
	ctx := context.Background()

	v, err := verify.New(ctx, verify.Config{JWKSURL: keygateURL + "/.well-known/jwks.json"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = v.Close() }() // stops refreshing the keys
	mux := http.NewServeMux()
	mux.Handle("GET /whoami", v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, _ := verify.FromContext(r.Context())
		fmt.Fprintf(w, "hello, %s", claims.Kind)
	})))

	for _, tok := range []string{token, "forged"} {
		req := httptest.NewRequest(http.MethodGet, "/whoami", nil)
		req.Header.Set("R-Auth", tok)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		fmt.Println(rec.Code, rec.Body)
	}
	// Output:
	// 200 hello, partner
	// 401 {"error":"unauthorized","message":"invalid, expired or revoked credentials"}
}

// A token can be verified without the middleware, from wherever it came.
func ExampleVerifier_Verify() {
	keygateURL, token := exampleKeygate()
	ctx := context.Background()

	v, err := verify.New(ctx, verify.Config{JWKSURL: keygateURL + "/.well-known/jwks.json"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = v.Close() }()
	claims, err := v.Verify(ctx, token)
	fmt.Println(claims.Kind, claims.Subject == claims.PartnerID, err)
	_, err = v.Verify(ctx, token[:len(token)-1])
	fmt.Println(errors.Is(err, verify.ErrInvalidToken))
	// Output:
	// partner true <nil>
	// true
}
