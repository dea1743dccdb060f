package sqlite_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"keygate/keys"
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

// BenchmarkRotate measures what every refresh after the first costs the
// store: the conditional update of its family's row, 32 families rotating
// at once as 32 clients would, each committed durably (FULL). cpu/op is
// the process's CPU time per rotation, the figure the server's throughput
// follows on a busy machine.
func BenchmarkRotate(b *testing.B) {
	var commits atomic.Int64
	db, err := sqlite.Open(b.Context(), sqlite.Options{
		Path: filepath.Join(b.TempDir(), "k.db"), Synchronous: "FULL",
		OnCommit: func(int, time.Duration, error) { commits.Add(1) },
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	p, _ := createPartner(b, db, "Acme")
	const clients = 32
	ids := make(chan string, clients)
	for range clients {
		seed := seedOf(p.KeyID)
		if err := db.UpdateFamily(b.Context(), seed.ID, &seed, rotate); err != nil {
			b.Fatal(err)
		}
		ids <- seed.ID
	}
	b.SetParallelism(clients / runtime.GOMAXPROCS(0))
	commits0 := commits.Load()
	cpu0 := cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		id := <-ids
		for pb.Next() {
			if err := db.UpdateFamily(context.Background(), id, nil, rotate); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(b.N)/float64(commits.Load()-commits0), "writes/commit")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkResolveKey measures what a login's key-cache miss costs: the
// read of one company key by its digest on the reader pool, from 32
// goroutines, keys picked at random among n.
func BenchmarkResolveKey(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			db, err := sqlite.Open(b.Context(), sqlite.Options{Path: filepath.Join(b.TempDir(), "k.db"), Synchronous: "OFF"})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { db.Close() })
			owner, _ := createPartner(b, db, "Acme")
			digests := make([]keys.Digest, n)
			var next atomic.Int64
			var wg sync.WaitGroup
			for range 64 {
				wg.Go(func() {
					for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
						now := time.Now()
						c := keys.Company{ID: keys.NewID("com_"), PartnerID: owner.PartnerID, Name: fmt.Sprint("c", i), Status: keys.StatusActive, CreatedAt: now}
						secret := keys.NewAPIKey(keys.CompanyKeyPrefix).Reveal()
						k := keys.Key{ID: keys.NewID("key_"), Owner: keys.CompanyOwner(c.PartnerID, c.ID), Hint: keys.Hint(secret), CreatedAt: now}
						digests[i] = keys.DigestOf(secret)
						if err := db.CreateCompany(context.Background(), c, k, digests[i], nil); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.SetParallelism(32 / runtime.GOMAXPROCS(0))
			cpu0 := cpuTime()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				r := rand.New(rand.NewPCG(rand.Uint64(), 1))
				for pb.Next() {
					if _, err := db.ResolveKey(context.Background(), digests[r.IntN(n)]); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// openFull opens a database in b's temporary directory, durable
// (synchronous=FULL) as keygate serve runs it.
func openFull(b *testing.B) *sqlite.DB {
	db, err := sqlite.Open(b.Context(), sqlite.Options{Path: filepath.Join(b.TempDir(), "k.db"), Synchronous: "FULL"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

// BenchmarkRecordUsage measures the login's share of the writer: one
// second's batch of a busy gateway, 1,000 login audit events and their
// keys' last use, in one transaction. cpu-ns/event is the process's CPU
// time per login event written.
func BenchmarkRecordUsage(b *testing.B) {
	db := openFull(b)
	p, _ := createPartner(b, db, "Acme")
	now := time.Now()
	evs := make([]keys.AuditEvent, 1000)
	for i := range evs {
		evs[i] = keys.AuditEvent{
			At: now, ActorType: keys.ActorPartner, ActorID: p.ID, Action: "login", TargetType: "key", Target: p.KeyID,
			Addr: "192.0.2.1", Outcome: keys.OutcomeSuccess, Detail: "hint=" + p.KeyID[:8],
		}
	}
	used := map[string]time.Time{p.KeyID: now}
	cpu0 := cpuTime()
	for b.Loop() {
		if err := db.RecordUsage(b.Context(), used, evs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N*len(evs)), "cpu-ns/event")
}

// BenchmarkRecordLastUse measures the rest of a login batch at scale: with
// many keys in use, a second's batch writes the last use of a thousand
// keys (each at most once a minute) among the table's 20,000, picked at
// random. cpu-ns/key is the process's CPU time per key written.
func BenchmarkRecordLastUse(b *testing.B) {
	db := openFull(b)
	owner, _ := createPartner(b, db, "Acme")
	const n, batch = 20_000, 1000
	ids := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < n; i = next.Add(1) - 1 {
				now := time.Now()
				c := keys.Company{ID: keys.NewID("com_"), PartnerID: owner.PartnerID, Name: fmt.Sprint("c", i), Status: keys.StatusActive, CreatedAt: now}
				secret := keys.NewAPIKey(keys.CompanyKeyPrefix).Reveal()
				k := keys.Key{ID: keys.NewID("key_"), Owner: keys.CompanyOwner(c.PartnerID, c.ID), Hint: keys.Hint(secret), CreatedAt: now}
				ids[i] = k.ID
				if err := db.CreateCompany(context.Background(), c, k, keys.DigestOf(secret), nil); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	r := rand.New(rand.NewPCG(1, 2))
	cpu0 := cpuTime()
	for b.Loop() {
		b.StopTimer()
		used := make(map[string]time.Time, batch)
		now := time.Now()
		for len(used) < batch {
			used[ids[r.IntN(n)]] = now
		}
		b.StartTimer()
		if err := db.RecordUsage(b.Context(), used, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N*batch), "cpu-ns/key")
}
