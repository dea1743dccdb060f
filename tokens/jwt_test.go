package tokens_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"keygate/keys"
	"keygate/tokens"
)

var asymmetric = []string{tokens.ES256, tokens.EdDSA, tokens.RS256}

func TestSignAndVerify(t *testing.T) {
	for _, alg := range tokens.Algorithms {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t, withAlg(alg))
			partner := e.newPartner(t, "Acme")
			company := e.newCompany(t, partner, "Widgets")

			for _, p := range []principal{partner, company} {
				tok, exp, err := e.jwt.Sign(p.Principal, e.clock.Now())
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

func TestVerifyTimeWindows(t *testing.T) {
	cases := []struct {
		name           string
		signAt, verify time.Duration // after t0
		ok             bool
	}{
		{"fresh", 0, 0, true},
		{"last second before expiry", 0, testAccessTTL - time.Second, true},
		{"expired within leeway", 0, testAccessTTL + testLeeway - time.Second, true},
		{"expired beyond leeway", 0, testAccessTTL + testLeeway, false},
		{"expired long ago", 0, 24 * time.Hour, false},
		{"not yet valid within leeway", testLeeway, 0, true},
		{"not yet valid beyond leeway", testLeeway + time.Second, 0, false},
		{"issued an hour ahead", time.Hour, 0, false},
	}
	for _, alg := range tokens.Algorithms {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t, withAlg(alg))
			p := e.newPartner(t, "Acme")
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					tok, _, err := e.jwt.Sign(p.Principal, t0.Add(tc.signAt))
					if err != nil {
						t.Fatalf("Sign: %v", err)
					}
					e.clock.Set(t0.Add(tc.verify))
					if tc.ok {
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
			h, c, s := splitJWT(t, tok)
			other := e.sign(t, p.Principal)
			_, _, otherSig := splitJWT(t, other)

			withClaims := func(change func(c map[string]any)) string {
				m := claimsOf(t, tok)
				change(m)
				return h + "." + encodeSegment(t, m) + "." + s
			}
			withHeader := func(change func(h map[string]any)) string {
				m := headerOf(t, tok)
				change(m)
				return encodeSegment(t, m) + "." + c + "." + s
			}
			exp, err := claimsOf(t, tok)["exp"].(json.Number).Int64()
			if err != nil {
				t.Fatal(err)
			}
			mid := len(s) / 2
			flipped := s[:mid] + string("AB"[boolIndex(s[mid] == 'A')]) + s[mid+1:]

			cases := map[string]string{
				"stripped signature":          h + "." + c + ".",
				"no signature segment":        h + "." + c,
				"altered signature":           h + "." + c + "." + flipped,
				"signature of another token":  h + "." + c + "." + otherSig,
				"signature with unused bits":  h + "." + c + "." + flipUnusedBit(t, s),
				"padded signature":            h + "." + c + "." + padded(s),
				"padded claims":               h + "." + padded(c) + "." + s,
				"newline in signature":        h + "." + c + "." + s[:mid] + "\n" + s[mid:],
				"carriage return in claims":   h + "." + c[:4] + "\r" + c[4:] + "." + s,
				"signature in std base64":     h + "." + c + "." + strings.NewReplacer("-", "+", "_", "/").Replace(s) + "+/",
				"exp extended":                withClaims(func(m map[string]any) { m["exp"] = exp + 3600 }),
				"exp removed":                 withClaims(func(m map[string]any) { delete(m, "exp") }),
				"aud changed":                 withClaims(func(m map[string]any) { m["aud"] = "billing" }),
				"kind changed":                withClaims(func(m map[string]any) { m["kind"] = "company"; m["company_id"] = m["sub"] }),
				"sub changed":                 withClaims(func(m map[string]any) { m["sub"] = "par_other"; m["client_id"] = "par_other" }),
				"alg none":                    withHeader(func(m map[string]any) { m["alg"] = "none" }),
				"alg changed":                 withHeader(func(m map[string]any) { m["alg"] = otherAlg(alg) }),
				"kid unknown":                 withHeader(func(m map[string]any) { m["kid"] = "kid_unknown" }),
				"kid path":                    withHeader(func(m map[string]any) { m["kid"] = "../../etc/passwd" }),
				"jku added":                   withHeader(func(m map[string]any) { m["jku"] = "https://attacker.example/jwks.json" }),
				"typ changed":                 withHeader(func(m map[string]any) { m["typ"] = "JWT" }),
				"header and claims swapped":   c + "." + h + "." + s,
				"token twice":                 tok + tok,
				"token with trailing dot":     tok + ".",
				"token with leading space":    " " + tok,
				"token with trailing newline": tok + "\n",
			}
			for _, none := range []string{"none", "None", "NONE", "nOnE"} {
				hdr := encodeSegment(t, map[string]any{"alg": none, "kid": headerOf(t, tok)["kid"], "typ": "at+jwt"})
				cases["alg "+none+" unsigned"] = hdr + "." + c + "."
				cases["alg "+none+" with signature"] = hdr + "." + c + "." + s
			}
			for name, forged := range cases {
				t.Run(name, func(t *testing.T) { mustReject(t, e.jwt, forged) })
			}
		})
	}
}

