package client_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"keygate/api"
	"keygate/client"
	"keygate/keys"
)

func scopeOf(t *testing.T, jwt string) string {
	t.Helper()
	parts := strings.Split(jwt, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct{ Scope string }
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c.Scope
}

// TestScopesAndKeyOptions: Config.Scope down-scopes the client's session;
// CreateCompanyKeyWith gives a key a name, an expiry and fewer scopes.
func TestScopesAndKeyOptions(t *testing.T) {
	k := startKeygate(t)
	ctx := context.Background()
	allowed, err := keys.ParseScopeString("scopes", "orders:read orders:write")
	if err != nil {
		t.Fatal(err)
	}
	_, pk, err := k.gw.Keys.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "Scoped", Scopes: allowed})
	if err != nil {
		t.Fatal(err)
	}
	full := newClient(t, k, client.Config{APIKey: pk.APIKey.Reveal()})
	if got := scopeOf(t, mustToken(t, full)); got != "orders:read orders:write" {
		t.Errorf("a client without Scope: token scope %q", got)
	}
	reader := newClient(t, k, client.Config{APIKey: pk.APIKey.Reveal(), Scope: "orders:read"})
	if got := scopeOf(t, mustToken(t, reader)); got != "orders:read" {
		t.Errorf("a client with Scope: token scope %q", got)
	}
	_, err = newClient(t, k, client.Config{APIKey: pk.APIKey.Reveal(), Scope: "users:read"}).Token(ctx)
	wantAPIError(t, "a scope the key lacks", err, http.StatusForbidden, api.CodeForbidden)

	co, err := full.CreateCompany(ctx, "Globex", "")
	if err != nil {
		t.Fatal(err)
	}
	name, expires, scopes := "CI deploys", api.NewTime(time.Now().Add(time.Hour)), []string{"orders:read"}
	key, err := full.CreateCompanyKeyWith(ctx, co.ID, api.CreateKeyRequest{Name: &name, ExpiresAt: &expires, Scopes: &scopes})
	if err != nil || key.Name == nil || *key.Name != name || key.ExpiresAt == nil || strings.Join(key.Scopes, " ") != "orders:read" {
		t.Fatalf("CreateCompanyKeyWith = %+v, %v", key, err)
	}
	ks, err := full.ListCompanyKeys(ctx, co.ID)
	if err != nil || len(ks) != 2 || ks[1].Name == nil || *ks[1].Name != name || strings.Join(ks[0].Scopes, " ") != "orders:read orders:write" {
		t.Fatalf("ListCompanyKeys = %+v, %v", ks, err)
	}
	wider := []string{"admin"}
	_, err = full.CreateCompanyKeyWith(ctx, co.ID, api.CreateKeyRequest{Scopes: &wider})
	wantAPIError(t, "a key scope outside the partner's", err, http.StatusForbidden, api.CodeForbidden)
}
