package tokens

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"keygate/keys"
)

// ErrInvalidToken covers every reason an access token is refused.
var ErrInvalidToken = errors.New("invalid access token")

// TokenType is the JWT typ header of access tokens (RFC 9068).
const TokenType = "at+jwt"

// maxJWTLen bounds the tokens we parse; ours are well under 1 KiB.
const maxJWTLen = 4096

// Claims are the claims of an R-Auth access token.
type Claims struct {
	jwt.RegisteredClaims
	ClientID  string `json:"client_id"`
	Kind      string `json:"kind"`
	PartnerID string `json:"partner_id"`
	CompanyID string `json:"company_id,omitempty"`
	KeyID     string `json:"key_id"`
}

// UnmarshalJSON refuses time claims that are not JSON numbers (RFC 7519
// NumericDate): golang-jwt would read "exp":"1999999999" as a date. The
// probe uses the same member names, so it sees what the decoder sees.
func (c *Claims) UnmarshalJSON(b []byte) error {
	var times struct {
		Exp json.RawMessage `json:"exp"`
		Nbf json.RawMessage `json:"nbf"`
		Iat json.RawMessage `json:"iat"`
	}
	if err := json.Unmarshal(b, &times); err != nil {
		return err
	}
	for _, v := range []json.RawMessage{times.Exp, times.Nbf, times.Iat} {
		if len(v) > 0 && v[0] != '-' && (v[0] < '0' || v[0] > '9') {
			return errors.New("time claim is not a number")
		}
	}
	type plain Claims // without this method
	return json.Unmarshal(b, (*plain)(c))
}

// Validate checks the claims golang-jwt does not know about; it runs after
// the standard checks of exp, nbf, iat, iss and aud.
func (c *Claims) Validate() error {
	if c.Subject == "" || c.ClientID != c.Subject || c.KeyID == "" || c.PartnerID == "" || c.ID == "" {
		return errors.New("missing principal claims")
	}
	switch keys.Kind(c.Kind) {
	case keys.KindPartner:
		if c.PartnerID != c.Subject || c.CompanyID != "" {
			return errors.New("inconsistent partner claims")
		}
	case keys.KindCompany:
		if c.CompanyID != c.Subject {
			return errors.New("inconsistent company claims")
		}
	default:
		return errors.New("unknown kind")
	}
	if c.NotBefore == nil || c.IssuedAt == nil {
		return errors.New("missing nbf or iat")
	}
	return nil
}

// Principal returns who the claims speak for.
func (c *Claims) Principal() keys.Principal {
	return keys.Principal{Kind: keys.Kind(c.Kind), ID: c.Subject, PartnerID: c.PartnerID, CompanyID: c.CompanyID, KeyID: c.KeyID}
}

// JWTConfig is what signing and verification need from the configuration.
type JWTConfig struct {
	Issuer    string
	Audience  string
	Algorithm string
	AccessTTL time.Duration
	Leeway    time.Duration
}

// JWT signs and verifies access tokens with the keys of a Keyring.
type JWT struct {
	cfg    JWTConfig
	keys   *Keyring
	now    func() time.Time
	method jwt.SigningMethod
	parser *jwt.Parser
}

// NewJWT makes a signer/verifier; the parser and its options are built once.
func NewJWT(cfg JWTConfig, ring *Keyring, now func() time.Time) (*JWT, error) {
	method := signingMethod(cfg.Algorithm)
	if method == nil {
		return nil, fmt.Errorf("unknown algorithm %q", cfg.Algorithm)
	}
	return &JWT{
		cfg:    cfg,
		keys:   ring,
		now:    now,
		method: method,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{cfg.Algorithm}),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithIssuer(cfg.Issuer),
			jwt.WithAudience(cfg.Audience),
			jwt.WithStrictDecoding(),
			jwt.WithLeeway(cfg.Leeway),
			jwt.WithTimeFunc(now),
		),
	}, nil
}

// Sign issues an access token for p, valid from now for the access TTL.
func (j *JWT) Sign(p keys.Principal, now time.Time) (string, time.Time, error) {
	key, err := j.keys.signer(now)
	if err != nil {
		return "", time.Time{}, err
	}
	iat := now.Truncate(time.Second)
	exp := iat.Add(j.cfg.AccessTTL)
	claims := &Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    j.cfg.Issuer,
			Subject:   p.ID,
			Audience:  jwt.ClaimStrings{j.cfg.Audience},
			ExpiresAt: jwt.NewNumericDate(exp),
			NotBefore: jwt.NewNumericDate(iat),
			IssuedAt:  jwt.NewNumericDate(iat),
			ID:        newJTI(),
		},
		ClientID:  p.ID,
		Kind:      string(p.Kind),
		PartnerID: p.PartnerID,
		CompanyID: p.CompanyID,
		KeyID:     p.KeyID,
	}
	t := jwt.NewWithClaims(j.method, claims)
	t.Header["kid"] = key.kid
	t.Header["typ"] = TokenType
	var signed string
	if key.hmac != nil {
		signed, err = t.SignedString(key.hmac)
	} else {
		signed, err = t.SignedString(key.private)
	}
	if err != nil {
		return "", time.Time{}, err
	}
	return signed, exp, nil
}

// Verify checks an access token strictly: the configured algorithm only,
// a known kid, typ at+jwt, iss, aud, exp, nbf and iat within the leeway.
// Every failure is ErrInvalidToken; the cause is wrapped for the logs.
func (j *JWT) Verify(raw string) (*Claims, error) {
	if len(raw) > maxJWTLen || strings.Count(raw, ".") != 2 || !base64URLOrDots(raw) {
		return nil, ErrInvalidToken
	}
	claims := new(Claims)
	if _, err := j.parser.ParseWithClaims(raw, claims, j.keyFor); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	return claims, nil
}

// keyFor picks the verification key by kid after checking the header. Keys
// are never fetched from jku/x5u or taken from an embedded jwk.
func (j *JWT) keyFor(t *jwt.Token) (any, error) {
	for _, h := range []string{"jku", "x5u", "jwk", "x5c", "crit"} {
		if _, ok := t.Header[h]; ok {
			return nil, fmt.Errorf("forbidden header %q", h)
		}
	}
	if typ, _ := t.Header["typ"].(string); !strings.EqualFold(typ, TokenType) && !strings.EqualFold(typ, "application/"+TokenType) {
		return nil, errors.New("wrong typ")
	}
	kid, _ := t.Header["kid"].(string)
	key, ok := j.keys.verificationKey(kid)
	if !ok {
		return nil, errors.New("unknown kid")
	}
	return key, nil
}

// base64URLOrDots reports whether s holds only base64url characters and
// dots: the decoder skips CR and LF, which would let one token be written
// in many ways.
func base64URLOrDots(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func newJTI() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