func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}

func otherAlg(alg string) string {
	if alg == tokens.ES256 {
		return tokens.RS256
	}
	return tokens.ES256
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

			var key any
			switch alg {
			case tokens.ES256:
				key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			case tokens.EdDSA:
				_, key, _ = ed25519.GenerateKey(rand.Reader)
			case tokens.RS256:
				key, _ = rsa.GenerateKey(rand.Reader, 2048)
			case tokens.HS256:
				key = []byte("an-attacker-secret-0123456789abcdef-0123456")
			}
			forged := jwt.NewWithClaims(jwt.GetSigningMethod(alg), jwt.MapClaims(claimsOf(t, tok)))
			maps.Copy(forged.Header, headerOf(t, tok))
			signed, err := forged.SignedString(key)
			if err != nil {
				t.Fatal(err)
			}
			mustReject(t, e.jwt, signed)
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
			jwks := parseJWKS(t, e.ring.JWKS())
			pub := publicKeyOf(t, jwks[0])
			der, err := x509.MarshalPKIXPublicKey(pub)
			if err != nil {
				t.Fatal(err)
			}
			jwkJSON, err := json.Marshal(jwks[0])
			if err != nil {
				t.Fatal(err)
			}
			secrets := map[string][]byte{
				"PKIX DER":     der,
				"PEM":          pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
				"PEM no final": []byte(strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))),
				"JWK JSON":     jwkJSON,
				"JWKS":         e.ring.JWKS(),
			}
			switch pub := pub.(type) {
			case *ecdsa.PublicKey:
				raw, err := pub.Bytes()
				if err != nil {
					t.Fatal(err)
				}
				secrets["uncompressed point"] = raw
			case ed25519.PublicKey:
				secrets["raw key"] = pub
			case *rsa.PublicKey:
				secrets["PKCS1 DER"] = x509.MarshalPKCS1PublicKey(pub)
			}
			header := headerOf(t, tok)
			header["alg"] = tokens.HS256
			for name, secret := range secrets {
				t.Run(name, func(t *testing.T) {
					mustReject(t, e.jwt, forgeHS256(t, header, claimsOf(t, tok), secret))
				})
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
	now := t0.Unix()
	leeway := int64(testLeeway / time.Second)

	type change func(h, c map[string]any)
	cases := []struct {
		name    string
		company bool // start from the company token
		change  change
		ok      bool
	}{
		{"unchanged partner token", false, func(h, c map[string]any) {}, true},
		{"unchanged company token", true, func(h, c map[string]any) {}, true},
		{"typ upper case", false, func(h, c map[string]any) { h["typ"] = "AT+JWT" }, true},
		{"typ as media type", false, func(h, c map[string]any) { h["typ"] = "application/at+jwt" }, true},
		{"unknown extra claim", false, func(h, c map[string]any) { c["scope"] = "admin" }, true},

		{"alg none", false, func(h, c map[string]any) { h["alg"] = "none" }, false},
		{"alg None", false, func(h, c map[string]any) { h["alg"] = "None" }, false},
		{"alg NONE", false, func(h, c map[string]any) { h["alg"] = "NONE" }, false},
		{"alg nOnE", false, func(h, c map[string]any) { h["alg"] = "nOnE" }, false},
		{"alg empty", false, func(h, c map[string]any) { h["alg"] = "" }, false},
		{"alg missing", false, func(h, c map[string]any) { delete(h, "alg") }, false},
		{"alg not a string", false, func(h, c map[string]any) { h["alg"] = 256 }, false},
		{"alg HS384 with the same secret", false, func(h, c map[string]any) { h["alg"] = "HS384" }, false},
		{"alg HS512 with the same secret", false, func(h, c map[string]any) { h["alg"] = "HS512" }, false},
		{"alg hs256 lower case", false, func(h, c map[string]any) { h["alg"] = "hs256" }, false},
		{"kid unknown", false, func(h, c map[string]any) { h["kid"] = "kid_unknown" }, false},
		{"kid path", false, func(h, c map[string]any) { h["kid"] = "../../etc/passwd" }, false},
		{"kid upper case", false, func(h, c map[string]any) { h["kid"] = strings.ToUpper(h["kid"].(string)) }, false},
		{"kid empty", false, func(h, c map[string]any) { h["kid"] = "" }, false},
		{"kid missing", false, func(h, c map[string]any) { delete(h, "kid") }, false},
		{"kid not a string", false, func(h, c map[string]any) { h["kid"] = 1 }, false},
		{"jku", false, func(h, c map[string]any) { h["jku"] = "https://attacker.example/jwks.json" }, false},
		{"x5u", false, func(h, c map[string]any) { h["x5u"] = "https://attacker.example/cert.pem" }, false},
		{"jwk", false, func(h, c map[string]any) {
			h["jwk"] = map[string]any{"kty": "oct", "k": b64.EncodeToString([]byte(testHMACSecret))}
		}, false},
		{"x5c", false, func(h, c map[string]any) { h["x5c"] = []string{"MIIBszCCAVmgAwIBAgIU"} }, false},
		{"crit", false, func(h, c map[string]any) { h["crit"] = []string{"exp"} }, false},
		{"typ JWT", false, func(h, c map[string]any) { h["typ"] = "JWT" }, false},
		{"typ empty", false, func(h, c map[string]any) { h["typ"] = "" }, false},
		{"typ missing", false, func(h, c map[string]any) { delete(h, "typ") }, false},
		{"typ not a string", false, func(h, c map[string]any) { h["typ"] = 1 }, false},
		{"typ with suffix", false, func(h, c map[string]any) { h["typ"] = "at+jwt; x=y" }, false},

		{"iss wrong", false, func(h, c map[string]any) { c["iss"] = "evil" }, false},
		{"iss missing", false, func(h, c map[string]any) { delete(c, "iss") }, false},
		{"aud wrong", false, func(h, c map[string]any) { c["aud"] = "billing" }, false},
		{"aud wrong in a list", false, func(h, c map[string]any) { c["aud"] = []string{"billing"} }, false},
		{"aud missing", false, func(h, c map[string]any) { delete(c, "aud") }, false},
		{"exp missing", false, func(h, c map[string]any) { delete(c, "exp") }, false},
		{"exp null", false, func(h, c map[string]any) { c["exp"] = nil }, false},
		{"exp as a string", false, func(h, c map[string]any) { c["exp"] = strconv.FormatInt(now+600, 10) }, false},
		{"exp as a string with upper-case name", false, func(h, c map[string]any) {
			delete(c, "exp")
			c["EXP"] = strconv.FormatInt(now+600, 10)
		}, false},
		{"exp expired within leeway", false, func(h, c map[string]any) {
			c["iat"], c["nbf"], c["exp"] = now-900, now-900, now-leeway+1
		}, true},
		{"exp expired beyond leeway", false, func(h, c map[string]any) {
			c["iat"], c["nbf"], c["exp"] = now-900, now-900, now-leeway
		}, false},
		{"nbf ahead within leeway", false, func(h, c map[string]any) { c["nbf"] = now + leeway }, true},
		{"nbf ahead beyond leeway", false, func(h, c map[string]any) { c["nbf"] = now + leeway + 1 }, false},
		{"nbf missing", false, func(h, c map[string]any) { delete(c, "nbf") }, false},
		{"nbf as a string", false, func(h, c map[string]any) { c["nbf"] = strconv.FormatInt(now, 10) }, false},
		{"iat ahead within leeway", false, func(h, c map[string]any) { c["iat"] = now + leeway }, true},
		{"iat ahead beyond leeway", false, func(h, c map[string]any) { c["iat"] = now + leeway + 1 }, false},
		{"iat missing", false, func(h, c map[string]any) { delete(c, "iat") }, false},
		{"iat as a string", false, func(h, c map[string]any) { c["iat"] = strconv.FormatInt(now, 10) }, false},

		{"sub changed alone", false, func(h, c map[string]any) { c["sub"] = "par_other" }, false},
		{"sub missing", false, func(h, c map[string]any) { delete(c, "sub") }, false},
		{"client_id missing", false, func(h, c map[string]any) { delete(c, "client_id") }, false},
		{"jti missing", false, func(h, c map[string]any) { delete(c, "jti") }, false},
		{"key_id missing", false, func(h, c map[string]any) { delete(c, "key_id") }, false},
		{"partner_id missing", false, func(h, c map[string]any) { delete(c, "partner_id") }, false},
		{"partner_id differs from partner sub", false, func(h, c map[string]any) { c["partner_id"] = "par_other" }, false},
		{"kind unknown", false, func(h, c map[string]any) { c["kind"] = "operator" }, false},
		{"kind missing", false, func(h, c map[string]any) { delete(c, "kind") }, false},
		{"kind company without company_id", false, func(h, c map[string]any) { c["kind"] = "company" }, false},
		{"partner with company_id", false, func(h, c map[string]any) { c["company_id"] = "com_x" }, false},
		{"company_id differs from company sub", true, func(h, c map[string]any) { c["company_id"] = "com_other" }, false},
		{"company kind changed to partner", true, func(h, c map[string]any) { c["kind"] = "partner" }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := partnerTok
			if tc.company {
				base = companyTok
			}
			h, c := headerOf(t, base), claimsOf(t, base)
			tc.change(h, c)
			forged := forgeHMAC(t, h, c, secret)
			if tc.ok {
				mustVerify(t, e.jwt, forged)
			} else {
				mustReject(t, e.jwt, forged)
			}
		})
	}
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
	h, c := headerOf(t, tok), claimsOf(t, tok)
	// A member of the right length leaves unused bits in the last character.
	hSeg, cSeg := unusedBitsSegment(t, h), unusedBitsSegment(t, c)
	signed := func(hs, cs string) string { return hs + "." + cs + "." + hs256(hs+"."+cs, secret) }

	mustVerify(t, e.jwt, signed(hSeg, cSeg))
	good := signed(hSeg, cSeg)
	gh, gc, gs := splitJWT(t, good)
	cases := map[string]string{
		"header with unused bits set": signed(flipUnusedBit(t, hSeg), cSeg),
		"claims with unused bits set": signed(hSeg, flipUnusedBit(t, cSeg)),
		"signature with unused bits":  gh + "." + gc + "." + flipUnusedBit(t, gs),
		"padded header":               signed(padded(hSeg), cSeg),
		"padded claims":               signed(hSeg, padded(cSeg)),
		"padded signature":            gh + "." + gc + "." + padded(gs),
		"newline in claims":           signed(hSeg, cSeg[:5]+"\n"+cSeg[5:]),
		"newline in signature":        gh + "." + gc + "." + gs[:5] + "\n" + gs[5:],
		"carriage return in header":   signed(hSeg[:5]+"\r"+hSeg[5:], cSeg),
		"claims in std base64":        signed(hSeg, b64std(t, c)),
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) { mustReject(t, e.jwt, tok) })
	}
}

