// Package keys owns keygate's principals and their credentials: partners,
// the companies partners create, the API keys of both (format, generation,
// hashing), the audit trail of what happened to them, and the Store they
// need. It knows nothing of HTTP or SQL.
package keys

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"
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
)

// ValidationError names the input field that is wrong and why.
type ValidationError struct {
	Field   string
	Message string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Message }

// Partner is an operator-created tenant whose backend creates companies.
type Partner struct {
	ID        string
	Name      string
	Status    string
	CreatedAt time.Time
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
	PartnerID  string
	CompanyID  string // empty for a partner key
	Hint       string
	CreatedAt  time.Time
	LastUsedAt *time.Time
	RevokedAt  *time.Time
}

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
}

// Actor is who performed an audited action and from where.
type Actor struct {
	Type string // "partner", "company" or "operator"
	ID   string
	Addr string
}

// Operator is the actor of the admin CLI.
var Operator = Actor{Type: "operator", ID: "operator", Addr: "local"}

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

// Store is the persistence keys needs. Every mutating method writes its
// audit events in the same transaction as its change.
type Store interface {
	CreatePartner(ctx context.Context, p Partner, k Key, digest Digest, ev []AuditEvent) error
	ListPartners(ctx context.Context) ([]Partner, error)
	DisablePartner(ctx context.Context, id string, at time.Time, ev AuditEvent) error

	// CreateCompany creates a company with its first key: ErrNotFound for an
	// unknown partner, ErrDisabled for a disabled one, ErrConflict for a
	// duplicate external id of the same partner.
	CreateCompany(ctx context.Context, c Company, k Key, digest Digest, ev []AuditEvent) error
	GetCompany(ctx context.Context, partnerID, id string) (Company, error)
	ListCompanies(ctx context.Context, partnerID string, page Page) (CompanyPage, error)
	DisableCompany(ctx context.Context, partnerID, id string, at time.Time, ev AuditEvent) error

	// CreateKey adds a key to an existing owner: ErrNotFound if there is
	// none, ErrDisabled if it (or its partner) is disabled.
	CreateKey(ctx context.Context, k Key, digest Digest, ev AuditEvent) error
	// ListKeys lists the keys of one owner; companyID empty means the partner's own.
	ListKeys(ctx context.Context, partnerID, companyID string) ([]Key, error)
	// RevokeKey revokes a key of the given owner; revoking twice is not an error.
	RevokeKey(ctx context.Context, partnerID, companyID, keyID string, at time.Time, ev AuditEvent) error

	// LookupKey finds the active principal a key digest belongs to, without
	// writing anything (logins use tokens' StartFamily, which also starts
	// the session):
	// ErrInvalidKey if unknown, revoked or disabled.
	LookupKey(ctx context.Context, digest Digest) (Principal, error)
	// ActivePrincipal re-reads a principal named by a token: ErrInactive if
	// its key was revoked or it or its partner was disabled since.
	ActivePrincipal(ctx context.Context, p Principal) (Principal, error)

	// RecordUsage writes a batch of key last-use times and audit events.
	RecordUsage(ctx context.Context, lastUsed map[string]time.Time, events []AuditEvent) error
	ListAudit(ctx context.Context, since time.Time) ([]AuditEvent, error)
}

// Service is what operators and partners do with principals and keys.
type Service struct {
	store Store
	audit *Recorder
	now   func() time.Time
	log   *slog.Logger
}

// NewService wires a Service. audit may be nil, in which case login outcomes
// are written synchronously (the CLI's case).
func NewService(store Store, audit *Recorder, now func() time.Time, log *slog.Logger) *Service {
	return &Service{store: store, audit: audit, now: now, log: log}
}

// CreatePartner creates a partner with its first key.
func (s *Service) CreatePartner(ctx context.Context, actor Actor, name string) (Partner, NewKey, error) {
	if err := validName("name", name); err != nil {
		return Partner{}, NewKey{}, err
	}
	now := s.now()
	p := Partner{ID: NewID("par_"), Name: name, Status: StatusActive, CreatedAt: now}
	k, secret := newKey(PartnerKeyPrefix, p.ID, "", now)
	evs := []AuditEvent{
		event(now, actor, "partner.created", "partner", p.ID),
		event(now, actor, "key.created", "key", k.ID),
	}
	if err := s.store.CreatePartner(ctx, p, k.Key, DigestOf(secret.Reveal()), evs); err != nil {
		return Partner{}, NewKey{}, err
	}
	return p, k, nil
}

