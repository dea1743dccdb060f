package server_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"keygate/api"
	"keygate/keys"
)

// scopedTenant is a partner allowed "orders:read orders:write", logged in.
func (e *env) scopedTenant(name string) tenant {
	e.t.Helper()
	allowed, err := keys.ParseScopeString("scopes", "orders:read orders:write")
	if err != nil {
		e.t.Fatal(err)
	}
	p, k, err := e.keys.CreatePartner(context.Background(), keys.Operator, keys.PartnerInput{Name: name, Scopes: allowed})
	if err != nil {
		e.t.Fatalf("CreatePartner: %v", err)
	}
	return tenant{partner: p, apiKey: k.APIKey.Reveal(), pair: e.login(k.APIKey.Reveal())}
}

// TestCompanyScopes: a company's first key holds its partner's allowed
// scopes, or those asked for within them; a scope outside them is 403
// naming it and creates nothing; a malformed one is a validation error.
func TestCompanyScopes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.scopedTenant("Partner A")
	if got := claims(t, a.pair.JWT)["scope"]; got != "orders:read orders:write" {
		t.Errorf("the partner's token: scope %v", got)
	}

	all := e.createCompany(a.pair.JWT, `{"name":"Globex"}`)
	if strings.Join(all.Scopes, " ") != "orders:read orders:write" {
		t.Errorf("a company created without scopes: %q, want its partner's", all.Scopes)
	}
	reader := e.createCompany(a.pair.JWT, `{"name":"Initech","scopes":["orders:read","orders:read"]}`)
	if strings.Join(reader.Scopes, " ") != "orders:read" {
		t.Errorf("a company created with scopes: %q", reader.Scopes)
	}
	if got := claims(t, e.login(reader.APIKey).JWT)["scope"]; got != "orders:read" {
		t.Errorf("the company's token: scope %v", got)
	}

	rec := e.post(companiesPath, `{"name":"Umbrella","scopes":["orders:read","users:delete"]}`, a.pair.JWT)
	if msg := wantError(t, rec, http.StatusForbidden, api.CodeForbidden); !strings.Contains(msg, `"users:delete"`) {
		t.Errorf("403 message %q does not name the scope", msg)
	}
	for name, body := range map[string]string{
		"a malformed scope":  `{"name":"Umbrella","scopes":["orders read"]}`,
		"a scope too long":   `{"name":"Umbrella","scopes":["` + strings.Repeat("s", 65) + `"]}`,
		"scopes not a list":  `{"name":"Umbrella","scopes":"orders:read"}`,
		"a scope not string": `{"name":"Umbrella","scopes":[7]}`,
		"33 scopes":          `{"name":"Umbrella","scopes":[` + scopeList(33) + `]}`,
	} {
		if msg := wantError(t, e.post(companiesPath, body, a.pair.JWT), http.StatusBadRequest, api.CodeValidation); !strings.HasPrefix(msg, "scopes") {
			t.Errorf("%s: message %q does not name scopes", name, msg)
		}
	}
	page := decodeInto[companyPage](t, e.get(companiesPath, a.pair.JWT))
	if len(page.Companies) != 2 {
		t.Errorf("%d companies after the refused ones, want 2", len(page.Companies))
	}
}

func scopeList(n int) string {
	s := make([]string, n)
	for i := range s {
		s[i] = `"s` + strings.Repeat("x", i%5) + string(rune('a'+i%26)) + string(rune('a'+i/26)) + `"`
	}
	return strings.Join(s, ",")
}

