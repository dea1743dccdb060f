package accesstoken_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"keygate/verify/accesstoken"
)

var now = time.Unix(1782460602, 0)

// claims are those of a keygate partner token issued at now.
func claims() jwt.MapClaims {
	return jwt.MapClaims{
		"iss": "keygate", "sub": "par_5kQ2bFq8sT3xY7zR1wV9nA", "aud": []string{"r-auth"},
		"exp": now.Unix() + 900, "nbf": now.Unix(), "iat": now.Unix(), "jti": "vQm3kX9pL2sR8tY1wZ4nBg",
		"client_id": "par_5kQ2bFq8sT3xY7zR1wV9nA", "kind": "partner", "partner_id": "par_5kQ2bFq8sT3xY7zR1wV9nA",
		"key_id": "key_7hJ3kL9mN2pQ5rS8tV1wX4",
	}
}

func sign(tb testing.TB, method jwt.SigningMethod, key any) string {
	tb.Helper()
	t := jwt.NewWithClaims(method, claims())
	t.Header["kid"], t.Header["typ"] = "kid_1", accesstoken.Type
	s, err := t.SignedString(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func newRules(tb testing.TB, algs ...string) *accesstoken.Rules {
	tb.Helper()
	r, err := accesstoken.NewRules(accesstoken.Config{
		Issuer: "keygate", Audience: "r-auth", Leeway: 30 * time.Second, Algorithms: algs, Now: func() time.Time { return now },
	})
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// TestAlgorithmIsTheKeys: where two algorithms share a key type, a token
// must use the one its key names. (keygate's key types each sign with one
// algorithm, so its own tables cannot show this.)
func TestAlgorithmIsTheKeys(t *testing.T) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	r := newRules(t, "RS256", "PS256")
	keyFor := func(string) (accesstoken.Key, error) {
		return accesstoken.Key{Algorithm: "RS256", Public: &priv.PublicKey}, nil
	}
	if _, err := r.Verify(sign(t, jwt.SigningMethodRS256, priv), keyFor); err != nil {
		t.Fatalf("RS256 token under an RS256 key: %v", err)
	}
	if _, err := r.Verify(sign(t, jwt.SigningMethodPS256, priv), keyFor); !errors.Is(err, accesstoken.ErrInvalid) {
		t.Fatalf("PS256 token under an RS256 key: %v, want ErrInvalid", err)
	}
}

func TestKeyFuncErrorRefuses(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	r := newRules(t, "HS256")
	tok := sign(t, jwt.SigningMethodHS256, secret)
	if _, err := r.Verify(tok, func(string) (accesstoken.Key, error) { return accesstoken.Key{}, errors.New("no such kid") }); !errors.Is(err, accesstoken.ErrInvalid) {
		t.Fatalf("Verify with a failing key lookup: %v", err)
	}
	var asked string
	c, err := r.Verify(tok, func(kid string) (accesstoken.Key, error) {
		asked = kid
		return accesstoken.Key{Algorithm: "HS256", Public: secret}, nil
	})
	if err != nil || asked != "kid_1" || c.Subject != "par_5kQ2bFq8sT3xY7zR1wV9nA" || c.Kind != "partner" {
		t.Fatalf("Verify = %+v, %v (kid asked %q)", c, err, asked)
	}
}

func TestNewRulesRefusesLooseConfig(t *testing.T) {
	good := accesstoken.Config{Issuer: "keygate", Audience: "r-auth", Algorithms: []string{"ES256"}, Now: time.Now}
	for name, change := range map[string]func(*accesstoken.Config){
		"no issuer":     func(c *accesstoken.Config) { c.Issuer = "" },
		"no audience":   func(c *accesstoken.Config) { c.Audience = "" },
		"no algorithms": func(c *accesstoken.Config) { c.Algorithms = nil },
		"no clock":      func(c *accesstoken.Config) { c.Now = nil },
	} {
		cfg := good
		change(&cfg)
		if _, err := accesstoken.NewRules(cfg); err == nil {
			t.Errorf("%s: NewRules accepted it", name)
		}
	}
}

// TestClaimsUnmarshalJSON: decoding claims directly follows Verify's rules
// for time claims, and reads what golang-jwt writes.
func TestClaimsUnmarshalJSON(t *testing.T) {
	raw, err := json.Marshal(claims())
	if err != nil {
		t.Fatal(err)
	}
	var c accesstoken.Claims
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	if !c.ExpiresAt.Equal(now.Add(900*time.Second)) || !c.IssuedAt.Equal(now) || c.Audience[0] != "r-auth" || c.KeyID == "" || c.Validate() != nil {
		t.Errorf("decoded %+v (Validate: %v)", c, c.Validate())
	}
	for _, bad := range []string{`{"exp":"1782461502"}`, `{"nbf":null}`, `{"iat":true}`, `{"exp":1e400}`} {
		if err := json.Unmarshal([]byte(bad), &c); err == nil {
			t.Errorf("decoded %s", bad)
		}
	}
	if err := json.Unmarshal([]byte(`{"exp":1782461502.5}`), &c); err != nil || !c.ExpiresAt.Equal(time.Unix(1782461502, 0)) {
		t.Errorf("fractional exp: %v %v", c.ExpiresAt, err)
	}
}

// BenchmarkRules pairs a bare golang-jwt parse of an HS256 token, with the
// key in hand, and Rules.Verify of it: HS256 costs next to nothing, so the
// difference is what keygate's rules cost.
func BenchmarkRules(b *testing.B) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	tok := sign(b, jwt.SigningMethodHS256, secret)
	r := newRules(b, "HS256")
	key := accesstoken.Key{Algorithm: "HS256", Public: secret}
	parser := jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithTimeFunc(func() time.Time { return now }))
	b.Run("bare", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := parser.ParseWithClaims(tok, &jwt.RegisteredClaims{}, func(*jwt.Token) (any, error) { return secret, nil }); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("rules", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.Verify(tok, func(string) (accesstoken.Key, error) { return key, nil }); err != nil {
				b.Fatal(err)
			}
		}
	})
}
