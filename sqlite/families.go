package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"keygate/keys"
	"keygate/tokens"
)

// UpdateFamily implements tokens.FamilyStore. Everything happens in the
// writer's immediate transaction: the read, the decision and the
// conditional write, so no other writer (in this process or another) can
// rotate the same generation in between.
func (d *DB) UpdateFamily(ctx context.Context, id string, seed *tokens.Family, decide func(f *tokens.Family) (tokens.Change, error)) error {
	var decision error
	err := d.doLazy(ctx, func(ctx context.Context, tx *wtx) error {
		f, exists := d.cache.family(id)
		var err error
		if !exists {
			f, err = readFamily(ctx, d.wstmts.readFamily, id)
			exists = err == nil
		}
		switch {
		case errors.Is(err, keys.ErrNotFound) && seed != nil:
			if f, err = d.seedFamily(ctx, tx, id, *seed); err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			k, err := d.keyState(ctx, f.Principal)
			if err != nil {
				return err
			}
			k.apply(&f)
		}
		read := f
		change, derr := decide(&f)
		decision = derr
		if change.Write && len(change.Audit) > 0 {
			if err := tx.savepoint(ctx); err != nil { // two writes: both or neither
				return err
			}
		}
		switch {
		case change.Write:
			if err := d.writeFamily(ctx, tx, f, exists, read.Generation); err != nil {
				return err
			}
			d.cache.putFamily(f)
		case exists:
			d.cache.putFamily(read)
		}
		return insertAudit(ctx, tx, change.Audit)
	})
	if err != nil {
		return err
	}
	return decision
}

// seedFamily is the family of a generation-0 token without a row yet: the
// seed, with the principal of the key it names.
func (d *DB) seedFamily(ctx context.Context, tx *wtx, id string, f tokens.Family) (tokens.Family, error) {
	var partnerID, companyID string
	var k keyState
	err := k.scan(d.wstmts.keyOwner.QueryRowContext(ctx, f.Principal.KeyID), &partnerID, &companyID)
	if errors.Is(err, sql.ErrNoRows) {
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
	k.apply(&f)
	d.cache.setKey(f.Principal.KeyID, k)
	return f, nil
}

// keyState is what a refresh reads of its family's key, besides the
// family: whether it may act, its scopes and its partner's, its expiry.
type keyState struct {
	active                   bool
	keyScopes, partnerScopes keys.Scopes
	expiresAt                *time.Time
}

// scan reads a keyState, after the columns named by lead, from a row of
// keyStateColumns.
func (k *keyState) scan(row *sql.Row, lead ...any) error {
	var keyScopes, partnerScopes string
	var expires sql.NullInt64
	if err := row.Scan(append(lead, &k.active, &keyScopes, &partnerScopes, &expires)...); err != nil {
		return err
	}
	k.keyScopes, k.partnerScopes, k.expiresAt = keys.StoredScopes(keyScopes), keys.StoredScopes(partnerScopes), fromNullMS(expires)
	return nil
}

func (k keyState) apply(f *tokens.Family) {
	f.PrincipalActive, f.KeyScopes, f.PartnerScopes, f.KeyExpiresAt = k.active, k.keyScopes, k.partnerScopes, k.expiresAt
}

// keyState reads what a family's key may do now, through the writer's
// exact cache. A key that is not the principal's (or no key) may do
// nothing.
func (d *DB) keyState(ctx context.Context, p keys.Principal) (keyState, error) {
	if k, ok := d.cache.keys[p.KeyID]; ok {
		return k, nil
	}
	var k keyState
	err := k.scan(d.wstmts.keyState.QueryRowContext(ctx, p.KeyID, p.PartnerID, p.CompanyID))
	if errors.Is(err, sql.ErrNoRows) {
		k = keyState{}
	} else if err != nil {
		return keyState{}, err
	}
	d.cache.setKey(p.KeyID, k)
	return k, nil
}

// writeFamily inserts f's row, or updates it if it is still at generation
// read.
func (d *DB) writeFamily(ctx context.Context, tx *wtx, f tokens.Family, exists bool, read int64) error {
	if !exists {
		p := f.Principal
		_, err := d.wstmts.insertFamily.ExecContext(ctx,
			f.ID, p.KeyID, string(p.Kind), p.ID, p.PartnerID, nullString(p.CompanyID),
			ms(f.CreatedAt), f.Generation, ms(f.RotatedAt), ms(f.ExpiresAt), nullTime(f.ParentExpiresAt),
			nullTime(f.FirstExpiresAt), nullMS(f.RevokedAt), nullString(f.RevokeReason), scopeColumn(f.Scope))
		return err
	}
	res, err := d.wstmts.updateFamily.ExecContext(ctx,
		f.Generation, ms(f.RotatedAt), ms(f.ExpiresAt), nullTime(f.ParentExpiresAt), nullMS(f.RevokedAt), nullString(f.RevokeReason),
		f.ID, read)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return errors.New("refresh family changed underneath its transaction")
	}
	return nil
}

