package server_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"keygate/keys"
	"keygate/tokens"
)

func TestLoginReturnsTokenPair(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p, apiKey := e.partner("Acme")

	rec := e.post("/api/v1/auth/login", loginBody(apiKey), "")
	wantStatus(t, rec, http.StatusOK)
	wantMembers(t, rec.Body.Bytes(), "jwt", "expirationDate", "refreshToken", "refreshTokenExpiration")
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q", ct)
	}
	pair := decodeInto[tokenPair](t, rec)

	exp := wantStamp(t, "expirationDate", pair.ExpirationDate)
	if want := epoch.Truncate(time.Second).Add(accessTTL); !exp.Equal(want) {
		t.Errorf("expirationDate = %s, want %s", exp, want)
	}
	rtExp := wantStamp(t, "refreshTokenExpiration", pair.RefreshTokenExpiration)
	if want := epoch.Add(refreshTTL); !rtExp.Equal(want) {
		t.Errorf("refreshTokenExpiration = %s, want %s", rtExp, want)
	}
	if pair.RefreshTokenExpiration != "2026-07-26T07:56:42.199+00:00" {
		t.Errorf("refreshTokenExpiration = %q, want exactly 2026-07-26T07:56:42.199+00:00", pair.RefreshTokenExpiration)
	}
	if !strings.HasPrefix(pair.RefreshToken, keys.RefreshTokenPrefix) {
		t.Errorf("refresh token %q lacks the rt_ prefix", pair.RefreshToken)
	}

	header := jwtHeader(t, pair.JWT)
	if header["typ"] != tokens.TokenType || header["alg"] != tokens.ES256 || header["kid"] == "" {
		t.Errorf("JWT header = %v", header)
	}
	c := claims(t, pair.JWT)
	keyID := partnerKeyID(t, e, p.ID)
	for name, want := range map[string]any{
		"iss": "keygate", "sub": p.ID, "client_id": p.ID, "kind": "partner", "partner_id": p.ID, "key_id": keyID,
		"exp": float64(epoch.Truncate(time.Second).Add(accessTTL).Unix()),
		"iat": float64(epoch.Truncate(time.Second).Unix()),
		"nbf": float64(epoch.Truncate(time.Second).Unix()),
	} {
		if c[name] != want {
			t.Errorf("claim %s = %v, want %v", name, c[name], want)
		}
	}
	if aud, _ := c["aud"].([]any); len(aud) != 1 || aud[0] != "r-auth" {
		t.Errorf("aud = %v, want [r-auth]", c["aud"])
	}
	if _, ok := c["company_id"]; ok {
		t.Errorf("partner token carries company_id: %v", c)
	}
	if jti, _ := c["jti"].(string); jti == "" || jti == claims(t, e.login(apiKey).JWT)["jti"] {
		t.Errorf("jti %v missing or not unique", c["jti"])
	}
}

func jwtHeader(t *testing.T, token string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatalf("JWT header: %v", err)
	}
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatalf("JWT header: %v", err)
	}
	return h
}

// TestLoginRefusesWithOneBody checks that every refused key gets the very
// same 401, so a caller learns nothing about why.
func TestLoginRefusesWithOneBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	good, goodKey := e.partner("Good")
	revoked, revokedKey := e.partner("Revoked")
	if err := e.keys.RevokeKey(ctx, keys.Operator, keys.PartnerOwner(revoked.ID), partnerKeyID(t, e, revoked.ID)); err != nil {
		t.Fatal(err)
	}
	disabled, disabledKey := e.partner("Disabled")
	if err := e.keys.DisablePartner(ctx, keys.Operator, disabled.ID); err != nil {
		t.Fatal(err)
	}
	pair := e.login(goodKey)

	cases := map[string]string{
		"unknown":                keys.NewAPIKey(keys.PartnerKeyPrefix).Reveal(),
		"unknown company key":    keys.NewAPIKey(keys.CompanyKeyPrefix).Reveal(),
		"malformed":              "hello",
		"prefix only":            "pk_",
		"truncated":              goodKey[:len(goodKey)-1],
		"one character too many": goodKey + "a",
		"checksum typo":          flip(goodKey, len(goodKey)-1),
		"body typo":              flip(goodKey, 10),
		"wrong prefix":           "ck_" + goodKey[3:],
		"refresh token":          pair.RefreshToken,
		"jwt":                    pair.JWT,
		"revoked":                revokedKey,
		"disabled partner":       disabledKey,
		"surrounding whitespace": " " + goodKey + " ",
		"non-ASCII":              "pk_ä" + goodKey[5:],
		"very long":              strings.Repeat("pk_", 10_000),
		"all zeros":              "pk_" + strings.Repeat("0", len(goodKey)-3),
	}
	var first string
	for name, key := range cases {
		rec := e.post("/api/v1/auth/login", loginBody(key), "")
		wantError(t, rec, http.StatusUnauthorized, "unauthorized")
		if first == "" {
			first = rec.Body.String()
		}
		if rec.Body.String() != first {
			t.Errorf("%s: body %s differs from %s", name, rec.Body, first)
		}
		if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
			t.Errorf("%s: Cache-Control = %q", name, cc)
		}
	}
	// The good key still works: the refusals were about the keys.
	if got := e.login(goodKey); claims(t, got.JWT)["sub"] != good.ID {
		t.Errorf("good key logged in as %v", claims(t, got.JWT)["sub"])
	}
}

func TestLoginValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cases := map[string]struct {
		body      string
		wantField string
	}{
		"missing":         {`{}`, "apiKey"},
		"empty":           {`{"apiKey":""}`, "apiKey"},
		"null":            {`{"apiKey":null}`, "apiKey"},
		"number":          {`{"apiKey":42}`, "apiKey"},
		"boolean":         {`{"apiKey":true}`, "apiKey"},
		"array":           {`{"apiKey":["pk_x"]}`, "apiKey"},
		"object":          {`{"apiKey":{"k":"v"}}`, "apiKey"},
		"form encoded":    {`apiKey=pk_x`, ""},
		"bare string":     {`"pk_x"`, ""},
		"top-level array": {`[{"apiKey":"pk_x"}]`, ""},
		"truncated":       {`{"apiKey":"pk_`, ""},
		"whitespace only": {` `, ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			msg := wantError(t, e.post("/api/v1/auth/login", tc.body, ""), http.StatusBadRequest, "validation_error")
			if tc.wantField != "" && !strings.Contains(msg, tc.wantField) {
				t.Errorf("message %q does not name %s", msg, tc.wantField)
			}
		})
	}
	// An empty body sent as JSON is no JSON object either.
	wantError(t, e.do(request{method: http.MethodPost, path: "/api/v1/auth/login", contentType: "application/json"}),
		http.StatusBadRequest, "validation_error")
}

type meBody struct {
	Type           string   `json:"type"`
	ID             string   `json:"id"`
	Name           string   `json:"name"`
	PartnerID      string   `json:"partnerId"`
	KeyID          string   `json:"keyId"`
	Scopes         []string `json:"scopes"`
	ExpirationDate string   `json:"expirationDate"`
}

func TestMeForPartner(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p, apiKey := e.partner("Acme Partner")
	pair := e.login(apiKey)
	keyID := partnerKeyID(t, e, p.ID)

	headers := map[string]http.Header{
		"R-Auth":                 {"R-Auth": {pair.JWT}},
		"Authorization Bearer":   {"Authorization": {"Bearer " + pair.JWT}},
		"Authorization lower":    {"Authorization": {"bearer " + pair.JWT}},
		"R-Auth wins over other": {"R-Auth": {pair.JWT}, "Authorization": {"Bearer junk"}},
	}
	for name, h := range headers {
		t.Run(name, func(t *testing.T) {
			rec := e.do(request{method: http.MethodGet, path: "/api/v1/auth/me", header: h})
			wantStatus(t, rec, http.StatusOK)
			wantMembers(t, rec.Body.Bytes(), "type", "id", "name", "keyId", "scopes", "expirationDate")
			got := decodeInto[meBody](t, rec)
			want := meBody{Type: "partner", ID: p.ID, Name: "Acme Partner", KeyID: keyID, Scopes: []string{}, ExpirationDate: pair.ExpirationDate}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("me = %+v, want %+v", got, want)
			}
			wantStamp(t, "expirationDate", got.ExpirationDate)
		})
	}
}

// forge signs claims with a key keygate never issued, under a header of
// our choosing.
func forge(t *testing.T, method jwt.SigningMethod, key any, header map[string]any, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("signing: %v", err)
	}
	return s
}

