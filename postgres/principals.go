package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"keygate/keys"
)

// activeExpr is whether a key (k) may act: not revoked, its partner (p)
// and its company (c), if any, active.
const activeExpr = `(k.revoked_at IS NULL AND p.status = 'active' AND (k.company_id IS NULL OR c.status = 'active'))`

const resolvedColumns = `SELECT k.id, k.digest, k.partner_id, COALESCE(k.company_id, ''), p.name, COALESCE(c.name, ''), ` + activeExpr + `,
		k.scopes, p.scopes, k.expires_at
	FROM api_keys k
	JOIN partners p ON p.id = k.partner_id
	LEFT JOIN companies c ON c.id = k.company_id`

// ResolveKey implements keys.Store.
func (d *DB) ResolveKey(ctx context.Context, digest keys.Digest) (keys.ResolvedKey, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	return d.scanResolved(d.pool.QueryRow(ctx, resolvedColumns+` WHERE k.digest = $1`, digest[:]))
}

// ResolveKeyID implements keys.Store.
func (d *DB) ResolveKeyID(ctx context.Context, keyID string) (keys.ResolvedKey, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	return d.scanResolved(d.pool.QueryRow(ctx, resolvedColumns+` WHERE k.id = $1`, keyID))
}

func (d *DB) scanResolved(row pgx.Row) (keys.ResolvedKey, error) {
	var r keys.ResolvedKey
	var keyID, partnerID, companyID, partnerName, companyName, keyScopes, partnerScopes string
	var digest []byte
	var expires *int64
	err := row.Scan(&keyID, &digest, &partnerID, &companyID, &partnerName, &companyName, &r.Active, &keyScopes, &partnerScopes, &expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return keys.ResolvedKey{}, keys.ErrInvalidKey
	}
	if err != nil {
		return keys.ResolvedKey{}, d.mapErr(err)
	}
	if len(digest) != len(r.Digest) {
		return keys.ResolvedKey{}, errors.New("stored key digest has the wrong length")
	}
	copy(r.Digest[:], digest)
	if companyID == "" {
		r.Principal = keys.PrincipalOf(keyID, keys.PartnerOwner(partnerID), partnerName)
	} else {
		r.Principal = keys.PrincipalOf(keyID, keys.CompanyOwner(partnerID, companyID), companyName)
	}
	r.KeyScopes, r.PartnerScopes, r.Principal.KeyExpiresAt = keys.StoredScopes(keyScopes), keys.StoredScopes(partnerScopes), fromMSPtr(expires)
	return r, nil
}

// KeyEpoch implements keys.Store: one primary-key read, which is how a
// revocation through any replica or the CLI reaches every other replica's
// key cache for certain (keys.Service: before each batch of logins, at
// most every 10 ms for token checks; notifications only hurry it).
func (d *DB) KeyEpoch(ctx context.Context) (int64, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	var epoch int64
	err := d.pool.QueryRow(ctx, `SELECT epoch FROM key_epoch WHERE id = 1`).Scan(&epoch)
	return epoch, d.mapErr(err)
}
