package tokens

import (
	"context"
	"time"

	"keygate/keys"
)

// Family is one login's chain of refresh tokens. Only generation Generation
// is live; its parent, Generation-1, may be retried within the grace window.
// A login's own token is generation 0, and the family has no row until that
// token is first used (see refreshtoken.go).
type Family struct {
	ID              string
	Principal       keys.Principal // Name is not stored
	CreatedAt       time.Time
	Generation      int64
	RotatedAt       time.Time // when Generation was issued
	ExpiresAt       time.Time // of the live token
	ParentExpiresAt time.Time // of the parent token, zero for generation 0
	// FirstExpiresAt is when the family's generation-0 token expires: until
	// then, that token names the family even without its row, so the row
	// of a revoked family must outlive it. Zero for families whose login
	// wrote their row (before generation 0 existed).
	FirstExpiresAt time.Time
	RevokedAt      *time.Time
	RevokeReason   string

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
	// UpdateFamily reads the family inside one write transaction, calls
	// decide, applies its Change only if the family is still as read (a
	// conditional write), commits, and returns decide's error.
	//
	// If the family has no row and seed is not nil (the family of a
	// generation-0 token), decide gets the seed, with its Principal filled
	// in from the key seed.Principal.KeyID names and PrincipalActive set,
	// and a Write inserts the row; a concurrent insert of the same family
	// makes one of them the update of the other's row, never a second row.
	// keys.ErrNotFound if there is no row and no seed, or the seed's key
	// does not exist.
	//
	// PrincipalActive is read in the same transaction: false if the key was
	// revoked or its company or partner disabled. decide runs inside the
	// store's write transaction (SQLite: on its single writer; memstore:
	// under its lock): it must be quick and must never call the store.
	UpdateFamily(ctx context.Context, id string, seed *Family, decide func(f *Family) (Change, error)) error
	// DeleteFamilies deletes up to limit families that expired or were
	// revoked before the given time and whose generation-0 token expired
	// before it too (so that token cannot bring the family back), and
	// reports how many it deleted.
	DeleteFamilies(ctx context.Context, before time.Time, limit int) (int, error)
}
