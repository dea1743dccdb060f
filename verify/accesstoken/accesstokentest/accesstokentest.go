// Package accesstokentest holds the attacks every verifier of R-Auth access
// tokens must refuse, as tables of forged tokens built from real ones.
// keygate's own verifier (tokens.JWT) and the downstream verifier
// (verify.Verifier) run the same tables, so a case added here is checked
// against both. It is for tests only.
package accesstokentest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"maps"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var b64 = base64.RawURLEncoding

// Split returns a token's three segments.
func Split(tb testing.TB, tok string) (header, claims, sig string) {
	tb.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		tb.Fatalf("token has %d segments", len(parts))
	}
	return parts[0], parts[1], parts[2]
}

// Decode decodes a JSON segment, keeping numbers as json.Number so that
// encoding it again changes nothing.
func Decode(tb testing.TB, seg string) map[string]any {
	tb.Helper()
	raw, err := b64.Strict().DecodeString(seg)
	if err != nil {
		tb.Fatalf("decoding segment: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	m := map[string]any{}
	if err := dec.Decode(&m); err != nil {
		tb.Fatalf("decoding segment JSON: %v", err)
	}
	return m
}

// Encode encodes v as a JSON segment.
func Encode(tb testing.TB, v any) string {
	tb.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		tb.Fatalf("encoding segment: %v", err)
	}
	return b64.EncodeToString(raw)
}

// Header returns a token's decoded header.
func Header(tb testing.TB, tok string) map[string]any {
	tb.Helper()
	h, _, _ := Split(tb, tok)
	return Decode(tb, h)
}

// Claims returns a token's decoded claims.
func Claims(tb testing.TB, tok string) map[string]any {
	tb.Helper()
	_, c, _ := Split(tb, tok)
	return Decode(tb, c)
}

// HS256 signs a signing input (header.claims) with an HMAC secret.
func HS256(input string, secret []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(input))
	return b64.EncodeToString(m.Sum(nil))
}

// ForgeHS256 builds a token from header and claims and signs it with the
// secret, whatever alg the header names.
func ForgeHS256(tb testing.TB, header, claims map[string]any, secret []byte) string {
	tb.Helper()
	input := Encode(tb, header) + "." + Encode(tb, claims)
	return input + "." + HS256(input, secret)
}

// ForgeHMAC signs with the HMAC its header names (HS256 for anything
// else), so that a wrong alg is refused for being wrong, not for a bad
// signature.
func ForgeHMAC(tb testing.TB, header, claims map[string]any, secret []byte) string {
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
	return ForgeHS256(tb, header, claims, secret)
}

// FlipUnusedBit changes the last character of a base64url segment so that
// it decodes to the same bytes when trailing bits are ignored: only strict
// decoding tells the two apart.
func FlipUnusedBit(tb testing.TB, seg string) string {
	tb.Helper()
	if len(seg)%4 == 0 || len(seg)%4 == 1 {
		tb.Fatalf("segment of length %d has no unused bits", len(seg))
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, seg[len(seg)-1])
	return seg[:len(seg)-1] + string(alphabet[i^1])
}

// Padded adds the '=' padding that base64url in JWTs must not carry.
func Padded(seg string) string {
	return seg + strings.Repeat("=", (4-len(seg)%4)%4)
}

// Tampered alters tok, a real token, without re-signing it: each altered
// token keeps tok's signature (or drops it, or takes that of other, another
// token of the same signer), so only the signature check, or a check of the
// header before it, can refuse it.
func Tampered(tb testing.TB, tok, other string) map[string]string {
	tb.Helper()
	h, c, s := Split(tb, tok)
	_, _, otherSig := Split(tb, other)
	alg, _ := Header(tb, tok)["alg"].(string)

	withClaims := func(change func(c map[string]any)) string {
		m := Claims(tb, tok)
		change(m)
		return h + "." + Encode(tb, m) + "." + s
	}
	withHeader := func(change func(h map[string]any)) string {
		m := Header(tb, tok)
		change(m)
		return Encode(tb, m) + "." + c + "." + s
	}
	exp, err := Claims(tb, tok)["exp"].(json.Number).Int64()
	if err != nil {
		tb.Fatal(err)
	}
	mid := len(s) / 2
	flipped := s[:mid] + string("AB"[boolIndex(s[mid] == 'A')]) + s[mid+1:]

	cases := map[string]string{
		"stripped signature":          h + "." + c + ".",
		"no signature segment":        h + "." + c,
		"altered signature":           h + "." + c + "." + flipped,
		"signature of another token":  h + "." + c + "." + otherSig,
		"signature with unused bits":  h + "." + c + "." + FlipUnusedBit(tb, s),
		"padded signature":            h + "." + c + "." + Padded(s),
		"padded claims":               h + "." + Padded(c) + "." + s,
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
		hdr := Encode(tb, map[string]any{"alg": none, "kid": Header(tb, tok)["kid"], "typ": "at+jwt"})
		cases["alg "+none+" unsigned"] = hdr + "." + c + "."
		cases["alg "+none+" with signature"] = hdr + "." + c + "." + s
	}
	return cases
}

