package postgres

import (
	"context"
	"fmt"
	"iter"
	"strings"

	"github.com/jackc/pgx/v5"

	"keygate/dump"
	"keygate/keys"
	"keygate/tokens"
)

// copiedTables are the tables Import fills, owners before what they own.
var copiedTables = []string{"partners", "companies", "api_keys", "signing_keys", "sealed_secrets", "refresh_families", "audit_events"}

// Import copies every row of src into this database in one transaction
// (keygate store copy), refusing a database that holds anything: it locks
// keygate's tables first, so that a replica started too early waits for
// the copy instead of writing beside it. Before committing it counts the
// rows it wrote and compares them with src's counts; any difference rolls
// the whole copy back.
func (d *DB) Import(ctx context.Context, src dump.Source) (dump.Counts, error) {
	want, err := src.Counts(ctx)
	if err != nil {
		return dump.Counts{}, fmt.Errorf("counting the source's rows: %w", err)
	}
	epoch, err := src.KeyEpoch(ctx)
	if err != nil {
		return dump.Counts{}, fmt.Errorf("reading the source's key epoch: %w", err)
	}
	var got dump.Counts
	err = pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		// A copy runs as long as it takes: no session time limit applies.
		if _, err := tx.Exec(ctx, `SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0; SET LOCAL idle_in_transaction_session_timeout = 0`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `LOCK TABLE `+strings.Join(copiedTables, ", ")+`, key_epoch IN EXCLUSIVE MODE`); err != nil {
			return err
		}
		have, err := countRows(ctx, tx)
		if err != nil {
			return err
		}
		if have != (dump.Counts{}) {
			return fmt.Errorf("the target database is not empty (%s): keygate store copy fills only a database no keygate has used; start no replica on it before the copy", describe(have))
		}
		if err := copyRows(ctx, tx, "partners", []string{"id", "name", "status", "created_at", "disabled_at", "scopes"}, src.Partners(ctx),
			func(p dump.Partner) []any {
				return []any{p.ID, p.Name, p.Status, ms(p.CreatedAt), msPtr(p.DisabledAt), p.Scopes.String()}
			}); err != nil {
			return err
		}
		if err := copyRows(ctx, tx, "companies", []string{"seq", "id", "partner_id", "name", "external_id", "status", "created_at", "disabled_at"}, src.Companies(ctx),
			func(c dump.Company) []any {
				return []any{c.Seq, c.ID, c.PartnerID, c.Name, c.ExternalID, c.Status, ms(c.CreatedAt), msPtr(c.DisabledAt)}
			}); err != nil {
			return err
		}
		// New companies continue after the copied ones, in every partner's
		// listing.
		if _, err := tx.Exec(ctx, `SELECT setval(pg_get_serial_sequence('companies', 'seq'), COALESCE(MAX(seq), 0) + 1, false) FROM companies`); err != nil {
			return err
		}
		if err := copyRows(ctx, tx, "api_keys", []string{"id", "digest", "hint", "partner_id", "company_id", "created_at", "last_used_at", "revoked_at",
			"name", "scopes", "expires_at"}, src.Keys(ctx),
			func(k dump.Key) []any {
				return []any{k.ID, k.Digest[:], k.Hint, k.Owner.PartnerID(), companyColumn(k.Owner), ms(k.CreatedAt), msPtr(k.LastUsedAt), msPtr(k.RevokedAt),
					nullString(k.Name), k.Scopes.String(), msPtr(k.ExpiresAt)}
			}); err != nil {
			return err
		}
		if err := copyRows(ctx, tx, "signing_keys", []string{"kid", "algorithm", "sealed", "created_at", "activates_at"}, src.SigningKeys(ctx),
			func(k tokens.SigningKeyRecord) []any {
				return []any{k.KID, k.Algorithm, k.Sealed, ms(k.CreatedAt), ms(k.ActivatesAt)}
			}); err != nil {
			return err
		}
		if err := copyRows(ctx, tx, "sealed_secrets", []string{"name", "sealed", "created_at"}, src.SealedSecrets(ctx),
			func(s tokens.SealedSecret) []any {
				return []any{s.Name, bytea(s.Sealed), ms(s.CreatedAt)}
			}); err != nil {
			return err
		}
		if err := copyRows(ctx, tx, "refresh_families", []string{"id", "key_id", "kind", "principal_id", "partner_id", "company_id", "created_at",
			"generation", "rotated_at", "expires_at", "parent_expires_at", "first_expires_at", "revoked_at", "revoke_reason", "scopes"}, src.Families(ctx),
			func(f tokens.Family) []any {
				p := f.Principal
				return []any{f.ID, p.KeyID, string(p.Kind), p.ID, p.PartnerID, nullString(p.CompanyID), ms(f.CreatedAt),
					f.Generation, ms(f.RotatedAt), ms(f.ExpiresAt), msZero(f.ParentExpiresAt), msZero(f.FirstExpiresAt), msPtr(f.RevokedAt), nullString(f.RevokeReason),
					scopeColumn(f.Scope)}
			}); err != nil {
			return err
		}
		// Audit events keep their order: COPY numbers them as it reads.
		if err := copyRows(ctx, tx, "audit_events", []string{"at", "actor_type", "actor_id", "action", "target_type", "target", "addr", "outcome", "detail"}, src.AuditEvents(ctx),
			func(e keys.AuditEvent) []any {
				return []any{ms(e.At), string(e.ActorType), e.ActorID, e.Action, e.TargetType, e.Target, e.Addr, e.Outcome, e.Detail}
			}); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE key_epoch SET epoch = $1 WHERE id = 1`, epoch); err != nil {
			return err
		}
		if got, err = countRows(ctx, tx); err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("row counts differ, nothing copied: the source holds %s, the copy %s", describe(want), describe(got))
		}
		return nil
	})
	if err != nil {
		return dump.Counts{}, d.mapErr(err)
	}
	return got, nil
}

// copyRows streams seq into table with COPY.
func copyRows[T any](ctx context.Context, tx pgx.Tx, table string, columns []string, seq iter.Seq2[T, error], row func(T) []any) error {
	next, stop := iter.Pull2(seq)
	defer stop()
	_, err := tx.CopyFrom(ctx, pgx.Identifier{table}, columns, pgx.CopyFromFunc(func() ([]any, error) {
		v, err, ok := next()
		if !ok {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", table, err)
		}
		return row(v), nil
	}))
	if err != nil {
		return fmt.Errorf("copying %s: %w", table, err)
	}
	return nil
}

func countRows(ctx context.Context, tx pgx.Tx) (dump.Counts, error) {
	var c dump.Counts
	err := tx.QueryRow(ctx, `SELECT
			(SELECT COUNT(*) FROM partners), (SELECT COUNT(*) FROM companies), (SELECT COUNT(*) FROM api_keys),
			(SELECT COUNT(*) FROM signing_keys), (SELECT COUNT(*) FROM refresh_families), (SELECT COUNT(*) FROM audit_events),
			(SELECT COUNT(*) FROM sealed_secrets)`).
		Scan(&c.Partners, &c.Companies, &c.Keys, &c.SigningKeys, &c.Families, &c.AuditEvents, &c.SealedSecrets)
	return c, err
}

func describe(c dump.Counts) string {
	return fmt.Sprintf("%d partners, %d companies, %d API keys, %d signing keys, %d sealed secrets, %d refresh-token families, %d audit events",
		c.Partners, c.Companies, c.Keys, c.SigningKeys, c.SealedSecrets, c.Families, c.AuditEvents)
}
