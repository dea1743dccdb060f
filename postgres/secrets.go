package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"keygate/tokens"
)

// ListSealedSecrets implements tokens.SecretStore.
func (d *DB) ListSealedSecrets(ctx context.Context) ([]tokens.SealedSecret, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	rows, _ := d.pool.Query(ctx, `SELECT name, sealed, created_at FROM sealed_secrets ORDER BY name`)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (tokens.SealedSecret, error) {
		var s tokens.SealedSecret
		var created int64
		err := row.Scan(&s.Name, &s.Sealed, &created)
		s.CreatedAt = fromMS(created)
		return s, err
	})
	return out, d.mapErr(err)
}

// AddSealedSecret implements tokens.SecretStore. One statement decides:
// of two inserts of one name, the second waits for the first's row and then
// takes the conflict path, whose WHERE sees that row; it replaces only a
// placeholder.
func (d *DB) AddSealedSecret(ctx context.Context, s tokens.SealedSecret) (bool, error) {
	var added bool
	err := d.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO sealed_secrets (name, sealed, created_at) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed, created_at = excluded.created_at
			WHERE length(sealed_secrets.sealed) = 0`,
			s.Name, bytea(s.Sealed), ms(s.CreatedAt))
		added = tag.RowsAffected() == 1
		return err
	})
	return added, err
}

// Reseal implements tokens.SecretStore. The lock lets every replica go on
// reading both tables but holds back any insert or update (a signing-key
// rotation, a first start storing a secret) until this transaction ends,
// so that the rows counted are the rows updated.
func (d *DB) Reseal(ctx context.Context, plan tokens.ResealPlan) error {
	return d.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE signing_keys, sealed_secrets IN SHARE ROW EXCLUSIVE MODE`); err != nil {
			return err
		}
		var keys, secrets int
		if err := tx.QueryRow(ctx, `SELECT (SELECT COUNT(*) FROM signing_keys), (SELECT COUNT(*) FROM sealed_secrets)`).Scan(&keys, &secrets); err != nil {
			return err
		}
		if keys != len(plan.SigningKeys) || secrets != len(plan.Secrets) {
			return fmt.Errorf("%w: %d signing keys and %d sealed secrets stored, %d and %d re-sealed",
				tokens.ErrResealConflict, keys, secrets, len(plan.SigningKeys), len(plan.Secrets))
		}
		for _, table := range []struct {
			update string
			rows   []tokens.Reseal
		}{
			{`UPDATE signing_keys SET sealed = $1 WHERE kid = $2 AND sealed = $3`, plan.SigningKeys},
			{`UPDATE sealed_secrets SET sealed = $1 WHERE name = $2 AND sealed = $3`, plan.Secrets},
		} {
			for _, r := range table.rows {
				tag, err := tx.Exec(ctx, table.update, bytea(r.New), r.Name, bytea(r.Old))
				if err != nil {
					return err
				}
				if tag.RowsAffected() != 1 {
					return fmt.Errorf("%w: %s", tokens.ErrResealConflict, r.Name)
				}
			}
		}
		return nil
	})
}

// bytea is b as a bytea, never NULL (which pgx sends for a nil slice): an
// empty seal is a placeholder.
func bytea(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
