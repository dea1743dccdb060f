package postgres

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"keygate/keys"
)

// CreatePartner implements keys.Store.
func (d *DB) CreatePartner(ctx context.Context, p keys.Partner, k keys.Key, digest keys.Digest, evs []keys.AuditEvent) error {
	if k.Owner != keys.PartnerOwner(p.ID) {
		return keys.ErrWrongOwner
	}
	return d.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO partners (id, name, status, created_at, scopes) VALUES ($1, $2, $3, $4, $5)`,
			p.ID, p.Name, p.Status, ms(p.CreatedAt), p.Scopes.String()); err != nil {
			return err
		}
		if err := insertKey(ctx, tx, k, digest); err != nil {
			return err
		}
		return insertAudit(ctx, tx, evs)
	})
}

// ListPartners implements keys.Store.
func (d *DB) ListPartners(ctx context.Context) ([]keys.Partner, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	rows, _ := d.pool.Query(ctx, `SELECT `+partnerColumns+` FROM partners ORDER BY created_at, id`)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (keys.Partner, error) { return scanPartner(row) })
	return out, d.mapErr(err)
}

const partnerColumns = `id, name, status, created_at, scopes`

func scanPartner(row pgx.Row) (keys.Partner, error) {
	var p keys.Partner
	var created int64
	var scopes string
	err := row.Scan(&p.ID, &p.Name, &p.Status, &created, &scopes)
	p.CreatedAt, p.Scopes = fromMS(created), keys.StoredScopes(scopes)
	return p, err
}

// GetPartner implements keys.Store.
func (d *DB) GetPartner(ctx context.Context, id string) (keys.Partner, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	p, err := scanPartner(d.pool.QueryRow(ctx, `SELECT `+partnerColumns+` FROM partners WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return keys.Partner{}, keys.ErrNotFound
	}
	return p, d.mapErr(err)
}

// SetPartnerScopes implements keys.Store.
func (d *DB) SetPartnerScopes(ctx context.Context, id string, scopes keys.Scopes, at time.Time, ev keys.AuditEvent) error {
	return d.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE partners SET scopes = $1 WHERE id = $2`, scopes.String(), id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
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
	return d.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE partners SET status = 'disabled', disabled_at = $1 WHERE id = $2 AND status = 'active'`, ms(at), id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return existsOr(ctx, tx, `SELECT 1 FROM partners WHERE id = $1`, id)
		}
		if err := bumpKeyEpoch(ctx, tx); err != nil {
			return err
		}
		return insertAudit(ctx, tx, []keys.AuditEvent{ev})
	})
}

// CreateCompany implements keys.Store. It locks the partner's row first:
// that checks the partner is active against a concurrent DisablePartner,
// and makes one partner's companies take their listing seq one at a time,
// in commit order, on whichever replica they are created (see ListCompanies).
func (d *DB) CreateCompany(ctx context.Context, c keys.Company, k keys.Key, digest keys.Digest, evs []keys.AuditEvent) error {
	if k.Owner != keys.CompanyOwner(c.PartnerID, c.ID) {
		return keys.ErrWrongOwner
	}
	return d.tx(ctx, func(tx pgx.Tx) error {
		var status string
		// NO KEY UPDATE: exclusive among company creations and disablings
		// of the partner, yet no obstacle to inserting rows that merely
		// reference it.
		err := tx.QueryRow(ctx, `SELECT status FROM partners WHERE id = $1 FOR NO KEY UPDATE`, c.PartnerID).Scan(&status)
		if err := ownerStatus(status, err); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO companies (id, partner_id, name, external_id, status, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
			c.ID, c.PartnerID, c.Name, c.ExternalID, c.Status, ms(c.CreatedAt)); err != nil {
			return err
		}
		if err := insertKey(ctx, tx, k, digest); err != nil {
			return err
		}
		return insertAudit(ctx, tx, evs)
	})
}

const companyColumns = `SELECT seq, id, partner_id, name, external_id, status, created_at FROM companies`

func scanCompany(row pgx.Row) (keys.Company, int64, error) {
	var c keys.Company
	var seq, created int64
	if err := row.Scan(&seq, &c.ID, &c.PartnerID, &c.Name, &c.ExternalID, &c.Status, &created); err != nil {
		return keys.Company{}, 0, err
	}
	c.CreatedAt = fromMS(created)
	return c, seq, nil
}