// TestCompanyKeyOptions: a company key may get a name, an expiry and
// fewer scopes; listings show them; bad values are refused, naming them.
func TestCompanyKeyOptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.scopedTenant("Partner A")
	co := e.createCompany(a.pair.JWT, `{"name":"Globex"}`)

	for name, r := range map[string]request{
		"no body":     {method: http.MethodPost, path: keysPath(co.ID), token: a.pair.JWT},
		"an empty {}": {method: http.MethodPost, path: keysPath(co.ID), token: a.pair.JWT, body: `{}`},
		"nulls":       {method: http.MethodPost, path: keysPath(co.ID), token: a.pair.JWT, body: `{"name":null,"expiresAt":null,"scopes":null}`},
	} {
		rec := e.do(r)
		wantStatus(t, rec, http.StatusCreated)
		k := decodeInto[newKeyBody](t, rec)
		if k.Name != nil || k.ExpiresAt != nil || strings.Join(k.Scopes, " ") != "orders:read orders:write" {
			t.Errorf("%s: %+v, want no name, no expiry, the partner's scopes", name, k)
		}
	}

	expires := e.clock.Now().Add(90 * 24 * time.Hour).UTC().Truncate(time.Millisecond)
	body := `{"name":"CI deploys \u00e9","expiresAt":"` + api.NewTime(expires).String() + `","scopes":["orders:read"]}`
	rec := e.post(keysPath(co.ID), body, a.pair.JWT)
	wantStatus(t, rec, http.StatusCreated)
	ci := decodeInto[newKeyBody](t, rec)
	if ci.Name == nil || *ci.Name != "CI deploys é" || ci.ExpiresAt == nil || *ci.ExpiresAt != api.NewTime(expires).String() || strings.Join(ci.Scopes, " ") != "orders:read" {
		t.Fatalf("a key with a name, an expiry and a scope: %+v", ci)
	}
	list := decodeInto[keyList](t, e.get(keysPath(co.ID), a.pair.JWT))
	i := slices.IndexFunc(list.Keys, func(k keyInfo) bool { return k.KeyID == ci.KeyID })
	if i < 0 {
		t.Fatalf("the new key is not listed: %+v", list.Keys)
	}
	if k := list.Keys[i]; k.Name == nil || *k.Name != *ci.Name || k.ExpiresAt == nil || *k.ExpiresAt != *ci.ExpiresAt || strings.Join(k.Scopes, " ") != "orders:read" {
		t.Errorf("listed: %+v", k)
	}
	pair := e.login(ci.APIKey)
	if got := claims(t, pair.JWT)["scope"]; got != "orders:read" {
		t.Errorf("the key's token: scope %v", got)
	}

	past := api.NewTime(e.clock.Now().Add(-time.Minute)).String()
	for _, tc := range []struct{ name, body, field string }{
		{"an empty name", `{"name":""}`, "name"},
		{"a name too long", `{"name":"` + strings.Repeat("n", 101) + `"}`, "name"},
		{"an expiry in the past", `{"expiresAt":"` + past + `"}`, "expiresAt"},
		{"an expiry that is no timestamp", `{"expiresAt":"next week"}`, "expiresAt"},
		{"an expiry that is a number", `{"expiresAt":1782460602}`, "expiresAt"},
		{"a malformed scope", `{"scopes":["a b"]}`, "scopes"},
		{"an unknown member", `{"nmae":"x"}`, "nmae"},
		{"not an object", `["x"]`, "body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if msg := wantError(t, e.post(keysPath(co.ID), tc.body, a.pair.JWT), http.StatusBadRequest, api.CodeValidation); !strings.HasPrefix(msg, tc.field) {
				t.Errorf("message %q does not name %s", msg, tc.field)
			}
		})
	}
	rec = e.post(keysPath(co.ID), `{"scopes":["orders:read","orders:admin"]}`, a.pair.JWT)
	if msg := wantError(t, rec, http.StatusForbidden, api.CodeForbidden); !strings.Contains(msg, `"orders:admin"`) {
		t.Errorf("403 message %q does not name the scope", msg)
	}
	wantError(t, e.do(request{method: http.MethodPost, path: keysPath(co.ID), token: a.pair.JWT, body: `{"name":"x"}`, contentType: "text/plain"}),
		http.StatusUnsupportedMediaType, api.CodeUnsupportedMedia)
	if n := len(decodeInto[keyList](t, e.get(keysPath(co.ID), a.pair.JWT)).Keys); n != 5 {
		t.Errorf("%d keys after the refused ones, want 5", n)
	}

	// The key expires: it logs in like a revoked key from then on, and no
	// token it gave outlives it.
	short := decodeInto[newKeyBody](t, e.post(keysPath(co.ID), `{"expiresAt":"`+api.NewTime(e.clock.Now().Add(5*time.Minute)).String()+`"}`, a.pair.JWT))
	sp := e.login(short.APIKey)
	if sp.ExpirationDate > *short.ExpiresAt || sp.RefreshTokenExpiration > *short.ExpiresAt {
		t.Errorf("tokens until %s and %s outlive the key's %s", sp.ExpirationDate, sp.RefreshTokenExpiration, *short.ExpiresAt)
	}
	e.clock.Advance(5 * time.Minute)
	revoked := wantError(t, e.post("/api/v1/auth/login", loginBody(short.APIKey), ""), http.StatusUnauthorized, api.CodeUnauthorized)
	if revoked != api.UnauthorizedMessage {
		t.Errorf("an expired key's login: %q, want the one 401 message", revoked)
	}
	wantError(t, e.get("/api/v1/auth/me", sp.JWT), http.StatusUnauthorized, api.CodeUnauthorized)
	wantError(t, e.post("/api/v1/auth/refresh", refreshBody(sp.RefreshToken), ""), http.StatusUnauthorized, api.CodeUnauthorized)
}