func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}

func otherAlg(alg string) string {
	if alg == "ES256" {
		return "RS256"
	}
	return "ES256"
}

// ForeignKeys re-signs tok's header and claims, unchanged, with keys of its
// algorithm that no verifier holds: an attacker's key under the real kid.
func ForeignKeys(tb testing.TB, tok string) map[string]string {
	tb.Helper()
	header := Header(tb, tok)
	alg, _ := header["alg"].(string)
	return map[string]string{"attacker's key under the real kid": signForeign(tb, alg, header, Claims(tb, tok))}
}

// signForeign signs header and claims with a new key of alg, one no
// verifier holds.
func signForeign(tb testing.TB, alg string, header, claims map[string]any) string {
	tb.Helper()
	var key any
	var err error
	switch alg {
	case "ES256":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	case "RS256":
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case "HS256":
		key = []byte("an-attacker-secret-0123456789abcdef-0123456")
	default:
		tb.Fatalf("token of algorithm %q", alg)
	}
	if err != nil {
		tb.Fatal(err)
	}
	forged := jwt.NewWithClaims(jwt.GetSigningMethod(alg), jwt.MapClaims(claims))
	forged.Header = map[string]any{}
	maps.Copy(forged.Header, header)
	forged.Header["alg"] = alg
	signed, err := forged.SignedString(key)
	if err != nil {
		tb.Fatal(err)
	}
	return signed
}

// AlgorithmConfusion signs HS256 tokens with every encoding of the public
// key a confused verifier might use as an HMAC secret. jwks is the JWK Set
// that publishes the key of tok, an asymmetric token.
func AlgorithmConfusion(tb testing.TB, tok string, jwks []byte) map[string]string {
	tb.Helper()
	jwk := jwkOf(tb, tok, jwks)
	pub := PublicKey(tb, jwk)
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	jwkJSON, err := json.Marshal(jwk)
	if err != nil {
		tb.Fatal(err)
	}
	secrets := map[string][]byte{
		"PKIX DER":     der,
		"PEM":          pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
		"PEM no final": []byte(strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))),
		"JWK JSON":     jwkJSON,
		"JWKS":         jwks,
	}
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		raw, err := pub.Bytes()
		if err != nil {
			tb.Fatal(err)
		}
		secrets["uncompressed point"] = raw
	case ed25519.PublicKey:
		secrets["raw key"] = pub
	case *rsa.PublicKey:
		secrets["PKCS1 DER"] = x509.MarshalPKCS1PublicKey(pub)
	}
	header := Header(tb, tok)
	header["alg"] = "HS256"
	cases := make(map[string]string, len(secrets))
	for name, secret := range secrets {
		cases[name] = ForgeHS256(tb, header, Claims(tb, tok), secret)
	}
	return cases
}

// jwkOf is the member of the JWK Set jwks that publishes tok's key.
func jwkOf(tb testing.TB, tok string, jwks []byte) map[string]any {
	tb.Helper()
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil || len(set.Keys) == 0 {
		tb.Fatalf("JWKS %s: %v", jwks, err)
	}
	kid := Header(tb, tok)["kid"]
	for _, k := range set.Keys {
		if k["kid"] == kid {
			return k
		}
	}
	tb.Fatalf("the JWK Set has no key of kid %v", kid)
	return nil
}

