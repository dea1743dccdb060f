package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"time"

	"keygate/keys"
)

var _ keys.Store = (*DB)(nil)

// readStmts are the statements on the hot read paths, prepared once.
type readStmts struct {
	stmts
	lookupKey       *sql.Stmt
	activePrincipal *sql.Stmt
	getCompany      *sql.Stmt
	listCompanies   *sql.Stmt
}

const principalColumns = `SELECT k.id, k.partner_id, COALESCE(k.company_id, ''), p.name, COALESCE(c.name, '')
	FROM api_keys k
	JOIN partners p ON p.id = k.partner_id
	LEFT JOIN companies c ON c.id = k.company_id`

const activeCondition = ` AND k.revoked_at IS NULL AND p.status = 'active' AND (k.company_id IS NULL OR c.status = 'active')`

const companyColumns = `SELECT seq, id, partner_id, name, external_id, status, created_at FROM companies`

func (s *readStmts) prepare(ctx context.Context, db *sql.DB) error {
	prep := s.stmts.preparer(ctx, db)
	s.lookupKey = prep(principalColumns + ` WHERE k.digest = ?` + activeCondition)
	s.activePrincipal = prep(principalColumns + ` WHERE k.id = ? AND k.partner_id = ? AND COALESCE(k.company_id, '') = ?` + activeCondition)
	s.getCompany = prep(companyColumns + ` WHERE partner_id = ? AND id = ?`)
	s.listCompanies = prep(companyColumns + ` WHERE partner_id = ? AND seq > ? ORDER BY seq LIMIT ?`)
	return s.stmts.err
}

func scanPrincipal(row *sql.Row) (keys.Principal, error) {
	var p keys.Principal
	var partnerName, companyName string
	if err := row.Scan(&p.KeyID, &p.PartnerID, &p.CompanyID, &partnerName, &companyName); err != nil {
		return keys.Principal{}, err
	}
	if p.CompanyID == "" {
		p.Kind, p.ID, p.Name = keys.KindPartner, p.PartnerID, partnerName
	} else {
		p.Kind, p.ID, p.Name = keys.KindCompany, p.CompanyID, companyName
	}
	return p, nil
}

// LookupKey implements keys.Store.
func (d *DB) LookupKey(ctx context.Context, digest keys.Digest) (keys.Principal, error) {
	p, err := scanPrincipal(d.stmts.lookupKey.QueryRowContext(ctx, digest[:]))
	if errors.Is(err, sql.ErrNoRows) {
		return keys.Principal{}, keys.ErrInvalidKey
	}
	return p, mapErr(err)
}

// ActivePrincipal implements keys.Store. It runs on every authenticated
// request, so answers are cached for principalTTL: revocations made through
// this DB (the API) clear the cache at once, those made by another process
// (the CLI) reach keygate's own endpoints within principalTTL. Logins and
// refreshes never use the cache.
func (d *DB) ActivePrincipal(ctx context.Context, want keys.Principal) (keys.Principal, error) {
	ck := principalKey{want.KeyID, want.PartnerID, want.CompanyID}
	p, active, ok := d.principals.get(ck)
	if !ok {
		epoch := d.principals.epoch()
		var err error
		p, err = scanPrincipal(d.stmts.activePrincipal.QueryRowContext(ctx, want.KeyID, want.PartnerID, want.CompanyID))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			active = false
		case err != nil:
			return keys.Principal{}, mapErr(err)
		default:
			active = true
		}
		d.principals.put(ck, p, active, epoch)
	}
	if !active || p.Kind != want.Kind || p.ID != want.ID {
		return keys.Principal{}, keys.ErrInactive
	}
	return p, nil
}

// principalTTL bounds how long another process's revocation can go unseen
// by keygate's own authenticated endpoints.
const principalTTL = time.Second

// maxCachedPrincipals bounds the cache; past it the cache starts afresh.
const maxCachedPrincipals = 100_000

type principalKey struct{ keyID, partnerID, companyID string }

type cachedPrincipal struct {
	p       keys.Principal
	active  bool
	expires time.Time
}

// principalCache remembers recent ActivePrincipal answers. The epoch keeps
// a read that raced with an invalidation from storing a stale answer.
type principalCache struct {
	mu    sync.Mutex
	gen   uint64
	items map[principalKey]cachedPrincipal
}

