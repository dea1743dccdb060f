package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"iter"

	"keygate/dump"
	"keygate/keys"
	"keygate/tokens"
)

// Export opens a read-only snapshot of the whole database for keygate
// store copy: one read transaction on a pooled connection, so every row
// it yields, and its counts, are of one moment, while the writer goes on.
// Close it when done.
func (d *DB) Export(ctx context.Context) (dump.Source, error) {
	conn, err := d.read.Conn(ctx)
	if err != nil {
		return nil, mapErr(err)
	}
	// A deferred transaction: its snapshot is taken at its first read and
	// holds until it ends; it takes no write lock.
	if _, err := conn.ExecContext(ctx, `BEGIN DEFERRED`); err != nil {
		conn.Close()
		return nil, mapErr(err)
	}
	e := &export{conn: conn, now: ms(d.now())}
	// The first read fixes the snapshot: now, not at the first table copied.
	if _, err := e.KeyEpoch(ctx); err != nil {
		e.Close()
		return nil, mapErr(err)
	}
	return e, nil
}

type export struct {
	conn *sql.Conn
	now  int64 // the snapshot's time: which families are still needed
}

// neededFamily selects the families a copy needs (dump.Source.Families).
const neededFamily = `(revoked_at IS NULL AND expires_at > ?1) OR COALESCE(first_expires_at, 0) > ?1`

func (e *export) Close() error {
	_, err := e.conn.ExecContext(context.Background(), `ROLLBACK`)
	return errors.Join(err, e.conn.Close())
}

// rows yields one value per row of q, made by scan.
func rows[T any](ctx context.Context, e *export, q string, scan func(*sql.Rows) (T, error), args ...any) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		rs, err := e.conn.QueryContext(ctx, q, args...)
		if err != nil {
			yield(zero, mapErr(err))
			return
		}
		defer rs.Close()
		for rs.Next() {
			v, err := scan(rs)
			if err != nil {
				yield(zero, err)
				return
			}
			if !yield(v, nil) {
				return
			}
		}
		if err := rs.Err(); err != nil {
			yield(zero, mapErr(err))
		}
	}
}

func (e *export) Partners(ctx context.Context) iter.Seq2[dump.Partner, error] {
	return rows(ctx, e, `SELECT id, name, status, created_at, disabled_at, scopes FROM partners ORDER BY created_at, id`,
		func(rs *sql.Rows) (dump.Partner, error) {
			var p dump.Partner
			var created int64
			var disabled sql.NullInt64
			var scopes string
			err := rs.Scan(&p.ID, &p.Name, &p.Status, &created, &disabled, &scopes)
			p.CreatedAt, p.DisabledAt, p.Scopes = fromMS(created), fromNullMS(disabled), keys.StoredScopes(scopes)
			return p, err
		})
}

func (e *export) Companies(ctx context.Context) iter.Seq2[dump.Company, error] {
	return rows(ctx, e, `SELECT seq, id, partner_id, name, external_id, status, created_at, disabled_at FROM companies ORDER BY seq`,
		func(rs *sql.Rows) (dump.Company, error) {
			var c dump.Company
			var created int64
			var ext sql.NullString
			var disabled sql.NullInt64
			err := rs.Scan(&c.Seq, &c.ID, &c.PartnerID, &c.Name, &ext, &c.Status, &created, &disabled)
			if ext.Valid {
				c.ExternalID = &ext.String
			}
			c.CreatedAt, c.DisabledAt = fromMS(created), fromNullMS(disabled)
			return c, err
		})
}

func (e *export) Keys(ctx context.Context) iter.Seq2[dump.Key, error] {
	return rows(ctx, e, `SELECT id, digest, hint, partner_id, company_id, created_at, last_used_at, revoked_at, name, scopes, expires_at
		FROM api_keys ORDER BY created_at, id`,
		func(rs *sql.Rows) (dump.Key, error) {
			var k dump.Key
			var digest []byte
			var partnerID string
			var companyID, name sql.NullString
			var created int64
			var used, revoked, expires sql.NullInt64
			var scopes string
			if err := rs.Scan(&k.ID, &digest, &k.Hint, &partnerID, &companyID, &created, &used, &revoked, &name, &scopes, &expires); err != nil {
				return k, err
			}
			k.Name, k.Scopes, k.ExpiresAt = name.String, keys.StoredScopes(scopes), fromNullMS(expires)
			if len(digest) != len(k.Digest) {
				return k, errors.New("stored key digest has the wrong length")
			}
			copy(k.Digest[:], digest)
			k.Owner = keys.PartnerOwner(partnerID)
			if companyID.Valid {
				k.Owner = keys.CompanyOwner(partnerID, companyID.String)
			}
			k.CreatedAt, k.LastUsedAt, k.RevokedAt = fromMS(created), fromNullMS(used), fromNullMS(revoked)
			return k, nil
		})
}