func decodeSegment(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func segment(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestMeRefusesBadTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p, apiKey := e.partner("Acme")
	pair := e.login(apiKey)
	other := newEnv(t) // its own signing key, master key and database
	_, otherKey := other.partner("Elsewhere")
	otherPair := other.login(otherKey)

	parts := strings.Split(pair.JWT, ".")
	header := jwtHeader(t, pair.JWT)
	c := jwt.MapClaims(claims(t, pair.JWT))
	foreignKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	withClaim := func(name string, v any) string {
		m := claims(t, pair.JWT)
		m[name] = v
		return parts[0] + "." + segment(m) + "." + parts[2]
	}
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[0] ^= 0xff
	withHeader := func(h map[string]any) string { return segment(h) + "." + parts[1] + "." + parts[2] }
	// The ES256 signature's last base64url character carries 4 unused
	// bits: flipping one spells the same bytes non-canonically.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, parts[2][len(parts[2])-1])
	nonCanonicalSig := parts[2][:len(parts[2])-1] + string(alphabet[last^1])
	if same, _ := base64.RawURLEncoding.DecodeString(nonCanonicalSig); !bytes.Equal(same, decodeSegment(t, parts[2])) || nonCanonicalSig == parts[2] {
		t.Fatal("the non-canonical signature is not the same bytes spelled differently")
	}
	nonCanonical := parts[0] + "." + parts[1] + "." + nonCanonicalSig
	var set struct{ Keys []jwk }
	if err := json.Unmarshal(e.ring.JWKS(), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS: %s %v", e.ring.JWKS(), err)
	}
	der, err := x509.MarshalPKIXPublicKey(publicKeyFromJWK(t, set.Keys[0]))
	if err != nil {
		t.Fatal(err)
	}
	publicPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})

	cases := map[string]http.Header{
		"missing":                 {},
		"empty R-Auth":            {"R-Auth": {""}},
		"blank R-Auth":            {"R-Auth": {"   "}},
		"two R-Auth headers":      {"R-Auth": {pair.JWT, pair.JWT}},
		"Bearer without token":    {"Authorization": {"Bearer"}},
		"Bearer and space":        {"Authorization": {"Bearer "}},
		"Basic scheme":            {"Authorization": {"Basic " + pair.JWT}},
		"token without scheme":    {"Authorization": {pair.JWT}},
		"two Authorization":       {"Authorization": {"Bearer " + pair.JWT, "Bearer " + pair.JWT}},
		"malformed":               {"R-Auth": {"not a token"}},
		"three empty parts":       {"R-Auth": {".."}},
		"garbage parts":           {"R-Auth": {"a.b.c"}},
		"API key":                 {"R-Auth": {apiKey}},
		"refresh token":           {"R-Auth": {pair.RefreshToken}},
		"signature stripped":      {"R-Auth": {parts[0] + "." + parts[1] + "."}},
		"signature altered":       {"R-Auth": {parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)}},
		"sub tampered":            {"R-Auth": {withClaim("sub", "par_someoneelse")}},
		"exp tampered":            {"R-Auth": {withClaim("exp", float64(epoch.Add(24*time.Hour).Unix()))}},
		"kind tampered":           {"R-Auth": {withClaim("kind", "company")}},
		"aud tampered":            {"R-Auth": {withClaim("aud", []string{"other"})}},
		"alg none":                {"R-Auth": {segment(map[string]any{"alg": "none", "typ": "at+jwt", "kid": header["kid"]}) + "." + parts[1] + "."}},
		"alg None":                {"R-Auth": {segment(map[string]any{"alg": "None", "typ": "at+jwt", "kid": header["kid"]}) + "." + parts[1] + "."}},
		"alg NONE":                {"R-Auth": {segment(map[string]any{"alg": "NONE", "typ": "at+jwt", "kid": header["kid"]}) + "." + parts[1] + "."}},
		"alg missing":             {"R-Auth": {withHeader(map[string]any{"typ": "at+jwt", "kid": header["kid"]})}},
		"alg empty":               {"R-Auth": {withHeader(map[string]any{"alg": "", "typ": "at+jwt", "kid": header["kid"]})}},
		"typ missing":             {"R-Auth": {withHeader(map[string]any{"alg": "ES256", "kid": header["kid"]})}},
		"non-canonical base64":    {"R-Auth": {nonCanonical}},
		"HS256 with PEM key":      {"R-Auth": {forge(t, jwt.SigningMethodHS256, publicPEM, map[string]any{"kid": header["kid"], "typ": "at+jwt"}, c)}},
		"other gateway's token":   {"R-Auth": {otherPair.JWT}},
		"foreign key, same kid":   {"R-Auth": {forge(t, jwt.SigningMethodES256, foreignKey, map[string]any{"kid": header["kid"], "typ": "at+jwt"}, c)}},
		"foreign key, no kid":     {"R-Auth": {forge(t, jwt.SigningMethodES256, foreignKey, map[string]any{"typ": "at+jwt"}, c)}},
		"HS256 with JWKS as key":  {"R-Auth": {forge(t, jwt.SigningMethodHS256, e.ring.JWKS(), map[string]any{"kid": header["kid"], "typ": "at+jwt"}, c)}},
		"path-like kid":           {"R-Auth": {forge(t, jwt.SigningMethodES256, foreignKey, map[string]any{"kid": "../../etc/passwd", "typ": "at+jwt"}, c)}},
		"jku header":              {"R-Auth": {forge(t, jwt.SigningMethodES256, foreignKey, map[string]any{"kid": header["kid"], "typ": "at+jwt", "jku": "https://evil.example/jwks"}, c)}},
		"megabyte of dots":        {"R-Auth": {strings.Repeat(".", 1<<20)}},
		"megabyte token":          {"R-Auth": {parts[0] + "." + strings.Repeat("A", 1<<20) + "." + parts[2]}},
		"R-Auth with Bearer word": {"R-Auth": {"Bearer " + pair.JWT}},
	}
	var first string
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			rec := e.do(request{method: http.MethodGet, path: "/api/v1/auth/me", header: h})
			wantError(t, rec, http.StatusUnauthorized, "unauthorized")
			if first == "" {
				first = rec.Body.String()
			} else if rec.Body.String() != first {
				t.Errorf("body %s differs from %s", rec.Body, first)
			}
		})
	}

	// The genuine token still works, so the refusals above were about the
	// tokens; then time runs out for it.
	wantStatus(t, e.get("/api/v1/auth/me", pair.JWT), http.StatusOK)
	e.clock.Advance(accessTTL + leeway - time.Second) // expired, but within the leeway
	wantStatus(t, e.get("/api/v1/auth/me", pair.JWT), http.StatusOK)
	e.clock.Advance(2 * time.Second)
	wantError(t, e.get("/api/v1/auth/me", pair.JWT), http.StatusUnauthorized, "unauthorized")

	// A disabled partner's unexpired token stops working on keygate at once.
	fresh := e.login(apiKey)
	wantStatus(t, e.get("/api/v1/auth/me", fresh.JWT), http.StatusOK)
	if err := e.keys.DisablePartner(context.Background(), keys.Operator, p.ID); err != nil {
		t.Fatal(err)
	}
	wantError(t, e.get("/api/v1/auth/me", fresh.JWT), http.StatusUnauthorized, "unauthorized")
}

