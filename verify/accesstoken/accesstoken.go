// Package accesstoken holds what an R-Auth access token is and the one set
// of rules by which it is accepted: its claims, its typ header, and
// Rules.Verify, which keygate's own verifier (tokens.JWT) and the verifier
// of downstream services (verify.Verifier) both call, so that the two
// cannot drift apart.
//
// It is a leaf package of its own because neither side may import the
// other: keygate's tokens package must not pull in HTTP and a JWKS client,
// and a downstream service's build must not pull in keygate's signing
// keys, refresh tokens, Gin or SQLite. It imports golang-jwt and keygate's
// wire types, nothing else of keygate.
package accesstoken

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"keygate/api"
)

// Type is the typ header of access tokens (RFC 9068); "application/at+jwt"
// is accepted too, in any case.
const Type = "at+jwt"

// MaxLen bounds the tokens Verify parses; keygate's are well under 1 KiB.
const MaxLen = 4096

// ErrInvalid covers every reason an access token is refused. Verify wraps
// the cause for the logs; callers must not show it to the token's sender.
var ErrInvalid = errors.New("invalid access token")

// Claims are the claims of an R-Auth access token.
type Claims struct {
	jwt.RegisteredClaims
	ClientID  string `json:"client_id"`
	Kind      string `json:"kind"` // api.KindPartner or api.KindCompany
	PartnerID string `json:"partner_id"`
	CompanyID string `json:"company_id,omitempty"`
	KeyID     string `json:"key_id"`
	// Scope is the scopes the token carries, space-separated (RFC 9068);
	// absent when it carries none.
	Scope string `json:"scope,omitempty"`
	// SessionID names the login the token came from (its refresh-token
	// family), so that keygate's introspection can tell a logged-out
	// session's tokens; absent for a token issued without a refresh token.
	SessionID string `json:"sid,omitempty"`
}

// Scopes are the token's scopes, one by one.
func (c *Claims) Scopes() []string { return strings.Fields(c.Scope) }

// HasScope reports whether the token carries scope.
func (c *Claims) HasScope(scope string) bool {
	return slices.Contains(c.Scopes(), scope)
}

// UnmarshalJSON decodes the claims as Verify does, refusing time claims
// that are not JSON numbers (RFC 7519 NumericDate): golang-jwt's own
// decoding would read "exp":"1999999999" as a date.
func (c *Claims) UnmarshalJSON(b []byte) error {
	var w wireClaims
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*c = w.claims()
	return nil
}

// wireClaims is what Verify has golang-jwt decode the claims into: Claims
// member for member, but with time claims that must be JSON numbers, and
// no UnmarshalJSON of its own, so that encoding/json reads the claims once.
type wireClaims struct {
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
	Scope     string           `json:"scope"`
	SessionID string           `json:"sid"`
}

func (w *wireClaims) claims() Claims {
	return Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: w.Issuer, Subject: w.Subject, Audience: w.Audience,
			ExpiresAt: w.ExpiresAt.date, NotBefore: w.NotBefore.date, IssuedAt: w.IssuedAt.date, ID: w.ID,
		},
		ClientID: w.ClientID, Kind: w.Kind, PartnerID: w.PartnerID, CompanyID: w.CompanyID, KeyID: w.KeyID,
		Scope: w.Scope, SessionID: w.SessionID,
	}
}

// The jwt.Claims methods golang-jwt's validator reads.

func (w *wireClaims) GetExpirationTime() (*jwt.NumericDate, error) { return w.ExpiresAt.date, nil }
func (w *wireClaims) GetNotBefore() (*jwt.NumericDate, error)      { return w.NotBefore.date, nil }
func (w *wireClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return w.IssuedAt.date, nil }
func (w *wireClaims) GetAudience() (jwt.ClaimStrings, error)       { return w.Audience, nil }
func (w *wireClaims) GetIssuer() (string, error)                   { return w.Issuer, nil }
func (w *wireClaims) GetSubject() (string, error)                  { return w.Subject, nil }

// Validate is Claims.Validate; golang-jwt calls it after its own checks.
func (w *wireClaims) Validate() error {
	c := w.claims()
	return c.Validate()
}

// numericDate decodes a time claim that must be a JSON number, to the
// date golang-jwt's NumericDate would decode (without its second pass of
// encoding/json over the number).
type numericDate struct{ date *jwt.NumericDate }

func (n *numericDate) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || b[0] != '-' && (b[0] < '0' || b[0] > '9') {
		return errors.New("time claim is not a number")
	}
	f, err := strconv.ParseFloat(string(b), 64) // encoding/json has checked the number's syntax
	if err != nil {
		return fmt.Errorf("time claim: %w", err)
	}
	secs, frac := math.Modf(f)
	n.date = jwt.NewNumericDate(time.Unix(int64(secs), int64(frac*1e9)))
	return nil
}