// ListPartners lists every partner.
func (s *Service) ListPartners(ctx context.Context) ([]Partner, error) {
	return s.store.ListPartners(ctx)
}

// DisablePartner stops every key of a partner and of its companies from
// logging in or refreshing.
func (s *Service) DisablePartner(ctx context.Context, actor Actor, id string) error {
	now := s.now()
	return s.store.DisablePartner(ctx, id, now, event(now, actor, "partner.disabled", "partner", id))
}

// CreatePartnerKey adds a key to a partner for zero-downtime rotation.
func (s *Service) CreatePartnerKey(ctx context.Context, actor Actor, partnerID string) (NewKey, error) {
	return s.createKey(ctx, actor, partnerID, "")
}

// ListPartnerKeys lists a partner's own keys.
func (s *Service) ListPartnerKeys(ctx context.Context, partnerID string) ([]Key, error) {
	return s.store.ListKeys(ctx, partnerID, "")
}

// RevokePartnerKey revokes one of a partner's own keys.
func (s *Service) RevokePartnerKey(ctx context.Context, actor Actor, partnerID, keyID string) error {
	now := s.now()
	return s.store.RevokeKey(ctx, partnerID, "", keyID, now, event(now, actor, "key.revoked", "key", keyID))
}

// CompanyInput is what a partner sends to create a company.
type CompanyInput struct {
	Name       string
	ExternalID *string
}

// CreateCompany creates a company of the calling partner with its first key.
func (s *Service) CreateCompany(ctx context.Context, actor Actor, partnerID string, in CompanyInput) (Company, NewKey, error) {
	if err := validName("name", in.Name); err != nil {
		return Company{}, NewKey{}, err
	}
	if in.ExternalID != nil {
		if err := validName("externalId", *in.ExternalID); err != nil {
			return Company{}, NewKey{}, err
		}
	}
	now := s.now()
	c := Company{ID: NewID("com_"), PartnerID: partnerID, Name: in.Name, ExternalID: in.ExternalID, Status: StatusActive, CreatedAt: now}
	k, secret := newKey(CompanyKeyPrefix, partnerID, c.ID, now)
	evs := []AuditEvent{
		event(now, actor, "company.created", "company", c.ID),
		event(now, actor, "key.created", "key", k.ID),
	}
	if err := s.store.CreateCompany(ctx, c, k.Key, DigestOf(secret.Reveal()), evs); err != nil {
		return Company{}, NewKey{}, err
	}
	return c, k, nil
}

// GetCompany returns a company of the given partner; another partner's
// company is ErrNotFound, exactly like a missing one.
func (s *Service) GetCompany(ctx context.Context, partnerID, id string) (Company, error) {
	if id == "" {
		return Company{}, ErrNotFound
	}
	return s.store.GetCompany(ctx, partnerID, id)
}

// ListCompanies pages through a partner's companies, oldest first.
func (s *Service) ListCompanies(ctx context.Context, partnerID string, page Page) (CompanyPage, error) {
	if page.Limit < 1 || page.Limit > 200 {
		return CompanyPage{}, &ValidationError{Field: "limit", Message: "must be an integer from 1 to 200"}
	}
	return s.store.ListCompanies(ctx, partnerID, page)
}

// DisableCompany disables a company of the given partner.
func (s *Service) DisableCompany(ctx context.Context, actor Actor, partnerID, id string) error {
	if id == "" {
		return ErrNotFound
	}
	now := s.now()
	return s.store.DisableCompany(ctx, partnerID, id, now, event(now, actor, "company.disabled", "company", id))
}

// CreateCompanyKey adds a key to a company of the given partner.
func (s *Service) CreateCompanyKey(ctx context.Context, actor Actor, partnerID, companyID string) (NewKey, error) {
	if companyID == "" {
		return NewKey{}, ErrNotFound // an empty id would name the partner's own keys
	}
	return s.createKey(ctx, actor, partnerID, companyID)
}

