package verify_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"keygate/api"
	"keygate/tokens"
	"keygate/verify"
	"keygate/verify/accesstoken/accesstokentest"
)

// The attack tables are accesstokentest's: keygate's own verifier
// (tokens/jwt_test.go) runs the same ones.

var asymmetric = []string{tokens.ES256, tokens.EdDSA, tokens.RS256}

func TestVerifyAcceptsKeygateTokens(t *testing.T) {
	for _, alg := range asymmetric {
		t.Run(alg, func(t *testing.T) {
			k := startKeygate(t, alg, &clock{now: t0})
			v := newVerifier(t, k, nil)
			for _, p := range []struct {
				name string
				tok  string
				want verify.Claims
			}{
				{"partner", k.sign(t, k.partner), verify.Claims{Kind: "partner", ClientID: k.partner.ID, PartnerID: k.partner.ID, KeyID: k.partner.KeyID}},
				{"company", k.sign(t, k.company), verify.Claims{Kind: "company", ClientID: k.company.ID, PartnerID: k.partner.ID, CompanyID: k.company.ID, KeyID: k.company.KeyID}},
			} {
				c := mustVerify(t, v, p.tok)
				if c.Subject != p.want.ClientID || c.ClientID != p.want.ClientID || c.Kind != p.want.Kind ||
					c.PartnerID != p.want.PartnerID || c.CompanyID != p.want.CompanyID || c.KeyID != p.want.KeyID {
					t.Errorf("%s claims %+v, want %+v", p.name, c, p.want)
				}
				if !c.ExpiresAt.Equal(t0.Add(testAccessTTL)) || c.Issuer != "keygate" || len(c.Audience) != 1 || c.Audience[0] != "r-auth" {
					t.Errorf("%s registered claims %+v", p.name, c.RegisteredClaims)
				}
			}
			if n := k.fetches.Load(); n != 1 {
				t.Errorf("%d JWK Set fetches, want 1", n)
			}
		})
	}
}

func TestVerifyTimeWindows(t *testing.T) {
	for _, alg := range asymmetric {
		t.Run(alg, func(t *testing.T) {
			k := startKeygate(t, alg, &clock{now: t0})
			v := newVerifier(t, k, nil)
			for _, tc := range accesstokentest.TimeWindows(testAccessTTL, testLeeway) {
				t.Run(tc.Name, func(t *testing.T) {
					tok := k.signAt(t, k.partner, t0.Add(tc.SignAt))
					k.clock.Set(t0.Add(tc.VerifyAt))
					if tc.OK {
						mustVerify(t, v, tok)
					} else {
						mustReject(t, v, tok)
					}
				})
			}
		})
	}
}

func TestVerifyRejectsTampering(t *testing.T) {
	for _, alg := range asymmetric {
		t.Run(alg, func(t *testing.T) {
			k := startKeygate(t, alg, &clock{now: t0})
			v := newVerifier(t, k, nil)
			tok := k.sign(t, k.partner)
			mustVerify(t, v, tok)
			for name, forged := range accesstokentest.Tampered(t, tok, k.sign(t, k.partner)) {
				t.Run(name, func(t *testing.T) { mustReject(t, v, forged) })
			}
		})
	}
}

func TestVerifyRejectsForeignSignatures(t *testing.T) {
	for _, alg := range asymmetric {
		t.Run(alg, func(t *testing.T) {
			k := startKeygate(t, alg, &clock{now: t0})
			v := newVerifier(t, k, nil)
			tok := k.sign(t, k.partner)
			// Another keygate's token names a kid this one never published.
			other := startKeygate(t, alg, &clock{now: t0})
			mustReject(t, v, other.sign(t, other.partner))
			for name, forged := range accesstokentest.ForeignKeys(t, tok) {
				t.Run(name, func(t *testing.T) { mustReject(t, v, forged) })
			}
		})
	}
}