func (e *export) SigningKeys(ctx context.Context) iter.Seq2[tokens.SigningKeyRecord, error] {
	return rows(ctx, e, `SELECT kid, algorithm, sealed, created_at, activates_at FROM signing_keys ORDER BY activates_at, created_at`,
		func(rs *sql.Rows) (tokens.SigningKeyRecord, error) {
			var k tokens.SigningKeyRecord
			var created, activates int64
			err := rs.Scan(&k.KID, &k.Algorithm, &k.Sealed, &created, &activates)
			k.CreatedAt, k.ActivatesAt = fromMS(created), fromMS(activates)
			return k, err
		})
}

func (e *export) SealedSecrets(ctx context.Context) iter.Seq2[tokens.SealedSecret, error] {
	return rows(ctx, e, `SELECT name, sealed, created_at FROM sealed_secrets ORDER BY name`,
		func(rs *sql.Rows) (tokens.SealedSecret, error) {
			var s tokens.SealedSecret
			var created int64
			err := rs.Scan(&s.Name, &s.Sealed, &created)
			s.CreatedAt = fromMS(created)
			return s, err
		})
}

func (e *export) Families(ctx context.Context) iter.Seq2[tokens.Family, error] {
	return rows(ctx, e, `SELECT id, key_id, kind, principal_id, partner_id, COALESCE(company_id, ''),
			created_at, generation, rotated_at, expires_at, COALESCE(parent_expires_at, 0), COALESCE(first_expires_at, 0),
			COALESCE(revoked_at, 0), COALESCE(revoke_reason, ''), scopes
		FROM refresh_families WHERE `+neededFamily+` ORDER BY id`,
		func(rs *sql.Rows) (tokens.Family, error) {
			var f tokens.Family
			var kind string
			var created, rotated, expires, parentExpires, firstExpires, revoked int64
			var scopes sql.NullString
			err := rs.Scan(&f.ID, &f.Principal.KeyID, &kind, &f.Principal.ID, &f.Principal.PartnerID, &f.Principal.CompanyID,
				&created, &f.Generation, &rotated, &expires, &parentExpires, &firstExpires, &revoked, &f.RevokeReason, &scopes)
			f.Principal.Kind, f.Scope = keys.Kind(kind), scopeRequest(scopes)
			f.CreatedAt, f.RotatedAt, f.ExpiresAt = fromMS(created), fromMS(rotated), fromMS(expires)
			f.ParentExpiresAt, f.FirstExpiresAt = fromZeroMS(parentExpires), fromZeroMS(firstExpires)
			if revoked != 0 {
				at := fromMS(revoked)
				f.RevokedAt = &at
			}
			return f, err
		}, e.now)
}

func (e *export) AuditEvents(ctx context.Context) iter.Seq2[keys.AuditEvent, error] {
	return rows(ctx, e, `SELECT at, actor_type, actor_id, action, target_type, target, addr, outcome, detail FROM audit_events ORDER BY id`,
		func(rs *sql.Rows) (keys.AuditEvent, error) {
			var ev keys.AuditEvent
			var at int64
			err := rs.Scan(&at, &ev.ActorType, &ev.ActorID, &ev.Action, &ev.TargetType, &ev.Target, &ev.Addr, &ev.Outcome, &ev.Detail)
			ev.At = fromMS(at)
			return ev, err
		})
}

func (e *export) KeyEpoch(ctx context.Context) (int64, error) {
	var epoch int64
	err := e.conn.QueryRowContext(ctx, `SELECT epoch FROM key_epoch WHERE id = 1`).Scan(&epoch)
	return epoch, mapErr(err)
}

func (e *export) Counts(ctx context.Context) (dump.Counts, error) {
	var c dump.Counts
	err := e.conn.QueryRowContext(ctx, `SELECT
			(SELECT COUNT(*) FROM partners), (SELECT COUNT(*) FROM companies), (SELECT COUNT(*) FROM api_keys),
			(SELECT COUNT(*) FROM signing_keys), (SELECT COUNT(*) FROM refresh_families WHERE `+neededFamily+`),
			(SELECT COUNT(*) FROM audit_events), (SELECT COUNT(*) FROM sealed_secrets)`, e.now).
		Scan(&c.Partners, &c.Companies, &c.Keys, &c.SigningKeys, &c.Families, &c.AuditEvents, &c.SealedSecrets)
	return c, mapErr(err)
}
