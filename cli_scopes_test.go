package main_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// jwtScope is the scope claim of a JWT, "" if it has none.
func jwtScope(t *testing.T, jwt string) string {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %.20s...", jwt)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Scope string `json:"scope"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c.Scope
}

// TestCLIScopesNamesAndExpiry: the operator gives a partner allowed scopes
// and its keys scopes within them, names and lifetimes; tokens carry what
// a key may obtain, narrowing the partner narrows it, and an expired key
// logs in like a revoked one.
func TestCLIScopesNamesAndExpiry(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := e2eEnv()
	var acme createdPartner
	decodeStrictJSON(t, mustKeygate(t, dir, env, "partner", "create", "--name", "Acme", "--scopes", "orders:write orders:read orders:read", "--json"), &acme)
	if strings.Join(acme.Scopes, " ") != "orders:read orders:write" || strings.Join(acme.KeyScopes, " ") != "orders:read orders:write" ||
		acme.KeyName != nil || acme.KeyExpiresAt != nil {
		t.Fatalf("partner create with scopes: %+v; want its first key to hold all it is allowed", acme)
	}

	var ci createdKey
	decodeStrictJSON(t, mustKeygate(t, dir, env, "partner", "key", "create", "--partner", acme.ID,
		"--scopes", "orders:read", "--key-name", "CI deploys", "--expires-in", "2160h", "--json"), &ci)
	if strings.Join(ci.Scopes, " ") != "orders:read" || ci.Name == nil || *ci.Name != "CI deploys" || ci.ExpiresAt == nil {
		t.Fatalf("partner key create: %+v", ci)
	}
	if exp := parseStamp(t, *ci.ExpiresAt); time.Until(exp) < 2159*time.Hour || time.Until(exp) > 2161*time.Hour {
		t.Errorf("key expires %s, want 2160h from now", *ci.ExpiresAt)
	}
	var listed []listedKey
	decodeStrictJSON(t, mustKeygate(t, dir, env, "partner", "key", "list", "--partner", acme.ID, "--json"), &listed)
	if len(listed) != 2 || listed[1].KeyID != ci.KeyID || listed[1].Name == nil || *listed[1].Name != "CI deploys" ||
		strings.Join(listed[1].Scopes, " ") != "orders:read" || listed[1].ExpiresAt == nil || *listed[1].ExpiresAt != *ci.ExpiresAt ||
		listed[0].Name != nil || listed[0].ExpiresAt != nil {
		t.Errorf("partner key list --json: %+v", listed)
	}
	table := mustKeygate(t, dir, env, "partner", "key", "list", "--partner", acme.ID)
	for _, want := range []string{"NAME", "SCOPES", "EXPIRES", "CI deploys", "orders:read orders:write"} {
		if !strings.Contains(table, want) {
			t.Errorf("partner key list lacks %q:\n%s", want, table)
		}
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a scope with a slash", []string{"partner", "create", "--name", "X", "--scopes", "orders/read"}, `"orders/read"`},
		{"a scope too long", []string{"partner", "create", "--name", "X", "--scopes", strings.Repeat("s", 65)}, "scope"},
		{"33 scopes", []string{"partner", "create", "--name", "X", "--scopes", manyScopes(33)}, "at most 32"},
		{"a key scope outside the partner's", []string{"partner", "key", "create", "--partner", acme.ID, "--scopes", "users:read"}, `"users:read" is not allowed`},
		{"an empty key name", []string{"partner", "key", "create", "--partner", acme.ID, "--key-name", ""}, "key-name"},
		{"a key name too long", []string{"partner", "key", "create", "--partner", acme.ID, "--key-name", strings.Repeat("n", 101)}, "at most 100"},
		{"a negative lifetime", []string{"partner", "key", "create", "--partner", acme.ID, "--expires-in", "-5m"}, "expires-in"},
		{"a lifetime that is no duration", []string{"partner", "key", "create", "--partner", acme.ID, "--expires-in", "soon"}, "expires-in"},
		{"scopes set of an unknown partner", []string{"partner", "scopes", "set", "--partner", "par_unknown", "--scopes", "a"}, "not found"},
		{"scopes set without --scopes", []string{"partner", "scopes", "set", "--partner", acme.ID}, "scopes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assertOneLineError(t, runKeygate(t, dir, env, tc.args...), tc.want)
		})
	}
	if ps := listPartners(t, dir, env); len(ps) != 1 {
		t.Errorf("a refused partner create left %d partners", len(ps))
	}

	srv := startServer(t, dir, env)
	if got := jwtScope(t, srv.mustLogin(t, acme.APIKey).JWT); got != "orders:read orders:write" {
		t.Errorf("partner key login: scope %q", got)
	}
	if got := jwtScope(t, srv.mustLogin(t, ci.APIKey).JWT); got != "orders:read" {
		t.Errorf("the CI key's login: scope %q", got)
	}
	// Narrowing the partner narrows what its keys obtain from then on.
	mustKeygate(t, dir, env, "partner", "scopes", "set", "--partner", acme.ID, "--scopes", "orders:write")
	if !eventually(t, 5*time.Second, func() bool { return jwtScope(t, srv.mustLogin(t, acme.APIKey).JWT) == "orders:write" }) {
		t.Errorf("after narrowing the partner, its key still obtains more than orders:write")
	}
	if got := jwtScope(t, srv.mustLogin(t, ci.APIKey).JWT); got != "" {
		t.Errorf("the CI key (orders:read) after the partner lost it: scope %q, want none", got)
	}
	var ps []listedPartner
	decodeStrictJSON(t, mustKeygate(t, dir, env, "partner", "list", "--json"), &ps)
	if strings.Join(ps[0].Scopes, " ") != "orders:write" {
		t.Errorf("partner list after scopes set: %+v", ps)
	}

	// A key that expires logs in until then, and then like a revoked one.
	var brief createdKey
	decodeStrictJSON(t, mustKeygate(t, dir, env, "partner", "key", "create", "--partner", acme.ID, "--expires-in", "2s", "--json"), &brief)
	pair := srv.mustLogin(t, brief.APIKey)
	if exp := parseStamp(t, pair.ExpirationDate); exp.After(parseStamp(t, *brief.ExpiresAt)) {
		t.Errorf("the JWT of a key expiring at %s expires at %s", *brief.ExpiresAt, pair.ExpirationDate)
	}
	if !eventually(t, 10*time.Second, func() bool { code, _, _ := srv.login(t, brief.APIKey); return code == http.StatusUnauthorized }) {
		t.Fatal("an expired key still logs in")
	}
	code, _, body := srv.login(t, brief.APIKey)
	_, _, revoked := srv.login(t, "pk_"+strings.Repeat("0", 50))
	if code != http.StatusUnauthorized || string(body) != string(revoked) {
		t.Errorf("expired key: %d %s; want the 401 of any bad key: %s", code, body, revoked)
	}
	if code, _, _ := srv.refresh(t, pair.RefreshToken); code != http.StatusUnauthorized {
		t.Errorf("refresh after the key expired: %d, want 401", code)
	}
}

func manyScopes(n int) string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("s%02d", i)
	}
	return strings.Join(s, " ")
}