func TestHealth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rec := e.get("/health", "")
	wantStatus(t, rec, http.StatusOK)
	if got := rec.Body.String(); got != `{"status":"ok"}` {
		t.Errorf("body = %s, want {\"status\":\"ok\"}", got)
	}
}

func TestReady(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	wantStatus(t, e.get("/ready", ""), http.StatusOK)
	// Nothing else is in flight, so closing the store here races with nothing.
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	wantError(t, e.get("/ready", ""), http.StatusServiceUnavailable, "service_unavailable")
}

// jwk is a published key; the private members must never appear.
type jwk map[string]string

func TestJWKS(t *testing.T) {
	t.Parallel()
	for _, alg := range tokens.Algorithms {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, withAlgorithm(alg))
			_, apiKey := e.partner("Acme")
			pair := e.login(apiKey)
			wantStatus(t, e.get("/api/v1/auth/me", pair.JWT), http.StatusOK)

			rec := e.get("/.well-known/jwks.json", "")
			wantStatus(t, rec, http.StatusOK)
			if cc := rec.Header().Get("Cache-Control"); cc != "public, max-age=300" {
				t.Errorf("Cache-Control = %q, want public, max-age=300", cc)
			}
			if ct := rec.Header().Get("Content-Type"); !strings.Contains(ct, "json") {
				t.Errorf("Content-Type = %q", ct)
			}
			wantMembers(t, rec.Body.Bytes(), "keys")
			set := decodeInto[struct{ Keys []jwk }](t, rec)
			if alg == tokens.HS256 {
				if len(set.Keys) != 0 {
					t.Fatalf("HS256 secret published: %s", rec.Body)
				}
				return
			}
			if len(set.Keys) != 1 {
				t.Fatalf("keys = %s, want one", rec.Body)
			}
			k := set.Keys[0]
			for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
				if _, ok := k[private]; ok {
					t.Errorf("JWK has private member %q", private)
				}
			}
			if k["kid"] == "" || k["alg"] != alg || k["use"] != "sig" {
				t.Errorf("JWK = %v, want kid, alg %s, use sig", k, alg)
			}
			if kid := jwtHeader(t, pair.JWT)["kid"]; kid != k["kid"] {
				t.Errorf("JWT kid %v not the published %s", kid, k["kid"])
			}
			verifyWithJWK(t, pair.JWT, k)
		})
	}
}

