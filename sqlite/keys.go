package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"keygate/keys"
	"time"
)

var _ keys.Store = (*DB)(nil)

// CreatePartner implements keys.Store.
func (d *DB) CreatePartner(ctx context.Context, p keys.Partner, k keys.Key, digest keys.Digest, evs []keys.AuditEvent) error {
	if k.Owner != keys.PartnerOwner(p.ID) {
		return keys.ErrWrongOwner
	}
	return d.do(ctx, func(ctx context.Context, tx *wtx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO partners (id, name, status, created_at, scopes) VALUES (?, ?, ?, ?, ?)`,
			p.ID, p.Name, p.Status, ms(p.CreatedAt), p.Scopes.String()); err != nil {
			return err
		}
		if err := insertKey(ctx, tx, k, digest); err != nil {
			return err
		}
		return insertAudit(ctx, tx, evs)
	})
}

const partnerColumns = `id, name, status, created_at, scopes`

func scanPartner(scan func(...any) error) (keys.Partner, error) {
	var p keys.Partner
	var created int64
	var scopes string
	err := scan(&p.ID, &p.Name, &p.Status, &created, &scopes)
	p.CreatedAt, p.Scopes = fromMS(created), keys.StoredScopes(scopes)
	return p, err
}

// ListPartners implements keys.Store.
func (d *DB) ListPartners(ctx context.Context) ([]keys.Partner, error) {
	rows, err := d.read.QueryContext(ctx, `SELECT `+partnerColumns+` FROM partners ORDER BY created_at, id`)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []keys.Partner
	for rows.Next() {
		p, err := scanPartner(rows.Scan)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, mapErr(rows.Err())
}

// GetPartner implements keys.Store.
func (d *DB) GetPartner(ctx context.Context, id string) (keys.Partner, error) {
	p, err := scanPartner(d.read.QueryRowContext(ctx, `SELECT `+partnerColumns+` FROM partners WHERE id = ?`, id).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return keys.Partner{}, keys.ErrNotFound
	}
	return p, mapErr(err)
}

// SetPartnerScopes implements keys.Store.
func (d *DB) SetPartnerScopes(ctx context.Context, id string, scopes keys.Scopes, at time.Time, ev keys.AuditEvent) error {
	return d.do(ctx, func(ctx context.Context, tx *wtx) error {
		d.cache.forgetKeys()
		res, err := tx.ExecContext(ctx, `UPDATE partners SET scopes = ? WHERE id = ?`, scopes.String(), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return keys.ErrNotFound
		}
		if err := bumpKeyEpoch(ctx, tx); err != nil {
			return err
		}
		return insertAudit(ctx, tx, []keys.AuditEvent{ev})
	})
}

// DisablePartner implements keys.Store. Disabling twice is not an error.
func (d *DB) DisablePartner(ctx context.Context, id string, at time.Time, ev keys.AuditEvent) error {
	return d.do(ctx, func(ctx context.Context, tx *wtx) error {
		d.cache.forgetKeys()
		res, err := tx.ExecContext(ctx, `UPDATE partners SET status = 'disabled', disabled_at = ? WHERE id = ? AND status = 'active'`, ms(at), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return existsOr(ctx, tx, `SELECT 1 FROM partners WHERE id = ?`, id)
		}
		if err := bumpKeyEpoch(ctx, tx); err != nil {
			return err
		}
		return insertAudit(ctx, tx, []keys.AuditEvent{ev})
	})
}

// CreateCompany implements keys.Store. A duplicate external id of the same
// partner is keys.ErrConflict; an unknown partner keys.ErrNotFound and a
// disabled one keys.ErrDisabled, as for CreateKey.
func (d *DB) CreateCompany(ctx context.Context, c keys.Company, k keys.Key, digest keys.Digest, evs []keys.AuditEvent) error {
	if k.Owner != keys.CompanyOwner(c.PartnerID, c.ID) {
		return keys.ErrWrongOwner
	}
	return d.do(ctx, func(ctx context.Context, tx *wtx) error {
		if err := activeOwner(ctx, tx, keys.PartnerOwner(c.PartnerID)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO companies (id, partner_id, name, external_id, status, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			c.ID, c.PartnerID, c.Name, c.ExternalID, c.Status, ms(c.CreatedAt)); err != nil {
			return err
		}
		if err := insertKey(ctx, tx, k, digest); err != nil {
			return err
		}
		return insertAudit(ctx, tx, evs)
	})
}

func scanCompany(scan func(...any) error) (keys.Company, int64, error) {
	var c keys.Company
	var seq, created int64
	var ext sql.NullString
	if err := scan(&seq, &c.ID, &c.PartnerID, &c.Name, &ext, &c.Status, &created); err != nil {
		return keys.Company{}, 0, err
	}
	if ext.Valid {
		c.ExternalID = &ext.String
	}
	c.CreatedAt = fromMS(created)
	return c, seq, nil
}

// GetCompany implements keys.Store.
func (d *DB) GetCompany(ctx context.Context, partnerID, id string) (keys.Company, error) {
	c, _, err := scanCompany(d.stmts.getCompany.QueryRowContext(ctx, partnerID, id).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return keys.Company{}, keys.ErrNotFound
	}
	return c, mapErr(err)
}

// ListCompanies implements keys.Store: keyset pagination on an ever-growing
// sequence, so companies created while a client walks the pages appear at
// the end and none is skipped or repeated.
func (d *DB) ListCompanies(ctx context.Context, partnerID string, page keys.Page) (keys.CompanyPage, error) {
	rows, err := d.stmts.listCompanies.QueryContext(ctx, partnerID, page.After, page.Limit+1)
	if err != nil {
		return keys.CompanyPage{}, mapErr(err)
	}
	defer rows.Close()
	out := keys.CompanyPage{Companies: []keys.Company{}}
	for rows.Next() {
		if len(out.Companies) == page.Limit {
			out.More = true
			break
		}
		c, seq, err := scanCompany(rows.Scan)
		if err != nil {
			return keys.CompanyPage{}, err
		}
		out.Companies = append(out.Companies, c)
		out.Last = seq
	}
	return out, mapErr(rows.Err())
}

// DisableCompany implements keys.Store.
func (d *DB) DisableCompany(ctx context.Context, partnerID, id string, at time.Time, ev keys.AuditEvent) error {
	return d.do(ctx, func(ctx context.Context, tx *wtx) error {
		d.cache.forgetKeys()
		res, err := tx.ExecContext(ctx, `UPDATE companies SET status = 'disabled', disabled_at = ? WHERE partner_id = ? AND id = ? AND status = 'active'`, ms(at), partnerID, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return existsOr(ctx, tx, `SELECT 1 FROM companies WHERE partner_id = ? AND id = ?`, partnerID, id)
		}
		if err := bumpKeyEpoch(ctx, tx); err != nil {
			return err
		}
		return insertAudit(ctx, tx, []keys.AuditEvent{ev})
	})
}

// CreateKey implements keys.Store.
func (d *DB) CreateKey(ctx context.Context, k keys.Key, digest keys.Digest, ev keys.AuditEvent) error {
	return d.do(ctx, func(ctx context.Context, tx *wtx) error {
		if err := activeOwner(ctx, tx, k.Owner); err != nil {
			return err
		}
		if err := insertKey(ctx, tx, k, digest); err != nil {
			return err
		}
		return insertAudit(ctx, tx, []keys.AuditEvent{ev})
	})
}

// ListKeys implements keys.Store.
func (d *DB) ListKeys(ctx context.Context, o keys.Owner) ([]keys.Key, error) {
	where, args, ok := ownerKeys(o)
	if !ok {
		return []keys.Key{}, nil
	}
	rows, err := d.read.QueryContext(ctx, `SELECT id, hint, created_at, last_used_at, revoked_at, name, scopes, expires_at
		FROM api_keys WHERE `+where+` ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	out := []keys.Key{}
	for rows.Next() {
		k := keys.Key{Owner: o}
		var created int64
		var used, revoked, expires sql.NullInt64
		var name sql.NullString
		var scopes string
		if err := rows.Scan(&k.ID, &k.Hint, &created, &used, &revoked, &name, &scopes, &expires); err != nil {
			return nil, err
		}
		k.CreatedAt, k.LastUsedAt, k.RevokedAt = fromMS(created), fromNullMS(used), fromNullMS(revoked)
		k.Name, k.Scopes, k.ExpiresAt = name.String, keys.StoredScopes(scopes), fromNullMS(expires)
		out = append(out, k)
	}
	return out, mapErr(rows.Err())
}

// ownerKeys is the condition on api_keys that selects an owner's keys, with
// its arguments; ok is false for an Owner that names no one. A partner's
// own keys are those without a company: never "a company id of ”".
func ownerKeys(o keys.Owner) (where string, args []any, ok bool) {
	switch o.Kind() {
	case keys.KindPartner:
		return `partner_id = +? AND company_id IS NULL`, []any{o.PartnerID()}, true
	case keys.KindCompany:
		return `partner_id = +? AND company_id = +?`, []any{o.PartnerID(), o.CompanyID()}, true
	}
	return "", nil, false
}

// RevokeKey implements keys.Store. The key's refresh-token families are
// left as they are: every refresh re-reads the key in its transaction
// (PrincipalActive) and refuses, which costs no index on key_id that every
// login would have to update.
func (d *DB) RevokeKey(ctx context.Context, o keys.Owner, keyID string, at time.Time, ev keys.AuditEvent) error {
	where, args, ok := ownerKeys(o)
	if !ok {
		return keys.ErrNotFound
	}
	return d.do(ctx, func(ctx context.Context, tx *wtx) error {
		d.cache.forgetKeys()
		res, err := tx.ExecContext(ctx, `UPDATE api_keys SET revoked_at = ? WHERE id = ? AND `+where+` AND revoked_at IS NULL`,
			append([]any{ms(at), keyID}, args...)...)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return existsOr(ctx, tx, `SELECT 1 FROM api_keys WHERE id = ? AND `+where, append([]any{keyID}, args...)...)
		}
		if err := bumpKeyEpoch(ctx, tx); err != nil {
			return err
		}
		return insertAudit(ctx, tx, []keys.AuditEvent{ev})
	})
}

// RecordUsage implements keys.Store.
func (d *DB) RecordUsage(ctx context.Context, lastUsed map[string]time.Time, evs []keys.AuditEvent) error {
	return d.do(ctx, func(ctx context.Context, tx *wtx) error {
		if len(lastUsed) > 0 {
			st, err := tx.PrepareContext(ctx, `UPDATE api_keys SET last_used_at = MAX(COALESCE(last_used_at, 0), ?) WHERE id = ?`)
			if err != nil {
				return err
			}
			defer st.Close()
			for id, at := range lastUsed {
				if _, err := st.ExecContext(ctx, ms(at), id); err != nil {
					return err
				}
			}
		}
		return insertAudit(ctx, tx, evs)
	})
}

func insertKey(ctx context.Context, tx *wtx, k keys.Key, digest keys.Digest) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO api_keys (id, digest, hint, partner_id, company_id, created_at, name, scopes, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		k.ID, digest[:], k.Hint, k.Owner.PartnerID(), companyColumn(k.Owner), ms(k.CreatedAt), nullString(k.Name), k.Scopes.String(), nullMS(k.ExpiresAt))
	return err
}

