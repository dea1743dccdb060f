package tokens_test

import (
	"crypto"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"keygate/keys"
	"keygate/tokens"
	"keygate/verify/accesstoken/accesstokentest"
)

var asymmetric = []string{tokens.ES256, tokens.EdDSA, tokens.RS256}

func TestSignAndVerify(t *testing.T) {
	for _, alg := range tokens.Algorithms {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t, withAlg(alg))
			partner := e.newPartner(t, "Acme")
			company := e.newCompany(t, partner, "Widgets")

			for _, p := range []principal{partner, company} {
				tok, exp, err := e.jwt.Sign(p.Principal, "", e.clock.Now())
				if err != nil {
					t.Fatalf("Sign: %v", err)
				}
				if want := t0.Add(testAccessTTL); !exp.Equal(want) {
					t.Errorf("Sign returned exp %v, want %v", exp, want)
				}

				h := headerOf(t, tok)
				if got := slices.Sorted(maps.Keys(h)); !slices.Equal(got, []string{"alg", "kid", "typ"}) {
					t.Errorf("header members %v, want alg, kid, typ", got)
				}
				if h["alg"] != alg || h["typ"] != "at+jwt" {
					t.Errorf("header %v, want alg %s and typ at+jwt", h, alg)
				}
				kid, _ := h["kid"].(string)
				if alg == tokens.HS256 {
					if !strings.HasPrefix(kid, "hs256-") {
						t.Errorf("HS256 kid %q", kid)
					}
				} else if want := onlyKID(t, e); kid != want {
					t.Errorf("kid %q, want the signing key %q", kid, want)
				}

				c := mustVerify(t, e.jwt, tok)
				checks := []struct {
					name      string
					got, want any
				}{
					{"iss", c.Issuer, testIssuer},
					{"aud", []string(c.Audience), []string{testAudience}},
					{"sub", c.Subject, p.ID},
					{"client_id", c.ClientID, p.ID},
					{"iat", c.IssuedAt.Time, t0},
					{"nbf", c.NotBefore.Time, t0},
					{"exp", c.ExpiresAt.Time, t0.Add(testAccessTTL)},
					{"kind", c.Kind, string(p.Kind)},
					{"partner_id", c.PartnerID, partner.ID},
					{"company_id", c.CompanyID, p.CompanyID},
					{"key_id", c.KeyID, p.KeyID},
					{"principal", c.Principal(), p.Principal},
				}
				for _, ch := range checks {
					if !equalValues(ch.got, ch.want) {
						t.Errorf("%s %s = %v, want %v", p.Kind, ch.name, ch.got, ch.want)
					}
				}
				if c.ID == "" {
					t.Error("no jti")
				}

				want := []string{"aud", "client_id", "exp", "iat", "iss", "jti", "key_id", "kind", "nbf", "partner_id", "sub"}
				if p.Kind == keys.KindCompany {
					want = append(want, "company_id")
					slices.Sort(want)
				}
				if got := slices.Sorted(maps.Keys(claimsOf(t, tok))); !slices.Equal(got, want) {
					t.Errorf("%s claims %v, want %v", p.Kind, got, want)
				}
			}
			if company.CompanyID == "" || company.PartnerID != partner.ID {
				t.Fatalf("company principal %+v", company.Principal)
			}
		})
	}
}

func equalValues(a, b any) bool {
	if ta, ok := a.(time.Time); ok {
		tb, ok := b.(time.Time)
		return ok && ta.Equal(tb)
	}
	if sa, ok := a.([]string); ok {
		sb, ok := b.([]string)
		return ok && slices.Equal(sa, sb)
	}
	return a == b
}

// onlyKID returns the kid of the environment's single signing key.
func onlyKID(tb testing.TB, e *env) string {
	tb.Helper()
	list, err := e.ring.List(tb.Context())
	if err != nil {
		tb.Fatalf("List: %v", err)
	}
	if len(list) != 1 {
		tb.Fatalf("%d signing keys, want 1", len(list))
	}
	return list[0].KID
}

