package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"keygate/keys"
	"keygate/tokens"
	"time"
)

// StartFamily implements tokens.FamilyStore. The lookup runs on the
// writer (through its exact keyCache, else its connection, whose page cache
// stays warm where a pooled reader's is reset by every commit), and adds no
// round trip to the login.
func (d *DB) StartFamily(ctx context.Context, digest keys.Digest, f tokens.Family) (keys.Principal, error) {
	var p keys.Principal
	err := d.doSingle(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var ok bool
		if p, ok = d.keyCache.byDigest[digest]; !ok {
			var err error
			p, err = scanPrincipal(tx.StmtContext(ctx, d.wstmts.lookupKey).QueryRowContext(ctx, digest[:]))
			if errors.Is(err, sql.ErrNoRows) {
				return keys.ErrInvalidKey
			}
			if err != nil {
				return err
			}
			d.keyCache.remember(digest, p)
		}
		f.Principal = p
		_, err := tx.StmtContext(ctx, d.wstmts.createFamily).ExecContext(ctx,
			f.ID, p.KeyID, string(p.Kind), p.ID, p.PartnerID,
			nullString(p.CompanyID), ms(f.CreatedAt), f.Generation, ms(f.RotatedAt), ms(f.ExpiresAt))
		return err
	})
	if err != nil {
		return keys.Principal{}, err
	}
	return p, nil
}

// UpdateFamily implements tokens.FamilyStore. Everything happens in the
// writer's immediate transaction: the read, the decision and the
// conditional update, so no other writer (in this process or another) can
// rotate the same generation in between.
func (d *DB) UpdateFamily(ctx context.Context, id string, decide func(f *tokens.Family) (tokens.Change, error)) error {
	var decision error
	err := d.do(ctx, func(ctx context.Context, tx *sql.Tx) error {
		f, err := readFamily(ctx, tx.StmtContext(ctx, d.wstmts.readFamily), id)
		if err != nil {
			return err
		}
		active, ok := d.keyCache.activeKey[f.Principal.KeyID]
		if !ok {
			err := tx.StmtContext(ctx, d.wstmts.keyActive).QueryRowContext(ctx, f.Principal.KeyID, f.Principal.PartnerID, f.Principal.CompanyID).Scan(&active)
			if errors.Is(err, sql.ErrNoRows) {
				active = false
			} else if err != nil {
				return err
			}
			d.keyCache.setActive(f.Principal.KeyID, active)
		}
		f.PrincipalActive = active
		read := f.Generation
		change, derr := decide(&f)
		decision = derr
		if !change.Write {
			return insertAudit(ctx, tx, change.Audit)
		}
		res, err := tx.StmtContext(ctx, d.wstmts.updateFamily).ExecContext(ctx,
			f.Generation, ms(f.RotatedAt), ms(f.ExpiresAt), nullTime(f.ParentExpiresAt), nullMS(f.RevokedAt), nullString(f.RevokeReason),
			id, read)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return errors.New("refresh family changed underneath its transaction")
		}
		return insertAudit(ctx, tx, change.Audit)
	})
	if err != nil {
		return err
	}
	return decision
}

func readFamily(ctx context.Context, st *sql.Stmt, id string) (tokens.Family, error) {
	var f tokens.Family
	var kind, companyID string
	var created, rotated, expires int64
	var parentExpires, revoked sql.NullInt64
	var reason sql.NullString
	err := st.QueryRowContext(ctx, id).Scan(
		&f.Principal.KeyID, &kind, &f.Principal.ID, &f.Principal.PartnerID, &companyID,
		&created, &f.Generation, &rotated, &expires, &parentExpires, &revoked, &reason)
	if errors.Is(err, sql.ErrNoRows) {
		return tokens.Family{}, keys.ErrNotFound
	}
	if err != nil {
		return tokens.Family{}, err
	}
	f.ID = id
	f.Principal.Kind, f.Principal.CompanyID = keys.Kind(kind), companyID
	f.CreatedAt, f.RotatedAt, f.ExpiresAt = fromMS(created), fromMS(rotated), fromMS(expires)
	if parentExpires.Valid {
		f.ParentExpiresAt = fromMS(parentExpires.Int64)
	}
	f.RevokedAt, f.RevokeReason = fromNullMS(revoked), reason.String
	return f, nil
}

// DeleteFamilies implements tokens.FamilyStore.
func (d *DB) DeleteFamilies(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	var n int64
	err := d.do(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM refresh_families WHERE id IN (
				SELECT id FROM refresh_families WHERE expires_at < ?1
				UNION
				SELECT id FROM refresh_families WHERE revoked_at IS NOT NULL AND revoked_at < ?1
				LIMIT ?2)`, ms(before), limit)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

func nullTime(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: ms(t), Valid: true}
}

// writeStmts are the statements on the hot write paths, prepared once on
// the writer's connection.
type writeStmts struct {
	stmts
	savepoint, release, dataVersion                   *sql.Stmt
	lookupKey, createFamily, readFamily, updateFamily *sql.Stmt
	keyActive                                         *sql.Stmt
}

func (s *writeStmts) prepare(ctx context.Context, db *sql.DB) error {
	prep := s.stmts.preparer(ctx, db)
	s.savepoint = prep(`SAVEPOINT op`)
	s.release = prep(`RELEASE op`)
	s.lookupKey = prep(principalColumns + ` WHERE k.digest = ?` + activeCondition)
	s.createFamily = prep(`INSERT INTO refresh_families
		(id, key_id, kind, principal_id, partner_id, company_id, created_at, generation, rotated_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	s.readFamily = prep(`SELECT key_id, kind, principal_id, partner_id, COALESCE(company_id, ''),
			created_at, generation, rotated_at, expires_at, parent_expires_at, revoked_at, revoke_reason
		FROM refresh_families WHERE id = ?`)
	s.keyActive = prep(`SELECT 1 FROM api_keys k
		JOIN partners p ON p.id = k.partner_id
		LEFT JOIN companies c ON c.id = k.company_id
		WHERE k.id = ? AND k.partner_id = ? AND COALESCE(k.company_id, '') = ?` + activeCondition)
	s.dataVersion = prep(`PRAGMA data_version`)
	s.updateFamily = prep(`UPDATE refresh_families
		SET generation = ?, rotated_at = ?, expires_at = ?, parent_expires_at = ?, revoked_at = ?, revoke_reason = ?
		WHERE id = ? AND generation = ?`)
	return s.stmts.err
}