func TestVerifyRejectsAlgorithmConfusion(t *testing.T) {
	for _, alg := range asymmetric {
		t.Run(alg, func(t *testing.T) {
			k := startKeygate(t, alg, &clock{now: t0})
			v := newVerifier(t, k, nil)
			tok := k.sign(t, k.partner)
			for name, forged := range accesstokentest.AlgorithmConfusion(t, tok, k.gw.Keyring.JWKS()) {
				t.Run(name, func(t *testing.T) { mustReject(t, v, forged) })
			}
		})
	}
}

// TestVerifyRejectsHS256 checks that a keygate signing with HS256, which
// publishes no keys, gets none of its tokens accepted.
func TestVerifyRejectsHS256(t *testing.T) {
	k := startKeygate(t, tokens.HS256, &clock{now: t0})
	v := newVerifier(t, k, nil)
	mustReject(t, v, k.sign(t, k.partner))
}

// attacker is a JWK Set the test holds the private key of, served like
// keygate's, so that a forged token's signature is always valid and each
// case isolates one check.
type attacker struct {
	key *ecdsa.PrivateKey
	kid string
	jwk map[string]any
	srv *httptest.Server
}

func newAttacker(t *testing.T) *attacker {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	point, err := key.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	a := &attacker{key: key, kid: "kid_attackertest"}
	a.jwk = map[string]any{"kty": "EC", "crv": "P-256", "x": b64(point[1:33]), "y": b64(point[33:]), "kid": a.kid, "alg": "ES256", "use": "sig"}
	set, err := json.Marshal(map[string]any{"keys": []any{a.jwk}})
	if err != nil {
		t.Fatal(err)
	}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(set)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// sign signs the input with the attacker's key: ES256, or for a header
// naming an HMAC, HMAC with the public key as the secret, which a confused
// verifier would take.
func (a *attacker) sign(t *testing.T, header map[string]any, input string) string {
	t.Helper()
	if alg, _ := header["alg"].(string); alg == "HS256" || alg == "HS384" || alg == "HS512" {
		der, err := x509.MarshalPKIXPublicKey(&a.key.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := jwt.GetSigningMethod(alg).Sign(input, der)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(sig)
	}
	sig, err := jwt.SigningMethodES256.Sign(input, a.key)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(sig)
}

func (a *attacker) forge(t *testing.T, header, claims map[string]any) string {
	t.Helper()
	input := accesstokentest.Encode(t, header) + "." + accesstokentest.Encode(t, claims)
	return input + "." + a.sign(t, header, input)
}

func (a *attacker) verifier(t *testing.T, clk *clock) *verify.Verifier {
	t.Helper()
	return startVerifier(t, verify.Config{JWKSURL: a.srv.URL, Now: clk.Now, Logger: discard}, verify.Timing{})
}

// TestVerifyChecksEveryClaim re-signs real keygate tokens, changed one
// check at a time, with a key the verifier trusts. The unchanged forgeries
// must verify, proving the cases differ only in what they change.
func TestVerifyChecksEveryClaim(t *testing.T) {
	clk := &clock{now: t0}
	k := startKeygate(t, tokens.ES256, clk)
	a := newAttacker(t)
	v := a.verifier(t, clk)
	partnerTok, companyTok := k.sign(t, k.partner), k.sign(t, k.company)
	for _, tc := range accesstokentest.ClaimCases(t0, testLeeway, a.jwk) {
		t.Run(tc.Name, func(t *testing.T) {
			base := partnerTok
			if tc.Company {
				base = companyTok
			}
			h, c := accesstokentest.Header(t, base), accesstokentest.Claims(t, base)
			h["kid"] = a.kid
			tc.Change(h, c)
			forged := a.forge(t, h, c)
			if tc.OK {
				mustVerify(t, v, forged)
			} else {
				mustReject(t, v, forged)
			}
		})
	}
}

func TestVerifyRejectsNonCanonicalEncoding(t *testing.T) {
	clk := &clock{now: t0}
	k := startKeygate(t, tokens.ES256, clk)
	a := newAttacker(t)
	v := a.verifier(t, clk)
	tok := k.sign(t, k.partner)
	h := accesstokentest.Header(t, tok)
	h["kid"] = a.kid
	good, cases := accesstokentest.NonCanonical(t, h, accesstokentest.Claims(t, tok), func(input string) string {
		return a.sign(t, h, input)
	})
	mustVerify(t, v, good)
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) { mustReject(t, v, tok) })
	}
}

