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
	// Scope is what the family's login asked for: all of its key's scopes
	// (stored as NULL), or a down-scoped set. Its tokens carry what of that
	// the key may still obtain.
	Scope keys.ScopeRequest
	// SeedScopes, of a seed (see FamilyStore.UpdateFamily) only, is the
	// down-scoped request of its generation-0 token: a bit for each of
	// KeyScopes, in their order, that the login asked for; 0 for all.
	// Deciding turns it into Scope, once the store has read KeyScopes.
	SeedScopes uint32

	// Read by the store in the same transaction, never written:
	// PrincipalActive is false if the key was revoked or the company or
	// partner disabled; KeyScopes are the key's own scopes, PartnerScopes
	// those its partner allows now, and KeyExpiresAt when the key expires
	// (nil: never).
	PrincipalActive bool
	KeyScopes       keys.Scopes
	PartnerScopes   keys.Scopes
	KeyExpiresAt    *time.Time
}

// settle turns a seed's down-scoping request (SeedScopes) into its Scope,
// once the store has read the key's own scopes; every decision starts with
// it.
func (f *Family) settle() {
	if f.SeedScopes != 0 {
		f.Scope, f.SeedScopes = keys.Only(maskScopes(f.KeyScopes, f.SeedScopes)), 0
	}
}

// held is what the family's key may obtain now.
func (f *Family) held() keys.Scopes { return f.KeyScopes.Intersect(f.PartnerScopes) }

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
	// in from the key seed.Principal.KeyID names and the fields read by the
	// store set, and a Write inserts the row; a concurrent insert of the same family
	// makes one of them the update of the other's row, never a second row.
	// keys.ErrNotFound if there is no row and no seed, or the seed's key
	// does not exist.
	//
	// PrincipalActive, KeyScopes, PartnerScopes and KeyExpiresAt are read
	// in the same transaction (with the row, if cached, read afresh).
	// decide runs inside the
	// store's write transaction (SQLite: on its single writer; memstore:
	// under its lock): it must be quick and must never call the store.
	UpdateFamily(ctx context.Context, id string, seed *Family, decide func(f *Family) (Change, error)) error
	// DeleteFamilies deletes up to limit families that expired or were
	// revoked before the given time and whose generation-0 token expired
	// before it too (so that token cannot bring the family back), and
	// reports how many it deleted.
	DeleteFamilies(ctx context.Context, before time.Time, limit int) (int, error)
}