// TestLoginScope: a login may down-scope its session to scopes its key
// holds; /auth/me shows the token's scopes; a scope it does not hold is
// 403 naming it (not a failed login); an empty or malformed one is 400.
func TestLoginScope(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.scopedTenant("Partner A")
	rec := e.post("/api/v1/auth/login", `{"apiKey":`+jsonString(a.apiKey)+`,"scope":"orders:read"}`, "")
	wantStatus(t, rec, http.StatusOK)
	pair := decodeInto[tokenPair](t, rec)
	if got := claims(t, pair.JWT)["scope"]; got != "orders:read" {
		t.Errorf("down-scoped login: scope %v", got)
	}
	me := decodeInto[meBody](t, e.get("/api/v1/auth/me", pair.JWT))
	if strings.Join(me.Scopes, " ") != "orders:read" {
		t.Errorf("/auth/me scopes %q", me.Scopes)
	}
	if got := claims(t, e.refresh(pair.RefreshToken).JWT)["scope"]; got != "orders:read" {
		t.Errorf("its refresh: scope %v", got)
	}

	co := e.createCompany(a.pair.JWT, `{"name":"Globex","scopes":["orders:read"]}`)
	for range 30 { // more than the failure budget: a 403 spends none of it
		rec = e.post("/api/v1/auth/login", `{"apiKey":`+jsonString(co.APIKey)+`,"scope":"orders:write"}`, "")
		if msg := wantError(t, rec, http.StatusForbidden, api.CodeForbidden); msg != `scope "orders:write" is not allowed` {
			t.Fatalf("a scope the key lacks: %q", msg)
		}
	}
	e.login(co.APIKey)
	for name, scope := range map[string]string{"empty": `""`, "blank": `"  "`, "malformed": `"orders/read"`, "a number": `7`} {
		rec = e.post("/api/v1/auth/login", `{"apiKey":`+jsonString(co.APIKey)+`,"scope":`+scope+`}`, "")
		if msg := wantError(t, rec, http.StatusBadRequest, api.CodeValidation); !strings.HasPrefix(msg, "scope") {
			t.Errorf("%s scope: %q", name, msg)
		}
	}
	// A bad key with a scope is the one 401, whatever it asks for.
	wantError(t, e.post("/api/v1/auth/login", `{"apiKey":"ck_nope","scope":"orders:read"}`, ""), http.StatusUnauthorized, api.CodeUnauthorized)
}
