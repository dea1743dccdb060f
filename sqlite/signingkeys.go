package sqlite

import (
	"context"
	"keygate/tokens"
)

var _ tokens.Store = (*DB)(nil)

// AddSigningKey implements tokens.KeyStore.
func (d *DB) AddSigningKey(ctx context.Context, k tokens.SigningKeyRecord) error {
	return d.do(ctx, func(ctx context.Context, tx *wtx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO signing_keys (kid, algorithm, sealed, created_at, activates_at) VALUES (?, ?, ?, ?, ?)`,
			k.KID, k.Algorithm, k.Sealed, ms(k.CreatedAt), ms(k.ActivatesAt))
		return err
	})
}

// AddFirstSigningKey implements tokens.KeyStore: one statement in the
// writer's immediate transaction (insertOne).
func (d *DB) AddFirstSigningKey(ctx context.Context, k tokens.SigningKeyRecord) (bool, error) {
	return d.insertOne(ctx, `INSERT INTO signing_keys (kid, algorithm, sealed, created_at, activates_at)
		SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM signing_keys WHERE algorithm = ?)`,
		k.KID, k.Algorithm, k.Sealed, ms(k.CreatedAt), ms(k.ActivatesAt), k.Algorithm)
}

// ListSigningKeys implements tokens.KeyStore.
func (d *DB) ListSigningKeys(ctx context.Context) ([]tokens.SigningKeyRecord, error) {
	rows, err := d.read.QueryContext(ctx, `SELECT kid, algorithm, sealed, created_at, activates_at FROM signing_keys ORDER BY activates_at, created_at`)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []tokens.SigningKeyRecord
	for rows.Next() {
		var k tokens.SigningKeyRecord
		var created, activates int64
		if err := rows.Scan(&k.KID, &k.Algorithm, &k.Sealed, &created, &activates); err != nil {
			return nil, err
		}
		k.CreatedAt, k.ActivatesAt = fromMS(created), fromMS(activates)
		out = append(out, k)
	}
	return out, mapErr(rows.Err())
}
