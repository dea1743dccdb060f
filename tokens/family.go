package tokens

import (
	"context"
	"time"

	"keygate/keys"
)

// Family is one login's chain of refresh tokens. Only generation Generation
// is live; its parent, Generation-1, may be retried within the grace window.
type Family struct {
	ID              string
	Principal       keys.Principal // Name is not stored
	CreatedAt       time.Time
	Generation      int64
	RotatedAt       time.Time // when Generation was issued
	ExpiresAt       time.Time // of the live token
	ParentExpiresAt time.Time // of the parent token, zero for generation 1
	RevokedAt       *time.Time
	RevokeReason    string

	// PrincipalActive is read by the store in the same transaction: false if
	// the key was revoked or the company or partner disabled.
	PrincipalActive bool
}

// Change is what UpdateFamily writes after a decision: the family as left
// by the decision (if Write) and audit events, in the same transaction.
type Change struct {
	Write bool
	Audit []keys.AuditEvent
}

// FamilyStore persists refresh-token families.
type FamilyStore interface {
	// StartFamily resolves an API key digest to its active principal and
	// creates f for it, in one write transaction: the login's only round
	// trip to the store. keys.ErrInvalidKey if the key is unknown, revoked,
	// or its company or partner disabled; f.Principal is filled in.
	StartFamily(ctx context.Context, digest keys.Digest, f Family) (keys.Principal, error)
	// UpdateFamily reads the family inside one write transaction, calls
	// decide, applies its Change only if the family's generation is still
	// the one read (a conditional update), commits, and returns decide's
	// error. keys.ErrNotFound if there is no such family. decide runs inside
	// the store's write transaction (SQLite: on its single writer; memstore:
	// under its lock): it must be quick and must never call the store.
	UpdateFamily(ctx context.Context, id string, decide func(f *Family) (Change, error)) error
	// DeleteFamilies deletes up to limit families that expired or were
	// revoked before the given time, and reports how many it deleted.
	DeleteFamilies(ctx context.Context, before time.Time, limit int) (int, error)
}
