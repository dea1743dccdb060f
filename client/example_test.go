package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"

	"keygate/client"
	"keygate/gateway"
	"keygate/keys"
	"keygate/memstore"
	"keygate/tokens"
	"keygate/verify"
)

// exampleKeygate runs a keygate for the examples and returns its URL and
// a partner's API key.
func exampleKeygate() (url, apiKey string) {
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
	return httptest.NewServer(gw.Handler()).URL, k.APIKey.Reveal()
}

// exampleDownstream runs a service that verifies R-Auth with package
// verify and greets the caller.
func exampleDownstream(keygateURL string) string {
	v, err := verify.New(context.Background(), verify.Config{JWKSURL: keygateURL + "/.well-known/jwks.json"})
	if err != nil {
		panic(err)
	}
	return httptest.NewServer(v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, _ := verify.FromContext(r.Context())
		fmt.Fprintf(w, "hello, %s", claims.Kind)
	}))).URL
}

// A partner's backend calls downstream services through HTTPClient: the
// client logs in when first needed and keeps R-Auth fresh.
func ExampleClient_HTTPClient() {
	keygateURL, apiKey := exampleKeygate()
	orders := exampleDownstream(keygateURL)

	c, err := client.New(client.Config{BaseURL: keygateURL, APIKey: apiKey})
	if err != nil {
		fmt.Println(err)
		return
	}
	resp, err := c.HTTPClient(nil).Get(orders + "/orders")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))
	// Output: 200 hello, partner
}

// ListCompanies goes over every page of the partner's companies.
func ExampleClient_ListCompanies() {
	keygateURL, apiKey := exampleKeygate()
	ctx := context.Background()
	c, err := client.New(client.Config{BaseURL: keygateURL, APIKey: apiKey})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, name := range []string{"Globex", "Initech", "Umbrella"} {
		if _, err := c.CreateCompany(ctx, name, ""); err != nil {
			fmt.Println(err)
			return
		}
	}
	for co, err := range c.ListCompanies(ctx) {
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(co.Name, co.Status)
	}
	// Output:
	// Globex active
	// Initech active
	// Umbrella active
}

// Errors from keygate are *APIError.
func ExampleAPIError() {
	keygateURL, _ := exampleKeygate()
	c, err := client.New(client.Config{BaseURL: keygateURL, APIKey: "pk_revoked0or0mistyped"})
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = c.Token(context.Background())
	var ae *client.APIError
	if errors.As(err, &ae) {
		fmt.Println(ae.Status, ae.Code)
	}
	// Output: 401 unauthorized
}
