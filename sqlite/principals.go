package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"keygate/keys"
	"sync"
	"time"
)

// readStmts are the statements on the hot read paths, prepared once.
type readStmts struct {
	stmts
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
	now   func() time.Time
	mu    sync.Mutex
	gen   uint64
	items map[principalKey]cachedPrincipal
}

func (c *principalCache) get(k principalKey) (keys.Principal, bool, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[k]
	if !ok || c.now().After(e.expires) {
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
	c.items[k] = cachedPrincipal{p: p, active: active, expires: c.now().Add(principalTTL)}
}

// invalidate forgets every answer; call it after a revocation commits.
func (c *principalCache) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.items = nil
}
