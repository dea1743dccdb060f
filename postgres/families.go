package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"keygate/keys"
	"keygate/tokens"
)

// UpdateFamily implements tokens.FamilyStore. One transaction holds the
// family's row locked (SELECT ... FOR UPDATE) from the read to the commit,
// so that no other transaction, on this replica or another, decides on the
// same generation in between: of many concurrent refreshes of one token,
// the first rotates and the others, waiting on the lock, read its result.
//
// A family without a row (a login's generation-0 token) has nothing to
// lock: its first refresh inserts the row, and when two replicas insert
// the same family at once, the primary key makes the second wait for the
// first to commit and then insert nothing; that transaction is rolled back
// and run again, and finds the row. decide may so run more than once; only
// the run whose transaction commits counts.
func (d *DB) UpdateFamily(ctx context.Context, id string, seed *tokens.Family, decide func(f *tokens.Family) (tokens.Change, error)) error {
	var decision error
	err := d.tx(ctx, func(tx pgx.Tx) error {
		decision = nil
		f, exists, err := lockFamily(ctx, tx, id)
		switch {
		case err != nil:
			return err
		case !exists && seed == nil:
			return keys.ErrNotFound
		case !exists:
			if f, err = seedFamily(ctx, tx, id, *seed); err != nil {
				return err
			}
		}
		read := f.Generation
		change, derr := decide(&f)
		decision = derr
		if change.Write {
			if err := writeFamily(ctx, tx, f, exists, read); err != nil {
				return err
			}
		}
		return insertAudit(ctx, tx, change.Audit)
	})
	if err != nil {
		return err
	}
	return decision
}

// familyColumns reads a family's row (f) and what its key may still do,
// in the same statement: whether the key, its partner and its company, if
// any, are active and still the principal the family names, the key's
// scopes and its partner's, and the key's expiry.
const familyColumns = `SELECT f.key_id, f.kind, f.principal_id, f.partner_id, COALESCE(f.company_id, ''),
		f.created_at, f.generation, f.rotated_at, f.expires_at, f.parent_expires_at, f.first_expires_at,
		f.revoked_at, COALESCE(f.revoke_reason, ''), f.scopes,
		COALESCE(` + activeExpr + `, false), COALESCE(k.scopes, ''), COALESCE(p.scopes, ''), k.expires_at
	FROM refresh_families f
	LEFT JOIN api_keys k ON k.id = f.key_id AND k.partner_id = f.partner_id AND COALESCE(k.company_id, '') = COALESCE(f.company_id, '')
	LEFT JOIN partners p ON p.id = k.partner_id
	LEFT JOIN companies c ON c.id = k.company_id`

// lockFamily reads the family's row and locks it until the transaction
// ends; exists is false if it has no row.
func lockFamily(ctx context.Context, tx pgx.Tx, id string) (f tokens.Family, exists bool, err error) {
	var kind string
	var created, rotated, expires int64
	var parentExpires, firstExpires, revoked, keyExpires *int64
	var scopes *string
	var keyScopes, partnerScopes string
	err = tx.QueryRow(ctx, familyColumns+` WHERE f.id = $1 FOR UPDATE OF f`, id).Scan(
		&f.Principal.KeyID, &kind, &f.Principal.ID, &f.Principal.PartnerID, &f.Principal.CompanyID,
		&created, &f.Generation, &rotated, &expires, &parentExpires, &firstExpires, &revoked, &f.RevokeReason, &scopes,
		&f.PrincipalActive, &keyScopes, &partnerScopes, &keyExpires)
	if errors.Is(err, pgx.ErrNoRows) {
		return tokens.Family{}, false, nil
	}
	if err != nil {
		return tokens.Family{}, false, err
	}
	f.ID = id
	f.Principal.Kind = keys.Kind(kind)
	f.CreatedAt, f.RotatedAt, f.ExpiresAt = fromMS(created), fromMS(rotated), fromMS(expires)
	f.ParentExpiresAt, f.FirstExpiresAt = fromMSZero(parentExpires), fromMSZero(firstExpires)
	f.RevokedAt = fromMSPtr(revoked)
	f.Scope = scopeRequest(scopes)
	f.KeyScopes, f.PartnerScopes, f.KeyExpiresAt = keys.StoredScopes(keyScopes), keys.StoredScopes(partnerScopes), fromMSPtr(keyExpires)
	return f, true, nil
}

// scopeColumn is refresh_families.scopes for a request: NULL for all of
// the key's scopes, else the set asked for.
func scopeColumn(r keys.ScopeRequest) *string {
	if r.All() {
		return nil
	}
	v := r.Scopes().String()
	return &v
}

