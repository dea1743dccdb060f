// Package api holds keygate's wire types: the JSON body of every request
// and response of the HTTP API, and the error body, as plain structs. The
// server renders them, the client package sends and reads them, and the API
// document's tests check them; golden files under server/testdata pin their
// exact JSON. It imports neither Gin nor a database, so a partner's backend
// that uses it builds neither.
package api

import (
	"errors"
	"time"

	"keygate/internal/jsonw"
)

// TimeLayout is the API's one timestamp format: RFC 3339 in UTC with
// milliseconds and a numeric offset, 2026-06-26T07:56:42.199+00:00.
const TimeLayout = "2006-01-02T15:04:05.000-07:00"

// Time is a timestamp on the wire, always written in TimeLayout.
type Time struct{ time.Time }

// NewTime wraps t; it is written in UTC.
func NewTime(t time.Time) Time { return Time{t} }

// TimePtr wraps *t, keeping nil for a timestamp that is not set.
func TimePtr(t *time.Time) *Time {
	if t == nil {
		return nil
	}
	return &Time{*t}
}

// AppendFormat appends t in TimeLayout.
func (t Time) AppendFormat(b []byte) []byte { return t.UTC().AppendFormat(b, TimeLayout) }

// String formats t in TimeLayout.
func (t Time) String() string { return string(t.AppendFormat(nil)) }

// MarshalJSON implements json.Marshaler (time.Time's own would write
// nanoseconds and a Z).
func (t Time) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, len(TimeLayout)+2)
	b = append(b, '"')
	b = t.AppendFormat(b)
	return append(b, '"'), nil
}

// UnmarshalJSON implements json.Unmarshaler; it accepts TimeLayout only.
func (t *Time) UnmarshalJSON(b []byte) error {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return errors.New("api: timestamp is not a JSON string")
	}
	v, err := time.Parse(TimeLayout, string(b[1:len(b)-1]))
	if err != nil {
		return err
	}
	t.Time = v.UTC()
	return nil
}

// Principal kinds, as /api/v1/auth/me and the JWT's kind claim name them.
const (
	KindPartner = "partner"
	KindCompany = "company"
)

// Company statuses.
const (
	StatusActive   = "active"
	StatusDisabled = "disabled"
)

// Error is the body of every error response: a stable code and a message
// for people. Codes are listed in docs/api.md.
type Error struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// Error codes.
const (
	CodeValidation         = "validation_error"
	CodeUnauthorized       = "unauthorized"
	CodeForbidden          = "forbidden"
	CodeNotFound           = "not_found"
	CodeMethodNotAllowed   = "method_not_allowed"
	CodeConflict           = "conflict"
	CodePayloadTooLarge    = "payload_too_large"
	CodeUnsupportedMedia   = "unsupported_media_type"
	CodeRateLimited        = "rate_limited"
	CodeInternal           = "internal_error"
	CodeServiceUnavailable = "service_unavailable"
)

const UnauthorizedMessage = "invalid, expired or revoked credentials" // the message of every 401, keygate's and package verify's

// LoginRequest is the body of POST /api/v1/auth/login. Members are pointers
// so that the server can tell a missing member from an empty one.
type LoginRequest struct {
	APIKey *string `json:"apiKey"`
	// Scope, space-separated, down-scopes the session to scopes its key
	// holds (least privilege); absent, the session gets all of them.
	Scope *string `json:"scope"`
}

// RefreshRequest is the body of POST /api/v1/auth/refresh and of
// POST /api/v1/auth/logout.
type RefreshRequest struct {
	RefreshToken *string `json:"refreshToken"`
}

// TokenResponse is what a login or a refresh returns.
type TokenResponse struct {
	JWT                    string `json:"jwt"`
	ExpirationDate         Time   `json:"expirationDate"`
	RefreshToken           string `json:"refreshToken"`
	RefreshTokenExpiration Time   `json:"refreshTokenExpiration"`
}

// Me is the body of GET /api/v1/auth/me: who the access token speaks for.
type Me struct {
	Type           string   `json:"type"` // KindPartner or KindCompany
	ID             string   `json:"id"`
	Name           string   `json:"name"`
	PartnerID      string   `json:"partnerId,omitempty"` // companies only
	KeyID          string   `json:"keyId"`
	Scopes         []string `json:"scopes"` // the token's, sorted; [] for none
	ExpirationDate Time     `json:"expirationDate"`
}