// publicKeyFromJWK parses a published key as a downstream service would.
func publicKeyFromJWK(t *testing.T, k jwk) any {
	t.Helper()
	b64 := func(s string) []byte {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("JWK member: %v", err)
		}
		return b
	}
	switch k["kty"] {
	case "EC":
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, b64(k["x"])...), b64(k["y"])...))
		if err != nil {
			t.Fatalf("EC JWK: %v", err)
		}
		return pub
	case "OKP":
		return ed25519.PublicKey(b64(k["x"]))
	case "RSA":
		return &rsa.PublicKey{N: new(big.Int).SetBytes(b64(k["n"])), E: int(new(big.Int).SetBytes(b64(k["e"])).Int64())}
	}
	t.Fatalf("unexpected kty %q", k["kty"])
	return nil
}

// verifyWithJWK checks a JWT against a published key, as a downstream
// service would.
func verifyWithJWK(t *testing.T, token string, k jwk) {
	t.Helper()
	key := publicKeyFromJWK(t, k)
	parser := jwt.NewParser(jwt.WithValidMethods([]string{k["alg"]}), jwt.WithIssuer("keygate"), jwt.WithAudience("r-auth"),
		jwt.WithTimeFunc(func() time.Time { return epoch }))
	if _, err := parser.Parse(token, func(*jwt.Token) (any, error) { return key, nil }); err != nil {
		t.Errorf("JWT does not verify with the published key: %v", err)
	}
}

func TestUnknownRoutesAndMethods(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, apiKey := e.partner("Acme")
	pair := e.login(apiKey)
	cases := []struct {
		method, path string
		allow        string // "": an unknown path, 404
	}{
		{http.MethodGet, "/nope", ""},
		{http.MethodGet, "/", ""},
		{http.MethodGet, "/api/v1", ""},
		{http.MethodGet, "/health/", ""},
		{http.MethodGet, "/HEALTH", ""},
		{http.MethodGet, "/api/v2/auth/me", ""},
		{"FOO", "/nope", ""},
		{http.MethodPost, "/health", "GET, HEAD"},
		{http.MethodDelete, "/ready", "GET, HEAD"},
		{http.MethodGet, "/api/v1/auth/login", "POST"},
		{http.MethodPut, "/api/v1/auth/login", "POST"},
		{http.MethodGet, "/api/v1/auth/refresh", "POST"},
		{http.MethodPost, "/api/v1/auth/me", "GET, HEAD"},
		{http.MethodPut, "/api/v1/companies", "GET, HEAD, POST"},
		{http.MethodPatch, "/api/v1/companies/com_x", "DELETE, GET, HEAD"},
		{http.MethodPost, "/.well-known/jwks.json", "GET, HEAD"},
		{"FOO", "/health", "GET, HEAD"},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := e.do(request{method: tc.method, path: tc.path, token: pair.JWT})
			if tc.allow == "" {
				wantError(t, rec, http.StatusNotFound, "not_found")
			} else {
				wantError(t, rec, http.StatusMethodNotAllowed, "method_not_allowed")
				allow := strings.Split(rec.Header().Get("Allow"), ", ")
				slices.Sort(allow)
				if got := strings.Join(allow, ", "); got != tc.allow {
					t.Errorf("Allow = %q, want %q", got, tc.allow)
				}
			}
			if rec.Header().Get("X-Content-Type-Options") != "nosniff" || rec.Header().Get("X-Request-ID") == "" {
				t.Errorf("error response lacks the common headers: %v", rec.Header())
			}
		})
	}
}
