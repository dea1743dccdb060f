package keys

import (
	"context"
	"time"
)

// Store is the persistence keys needs. Every mutating method writes its
// audit events in the same transaction as its change.
type Store interface {
	// CreatePartner creates a partner with its first key, which must be
	// the partner's own (ErrWrongOwner otherwise).
	CreatePartner(ctx context.Context, p Partner, k Key, digest Digest, ev []AuditEvent) error
	ListPartners(ctx context.Context) ([]Partner, error)
	// GetPartner reads one partner: ErrNotFound if there is none.
	GetPartner(ctx context.Context, id string) (Partner, error)
	// SetPartnerScopes replaces a partner's allowed scopes (ErrNotFound for
	// an unknown partner). Like RevokeKey, it moves the key epoch: cached
	// keys of the partner and its companies hold its old scopes.
	SetPartnerScopes(ctx context.Context, id string, scopes Scopes, at time.Time, ev AuditEvent) error
	DisablePartner(ctx context.Context, id string, at time.Time, ev AuditEvent) error

	// CreateCompany creates a company with its first key, which must be
	// the company's own (ErrWrongOwner otherwise): ErrNotFound for an
	// unknown partner, ErrDisabled for a disabled one, ErrConflict for a
	// duplicate external id of the same partner.
	CreateCompany(ctx context.Context, c Company, k Key, digest Digest, ev []AuditEvent) error
	GetCompany(ctx context.Context, partnerID, id string) (Company, error)
	ListCompanies(ctx context.Context, partnerID string, page Page) (CompanyPage, error)
	DisableCompany(ctx context.Context, partnerID, id string, at time.Time, ev AuditEvent) error

	// CreateKey adds a key to an existing owner (k.Owner): ErrNotFound if
	// there is none, ErrDisabled if it (or its partner) is disabled.
	CreateKey(ctx context.Context, k Key, digest Digest, ev AuditEvent) error
	// ListKeys lists the keys of one owner, oldest first.
	ListKeys(ctx context.Context, o Owner) ([]Key, error)
	// RevokeKey revokes a key of the given owner: ErrNotFound if the owner
	// has no such key; revoking twice is not an error, and writes nothing
	// (ev included). Like DisablePartner and DisableCompany, it moves the
	// key epoch.
	RevokeKey(ctx context.Context, o Owner, keyID string, at time.Time, ev AuditEvent) error

	// ResolveKey reads the key with this digest and its owners' state,
	// writing nothing: ErrInvalidKey if no key has it. A revoked key, or one
	// of a disabled partner or company, resolves with Active false.
	ResolveKey(ctx context.Context, digest Digest) (ResolvedKey, error)
	// ResolveKeyID is ResolveKey by key id: ErrInvalidKey for an unknown id.
	ResolveKeyID(ctx context.Context, keyID string) (ResolvedKey, error)
	// KeyEpoch is a number that moves whenever a key is revoked or a
	// partner or company disabled, through any handle on the store (another
	// process's included), in the same transaction as the change: a cache
	// of resolved keys that saw the same epoch a moment ago is still exact.
	KeyEpoch(ctx context.Context) (int64, error)

	// RecordUsage writes a batch of key last-use times and audit events.
	RecordUsage(ctx context.Context, lastUsed map[string]time.Time, events []AuditEvent) error
	// ListAudit lists up to limit audit events strictly after the cursor,
	// ordered by time and then by ID, with their IDs set.
	ListAudit(ctx context.Context, after AuditCursor, limit int) ([]AuditEvent, error)
	// DeleteAudit deletes up to limit of the oldest audit events older than
	// before and reports how many it deleted. Several processes may run it
	// at once: each event is deleted once.
	DeleteAudit(ctx context.Context, before time.Time, limit int) (int, error)
}