// CreateCompanyRequest is the body of POST /api/v1/companies.
type CreateCompanyRequest struct {
	Name       *string `json:"name"`
	ExternalID *string `json:"externalId"`
	// Scopes of the company's first key, within its partner's allowed
	// scopes; absent, all of them.
	Scopes *[]string `json:"scopes"`
}

// CreateKeyRequest is the optional body of POST
// /api/v1/companies/{id}/keys; every member is optional.
type CreateKeyRequest struct {
	Name      *string   `json:"name"`      // 1 to 100 characters
	ExpiresAt *Time     `json:"expiresAt"` // in the future; absent: never
	Scopes    *[]string `json:"scopes"`    // within the partner's; absent: all of them
}

// Company is a partner's company.
type Company struct {
	ID         string  `json:"id"`
	Name       string  `json:"name"`
	ExternalID *string `json:"externalId"`
	PartnerID  string  `json:"partnerId"`
	CreatedAt  Time    `json:"createdAt"`
	Status     string  `json:"status"`
}

// CreatedCompany is a new company with its first API key, shown this once.
type CreatedCompany struct {
	Company
	APIKey string   `json:"apiKey"`
	KeyID  string   `json:"keyId"`
	Scopes []string `json:"scopes"` // of the key
}

// CompanyList is one page of a partner's companies. NextCursor is nil on
// the last page.
type CompanyList struct {
	Companies  []Company `json:"companies"`
	NextCursor *string   `json:"nextCursor"`
}

// CreatedKey is a new API key, shown this once.
type CreatedKey struct {
	KeyID     string   `json:"keyId"`
	APIKey    string   `json:"apiKey"`
	CreatedAt Time     `json:"createdAt"`
	Name      *string  `json:"name"`
	Scopes    []string `json:"scopes"`
	ExpiresAt *Time    `json:"expiresAt"`
}

// Key describes an API key; the key itself is never shown again.
type Key struct {
	KeyID      string   `json:"keyId"`
	Hint       string   `json:"hint"`
	Name       *string  `json:"name"`
	Scopes     []string `json:"scopes"`
	CreatedAt  Time     `json:"createdAt"`
	ExpiresAt  *Time    `json:"expiresAt"`
	LastUsedAt *Time    `json:"lastUsedAt"`
	RevokedAt  *Time    `json:"revokedAt"`
}

// KeyList is the body of GET /api/v1/companies/{id}/keys.
type KeyList struct {
	Keys []Key `json:"keys"`
}

// Status is the body of GET /health ("ok") and GET /ready ("ready").
type Status struct {
	Status string `json:"status"`
}

// AppendJSON appends r as encoding/json writes it; the server renders the
// token response, its busiest, this way.
func (r TokenResponse) AppendJSON(b []byte) []byte {
	b = append(b, '{')
	b = jsonw.Key(b, "jwt")
	b = jsonw.String(b, r.JWT)
	b = jsonw.Key(b, "expirationDate")
	b = appendTime(b, r.ExpirationDate)
	b = jsonw.Key(b, "refreshToken")
	b = jsonw.String(b, r.RefreshToken)
	b = jsonw.Key(b, "refreshTokenExpiration")
	b = appendTime(b, r.RefreshTokenExpiration)
	return append(b, '}')
}

// AppendJSON appends m as encoding/json writes it.
func (m Me) AppendJSON(b []byte) []byte {
	b = append(b, '{')
	b = jsonw.Key(b, "type")
	b = jsonw.String(b, m.Type)
	b = jsonw.Key(b, "id")
	b = jsonw.String(b, m.ID)
	b = jsonw.Key(b, "name")
	b = jsonw.String(b, m.Name)
	if m.PartnerID != "" {
		b = jsonw.Key(b, "partnerId")
		b = jsonw.String(b, m.PartnerID)
	}
	b = jsonw.Key(b, "keyId")
	b = jsonw.String(b, m.KeyID)
	b = jsonw.Key(b, "scopes")
	if m.Scopes == nil {
		b = append(b, "null"...) // as encoding/json; the server always sends a list
	} else {
		b = append(b, '[')
		for i, s := range m.Scopes {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonw.String(b, s)
		}
		b = append(b, ']')
	}
	b = jsonw.Key(b, "expirationDate")
	b = appendTime(b, m.ExpirationDate)
	return append(b, '}')
}

func appendTime(b []byte, t Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b)
	return append(b, '"')
}