func (c *principalCache) get(k principalKey) (keys.Principal, bool, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[k]
	if !ok || time.Now().After(e.expires) {
		return keys.Principal{}, false, false
	}
	return e.p, e.active, true
}

func (c *principalCache) epoch() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

func (c *principalCache) put(k principalKey, p keys.Principal, active bool, epoch uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch != c.gen {
		return
	}
	if c.items == nil || len(c.items) >= maxCachedPrincipals {
		c.items = make(map[principalKey]cachedPrincipal)
	}
	c.items[k] = cachedPrincipal{p: p, active: active, expires: time.Now().Add(principalTTL)}
}

// invalidate forgets every answer; call it after a revocation commits.
func (c *principalCache) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.items = nil
}

// CreatePartner implements keys.Store.
func (d *DB) CreatePartner(ctx context.Context, p keys.Partner, k keys.Key, digest keys.Digest, evs []keys.AuditEvent) error {
	return d.do(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO partners (id, name, status, created_at) VALUES (?, ?, ?, ?)`,
			p.ID, p.Name, p.Status, ms(p.CreatedAt)); err != nil {
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
	rows, err := d.read.QueryContext(ctx, `SELECT id, name, status, created_at FROM partners ORDER BY created_at, id`)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []keys.Partner
	for rows.Next() {
		var p keys.Partner
		var created int64
		if err := rows.Scan(&p.ID, &p.Name, &p.Status, &created); err != nil {
			return nil, err
		}
		p.CreatedAt = fromMS(created)
		out = append(out, p)
	}
	return out, mapErr(rows.Err())
}

// DisablePartner implements keys.Store. Disabling twice is not an error.
func (d *DB) DisablePartner(ctx context.Context, id string, at time.Time, ev keys.AuditEvent) error {
	defer d.principals.invalidate()
	return d.do(ctx, func(ctx context.Context, tx *sql.Tx) error {
		d.keyCache.forget()
		res, err := tx.ExecContext(ctx, `UPDATE partners SET status = 'disabled', disabled_at = ? WHERE id = ? AND status = 'active'`, ms(at), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return existsOr(ctx, tx, `SELECT 1 FROM partners WHERE id = ?`, id)
		}
		return insertAudit(ctx, tx, []keys.AuditEvent{ev})
	})
}

// CreateCompany implements keys.Store. A duplicate external id of the same
// partner is keys.ErrConflict; an unknown partner keys.ErrNotFound and a
// disabled one keys.ErrDisabled, as for CreateKey.
func (d *DB) CreateCompany(ctx context.Context, c keys.Company, k keys.Key, digest keys.Digest, evs []keys.AuditEvent) error {
	return d.do(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := activeOwner(ctx, tx, c.PartnerID, ""); err != nil {
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
	defer d.principals.invalidate()
	return d.do(ctx, func(ctx context.Context, tx *sql.Tx) error {
		d.keyCache.forget()
		res, err := tx.ExecContext(ctx, `UPDATE companies SET status = 'disabled', disabled_at = ? WHERE partner_id = ? AND id = ? AND status = 'active'`, ms(at), partnerID, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return existsOr(ctx, tx, `SELECT 1 FROM companies WHERE partner_id = ? AND id = ?`, partnerID, id)
		}
		return insertAudit(ctx, tx, []keys.AuditEvent{ev})
	})
}

// CreateKey implements keys.Store.
func (d *DB) CreateKey(ctx context.Context, k keys.Key, digest keys.Digest, ev keys.AuditEvent) error {
	return d.do(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := activeOwner(ctx, tx, k.PartnerID, k.CompanyID); err != nil {
			return err
		}
		if err := insertKey(ctx, tx, k, digest); err != nil {
			return err
		}
		return insertAudit(ctx, tx, []keys.AuditEvent{ev})
	})
}

// ListKeys implements keys.Store.
func (d *DB) ListKeys(ctx context.Context, partnerID, companyID string) ([]keys.Key, error) {
	rows, err := d.read.QueryContext(ctx, `SELECT id, partner_id, COALESCE(company_id, ''), hint, created_at, last_used_at, revoked_at
		FROM api_keys WHERE partner_id = ? AND COALESCE(company_id, '') = ? ORDER BY created_at, id`, partnerID, companyID)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	out := []keys.Key{}
	for rows.Next() {
		var k keys.Key
		var created int64
		var used, revoked sql.NullInt64
		if err := rows.Scan(&k.ID, &k.PartnerID, &k.CompanyID, &k.Hint, &created, &used, &revoked); err != nil {
			return nil, err
		}
		k.CreatedAt, k.LastUsedAt, k.RevokedAt = fromMS(created), fromNullMS(used), fromNullMS(revoked)
		out = append(out, k)
	}
	return out, mapErr(rows.Err())
}

// RevokeKey implements keys.Store. The key's refresh-token families are
// left as they are: every refresh re-reads the key in its transaction
// (PrincipalActive) and refuses, which costs no index on key_id that every
// login would have to update.
func (d *DB) RevokeKey(ctx context.Context, partnerID, companyID, keyID string, at time.Time, ev keys.AuditEvent) error {
	defer d.principals.invalidate()
	return d.do(ctx, func(ctx context.Context, tx *sql.Tx) error {
		d.keyCache.forget()
		res, err := tx.ExecContext(ctx, `UPDATE api_keys SET revoked_at = ?
			WHERE id = ? AND partner_id = ? AND COALESCE(company_id, '') = ? AND revoked_at IS NULL`, ms(at), keyID, partnerID, companyID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return existsOr(ctx, tx, `SELECT 1 FROM api_keys WHERE id = ? AND partner_id = ? AND COALESCE(company_id, '') = ?`, keyID, partnerID, companyID)
		}
		return insertAudit(ctx, tx, []keys.AuditEvent{ev})
	})
}

// RecordUsage implements keys.Store.
func (d *DB) RecordUsage(ctx context.Context, lastUsed map[string]time.Time, evs []keys.AuditEvent) error {
	return d.do(ctx, func(ctx context.Context, tx *sql.Tx) error {
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

// ListAudit implements keys.Store.
func (d *DB) ListAudit(ctx context.Context, since time.Time) ([]keys.AuditEvent, error) {
	rows, err := d.read.QueryContext(ctx, `SELECT at, actor_type, actor_id, action, target_type, target, addr, outcome, detail
		FROM audit_events WHERE at >= ? ORDER BY at, id`, ms(since))
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	out := []keys.AuditEvent{}
	for rows.Next() {
		var e keys.AuditEvent
		var at int64
		if err := rows.Scan(&at, &e.ActorType, &e.ActorID, &e.Action, &e.TargetType, &e.Target, &e.Addr, &e.Outcome, &e.Detail); err != nil {
			return nil, err
		}
		e.At = fromMS(at)
		out = append(out, e)
	}
	return out, mapErr(rows.Err())
}

func insertKey(ctx context.Context, tx *sql.Tx, k keys.Key, digest keys.Digest) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO api_keys (id, digest, hint, partner_id, company_id, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		k.ID, digest[:], k.Hint, k.PartnerID, nullString(k.CompanyID), ms(k.CreatedAt))
	return err
}

func insertAudit(ctx context.Context, tx *sql.Tx, evs []keys.AuditEvent) error {
	if len(evs) == 0 {
		return nil
	}
	st, err := tx.PrepareContext(ctx, `INSERT INTO audit_events (at, actor_type, actor_id, action, target_type, target, addr, outcome, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, e := range evs {
		if _, err := st.ExecContext(ctx, ms(e.At), e.ActorType, e.ActorID, e.Action, e.TargetType, e.Target, e.Addr, e.Outcome, e.Detail); err != nil {
			return err
		}
	}
	return nil
}

// activeOwner checks that a partner, or a company of it, exists
// (keys.ErrNotFound) and may act (keys.ErrDisabled): a company of a
// disabled partner is as disabled as the partner.
func activeOwner(ctx context.Context, tx *sql.Tx, partnerID, companyID string) error {
	var status string
	var err error
	if companyID == "" {
		err = tx.QueryRowContext(ctx, `SELECT status FROM partners WHERE id = ?`, partnerID).Scan(&status)
	} else {
		err = tx.QueryRowContext(ctx, `SELECT CASE WHEN p.status = 'active' THEN c.status ELSE p.status END
			FROM companies c JOIN partners p ON p.id = c.partner_id
			WHERE c.partner_id = ? AND c.id = ?`, partnerID, companyID).Scan(&status)
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
func existsOr(ctx context.Context, tx *sql.Tx, q string, args ...any) error {
	var one int
	err := tx.QueryRowContext(ctx, q, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return keys.ErrNotFound
	}
	return err
}
