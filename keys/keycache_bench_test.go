package keys_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"keygate/keys"
	"keygate/memstore"
)

// BenchmarkKeyCache logs in with keys the cache holds, n companies' keys
// in use, and reports what the cache holds per key in bytes of live heap.
func BenchmarkKeyCache(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			ctx := b.Context()
			clk := &manualClock{t: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)}
			svc := newService(memstore.New(), clk)
			partner, _, err := svc.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "Acme"})
			if err != nil {
				b.Fatal(err)
			}
			apiKeys := make([]string, n)
			for i := range apiKeys {
				_, k, err := svc.CreateCompany(ctx, keys.Operator, partner.ID, keys.CompanyInput{Name: fmt.Sprintf("Company %d", i)})
				if err != nil {
					b.Fatal(err)
				}
				apiKeys[i] = k.APIKey.Reveal()
			}
			before := liveHeap()
			for _, k := range apiKeys {
				if _, err := svc.Authenticate(ctx, k); err != nil {
					b.Fatal(err)
				}
			}
			if got := keys.CachedKeys(svc); got != n {
				b.Fatalf("cache holds %d keys, want %d", got, n)
			}
			perKey := float64(liveHeap()-before) / float64(n)
			b.ResetTimer()
			i := 0
			for b.Loop() {
				if _, err := svc.Authenticate(ctx, apiKeys[i%n]); err != nil {
					b.Fatal(err)
				}
				i += 7919 // a prime: every key in turn, in no cache-friendly order
			}
			b.ReportMetric(perKey, "B/key")
		})
	}
}

// liveHeap is the heap in use after a collection.
func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