// GetCompany implements keys.Store.
func (d *DB) GetCompany(ctx context.Context, partnerID, id string) (keys.Company, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	c, _, err := scanCompany(d.pool.QueryRow(ctx, companyColumns+` WHERE partner_id = $1 AND id = $2`, partnerID, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return keys.Company{}, keys.ErrNotFound
	}
	return c, d.mapErr(err)
}

// ListCompanies implements keys.Store: keyset pagination on seq. A
// partner's companies are created one at a time (CreateCompany locks the
// partner), so their seqs commit in increasing order: a company created
// while a client walks the pages appears at the end, none is skipped or
// repeated, even with replicas creating them concurrently.
func (d *DB) ListCompanies(ctx context.Context, partnerID string, page keys.Page) (keys.CompanyPage, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	rows, err := d.pool.Query(ctx, companyColumns+` WHERE partner_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, partnerID, page.After, page.Limit+1)
	if err != nil {
		return keys.CompanyPage{}, d.mapErr(err)
	}
	defer rows.Close()
	out := keys.CompanyPage{Companies: []keys.Company{}}
	for rows.Next() {
		if len(out.Companies) == page.Limit {
			out.More = true
			break
		}
		c, seq, err := scanCompany(rows)
		if err != nil {
			return keys.CompanyPage{}, d.mapErr(err)
		}
		out.Companies = append(out.Companies, c)
		out.Last = seq
	}
	rows.Close()
	return out, d.mapErr(rows.Err())
}

// DisableCompany implements keys.Store.
func (d *DB) DisableCompany(ctx context.Context, partnerID, id string, at time.Time, ev keys.AuditEvent) error {
	return d.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE companies SET status = 'disabled', disabled_at = $1 WHERE partner_id = $2 AND id = $3 AND status = 'active'`, ms(at), partnerID, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return existsOr(ctx, tx, `SELECT 1 FROM companies WHERE partner_id = $1 AND id = $2`, partnerID, id)
		}
		if err := bumpKeyEpoch(ctx, tx); err != nil {
			return err
		}
		return insertAudit(ctx, tx, []keys.AuditEvent{ev})
	})
}

