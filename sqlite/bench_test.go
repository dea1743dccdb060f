package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"

	"keygate/sqlite"
)

// BenchmarkFirstRefresh shows the group commit of the write a login now
// leaves to its first refresh, the insert of its family's row: with
// synchronous=FULL every transaction waits for the disk, so the more first
// refreshes are in flight at once, the more share one commit and the lower
// ns/op falls below "serial".
func BenchmarkFirstRefresh(b *testing.B) {
	setup := func(b *testing.B) (*sqlite.DB, string) {
		b.Helper()
		db, err := sqlite.Open(b.Context(), sqlite.Options{Path: filepath.Join(b.TempDir(), "k.db"), Synchronous: "FULL"})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		p, _ := createPartner(b, db, "Acme")
		return db, p.KeyID
	}
	refresh := func(db *sqlite.DB, keyID string) error {
		seed := seedOf(keyID)
		return db.UpdateFamily(context.Background(), seed.ID, &seed, rotate)
	}
	b.Run("serial", func(b *testing.B) {
		db, keyID := setup(b)
		for b.Loop() {
			if err := refresh(db, keyID); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, inflight := range []int{8, 64} {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			db, keyID := setup(b)
			// RunParallel starts parallelism × GOMAXPROCS goroutines.
			b.SetParallelism(max(1, inflight/runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := refresh(db, keyID); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