// scopeRequest reads refresh_families.scopes back.
func scopeRequest(v *string) keys.ScopeRequest {
	if v == nil {
		return keys.ScopeRequest{}
	}
	return keys.Only(keys.StoredScopes(*v))
}

// seedFamily is the family of a generation-0 token without a row yet: the
// seed, with the principal of the key it names and whether that may act.
func seedFamily(ctx context.Context, tx pgx.Tx, id string, f tokens.Family) (tokens.Family, error) {
	var partnerID, companyID, keyScopes, partnerScopes string
	var active bool
	var keyExpires *int64
	err := tx.QueryRow(ctx, `SELECT k.partner_id, COALESCE(k.company_id, ''), `+activeExpr+`, k.scopes, p.scopes, k.expires_at FROM api_keys k
		JOIN partners p ON p.id = k.partner_id
		LEFT JOIN companies c ON c.id = k.company_id
		WHERE k.id = $1`, f.Principal.KeyID).Scan(&partnerID, &companyID, &active, &keyScopes, &partnerScopes, &keyExpires)
	if errors.Is(err, pgx.ErrNoRows) {
		return tokens.Family{}, keys.ErrNotFound
	}
	if err != nil {
		return tokens.Family{}, err
	}
	o := keys.PartnerOwner(partnerID)
	if companyID != "" {
		o = keys.CompanyOwner(partnerID, companyID)
	}
	f.ID = id
	f.Principal = keys.PrincipalOf(f.Principal.KeyID, o, "")
	f.PrincipalActive = active
	f.KeyScopes, f.PartnerScopes, f.KeyExpiresAt = keys.StoredScopes(keyScopes), keys.StoredScopes(partnerScopes), fromMSPtr(keyExpires)
	return f, nil
}

// writeFamily inserts f's row, or updates it while it is still at
// generation read (it is: the row is locked). An insert that finds the row
// already there, committed meanwhile by another transaction, returns
// errRetry: the decision was made on a family that no longer has no row.
func writeFamily(ctx context.Context, tx pgx.Tx, f tokens.Family, exists bool, read int64) error {
	if !exists {
		p := f.Principal
		tag, err := tx.Exec(ctx, `INSERT INTO refresh_families
			(id, key_id, kind, principal_id, partner_id, company_id, created_at, generation, rotated_at, expires_at,
			 parent_expires_at, first_expires_at, revoked_at, revoke_reason, scopes)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
			ON CONFLICT (id) DO NOTHING`,
			f.ID, p.KeyID, string(p.Kind), p.ID, p.PartnerID, nullString(p.CompanyID),
			ms(f.CreatedAt), f.Generation, ms(f.RotatedAt), ms(f.ExpiresAt), msZero(f.ParentExpiresAt),
			msZero(f.FirstExpiresAt), msPtr(f.RevokedAt), nullString(f.RevokeReason), scopeColumn(f.Scope))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return errRetry
		}
		return nil
	}
	tag, err := tx.Exec(ctx, `UPDATE refresh_families
		SET generation = $1, rotated_at = $2, expires_at = $3, parent_expires_at = $4, revoked_at = $5, revoke_reason = $6
		WHERE id = $7 AND generation = $8`,
		f.Generation, ms(f.RotatedAt), ms(f.ExpiresAt), msZero(f.ParentExpiresAt), msPtr(f.RevokedAt), nullString(f.RevokeReason),
		f.ID, read)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("refresh family %s changed underneath its lock", f.ID)
	}
	return nil
}

// usageBatchRetention is how long a usage_batches row is kept. A replica
// needs its batch's row only until its next batch (a second later) or, when
// a commit's answer was lost, until it can reach the database again; rows
// are left behind only by replicas that stopped. A pending batch older
// than this when the database comes back may have its events written
// twice: an outage of more than an hour with the replica still running.
const usageBatchRetention = time.Hour

// DeleteFamilies implements tokens.FamilyStore. Several replicas may run
// housekeeping at once: each deletes only rows no one else has locked
// (SKIP LOCKED), so they neither wait for nor deadlock with each other, or
// with a refresh holding a row. Being housekeeping's call, it also deletes
// usage_batches rows older than usageBatchRetention, the same way.
func (d *DB) DeleteFamilies(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	var n int64
	err := d.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM usage_batches WHERE id IN (
				SELECT id FROM usage_batches WHERE at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
			ms(d.now().Add(-usageBatchRetention)), limit); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM refresh_families WHERE id IN (
				SELECT id FROM refresh_families
				WHERE (expires_at < $1 OR revoked_at < $1) AND COALESCE(first_expires_at, 0) < $1
				LIMIT $2 FOR UPDATE SKIP LOCKED)`, ms(before), limit)
		n = tag.RowsAffected()
		return err
	})
	return int(n), err
}