// CreateKey implements keys.Store.
func (d *DB) CreateKey(ctx context.Context, k keys.Key, digest keys.Digest, ev keys.AuditEvent) error {
	return d.tx(ctx, func(tx pgx.Tx) error {
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
	where, args, ok := ownerKeys(o, 1)
	if !ok {
		return []keys.Key{}, nil
	}
	ctx, cancel := bound(ctx)
	defer cancel()
	rows, _ := d.pool.Query(ctx, `SELECT id, hint, created_at, last_used_at, revoked_at, name, scopes, expires_at
		FROM api_keys WHERE `+where+` ORDER BY created_at, id`, args...)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (keys.Key, error) {
		k := keys.Key{Owner: o}
		var created int64
		var used, revoked, expires *int64
		var name *string
		var scopes string
		err := row.Scan(&k.ID, &k.Hint, &created, &used, &revoked, &name, &scopes, &expires)
		k.CreatedAt, k.LastUsedAt, k.RevokedAt = fromMS(created), fromMSPtr(used), fromMSPtr(revoked)
		k.Scopes, k.ExpiresAt = keys.StoredScopes(scopes), fromMSPtr(expires)
		if name != nil {
			k.Name = *name
		}
		return k, err
	})
	if err != nil {
		return nil, d.mapErr(err)
	}
	if out == nil {
		out = []keys.Key{}
	}
	return out, nil
}

// ownerKeys is the condition on api_keys that selects an owner's keys, its
// placeholders numbered from first, with its arguments; ok is false for an
// Owner that names no one. A partner's own keys are those without a
// company: never "a company id of ”".
func ownerKeys(o keys.Owner, first int) (where string, args []any, ok bool) {
	p := func(n int) string { return "$" + strconv.Itoa(first+n) }
	switch o.Kind() {
	case keys.KindPartner:
		return `partner_id = ` + p(0) + ` AND company_id IS NULL`, []any{o.PartnerID()}, true
	case keys.KindCompany:
		return `partner_id = ` + p(0) + ` AND company_id = ` + p(1), []any{o.PartnerID(), o.CompanyID()}, true
	}
	return "", nil, false
}

// RevokeKey implements keys.Store. The key's refresh-token families are
// left as they are: every refresh re-reads the key in its transaction
// (PrincipalActive) and refuses.
func (d *DB) RevokeKey(ctx context.Context, o keys.Owner, keyID string, at time.Time, ev keys.AuditEvent) error {
	where, args, ok := ownerKeys(o, 3)
	if !ok {
		return keys.ErrNotFound
	}
	return d.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND `+where+` AND revoked_at IS NULL`,
			append([]any{ms(at), keyID}, args...)...)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			where, args, _ := ownerKeys(o, 2)
			return existsOr(ctx, tx, `SELECT 1 FROM api_keys WHERE id = $1 AND `+where, append([]any{keyID}, args...)...)
		}
		if err := bumpKeyEpoch(ctx, tx); err != nil {
			return err
		}
		return insertAudit(ctx, tx, []keys.AuditEvent{ev})
	})
}

func insertKey(ctx context.Context, tx pgx.Tx, k keys.Key, digest keys.Digest) error {
	_, err := tx.Exec(ctx, `INSERT INTO api_keys (id, digest, hint, partner_id, company_id, created_at, name, scopes, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		k.ID, digest[:], k.Hint, k.Owner.PartnerID(), companyColumn(k.Owner), ms(k.CreatedAt), nullString(k.Name), k.Scopes.String(), msPtr(k.ExpiresAt))
	return err
}

func insertAudit(ctx context.Context, tx pgx.Tx, evs []keys.AuditEvent) error {
	for _, e := range evs {
		if _, err := tx.Exec(ctx, `INSERT INTO audit_events (at, actor_type, actor_id, action, target_type, target, addr, outcome, detail)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			ms(e.At), string(e.ActorType), e.ActorID, e.Action, e.TargetType, e.Target, e.Addr, e.Outcome, e.Detail); err != nil {
			return err
		}
	}
	return nil
}

// companyColumn is api_keys.company_id for a key of o: NULL for a
// partner's own key, the company id (even an empty one, which no company
// has) for a company's.
func companyColumn(o keys.Owner) *string {
	if o.Kind() == keys.KindCompany {
		id := o.CompanyID()
		return &id
	}
	return nil
}

// activeOwner checks that a partner, or a company of it, exists
// (keys.ErrNotFound) and may act (keys.ErrDisabled): a company of a
// disabled partner is as disabled as the partner. It share-locks the rows
// it read, so that no disabling commits between this check and the
// caller's insert.
func activeOwner(ctx context.Context, tx pgx.Tx, o keys.Owner) error {
	var status string
	var err error
	switch o.Kind() {
	case keys.KindPartner:
		err = tx.QueryRow(ctx, `SELECT status FROM partners WHERE id = $1 FOR SHARE`, o.PartnerID()).Scan(&status)
	case keys.KindCompany:
		err = tx.QueryRow(ctx, `SELECT CASE WHEN p.status = 'active' THEN c.status ELSE p.status END
			FROM companies c JOIN partners p ON p.id = c.partner_id
			WHERE c.partner_id = $1 AND c.id = $2 FOR SHARE OF c, p`, o.PartnerID(), o.CompanyID()).Scan(&status)
	default:
		return keys.ErrNotFound
	}
	return ownerStatus(status, err)
}

// ownerStatus turns an owner's status, as read, into the owner check's
// verdict.
func ownerStatus(status string, err error) error {
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return keys.ErrNotFound
	case err != nil:
		return err
	case status != keys.StatusActive:
		return keys.ErrDisabled
	}
	return nil
}

// existsOr returns nil if the query finds a row and keys.ErrNotFound if not.
func existsOr(ctx context.Context, tx pgx.Tx, q string, args ...any) error {
	var one int
	err := tx.QueryRow(ctx, q, args...).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return keys.ErrNotFound
	}
	return err
}

// bumpKeyEpoch moves the key epoch in a transaction that revokes a key,
// disables a partner or company or changes a partner's scopes (see
// keys.Store.KeyEpoch), and notifies
// the replicas' listeners (WatchKeyChanges) in the same transaction:
// PostgreSQL delivers the notification when, and only if, it commits.
func bumpKeyEpoch(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `WITH e AS (UPDATE key_epoch SET epoch = epoch + 1 WHERE id = 1 RETURNING epoch)
		SELECT pg_notify(`+channelExpr+`, epoch::text) FROM e`)
	return err
}