// PublicKey builds a verification key from a JWK the way an independent
// verifier does, from the published members only.
func PublicKey(tb testing.TB, k map[string]any) any {
	tb.Helper()
	member := func(name string) []byte {
		s, ok := k[name].(string)
		if !ok {
			tb.Fatalf("JWK %v: member %q missing", k, name)
		}
		b, err := b64.Strict().DecodeString(s)
		if err != nil {
			tb.Fatalf("JWK member %q: %v", name, err)
		}
		return b
	}
	switch k["kty"] {
	case "EC":
		if k["crv"] != "P-256" {
			tb.Fatalf("EC JWK with crv %v", k["crv"])
		}
		x, y := member("x"), member("y")
		if len(x) != 32 || len(y) != 32 {
			tb.Fatalf("EC JWK coordinates of %d and %d bytes, want 32", len(x), len(y))
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			tb.Fatalf("EC JWK: %v", err)
		}
		return pub
	case "OKP":
		if k["crv"] != "Ed25519" {
			tb.Fatalf("OKP JWK with crv %v", k["crv"])
		}
		x := member("x")
		if len(x) != ed25519.PublicKeySize {
			tb.Fatalf("Ed25519 JWK of %d bytes", len(x))
		}
		return ed25519.PublicKey(x)
	case "RSA":
		return &rsa.PublicKey{N: new(big.Int).SetBytes(member("n")), E: int(new(big.Int).SetBytes(member("e")).Int64())}
	}
	tb.Fatalf("JWK of unknown kty %v", k["kty"])
	return nil
}

// ClaimCase changes the header and claims of a real token. A verifier's
// test re-signs the result with a key the verifier trusts, so that the
// signature is always valid and each case isolates one check.
type ClaimCase struct {
	Name    string
	Company bool // start from a company token, not a partner token
	Change  func(h, c map[string]any)
	OK      bool // whether the changed token must be accepted
}