func TestJTIUnique(t *testing.T) {
	e := newEnv(t)
	p := e.newPartner(t, "Acme")
	seen := make(map[string]bool)
	for range 500 {
		c := mustVerify(t, e.jwt, e.sign(t, p.Principal))
		if seen[c.ID] {
			t.Fatalf("jti %q issued twice", c.ID)
		}
		seen[c.ID] = true
	}
}

// TestJWKSVerifiesTokens checks the published keys the way a downstream
// service does: from the JWK Set alone, with only the configured algorithm.
func TestJWKSVerifiesTokens(t *testing.T) {
	for _, alg := range asymmetric {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t, withAlg(alg))
			tok := e.sign(t, e.newPartner(t, "Acme").Principal)
			published := map[string]crypto.PublicKey{}
			for _, k := range parseJWKS(t, e.ring.JWKS()) {
				published[k["kid"].(string)] = publicKeyOf(t, k)
			}
			_, err := jwt.Parse(tok, func(tk *jwt.Token) (any, error) {
				key, ok := published[tk.Header["kid"].(string)]
				if !ok {
					return nil, errors.New("kid not in JWKS")
				}
				return key, nil
			}, jwt.WithValidMethods([]string{alg}), jwt.WithTimeFunc(e.clock.Now), jwt.WithAudience(testAudience), jwt.WithIssuer(testIssuer))
			if err != nil {
				t.Fatalf("token does not verify against the JWKS: %v", err)
			}
		})
	}
}

// The attack tables below are accesstokentest's: verify.Verifier, the
// downstream verifier, runs the same ones.

func TestVerifyTimeWindows(t *testing.T) {
	for _, alg := range tokens.Algorithms {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t, withAlg(alg))
			p := e.newPartner(t, "Acme")
			for _, tc := range accesstokentest.TimeWindows(testAccessTTL, testLeeway) {
				t.Run(tc.Name, func(t *testing.T) {
					tok, _, err := e.jwt.Sign(p.Principal, "", t0.Add(tc.SignAt))
					if err != nil {
						t.Fatalf("Sign: %v", err)
					}
					e.clock.Set(t0.Add(tc.VerifyAt))
					if tc.OK {
						mustVerify(t, e.jwt, tok)
					} else {
						mustReject(t, e.jwt, tok)
					}
				})
			}
		})
	}
}

// TestVerifyRejectsTampering alters real tokens of every algorithm. Each
// altered token keeps the original signature (or drops it), so only the
// signature check, or a header check before it, can refuse it.
func TestVerifyRejectsTampering(t *testing.T) {
	for _, alg := range tokens.Algorithms {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t, withAlg(alg))
			p := e.newPartner(t, "Acme")
			tok := e.sign(t, p.Principal)
			mustVerify(t, e.jwt, tok)
			for name, forged := range accesstokentest.Tampered(t, tok, e.sign(t, p.Principal)) {
				t.Run(name, func(t *testing.T) { mustReject(t, e.jwt, forged) })
			}
		})
	}
}

// TestVerifyRejectsForeignSignatures signs well-formed tokens with keys the
// gateway does not hold: another gateway's, or an attacker's under our kid.
func TestVerifyRejectsForeignSignatures(t *testing.T) {
	for _, alg := range tokens.Algorithms {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t, withAlg(alg))
			p := e.newPartner(t, "Acme")
			tok := e.sign(t, p.Principal)

			other := newEnv(t, withAlg(alg), func(c *envConfig) {
				c.masterKey, c.hmacSecret = otherMasterKey, "another-hmac-secret-0123456789abcdef-01234"
			})
			mustReject(t, e.jwt, other.sign(t, p.Principal))
			for name, forged := range accesstokentest.ForeignKeys(t, tok) {
				t.Run(name, func(t *testing.T) { mustReject(t, e.jwt, forged) })
			}
		})
	}
}