// companyColumn is api_keys.company_id for a key of o: NULL for a
// partner's own key, the company id (even an empty one, which no company
// has) for a company's.
func companyColumn(o keys.Owner) any {
	if o.Kind() == keys.KindCompany {
		return o.CompanyID()
	}
	return nil
}

// activeOwner checks that a partner, or a company of it, exists
// (keys.ErrNotFound) and may act (keys.ErrDisabled): a company of a
// disabled partner is as disabled as the partner.
func activeOwner(ctx context.Context, tx *wtx, o keys.Owner) error {
	var status string
	var err error
	switch o.Kind() {
	case keys.KindPartner:
		err = tx.QueryRowContext(ctx, `SELECT status FROM partners WHERE id = ?`, o.PartnerID()).Scan(&status)
	case keys.KindCompany:
		err = tx.QueryRowContext(ctx, `SELECT CASE WHEN p.status = 'active' THEN c.status ELSE p.status END
			FROM companies c JOIN partners p ON p.id = c.partner_id
			WHERE c.partner_id = +? AND c.id = +?`, o.PartnerID(), o.CompanyID()).Scan(&status)
	default:
		return keys.ErrNotFound
	}
	if errors.Is(err, sql.ErrNoRows) {
		return keys.ErrNotFound
	}
	if err != nil {
		return err
	}
	if status != keys.StatusActive {
		return keys.ErrDisabled
	}
	return nil
}

// existsOr returns nil if the query finds a row and keys.ErrNotFound if not.
func existsOr(ctx context.Context, tx *wtx, q string, args ...any) error {
	var one int
	err := tx.QueryRowContext(ctx, q, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return keys.ErrNotFound
	}
	return err
}