// ClaimCases are the checks of every header member and claim, for tokens
// issued at now and a verifier allowing leeway. embeddedJWK is the key an
// attacker would like the verifier to take from a jwk header: the one the
// test signs with.
func ClaimCases(now time.Time, leeway time.Duration, embeddedJWK map[string]any) []ClaimCase {
	at := now.Unix()
	lw := int64(leeway / time.Second)
	return []ClaimCase{
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
		{"jwk", false, func(h, c map[string]any) { h["jwk"] = embeddedJWK }, false},
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
		{"exp as a string", false, func(h, c map[string]any) { c["exp"] = strconv.FormatInt(at+600, 10) }, false},
		{"exp as a string with upper-case name", false, func(h, c map[string]any) {
			delete(c, "exp")
			c["EXP"] = strconv.FormatInt(at+600, 10)
		}, false},
		{"exp expired within leeway", false, func(h, c map[string]any) {
			c["iat"], c["nbf"], c["exp"] = at-900, at-900, at-lw+1
		}, true},
		{"exp expired beyond leeway", false, func(h, c map[string]any) {
			c["iat"], c["nbf"], c["exp"] = at-900, at-900, at-lw
		}, false},
		{"nbf ahead within leeway", false, func(h, c map[string]any) { c["nbf"] = at + lw }, true},
		{"nbf ahead beyond leeway", false, func(h, c map[string]any) { c["nbf"] = at + lw + 1 }, false},
		{"nbf missing", false, func(h, c map[string]any) { delete(c, "nbf") }, false},
		{"nbf as a string", false, func(h, c map[string]any) { c["nbf"] = strconv.FormatInt(at, 10) }, false},
		{"iat ahead within leeway", false, func(h, c map[string]any) { c["iat"] = at + lw }, true},
		{"iat ahead beyond leeway", false, func(h, c map[string]any) { c["iat"] = at + lw + 1 }, false},
		{"iat missing", false, func(h, c map[string]any) { delete(c, "iat") }, false},
		{"iat as a string", false, func(h, c map[string]any) { c["iat"] = strconv.FormatInt(at, 10) }, false},

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
}

// NonCanonical re-signs non-canonical encodings of header and claims with
// sign, which signs a signing input (header.claims) with a key the verifier
// trusts: only strict decoding can refuse them. good is the canonical
// token of the same encodings, which the verifier must accept.
func NonCanonical(tb testing.TB, header, claims map[string]any, sign func(input string) string) (good string, bad map[string]string) {
	tb.Helper()
	// A member of the right length leaves unused bits in the last character.
	hSeg, cSeg := unusedBitsSegment(tb, header), unusedBitsSegment(tb, claims)
	signed := func(hs, cs string) string { return hs + "." + cs + "." + sign(hs+"."+cs) }
	good = signed(hSeg, cSeg)
	gh, gc, gs := Split(tb, good)
	return good, map[string]string{
		"header with unused bits set": signed(FlipUnusedBit(tb, hSeg), cSeg),
		"claims with unused bits set": signed(hSeg, FlipUnusedBit(tb, cSeg)),
		"signature with unused bits":  gh + "." + gc + "." + FlipUnusedBit(tb, gs),
		"padded header":               signed(Padded(hSeg), cSeg),
		"padded claims":               signed(hSeg, Padded(cSeg)),
		"padded signature":            gh + "." + gc + "." + Padded(gs),
		"newline in claims":           signed(hSeg, cSeg[:5]+"\n"+cSeg[5:]),
		"newline in signature":        gh + "." + gc + "." + gs[:5] + "\n" + gs[5:],
		"carriage return in header":   signed(hSeg[:5]+"\r"+hSeg[5:], cSeg),
		"claims in std base64":        signed(hSeg, b64std(tb, claims)),
	}
}

// unusedBitsSegment encodes m, adding a padding member until the encoding's
// last character carries unused bits.
func unusedBitsSegment(tb testing.TB, m map[string]any) string {
	tb.Helper()
	m = maps.Clone(m)
	for i := range 3 {
		m["pad"] = strings.Repeat("x", i)
		if s := Encode(tb, m); len(s)%4 >= 2 {
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
		seg := Encode(tb, m)
		if strings.ContainsAny(seg, "-_") {
			return strings.NewReplacer("-", "+", "_", "/").Replace(seg)
		}
	}
	tb.Fatal("no standard-base64-only encoding found")
	return ""
}

// Issued is what one keygate issued to one partner: the material the
// tables below build their cases from.
type Issued struct {
	AccessToken  string // an access token (of ES256, EdDSA or RS256 for Requests)
	RefreshToken string // the refresh token issued with it
	APIKey       string // the API key that logged in
	JWKS         []byte // the keygate's JWK Set (Requests only)
	Foreign      string // an access token another keygate issued (Requests only; optional)
}

// NonJWTs are strings that are not access tokens at all, many built from
// the access token issued; the refresh token and the API key too, if set.
func NonJWTs(tb testing.TB, issued Issued) map[string]string {
	tb.Helper()
	tok := issued.AccessToken
	h, c, s := Split(tb, tok)
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
		"bearer prefix":              "Bearer " + tok,
		"JSON":                       `{"alg":"none"}`,
		"header only":                h,
		"four segments":              tok + ".e30",
		"five segments (JWE shaped)": h + "." + c + "." + s + "." + s + "." + s,
		"padded token":               Padded(tok), // a 64- or 256-byte signature leaves room for "=="
	}
	if issued.RefreshToken != "" {
		cases["refresh token"] = issued.RefreshToken
	}
	if issued.APIKey != "" {
		cases["API key"] = issued.APIKey
	}
	return cases
}

// Requests are the headers of requests every endpoint that needs an access
// token must answer with its one 401, whichever header it reads the token
// from (R-Auth, or Authorization with the Bearer scheme): no token, a
// malformed one, the wrong credential, tampered and forged tokens. The
// refresh token, API key and JWK Set of issued are required.
func Requests(tb testing.TB, issued Issued) map[string]http.Header {
	tb.Helper()
	tok := issued.AccessToken
	h, c, s := Split(tb, tok)
	header, claims := Header(tb, tok), Claims(tb, tok)
	alg, _ := header["alg"].(string)
	kid := header["kid"]
	if issued.RefreshToken == "" || issued.APIKey == "" || issued.JWKS == nil {
		tb.Fatal("Requests needs the refresh token, the API key and the JWK Set")
	}

	withClaim := func(name string, v any) string {
		m := Claims(tb, tok)
		m[name] = v
		return h + "." + Encode(tb, m) + "." + s
	}
	withHeader := func(m map[string]any) string { return Encode(tb, m) + "." + c + "." + s }
	unsigned := func(alg string) string {
		return Encode(tb, map[string]any{"alg": alg, "typ": "at+jwt", "kid": kid}) + "." + c + "."
	}
	foreign := func(hdr map[string]any) string { return signForeign(tb, alg, hdr, Claims(tb, tok)) }
	sig, err := b64.Strict().DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	sig[0] ^= 0xff
	exp, err := claims["exp"].(json.Number).Int64()
	if err != nil {
		tb.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(PublicKey(tb, jwkOf(tb, tok, issued.JWKS)))
	if err != nil {
		tb.Fatal(err)
	}
	publicPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	hs256 := map[string]any{"alg": "HS256", "kid": kid, "typ": "at+jwt"}

	cases := map[string]http.Header{
		"missing":                 {},
		"empty R-Auth":            {"R-Auth": {""}},
		"blank R-Auth":            {"R-Auth": {"   "}},
		"two R-Auth headers":      {"R-Auth": {tok, tok}},
		"Bearer without token":    {"Authorization": {"Bearer"}},
		"Bearer and space":        {"Authorization": {"Bearer "}},
		"Bearer and blanks":       {"Authorization": {"Bearer    "}},
		"Basic scheme":            {"Authorization": {"Basic " + tok}},
		"token without scheme":    {"Authorization": {tok}},
		"two Authorization":       {"Authorization": {"Bearer " + tok, "Bearer " + tok}},
		"Bearer Bearer":           {"Authorization": {"Bearer Bearer " + tok}},
		"malformed":               {"R-Auth": {"not a token"}},
		"three empty parts":       {"R-Auth": {".."}},
		"garbage parts":           {"R-Auth": {"a.b.c"}},
		"API key":                 {"R-Auth": {issued.APIKey}},
		"refresh token":           {"R-Auth": {issued.RefreshToken}},
		"signature stripped":      {"R-Auth": {h + "." + c + "."}},
		"signature altered":       {"R-Auth": {h + "." + c + "." + b64.EncodeToString(sig)}},
		"sub tampered":            {"R-Auth": {withClaim("sub", "par_someoneelse")}},
		"exp tampered":            {"R-Auth": {withClaim("exp", exp+86400)}},
		"kind tampered":           {"R-Auth": {withClaim("kind", "company")}},
		"aud tampered":            {"R-Auth": {withClaim("aud", []string{"other"})}},
		"alg none":                {"R-Auth": {unsigned("none")}},
		"alg None":                {"R-Auth": {unsigned("None")}},
		"alg NONE":                {"R-Auth": {unsigned("NONE")}},
		"alg missing":             {"R-Auth": {withHeader(map[string]any{"typ": "at+jwt", "kid": kid})}},
		"alg empty":               {"R-Auth": {withHeader(map[string]any{"alg": "", "typ": "at+jwt", "kid": kid})}},
		"typ missing":             {"R-Auth": {withHeader(map[string]any{"alg": alg, "kid": kid})}},
		"non-canonical base64":    {"R-Auth": {h + "." + c + "." + FlipUnusedBit(tb, s)}},
		"padded token":            {"R-Auth": {Padded(tok)}},
		"HS256 with PEM key":      {"R-Auth": {ForgeHS256(tb, hs256, Claims(tb, tok), publicPEM)}},
		"HS256 with JWKS as key":  {"R-Auth": {ForgeHS256(tb, hs256, Claims(tb, tok), issued.JWKS)}},
		"foreign key, same kid":   {"R-Auth": {foreign(map[string]any{"kid": kid, "typ": "at+jwt"})}},
		"foreign key, no kid":     {"R-Auth": {foreign(map[string]any{"typ": "at+jwt"})}},
		"path-like kid":           {"R-Auth": {foreign(map[string]any{"kid": "../../etc/passwd", "typ": "at+jwt"})}},
		"jku header":              {"R-Auth": {foreign(map[string]any{"kid": kid, "typ": "at+jwt", "jku": "https://evil.example/jwks"})}},
		"megabyte of dots":        {"R-Auth": {strings.Repeat(".", 1<<20)}},
		"megabyte token":          {"R-Auth": {h + "." + strings.Repeat("A", 1<<20) + "." + s}},
		"R-Auth with Bearer word": {"R-Auth": {"Bearer " + tok}},
	}
	if issued.Foreign != "" {
		cases["other gateway's token"] = http.Header{"R-Auth": {issued.Foreign}}
	}
	// The same tokens as Bearer tokens, for verifiers reading
	// Authorization.
	bearer := map[string]http.Header{}
	for name, hdr := range cases {
		if v := hdr.Values("R-Auth"); len(v) == 1 && strings.TrimSpace(v[0]) != "" && !strings.HasPrefix(v[0], "Bearer ") {
			bearer[name+" as Bearer"] = http.Header{"Authorization": {"Bearer " + v[0]}}
		}
	}
	maps.Copy(cases, bearer)
	return cases
}

// TimeCase signs a token at SignAt and verifies it at VerifyAt, both after
// the same instant.
type TimeCase struct {
	Name             string
	SignAt, VerifyAt time.Duration
	OK               bool
}

// TimeWindows are the cases of a verifier allowing leeway, for tokens that
// live ttl.
func TimeWindows(ttl, leeway time.Duration) []TimeCase {
	return []TimeCase{
		{"fresh", 0, 0, true},
		{"last second before expiry", 0, ttl - time.Second, true},
		{"expired within leeway", 0, ttl + leeway - time.Second, true},
		{"expired beyond leeway", 0, ttl + leeway, false},
		{"expired long ago", 0, 24 * time.Hour, false},
		{"not yet valid within leeway", leeway, 0, true},
		{"not yet valid beyond leeway", leeway + time.Second, 0, false},
		{"issued an hour ahead", time.Hour, 0, false},
	}
}
