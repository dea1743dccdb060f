package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"keygate/tokens"
)

// AddSigningKey implements tokens.KeyStore.
func (d *DB) AddSigningKey(ctx context.Context, k tokens.SigningKeyRecord) error {
	return d.tx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO signing_keys (kid, algorithm, sealed, created_at, activates_at) VALUES ($1, $2, $3, $4, $5)`,
			k.KID, k.Algorithm, k.Sealed, ms(k.CreatedAt), ms(k.ActivatesAt))
		return err
	})
}

// ListSigningKeys implements tokens.KeyStore.
func (d *DB) ListSigningKeys(ctx context.Context) ([]tokens.SigningKeyRecord, error) {
	rows, _ := d.pool.Query(ctx, `SELECT kid, algorithm, sealed, created_at, activates_at FROM signing_keys ORDER BY activates_at, created_at`)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (tokens.SigningKeyRecord, error) {
		var k tokens.SigningKeyRecord
		var created, activates int64
		err := row.Scan(&k.KID, &k.Algorithm, &k.Sealed, &created, &activates)
		k.CreatedAt, k.ActivatesAt = fromMS(created), fromMS(activates)
		return k, err
	})
	return out, d.mapErr(err)
}
