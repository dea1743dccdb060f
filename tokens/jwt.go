package tokens

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"keygate/internal/jsonw"
	"keygate/keys"
	"keygate/verify/accesstoken"
)

// ErrInvalidToken covers every reason an access token is refused. It is
// accesstoken.ErrInvalid: downstream verifiers refuse with the same error.
var ErrInvalidToken = accesstoken.ErrInvalid

// TokenType is the JWT typ header of access tokens (RFC 9068).
const TokenType = accesstoken.Type

// Claims are the claims of an R-Auth access token: accesstoken.Claims, the
// type downstream verifiers return, with the principal they speak for.
type Claims accesstoken.Claims

// UnmarshalJSON decodes the claims as accesstoken.Claims does, refusing
// time claims that are not JSON numbers.
func (c *Claims) UnmarshalJSON(b []byte) error { return (*accesstoken.Claims)(c).UnmarshalJSON(b) }

// Principal returns who the claims speak for, with the token's scopes.
func (c *Claims) Principal() keys.Principal {
	return keys.Principal{
		Kind: keys.Kind(c.Kind), ID: c.Subject, PartnerID: c.PartnerID, CompanyID: c.CompanyID, KeyID: c.KeyID,
		Scopes: keys.StoredScopes(c.Scope),
	}
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
	rules  *accesstoken.Rules // the verification rules downstream verifiers share
	// The claims every token shares, encoded once: `{"iss":"..."` and
	// `,"aud":["..."]`.
	fixed, aud []byte
}

// NewJWT makes a signer/verifier; the verification rules are built once.
func NewJWT(cfg JWTConfig, ring *Keyring, now func() time.Time) (*JWT, error) {
	method := signingMethod(cfg.Algorithm)
	if method == nil {
		return nil, fmt.Errorf("unknown algorithm %q", cfg.Algorithm)
	}
	aud, err := json.Marshal(jwt.ClaimStrings{cfg.Audience})
	if err != nil {
		return nil, err
	}
	rules, err := accesstoken.NewRules(accesstoken.Config{
		Issuer: cfg.Issuer, Audience: cfg.Audience, Leeway: cfg.Leeway, Algorithms: []string{cfg.Algorithm}, Now: now,
	})
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
		rules:  rules,
	}, nil
}

// Sign issues an access token for p, with p's scopes, valid from now for
// the access TTL but never past p's key's expiry; sid names the session
// (refresh-token family) it belongs to, "" for none. It writes the token itself (the header is the key's, encoded once; the
// claims are appended by hand in encoding/json's form) and leaves only the
// signature to golang-jwt's signing method: on every login and refresh,
// that halves what building a token costs besides the signature.
func (j *JWT) Sign(p keys.Principal, sid string, now time.Time) (string, time.Time, error) {
	key, err := j.keys.signer(now)
	if err != nil {
		return "", time.Time{}, err
	}
	iat := now.Truncate(time.Second)
	exp := iat.Add(j.cfg.AccessTTL)
	if p.KeyExpiresAt != nil && p.KeyExpiresAt.Before(exp) {
		exp = p.KeyExpiresAt.Truncate(time.Second) // exp is whole seconds: never later than the key
	}
	var claims [1024]byte
	body := j.appendClaims(claims[:0], p, sid, iat.Unix(), exp.Unix(), newJTI())
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
func (j *JWT) appendClaims(b []byte, p keys.Principal, sid string, iat, exp int64, jti string) []byte {
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
	if !p.Scopes.Empty() {
		b = jsonw.Key(b, "scope")
		b = jsonw.String(b, p.Scopes.String())
	}
	if sid != "" {
		b = jsonw.Key(b, "sid")
		b = jsonw.String(b, sid)
	}
	return append(b, '}')
}

// Verify checks an access token by the rules downstream verifiers share
// (accesstoken.Rules): the configured algorithm only, a kid of the keyring,
// typ at+jwt, iss, aud, exp, nbf and iat within the leeway. Every failure
// is ErrInvalidToken; the cause is wrapped for the logs.
func (j *JWT) Verify(raw string) (*Claims, error) {
	claims, err := j.rules.Verify(raw, j.keyFor)
	if err != nil {
		return nil, err
	}
	return (*Claims)(claims), nil
}

// keyFor returns the keyring's key for kid, with the one algorithm keygate
// signs with.
func (j *JWT) keyFor(kid string) (accesstoken.Key, error) {
	key, ok := j.keys.verificationKey(kid)
	if !ok {
		return accesstoken.Key{}, errors.New("unknown kid")
	}
	return accesstoken.Key{Algorithm: j.cfg.Algorithm, Public: key}, nil
}

func newJTI() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
