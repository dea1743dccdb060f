package metrics_test

import (
	"testing"
	"time"

	"keygate/metrics"
)

// What the metrics add to one request, measured alone: the figure that
// stays readable on a machine too noisy for a with-and-without
// comparison of whole requests (BENCHMARKS.md compares both).

// BenchmarkRecordLogin is what a login records: its request and its
// outcome.
func BenchmarkRecordLogin(b *testing.B) {
	m := metrics.New()
	b.ReportAllocs()
	for b.Loop() {
		m.Login(metrics.KindCompany, metrics.OutcomeOK)
		m.Request("/api/v1/auth/login", "POST", 200, 3*time.Millisecond)
	}
}

// BenchmarkRecordRefresh is what a refresh records: its request, its
// outcome, and its share of a group commit (one commit of one write, the
// most a refresh can cost).
func BenchmarkRecordRefresh(b *testing.B) {
	m := metrics.New()
	commit := m.CommitObserver()
	b.ReportAllocs()
	for b.Loop() {
		m.Refresh(metrics.OutcomeOK)
		m.Request("/api/v1/auth/refresh", "POST", 200, 3*time.Millisecond)
		commit(1, 200*time.Microsecond, nil)
	}
}

// BenchmarkRecordParallel records logins from every core at once: the
// counters' contention.
func BenchmarkRecordParallel(b *testing.B) {
	m := metrics.New()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Login(metrics.KindCompany, metrics.OutcomeOK)
			m.Request("/api/v1/auth/login", "POST", 200, 3*time.Millisecond)
		}
	})
}