// unusedBitsSegment encodes m, adding a padding member until the encoding's
// last character carries unused bits.
func unusedBitsSegment(tb testing.TB, m map[string]any) string {
	tb.Helper()
	m = maps.Clone(m)
	for i := range 3 {
		m["pad"] = strings.Repeat("x", i)
		if s := encodeSegment(tb, m); len(s)%4 >= 2 {
			return s
		}
	}
	tb.Fatal("no padding gives unused bits")
	return ""
}

// b64std encodes m in standard base64 with a '+' or '/' in it.
func b64std(tb testing.TB, m map[string]any) string {
	tb.Helper()
	m = maps.Clone(m)
	for i := range 64 {
		m["pad"] = strings.Repeat("?", i) + ">"
		seg := encodeSegment(tb, m)
		if strings.ContainsAny(seg, "-_") {
			return strings.NewReplacer("-", "+", "_", "/").Replace(seg)
		}
	}
	tb.Fatal("no standard-base64-only encoding found")
	return ""
}

func TestVerifyRejectsNonJWTs(t *testing.T) {
	e := newEnv(t)
	p := e.newPartner(t, "Acme")
	pair := e.login(t, p)
	tok := pair.JWT.Reveal()
	h, c, s := splitJWT(t, tok)
	huge := strings.Repeat("A", 1<<20)
	cases := map[string]string{
		"empty":                      "",
		"one dot":                    ".",
		"two dots":                   "..",
		"three dots":                 "...",
		"100,000 dots":               strings.Repeat(".", 100_000),
		"1 MB of base64":             huge,
		"1 MB claims":                h + "." + huge + "." + s,
		"1 MB signature":             h + "." + c + "." + huge,
		"1 MB of dots and base64":    strings.Repeat("a.", 1<<19),
		"refresh token":              pair.RefreshToken.Reveal(),
		"API key":                    p.apiKey,
		"bearer prefix":              "Bearer " + tok,
		"JSON":                       `{"alg":"none"}`,
		"header only":                h,
		"four segments":              tok + ".e30",
		"five segments (JWE shaped)": h + "." + c + "." + s + "." + s + "." + s,
	}
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
