// Package keys owns keygate's principals and their credentials: partners,
// the companies partners create, the API keys of both (format, generation,
// hashing), the audit trail of what happened to them, and the Store they
// need. It knows nothing of HTTP or SQL.
package keys

import (
	"errors"
	"time"
)

// Kind tells partners from companies.
type Kind string

const (
	KindPartner Kind = "partner"
	KindCompany Kind = "company"
)

// Status of a partner or company.
const (
	StatusActive   = "active"
	StatusDisabled = "disabled"
)

// Domain errors; server/errors.go maps each to an HTTP status.
var (
	// ErrInvalidKey covers every reason an API key cannot log in, so that
	// callers cannot tell an unknown key from a revoked one.
	ErrInvalidKey = errors.New("invalid API key")
	ErrNotFound   = errors.New("not found")
	ErrConflict   = errors.New("conflict")
	// ErrDisabled reports a change refused because its owner is disabled.
	ErrDisabled = errors.New("owner disabled")
	// ErrInactive reports a principal whose key was revoked or whose
	// partner or company was disabled.
	ErrInactive = errors.New("principal inactive")
	// ErrUnavailable reports storage that cannot serve right now: a full
	// disk, a read-only or locked database. Callers may retry.
	ErrUnavailable = errors.New("storage unavailable")
	// ErrWrongOwner reports a new partner's or company's first key that is
	// not its own: a bug in the caller, refused before anything is written.
	ErrWrongOwner = errors.New("first key belongs to another owner")
)

// ValidationError names the input field that is wrong and why.
type ValidationError struct {
	Field   string
	Message string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Message }

// Owner says whose API keys are meant: a partner's own, or those of one of
// its companies. It is a type rather than an empty company id, so that a
// partner's own keys can only be asked for by name: the zero Owner owns
// nothing, a company owner with an empty id names no company at all, and
// its fields are unexported so that the two constructors are the only
// owners there are. Owners are comparable.
type Owner struct {
	kind      Kind
	partnerID string
	companyID string // set only for a company
}

// PartnerOwner names a partner's own keys.
func PartnerOwner(partnerID string) Owner { return Owner{kind: KindPartner, partnerID: partnerID} }

// CompanyOwner names the keys of a company of the given partner.
func CompanyOwner(partnerID, companyID string) Owner {
	return Owner{kind: KindCompany, partnerID: partnerID, companyID: companyID}
}

// Kind is KindPartner, KindCompany, or "" for the zero Owner.
func (o Owner) Kind() Kind { return o.kind }

// PartnerID is the partner, or the company's partner.
func (o Owner) PartnerID() string { return o.partnerID }

// CompanyID is the company, "" for a partner.
func (o Owner) CompanyID() string { return o.companyID }

// Partner is an operator-created tenant whose backend creates companies.
type Partner struct {
	ID        string
	Name      string
	Status    string
	CreatedAt time.Time
	// Scopes are those the operator allows it: its keys and its
	// companies' keys hold a subset, and obtain no more than these even if
	// they hold more.
	Scopes Scopes
}

// Company is a partner's customer.
type Company struct {
	ID         string
	PartnerID  string
	Name       string
	ExternalID *string
	Status     string
	CreatedAt  time.Time
}

// Key is an API key's metadata; the key itself is never stored.
type Key struct {
	ID         string
	Owner      Owner
	Hint       string
	Name       string // "" if it has none
	Scopes     Scopes
	CreatedAt  time.Time
	ExpiresAt  *time.Time // nil: it does not expire
	LastUsedAt *time.Time
	RevokedAt  *time.Time
}

// Expired reports whether the key has expired at now.
func (k Key) Expired(now time.Time) bool { return k.ExpiresAt != nil && !now.Before(*k.ExpiresAt) }

// NewKey is a freshly minted key with the only copy of its plaintext.
type NewKey struct {
	Key
	APIKey Secret
}

// Principal is who an API key or a JWT speaks for.
type Principal struct {
	Kind      Kind
	ID        string // partner id or company id
	PartnerID string
	CompanyID string // empty for partners
	KeyID     string
	Name      string
	// Scopes are what it may do: from a key, the key's scopes that its
	// partner allows; from a JWT, the token's scope claim.
	Scopes Scopes
	// KeyScopes, from a key only, are the key's own scopes.
	KeyScopes Scopes
	// KeyExpiresAt is when its key expires (nil: never): no token outlives it.
	KeyExpiresAt *time.Time
}

// Owner is the owner of the principal's key.
func (p Principal) Owner() Owner {
	if p.Kind == KindCompany {
		return CompanyOwner(p.PartnerID, p.CompanyID)
	}
	return PartnerOwner(p.PartnerID)
}

// PrincipalOf is who a key of the owner speaks for; name is the owner's.
func PrincipalOf(keyID string, o Owner, name string) Principal {
	p := Principal{Kind: o.kind, ID: o.partnerID, PartnerID: o.partnerID, KeyID: keyID, Name: name}
	if o.kind == KindCompany {
		p.ID, p.CompanyID = o.companyID, o.companyID
	}
	return p
}

// Actor is who performed an audited action and from where.
type Actor struct {
	Type ActorType
	ID   string
	Addr string
}

// Operator is the actor of the admin CLI.
var Operator = Actor{Type: ActorOperator, ID: "operator", Addr: "local"}

// ActorFor is the actor of a request made by principal p from addr.
func ActorFor(p Principal, addr string) Actor {
	return Actor{Type: ActorType(p.Kind), ID: p.ID, Addr: addr}
}

// Page selects a slice of an ordered listing.
type Page struct {
	After int64 // position of the last item already seen; 0 for the start
	Limit int
}

// CompanyPage is one page of a partner's companies.
type CompanyPage struct {
	Companies []Company
	Last      int64 // position of the last company, for the next page
	More      bool
}
