package keys

import (
	"encoding/binary"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// BenchmarkKeyTableCollection is what a garbage collection costs with
// 100,000 keys in the table, every one of them with a name and every
// tenth with scopes and an expiry, as stores read them: the table is most
// of the live heap of a gateway with that many keys in use. cpu-ns/op, the
// process's CPU time per collection, is the measure: a collection's wall
// time is mostly waiting.
func BenchmarkKeyTableCollection(b *testing.B) {
	const n = 100_000
	partners := make([]string, 1_000)
	for i := range partners {
		partners[i] = NewID("par_")
	}
	tb := newKeyTable()
	for i := range n {
		var d Digest
		binary.LittleEndian.PutUint64(d[:], uint64(i)*0x9e3779b97f4a7c15)
		r := resolvedFor(d, NewID("key_"), partners[i%len(partners)], NewID("com_"), true)
		if i%10 == 0 {
			r.KeyScopes = StoredScopes("orders:read orders:write")
			at := time.UnixMilli(1_800_000_000_000 + int64(i)).UTC()
			r.Principal.KeyExpiresAt = &at
		}
		if !tb.put(r, 1, n) {
			b.Fatal("put held nothing")
		}
	}
	runtime.GC()
	cpu0 := cpuTime()
	for b.Loop() {
		runtime.GC()
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
	runtime.KeepAlive(tb)
}

// cpuTime is the CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
