package sqlite

import (
	"context"
	"fmt"

	"keygate/tokens"
)

// ListSealedSecrets implements tokens.SecretStore.
func (d *DB) ListSealedSecrets(ctx context.Context) ([]tokens.SealedSecret, error) {
	rows, err := d.read.QueryContext(ctx, `SELECT name, sealed, created_at FROM sealed_secrets ORDER BY name`)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []tokens.SealedSecret
	for rows.Next() {
		var s tokens.SealedSecret
		var created int64
		if err := rows.Scan(&s.Name, &s.Sealed, &created); err != nil {
			return nil, err
		}
		s.CreatedAt = fromMS(created)
		out = append(out, s)
	}
	return out, mapErr(rows.Err())
}

// AddSealedSecret implements tokens.SecretStore: one statement in the
// writer's immediate transaction (insertOne); it replaces only a
// placeholder.
func (d *DB) AddSealedSecret(ctx context.Context, s tokens.SealedSecret) (bool, error) {
	return d.insertOne(ctx, `INSERT INTO sealed_secrets (name, sealed, created_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed, created_at = excluded.created_at
		WHERE length(sealed_secrets.sealed) = 0`,
		s.Name, blob(s.Sealed), ms(s.CreatedAt))
}

// Reseal implements tokens.SecretStore: one op of the writer, so one
// transaction that no other writer interleaves with; an error rolls the
// op back to its savepoint, leaving every row as it was.
func (d *DB) Reseal(ctx context.Context, plan tokens.ResealPlan) error {
	return d.do(ctx, func(ctx context.Context, tx *wtx) error {
		var keys, secrets int
		if err := tx.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM signing_keys), (SELECT COUNT(*) FROM sealed_secrets)`).Scan(&keys, &secrets); err != nil {
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
			{`UPDATE signing_keys SET sealed = ? WHERE kid = ? AND sealed = ?`, plan.SigningKeys},
			{`UPDATE sealed_secrets SET sealed = ? WHERE name = ? AND sealed = ?`, plan.Secrets},
		} {
			for _, r := range table.rows {
				res, err := tx.ExecContext(ctx, table.update, blob(r.New), r.Name, blob(r.Old))
				if err != nil {
					return err
				}
				if n, err := res.RowsAffected(); err != nil {
					return err
				} else if n != 1 {
					return fmt.Errorf("%w: %s", tokens.ErrResealConflict, r.Name)
				}
			}
		}
		return nil
	})
}

// blob is b as a BLOB, never NULL: an empty seal is a placeholder.
func blob(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