func readFamily(ctx context.Context, st *sql.Stmt, id string) (tokens.Family, error) {
	var f tokens.Family
	var kind string
	// NULL times come back as 0 (no time is the epoch itself), which scans
	// into plain int64s: a refresh reads this row every time.
	var created, rotated, expires, parentExpires, firstExpires, revoked int64
	var scopes sql.NullString
	err := st.QueryRowContext(ctx, id).Scan(
		&f.Principal.KeyID, &kind, &f.Principal.ID, &f.Principal.PartnerID, &f.Principal.CompanyID,
		&created, &f.Generation, &rotated, &expires, &parentExpires, &firstExpires, &revoked, &f.RevokeReason, &scopes)
	if errors.Is(err, sql.ErrNoRows) {
		return tokens.Family{}, keys.ErrNotFound
	}
	if err != nil {
		return tokens.Family{}, err
	}
	f.ID = id
	f.Principal.Kind = keys.Kind(kind)
	f.Scope = scopeRequest(scopes)
	f.CreatedAt, f.RotatedAt, f.ExpiresAt = fromMS(created), fromMS(rotated), fromMS(expires)
	f.ParentExpiresAt, f.FirstExpiresAt = fromZeroMS(parentExpires), fromZeroMS(firstExpires)
	if revoked != 0 {
		at := fromMS(revoked)
		f.RevokedAt = &at
	}
	return f, nil
}

// fromZeroMS is fromMS, with 0 (a NULL read back as 0) the zero time.
func fromZeroMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return fromMS(v)
}

// DeleteFamilies implements tokens.FamilyStore.
func (d *DB) DeleteFamilies(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	var n int64
	err := d.do(ctx, func(ctx context.Context, tx *wtx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM refresh_families WHERE id IN (
				SELECT id FROM refresh_families WHERE expires_at < ?1 AND COALESCE(first_expires_at, 0) < ?1
				UNION
				SELECT id FROM refresh_families WHERE revoked_at IS NOT NULL AND revoked_at < ?1 AND COALESCE(first_expires_at, 0) < ?1
				LIMIT +?2)`, ms(before), limit)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		if n > 0 {
			d.cache.forgetFamilies()
		}
		return err
	})
	return int(n), err
}

// scopeColumn is refresh_families.scopes for a request: NULL for all of
// the key's scopes, else the set asked for.
func scopeColumn(r keys.ScopeRequest) sql.NullString {
	if r.All() {
		return sql.NullString{}
	}
	return sql.NullString{String: r.Scopes().String(), Valid: true}
}

// scopeRequest reads refresh_families.scopes back.
func scopeRequest(v sql.NullString) keys.ScopeRequest {
	if !v.Valid {
		return keys.ScopeRequest{}
	}
	return keys.Only(keys.StoredScopes(v.String))
}

func nullTime(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: ms(t), Valid: true}
}

// keyStateColumns are a keyState's, of a key (k) and its owners.
const keyStateColumns = activeExpr + `, k.scopes, p.scopes, k.expires_at`

// writeStmts are the statements on the hot write paths, prepared once on
// the writer's connection.
type writeStmts struct {
	stmts
	begin, commit, rollback                *sql.Stmt
	savepoint, release, rollbackOp         *sql.Stmt
	dataVersion                            *sql.Stmt
	readFamily, insertFamily, updateFamily *sql.Stmt
	keyState, keyOwner                     *sql.Stmt
}

func (s *writeStmts) prepare(ctx context.Context, db preparer) error {
	prep := s.stmts.preparer(ctx, db)
	s.begin = prep(`BEGIN IMMEDIATE`)
	s.commit = prep(`COMMIT`)
	s.rollback = prep(`ROLLBACK`)
	s.savepoint = prep(`SAVEPOINT op`)
	s.release = prep(`RELEASE op`)
	s.rollbackOp = prep(`ROLLBACK TO op`)
	s.dataVersion = prep(`PRAGMA data_version`)
	s.readFamily = prep(`SELECT key_id, kind, principal_id, partner_id, COALESCE(company_id, ''),
			created_at, generation, rotated_at, expires_at, COALESCE(parent_expires_at, 0), COALESCE(first_expires_at, 0),
			COALESCE(revoked_at, 0), COALESCE(revoke_reason, ''), scopes
		FROM refresh_families WHERE id = ?`)
	s.insertFamily = prep(`INSERT INTO refresh_families
		(id, key_id, kind, principal_id, partner_id, company_id, created_at, generation, rotated_at, expires_at,
		 parent_expires_at, first_expires_at, revoked_at, revoke_reason, scopes)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	s.updateFamily = prep(`UPDATE refresh_families
		SET generation = ?, rotated_at = ?, expires_at = ?, parent_expires_at = ?, revoked_at = ?, revoke_reason = ?
		WHERE id = ? AND generation = ?`)
	s.keyState = prep(`SELECT ` + keyStateColumns + ` FROM api_keys k
		JOIN partners p ON p.id = k.partner_id
		LEFT JOIN companies c ON c.id = k.company_id
		WHERE k.id = +? AND k.partner_id = +? AND COALESCE(k.company_id, '') = +?`) // +?: see stmts
	s.keyOwner = prep(`SELECT k.partner_id, COALESCE(k.company_id, ''), ` + keyStateColumns + ` FROM api_keys k
		JOIN partners p ON p.id = k.partner_id
		LEFT JOIN companies c ON c.id = k.company_id
		WHERE k.id = +?`)
	return s.stmts.err
}
