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

// firstKeyLock is the advisory lock AddFirstSigningKey decides under (any
// fixed number, not the migrations').
const firstKeyLock int64 = 0x6b67666972737400

// AddFirstSigningKey implements tokens.KeyStore. Under READ COMMITTED two
// transactions could each see no key and each insert one; the transaction
// advisory lock makes them run one after the other, and the second's
// statement, which starts after it got the lock, sees the first's key.
func (d *DB) AddFirstSigningKey(ctx context.Context, k tokens.SigningKeyRecord) (bool, error) {
	var added bool
	err := d.tx(ctx, func(tx pgx.Tx) error {
		added = false
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, firstKeyLock); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO signing_keys (kid, algorithm, sealed, created_at, activates_at)
			SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM signing_keys WHERE algorithm = $2)`,
			k.KID, k.Algorithm, k.Sealed, ms(k.CreatedAt), ms(k.ActivatesAt))
		added = tag.RowsAffected() == 1
		return err
	})
	return added, err
}

// ListSigningKeys implements tokens.KeyStore.
func (d *DB) ListSigningKeys(ctx context.Context) ([]tokens.SigningKeyRecord, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
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
