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

	"keygate/internal/jsonw"
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

// UnmarshalJSON decodes the claims in one pass, refusing time claims that
// are not JSON numbers (RFC 7519 NumericDate): golang-jwt's own decoding
// would read "exp":"1999999999" as a date.
func (c *Claims) UnmarshalJSON(b []byte) error {
	var w struct {
		Issuer    string           `json:"iss"`
		Subject   string           `json:"sub"`
		Audience  jwt.ClaimStrings `json:"aud"`
		ExpiresAt numericDate      `json:"exp"`
		NotBefore numericDate      `json:"nbf"`
		IssuedAt  numericDate      `json:"iat"`
		ID        string           `json:"jti"`
		ClientID  string           `json:"client_id"`
		Kind      string           `json:"kind"`
		PartnerID string           `json:"partner_id"`
		CompanyID string           `json:"company_id"`
		KeyID     string           `json:"key_id"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*c = Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: w.Issuer, Subject: w.Subject, Audience: w.Audience,
			ExpiresAt: w.ExpiresAt.date, NotBefore: w.NotBefore.date, IssuedAt: w.IssuedAt.date, ID: w.ID,
		},
		ClientID: w.ClientID, Kind: w.Kind, PartnerID: w.PartnerID, CompanyID: w.CompanyID, KeyID: w.KeyID,
	}
	return nil
}

// numericDate decodes a time claim that must be a JSON number.
type numericDate struct{ date *jwt.NumericDate }

func (n *numericDate) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || b[0] != '-' && (b[0] < '0' || b[0] > '9') {
		return errors.New("time claim is not a number")
	}
	n.date = new(jwt.NumericDate)
	return n.date.UnmarshalJSON(b)
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
	// The claims every token shares, encoded once: `{"iss":"..."` and
	// `,"aud":["..."]`.
	fixed, aud []byte
}

// NewJWT makes a signer/verifier; the parser and its options are built once.
func NewJWT(cfg JWTConfig, ring *Keyring, now func() time.Time) (*JWT, error) {
	method := signingMethod(cfg.Algorithm)
	if method == nil {
		return nil, fmt.Errorf("unknown algorithm %q", cfg.Algorithm)
	}
	aud, err := json.Marshal(jwt.ClaimStrings{cfg.Audience})
	if err != nil {
		return nil, err
	}
	return &JWT{
		cfg:    cfg,
		keys:   ring,
		now:    now,
		method: method,
		fixed:  jsonw.String([]byte(`{"iss":`), cfg.Issuer),
		aud:    append([]byte(`,"aud":`), aud...),
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
// It writes the token itself (the header is the key's, encoded once; the
// claims are appended by hand in encoding/json's form) and leaves only the
// signature to golang-jwt's signing method: on every login and refresh,
// that halves what building a token costs besides the signature.
func (j *JWT) Sign(p keys.Principal, now time.Time) (string, time.Time, error) {
	key, err := j.keys.signer(now)
	if err != nil {
		return "", time.Time{}, err
	}
	iat := now.Truncate(time.Second)
	exp := iat.Add(j.cfg.AccessTTL)
	var claims [512]byte
	body := j.appendClaims(claims[:0], p, iat.Unix(), exp.Unix(), newJTI())
	token := make([]byte, 0, len(key.header)+1+base64.RawURLEncoding.EncodedLen(len(body))+1+256)
	token = append(token, key.header...)
	token = append(token, '.')
	token = base64.RawURLEncoding.AppendEncode(token, body)
	var sig []byte
	if key.hmac != nil {
		sig, err = j.method.Sign(string(token), key.hmac)
	} else {
		sig, err = j.method.Sign(string(token), key.private)
	}
	if err != nil {
		return "", time.Time{}, err
	}
	token = append(token, '.')
	token = base64.RawURLEncoding.AppendEncode(token, sig)
	return string(token), exp, nil
}

// appendClaims appends the claims of an access token as encoding/json
// writes Claims (the test pins that).
func (j *JWT) appendClaims(b []byte, p keys.Principal, iat, exp int64, jti string) []byte {
	b = append(b, j.fixed...) // {"iss":...,
	b = jsonw.Key(b, "sub")
	b = jsonw.String(b, p.ID)
	b = append(b, j.aud...) // ,"aud":[...]
	b = jsonw.Key(b, "exp")
	b = jsonw.Int(b, exp)
	b = jsonw.Key(b, "nbf")
	b = jsonw.Int(b, iat)
	b = jsonw.Key(b, "iat")
	b = jsonw.Int(b, iat)
	b = jsonw.Key(b, "jti")
	b = jsonw.String(b, jti)
	b = jsonw.Key(b, "client_id")
	b = jsonw.String(b, p.ID)
	b = jsonw.Key(b, "kind")
	b = jsonw.String(b, string(p.Kind))
	b = jsonw.Key(b, "partner_id")
	b = jsonw.String(b, p.PartnerID)
	if p.CompanyID != "" {
		b = jsonw.Key(b, "company_id")
		b = jsonw.String(b, p.CompanyID)
	}
	b = jsonw.Key(b, "key_id")
	b = jsonw.String(b, p.KeyID)
	return append(b, '}')
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