// ListCompanyKeys lists a company's keys, if it belongs to the partner.
func (s *Service) ListCompanyKeys(ctx context.Context, partnerID, companyID string) ([]Key, error) {
	if _, err := s.GetCompany(ctx, partnerID, companyID); err != nil {
		return nil, err
	}
	return s.store.ListKeys(ctx, partnerID, companyID)
}

// RevokeCompanyKey revokes a company's key; its refresh tokens die with it.
func (s *Service) RevokeCompanyKey(ctx context.Context, actor Actor, partnerID, companyID, keyID string) error {
	if companyID == "" {
		return ErrNotFound // an empty id would name the partner's own keys
	}
	now := s.now()
	return s.store.RevokeKey(ctx, partnerID, companyID, keyID, now, event(now, actor, "key.revoked", "key", keyID))
}

func (s *Service) createKey(ctx context.Context, actor Actor, partnerID, companyID string) (NewKey, error) {
	now := s.now()
	prefix := PartnerKeyPrefix
	if companyID != "" {
		prefix = CompanyKeyPrefix
	}
	k, secret := newKey(prefix, partnerID, companyID, now)
	ev := event(now, actor, "key.created", "key", k.ID)
	if err := s.store.CreateKey(ctx, k.Key, DigestOf(secret.Reveal()), ev); err != nil {
		return NewKey{}, err
	}
	return k, nil
}

// HintMalformed names, in the audit trail, a presented key that is not a
// well-formed API key at all.
const HintMalformed = "malformed"

// RecordLogin audits a login attempt, naming the key by its hint only (or
// HintMalformed), and on success notes the key's last use. With a Recorder
// both are batched; without one they are written at once.
func (s *Service) RecordLogin(ctx context.Context, p Principal, hint, addr string, ok bool) {
	now := s.now()
	ev := AuditEvent{At: now, ActorType: "anonymous", Action: "login", TargetType: "key", Target: hint, Addr: addr, Outcome: OutcomeFailure}
	if ok {
		ev.ActorType, ev.ActorID, ev.Target, ev.Outcome = string(p.Kind), p.ID, p.KeyID, OutcomeSuccess
		ev.Detail = "hint=" + hint
	}
	if s.audit != nil {
		var keyID string
		if ok {
			keyID = p.KeyID
		}
		s.audit.Login(ev, keyID)
		return
	}
	var used map[string]time.Time
	if ok {
		used = map[string]time.Time{p.KeyID: now}
	}
	if err := s.store.RecordUsage(ctx, used, []AuditEvent{ev}); err != nil {
		s.log.ErrorContext(ctx, "recording login", "err", err)
	}
}

// ActivePrincipal checks that the principal a token names may still act,
// and fills in its name.
func (s *Service) ActivePrincipal(ctx context.Context, p Principal) (Principal, error) {
	return s.store.ActivePrincipal(ctx, p)
}

// ListAudit returns audit events since a time, oldest first.
func (s *Service) ListAudit(ctx context.Context, since time.Time) ([]AuditEvent, error) {
	return s.store.ListAudit(ctx, since)
}

func newKey(prefix, partnerID, companyID string, now time.Time) (NewKey, Secret) {
	secret := NewAPIKey(prefix)
	k := NewKey{
		Key: Key{
			ID:        NewID("key_"),
			PartnerID: partnerID,
			CompanyID: companyID,
			Hint:      Hint(secret.Reveal()),
			CreatedAt: now,
		},
		APIKey: secret,
	}
	return k, secret
}

func event(at time.Time, actor Actor, action, targetType, target string) AuditEvent {
	return AuditEvent{At: at, ActorType: actor.Type, ActorID: actor.ID, Action: action, TargetType: targetType, Target: target, Addr: actor.Addr, Outcome: OutcomeSuccess}
}

// validName accepts 1..200 characters of valid UTF-8.
func validName(field, v string) error {
	switch n := utf8.RuneCountInString(v); {
	case !utf8.ValidString(v):
		return &ValidationError{Field: field, Message: "must be valid UTF-8"}
	case n == 0:
		return &ValidationError{Field: field, Message: "must not be empty"}
	case n > 200:
		return &ValidationError{Field: field, Message: fmt.Sprintf("must be at most 200 characters, got %d", n)}
	}
	return nil
}