// Validate checks the claims golang-jwt does not know about: who the token
// speaks for, consistently, and the presence of nbf and iat. Verify runs it
// after golang-jwt's own checks of exp, nbf, iat, iss and aud.
func (c *Claims) Validate() error {
	if c.Subject == "" || c.ClientID != c.Subject || c.KeyID == "" || c.PartnerID == "" || c.ID == "" {
		return errors.New("missing principal claims")
	}
	switch c.Kind {
	case api.KindPartner:
		if c.PartnerID != c.Subject || c.CompanyID != "" {
			return errors.New("inconsistent partner claims")
		}
	case api.KindCompany:
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

// Key is a verification key and the one algorithm it verifies: a token is
// checked with the algorithm of the key its kid names, never with one the
// token chooses.
type Key struct {
	Algorithm string // ES256, EdDSA, RS256 or HS256
	Public    any    // *ecdsa.PublicKey, ed25519.PublicKey, *rsa.PublicKey, or the HS256 secret as []byte
}

// KeyFunc returns the key a kid names, or an error if it names none.
type KeyFunc func(kid string) (Key, error)

// Config is what Rules check besides the signature.
type Config struct {
	Issuer     string        // the iss a token must carry
	Audience   string        // a value its aud must contain
	Leeway     time.Duration // clock skew allowed on exp, nbf and iat
	Algorithms []string      // every algorithm a key may have
	Now        func() time.Time
}

// Rules verify access tokens. They are built once and are safe for
// concurrent use.
type Rules struct {
	algorithms []string
	parser     *jwt.Parser
}

// NewRules builds the rules; it refuses a configuration that would check
// less than it says (an empty issuer or audience, no algorithm).
func NewRules(cfg Config) (*Rules, error) {
	if cfg.Issuer == "" || cfg.Audience == "" || len(cfg.Algorithms) == 0 || cfg.Now == nil {
		return nil, errors.New("accesstoken: issuer, audience, algorithms and clock are required")
	}
	return &Rules{
		algorithms: slices.Clone(cfg.Algorithms),
		parser: jwt.NewParser(
			jwt.WithValidMethods(slices.Clone(cfg.Algorithms)),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithIssuer(cfg.Issuer),
			jwt.WithAudience(cfg.Audience),
			jwt.WithStrictDecoding(),
			jwt.WithLeeway(cfg.Leeway),
			jwt.WithTimeFunc(cfg.Now),
		),
	}, nil
}

// Verify checks an access token strictly: at most MaxLen base64url
// characters in three segments; no jku, x5u, jwk, x5c or crit header; typ
// at+jwt; a kid that keyFor knows, and the algorithm of that key; the
// signature; iss, aud, exp (required), nbf and iat within the leeway; and
// consistent principal claims (Claims.Validate). Every failure is
// ErrInvalid, with the cause wrapped for the logs.
func (r *Rules) Verify(raw string, keyFor KeyFunc) (*Claims, error) {
	if len(raw) > MaxLen || strings.Count(raw, ".") != 2 || !base64URLOrDots(raw) {
		return nil, ErrInvalid
	}
	var w wireClaims
	if _, err := r.parser.ParseWithClaims(raw, &w, func(t *jwt.Token) (any, error) {
		return r.key(t, keyFor)
	}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	claims := w.claims()
	return &claims, nil
}

// key picks the verification key by kid after checking the header. Keys
// are never fetched from jku/x5u or taken from an embedded jwk or x5c.
func (r *Rules) key(t *jwt.Token, keyFor KeyFunc) (any, error) {
	for _, h := range []string{"jku", "x5u", "jwk", "x5c", "crit"} {
		if _, ok := t.Header[h]; ok {
			return nil, fmt.Errorf("forbidden header %q", h)
		}
	}
	if typ, _ := t.Header["typ"].(string); !strings.EqualFold(typ, Type) && !strings.EqualFold(typ, "application/"+Type) {
		return nil, errors.New("wrong typ")
	}
	kid, _ := t.Header["kid"].(string)
	if kid == "" {
		return nil, errors.New("no kid")
	}
	key, err := keyFor(kid)
	if err != nil {
		return nil, err
	}
	if alg := t.Method.Alg(); alg != key.Algorithm || !slices.Contains(r.algorithms, alg) {
		return nil, errors.New("alg is not the algorithm of the key")
	}
	return key.Public, nil
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
