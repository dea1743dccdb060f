package postgres_test

import (
	"sync/atomic"
	"testing"
	"time"

	"keygate/keys"
	"keygate/postgres"
	"keygate/postgres/pgtest"
	"keygate/tokens"
)

// BenchmarkRotate: refresh rotations of 32 families by 16 goroutines at
// once, as the refresh phase of scripts/bench.sh makes them, without HTTP.
// It also reports how many of the updates were HOT (no index entry
// written): every one should be.
func BenchmarkRotate(b *testing.B) {
	dbURL, _ := pgtest.Schema(b)
	db, err := postgres.Open(b.Context(), postgres.Options{URL: dbURL, Logger: testLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := b.Context()
	_, k, err := newService(db).CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "Acme"})
	if err != nil {
		b.Fatal(err)
	}
	const families = 32
	ids := make([]string, families)
	for i := range ids {
		now := time.Now()
		seed := tokens.Family{ID: keys.NewID("fam_"), Principal: keys.Principal{KeyID: k.ID},
			CreatedAt: now, RotatedAt: now, ExpiresAt: now.Add(time.Hour), FirstExpiresAt: now.Add(time.Hour)}
		ids[i] = seed.ID
		if err := db.UpdateFamily(ctx, seed.ID, &seed, func(f *tokens.Family) (tokens.Change, error) {
			f.Generation = 1
			return tokens.Change{Write: true}, nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		id := ids[next.Add(1)%families]
		for pb.Next() {
			err := db.UpdateFamily(ctx, id, nil, func(f *tokens.Family) (tokens.Change, error) {
				now := time.Now()
				f.ParentExpiresAt, f.Generation, f.RotatedAt, f.ExpiresAt = f.ExpiresAt, f.Generation+1, now, now.Add(time.Hour)
				return tokens.Change{Write: true}, nil
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	hot := pgtest.QueryInt(b, dbURL, `SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'refresh_families'`)
	all := pgtest.QueryInt(b, dbURL, `SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'refresh_families'`)
	if all > 0 {
		b.ReportMetric(float64(hot)/float64(all), "HOT/update")
	}
}