func TestVerifyRejectsNonJWTs(t *testing.T) {
	k := startKeygate(t, tokens.ES256, &clock{now: t0})
	v := newVerifier(t, k, nil)
	cases := accesstokentest.NonJWTs(t, k.issued(t))
	for name, in := range cases {
		t.Run(name, func(t *testing.T) { mustReject(t, v, in) })
	}
	// Garbage costs no fetch of the keys: only a well-formed token naming
	// an unknown kid may.
	if n := k.fetches.Load(); n != 1 {
		t.Errorf("%d JWK Set fetches, want 1", n)
	}
}

// TestMiddlewareRefusesAttacks runs the HTTP-level attack table keygate's
// own endpoints answer with their 401 against the middleware, reading
// R-Auth and reading Authorization: every request gets the same 401, and
// the genuine token passes.
func TestMiddlewareRefusesAttacks(t *testing.T) {
	for _, alg := range asymmetric {
		t.Run(alg, func(t *testing.T) {
			clk := &clock{now: t0}
			k := startKeygate(t, alg, clk)
			issued := k.issued(t)
			issued.Foreign = startKeygate(t, alg, clk).sign(t, k.partner)
			cases := accesstokentest.Requests(t, issued)
			for _, header := range []string{"R-Auth", "Authorization"} {
				v := startVerifier(t, verify.Config{JWKSURL: k.jwksURL(), Header: header, Now: clk.Now, Logger: discard}, verify.Timing{})
				h := v.Middleware(whoami)
				genuine := http.Header{"R-Auth": {issued.AccessToken}}
				if header == "Authorization" {
					genuine = http.Header{"Authorization": {"Bearer " + issued.AccessToken}}
				}
				if rec := serve(h, genuine); rec.Code != http.StatusOK {
					t.Fatalf("%s: the genuine token: %d %s", header, rec.Code, rec.Body)
				}
				var first string
				for name, req := range cases {
					rec := serve(h, req)
					checkUnauthorized(t, header+": "+name, rec)
					if first == "" {
						first = rec.Body.String()
					} else if rec.Body.String() != first {
						t.Errorf("%s: %s: body %s differs from %s", header, name, rec.Body, first)
					}
				}
			}
		})
	}
}

// TestKeygateRefusesTheSameAttacks runs the same HTTP-level table against
// keygate's own endpoint, through the handler keygate serve runs: both
// verifiers refuse every case, with one 401 each.
func TestKeygateRefusesTheSameAttacks(t *testing.T) {
	for _, alg := range asymmetric {
		t.Run(alg, func(t *testing.T) {
			clk := &clock{now: t0}
			k := startKeygate(t, alg, clk)
			issued := k.issued(t)
			issued.Foreign = startKeygate(t, alg, clk).sign(t, k.partner)
			h := k.gw.Handler()
			me := func(header http.Header) *httptest.ResponseRecorder {
				req := httptest.NewRequest(http.MethodGet, "/api/v1/auth/me", nil)
				req.Header = header
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				return rec
			}
			if rec := me(http.Header{"R-Auth": {issued.AccessToken}}); rec.Code != http.StatusOK {
				t.Fatalf("the genuine token: %d %s", rec.Code, rec.Body)
			}
			for name, req := range accesstokentest.Requests(t, issued) {
				rec := me(req)
				var body api.Error
				if err := json.Unmarshal(rec.Body.Bytes(), &body); rec.Code != http.StatusUnauthorized || err != nil ||
					body.Error != api.CodeUnauthorized || body.Message != api.UnauthorizedMessage {
					t.Errorf("%s: %d %s", name, rec.Code, rec.Body)
				}
			}
		})
	}
}
