package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"keygate/keys"
)

// readStmts are the statements on the hot read paths, prepared once.
type readStmts struct {
	stmts
	resolveKey, resolveKeyID, keyEpoch *sql.Stmt
	getCompany, listCompanies          *sql.Stmt
}

// activeExpr is whether a key (k) may act: not revoked, its partner (p)
// and its company (c), if any, active.
const activeExpr = `(k.revoked_at IS NULL AND p.status = 'active' AND (k.company_id IS NULL OR c.status = 'active'))`

const resolvedColumns = `SELECT k.id, k.digest, k.partner_id, COALESCE(k.company_id, ''), p.name, COALESCE(c.name, ''), ` + activeExpr + `,
		k.scopes, p.scopes, k.expires_at
	FROM api_keys k
	JOIN partners p ON p.id = k.partner_id
	LEFT JOIN companies c ON c.id = k.company_id`

const companyColumns = `SELECT seq, id, partner_id, name, external_id, status, created_at FROM companies`

func (s *readStmts) prepare(ctx context.Context, db *sql.DB) error {
	prep := s.stmts.preparer(ctx, db)
	s.resolveKey = prep(resolvedColumns + ` WHERE k.digest = +?`) // +?: see stmts
	s.resolveKeyID = prep(resolvedColumns + ` WHERE k.id = +?`)
	s.keyEpoch = prep(`SELECT epoch FROM key_epoch WHERE id = 1`)
	s.getCompany = prep(companyColumns + ` WHERE partner_id = +? AND id = +?`)
	s.listCompanies = prep(companyColumns + ` WHERE partner_id = +? AND seq > +? ORDER BY seq LIMIT +?`)
	return s.stmts.err
}

// ResolveKey implements keys.Store. It reads a pooled connection, never
// the writer: a login waits for no commit.
func (d *DB) ResolveKey(ctx context.Context, digest keys.Digest) (keys.ResolvedKey, error) {
	return scanResolved(d.stmts.resolveKey.QueryRowContext(ctx, digest[:]))
}

// ResolveKeyID implements keys.Store.
func (d *DB) ResolveKeyID(ctx context.Context, keyID string) (keys.ResolvedKey, error) {
	return scanResolved(d.stmts.resolveKeyID.QueryRowContext(ctx, keyID))
}

func scanResolved(row *sql.Row) (keys.ResolvedKey, error) {
	var r keys.ResolvedKey
	var keyID, partnerID, companyID, partnerName, companyName, keyScopes, partnerScopes string
	var digest []byte
	var expires sql.NullInt64
	err := row.Scan(&keyID, &digest, &partnerID, &companyID, &partnerName, &companyName, &r.Active, &keyScopes, &partnerScopes, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return keys.ResolvedKey{}, keys.ErrInvalidKey
	}
	if err != nil {
		return keys.ResolvedKey{}, mapErr(err)
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
	r.KeyScopes, r.PartnerScopes, r.Principal.KeyExpiresAt = keys.StoredScopes(keyScopes), keys.StoredScopes(partnerScopes), fromNullMS(expires)
	return r, nil
}

// KeyEpoch implements keys.Store.
func (d *DB) KeyEpoch(ctx context.Context) (int64, error) {
	var epoch int64
	err := d.stmts.keyEpoch.QueryRowContext(ctx).Scan(&epoch)
	return epoch, mapErr(err)
}

// bumpKeyEpoch moves the key epoch in a transaction that revokes a key,
// disables a partner or company or changes a partner's scopes; see
// keys.Store.KeyEpoch.
func bumpKeyEpoch(ctx context.Context, tx *wtx) error {
	_, err := tx.ExecContext(ctx, `UPDATE key_epoch SET epoch = epoch + 1 WHERE id = 1`)
	return err
}
