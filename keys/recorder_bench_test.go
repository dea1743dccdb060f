package keys_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"keygate/keys"
	"keygate/memstore"
)

// discardUsage is a memstore that throws away what a recorder writes.
type discardUsage struct{ *memstore.Store }

func (discardUsage) RecordUsage(context.Context, map[string]time.Time, []keys.AuditEvent) error {
	return nil
}

// BenchmarkRecorderLogin is what a successful login costs the recorder,
// with n keys in use, logins spread over them at 6,000 a second of the
// recorder's clock, and a flush every 1,000 logins, as a busy gateway's
// flushes come.
func BenchmarkRecorderLogin(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			ctx := b.Context()
			clock := &manualClock{t: time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)}
			rec := keys.NewRecorder(discardUsage{memstore.New()}, time.Second, clock.Now, slog.New(slog.DiscardHandler))
			ids := make([]string, n)
			for i := range ids {
				ids[i] = keys.NewID("key_")
				rec.Login(keys.AuditEvent{At: clock.Now(), Action: "login"}, ids[i])
			}
			keys.FlushDue(rec, ctx)
			i, logins := 0, 0
			for b.Loop() {
				clock.Advance(time.Second / 6000)
				rec.Login(keys.AuditEvent{At: clock.Now(), Action: "login"}, ids[i%n])
				if logins++; logins%1000 == 0 {
					keys.FlushDue(rec, ctx)
				}
				i += 7919 // a prime: every key in turn, in no cache-friendly order
			}
		})
	}
}