// TestVerifyRejectsAlgorithmConfusion signs HS256 tokens with every
// encoding of the public key a confused verifier might use as an HMAC secret.
func TestVerifyRejectsAlgorithmConfusion(t *testing.T) {
	for _, alg := range asymmetric {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t, withAlg(alg))
			tok := e.sign(t, e.newPartner(t, "Acme").Principal)
			for name, forged := range accesstokentest.AlgorithmConfusion(t, tok, e.ring.JWKS()) {
				t.Run(name, func(t *testing.T) { mustReject(t, e.jwt, forged) })
			}
		})
	}
}

// TestVerifyChecksEveryClaim forges HS256 tokens with the gateway's own
// secret, so the signature is always valid and each case isolates one check.
// The unchanged forgery must verify, proving the cases differ only in what
// they change.
func TestVerifyChecksEveryClaim(t *testing.T) {
	e := newEnv(t, withAlg(tokens.HS256))
	secret := []byte(testHMACSecret)
	partner := e.newPartner(t, "Acme")
	company := e.newCompany(t, partner, "Widgets")
	partnerTok := e.sign(t, partner.Principal)
	companyTok := e.sign(t, company.Principal)
	embedded := map[string]any{"kty": "oct", "k": b64.EncodeToString(secret)}

	for _, tc := range accesstokentest.ClaimCases(t0, testLeeway, embedded) {
		t.Run(tc.Name, func(t *testing.T) {
			base := partnerTok
			if tc.Company {
				base = companyTok
			}
			h, c := headerOf(t, base), claimsOf(t, base)
			tc.Change(h, c)
			forged := forgeHMAC(t, h, c, secret)
			if tc.OK {
				mustVerify(t, e.jwt, forged)
			} else {
				mustReject(t, e.jwt, forged)
			}
		})
	}
}

// boolIndex is 1 for true, 0 for false.
func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}

// forgeHMAC signs with the HMAC its header names (HS256 for anything else),
// so that a wrong alg is refused for being wrong, not for a bad signature.
func forgeHMAC(tb testing.TB, header, claims map[string]any, secret []byte) string {
	tb.Helper()
	alg, _ := header["alg"].(string)
	switch alg {
	case "HS384", "HS512":
		t := jwt.NewWithClaims(jwt.GetSigningMethod(alg), jwt.MapClaims(claims))
		t.Header = header
		s, err := t.SignedString(secret)
		if err != nil {
			tb.Fatal(err)
		}
		return s
	}
	return forgeHS256(tb, header, claims, secret)
}

// TestVerifyRejectsNonCanonicalEncoding re-signs non-canonical encodings of
// a valid token with the gateway's own secret: only the strict decoding can
// refuse them.
func TestVerifyRejectsNonCanonicalEncoding(t *testing.T) {
	e := newEnv(t, withAlg(tokens.HS256))
	secret := []byte(testHMACSecret)
	tok := e.sign(t, e.newPartner(t, "Acme").Principal)
	good, cases := accesstokentest.NonCanonical(t, headerOf(t, tok), claimsOf(t, tok), func(input string) string {
		return hs256(input, secret)
	})
	mustVerify(t, e.jwt, good)
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) { mustReject(t, e.jwt, tok) })
	}
}

func TestVerifyRejectsNonJWTs(t *testing.T) {
	e := newEnv(t)
	p := e.newPartner(t, "Acme")
	pair := e.login(t, p)
	cases := accesstokentest.NonJWTs(t, accesstokentest.Issued{AccessToken: pair.JWT.Reveal(), RefreshToken: pair.RefreshToken.Reveal(), APIKey: p.apiKey})
	for name, in := range cases {
		t.Run(name, func(t *testing.T) { mustReject(t, e.jwt, in) })
	}
}

func TestNewJWTRefusesOtherAlgorithms(t *testing.T) {
	e := newEnv(t)
	for _, alg := range []string{"", "none", "None", "es256", "ES384", "HS384", "HS512", "PS256", "RS512"} {
		cfg := tokens.JWTConfig{Issuer: testIssuer, Audience: testAudience, Algorithm: alg, AccessTTL: time.Minute}
		if _, err := tokens.NewJWT(cfg, e.ring, e.clock.Now); err == nil {
			t.Errorf("NewJWT accepted algorithm %q", alg)
		}
	}
}
