package keys_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"keygate/keys"
	"keygate/memstore"
)

// recorderOver is a keys.Service whose login audit goes through a
// Recorder over a memstore, both on the given clock.
func recorderOver(t *testing.T, clock *manualClock) (*keys.Service, *keys.Recorder, *memstore.Store) {
	t.Helper()
	st := memstore.New()
	rec := keys.NewRecorder(st, time.Second, clock.Now, slog.New(slog.DiscardHandler))
	return keys.NewService(st, rec, clock.Now, slog.New(slog.DiscardHandler)), rec, st
}

func auditTrail(t *testing.T, svc *keys.Service) []keys.AuditEvent {
	t.Helper()
	evs, err := svc.ListAudit(t.Context(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestFailuresAreCountedPerAddressAndMinute: failed logins and refreshes
// become one audit event per address bucket, action and minute, with the
// attempts counted and the first few hints named, written once the minute
// is over; successes stay one event each.
func TestFailuresAreCountedPerAddressAndMinute(t *testing.T) {
	clock := &manualClock{t: time.Date(2026, 12, 1, 10, 0, 5, 0, time.UTC)}
	svc, rec, _ := recorderOver(t, clock)
	ctx := t.Context()
	p := keys.Principal{Kind: keys.KindPartner, ID: "par_1", PartnerID: "par_1", KeyID: "key_1"}

	for i := range 40 {
		svc.RecordLogin(ctx, keys.Principal{}, fmt.Sprintf("pk_%04d", i%8), "198.51.100.7", false)
	}
	svc.RecordLogin(ctx, keys.Principal{}, keys.HintMalformed, "2001:db8:1:2::1", false)
	svc.RecordLogin(ctx, keys.Principal{}, keys.HintMalformed, "2001:db8:1:2:ffff::9", false) // the same /64
	svc.RecordRefreshFailure(ctx, "198.51.100.7")
	svc.RecordRefreshFailure(ctx, "198.51.100.7")
	svc.RecordLogin(ctx, p, "pk_good", "198.51.100.7", true)
	svc.RecordLogin(ctx, p, "pk_good", "198.51.100.7", true)

	rec.Flush(ctx) // at shutdown: everything, the current minute included
	evs := auditTrail(t, svc)
	byAddr := map[string][]keys.AuditEvent{}
	for _, e := range evs {
		byAddr[e.Addr+" "+e.Action+" "+e.Outcome] = append(byAddr[e.Addr+" "+e.Action+" "+e.Outcome], e)
	}
	if got := len(byAddr["198.51.100.7 login failure"]); got != 1 {
		t.Fatalf("failed logins from one address = %d events, want 1: %+v", got, evs)
	}
	e := byAddr["198.51.100.7 login failure"][0]
	if want := "attempts=40 hints=pk_0000,pk_0001,pk_0002,pk_0003,pk_0004"; e.Detail != want || e.Target != "pk_0000" {
		t.Errorf("failure event = target %q detail %q, want target pk_0000 detail %q", e.Target, e.Detail, want)
	}
	if got := byAddr["2001:db8:1:2::/64 login failure"]; len(got) != 1 || got[0].Detail != "attempts=2 hints=malformed" {
		t.Errorf("failed logins from one /64 = %+v, want one event of 2 attempts", got)
	}
	if got := byAddr["198.51.100.7 refresh failure"]; len(got) != 1 || got[0].Detail != "attempts=2" || got[0].TargetType != "refresh_token" {
		t.Errorf("failed refreshes = %+v, want one event of 2 attempts", got)
	}
	if got := len(byAddr["198.51.100.7 login success"]); got != 2 {
		t.Errorf("successful logins = %d events, want one each (2)", got)
	}
	for _, e := range evs {
		if strings.Contains(e.Detail, "pk_good") && e.Outcome == keys.OutcomeFailure {
			t.Errorf("a success counted as a failure: %+v", e)
		}
	}
}

// TestFailuresWaitForTheirMinute: the running flush writes a minute's
// failure counts only once the minute is over, so that an address adds one
// event per minute however long it keeps failing.
func TestFailuresWaitForTheirMinute(t *testing.T) {
	clock := &manualClock{t: time.Date(2026, 12, 1, 10, 0, 5, 0, time.UTC)}
	svc, rec, _ := recorderOver(t, clock)
	ctx := t.Context()
	flush := func() {
		t.Helper()
		keys.FlushDue(rec, ctx) // what Run does every interval
	}
	for minute := range 3 {
		for range 10 {
			svc.RecordLogin(ctx, keys.Principal{}, "pk_abcd", "203.0.113.9", false)
			clock.Advance(5 * time.Second)
			flush()
		}
		if got := len(auditTrail(t, svc)); got != minute {
			t.Fatalf("minute %d: %d events written, want %d (one per finished minute)", minute, got, minute)
		}
		clock.Advance(10 * time.Second) // into the next minute
	}
	flush()
	evs := auditTrail(t, svc)
	if len(evs) != 3 {
		t.Fatalf("%d events after three minutes, want 3: %+v", len(evs), evs)
	}
	for _, e := range evs {
		if e.Detail != "attempts=10 hints=pk_abcd" {
			t.Errorf("event %+v, want 10 attempts", e)
		}
	}
}

// TestFailureSprayIsBounded: failed logins sprayed from 250,000 addresses
// in one minute, the attack the aggregation answers, add at most one event
// per address and minute, and the recorder never holds more than its bound
// of counts: past it, the minute's failures share one "other" bucket.
func TestFailureSprayIsBounded(t *testing.T) {
	clock := &manualClock{t: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	svc, rec, _ := recorderOver(t, clock)
	ctx := t.Context()
	const addrs = 250_000
	for i := range addrs {
		addr := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		svc.RecordLogin(ctx, keys.Principal{}, keys.HintMalformed, addr, false)
		if i%4 == 0 {
			svc.RecordLogin(ctx, keys.Principal{}, keys.HintMalformed, addr, false) // some try twice
		}
	}
	if got := keys.FailureBuckets(rec); got > keys.MaxFailureBuckets+1 {
		t.Fatalf("recorder holds %d failure counts, want at most %d", got, keys.MaxFailureBuckets+1)
	}
	clock.Advance(time.Minute)
	keys.FlushDue(rec, ctx)
	evs := auditTrail(t, svc)
	if len(evs) > addrs || len(evs) != keys.MaxFailureBuckets+1 {
		t.Errorf("%d audit events for %d addresses, want %d (the bound, plus one overflow bucket)", len(evs), addrs, keys.MaxFailureBuckets+1)
	}
	total := 0
	for _, e := range evs {
		var n int
		if _, err := fmt.Sscanf(e.Detail, "attempts=%d", &n); err != nil {
			t.Fatalf("event detail %q: %v", e.Detail, err)
		}
		total += n
	}
	if want := addrs + addrs/4; total != want {
		t.Errorf("attempts counted = %d, want %d: none lost to the bound", total, want)
	}
	if got := keys.FailureBuckets(rec); got != 0 {
		t.Errorf("recorder still holds %d counts after writing them", got)
	}
}

// usageCounter is a memstore that counts the last uses written to it.
type usageCounter struct {
	*memstore.Store
	written int
}

func (s *usageCounter) RecordUsage(ctx context.Context, lastUsed map[string]time.Time, evs []keys.AuditEvent) error {
	s.written += len(lastUsed)
	return s.Store.RecordUsage(ctx, lastUsed, evs)
}

// lastUseRecorder is a Recorder over a usageCounter, on a manual clock,
// remembering the last writes of n keys.
func lastUseRecorder(n int) (*keys.Recorder, *usageCounter, *manualClock) {
	clock := &manualClock{t: time.Date(2026, 6, 26, 8, 0, 0, 0, time.UTC)}
	st := &usageCounter{Store: memstore.New()}
	rec := keys.NewRecorder(st, time.Second, clock.Now, slog.New(slog.DiscardHandler))
	keys.SetMaxWrittenKeys(rec, n)
	return rec, st, clock
}

// TestLastUseIsWrittenOnceAMinute: a key's last use is written on the
// first flush after its first login, then again only once the minute is
// over, even with as many keys in use as the recorder remembers (as the
// key cache holds), logged in a hundred to a flush as a busy gateway's
// are.
func TestLastUseIsWrittenOnceAMinute(t *testing.T) {
	if keys.MaxWrittenKeys < keys.MaxCachedKeys {
		t.Fatalf("the recorder remembers %d last writes, fewer than the %d keys the cache holds in use", keys.MaxWrittenKeys, keys.MaxCachedKeys)
	}
	ctx := t.Context()
	const n = 5000
	rec, st, clock := lastUseRecorder(n)
	pass := func() {
		for i := range n {
			rec.Login(keys.AuditEvent{At: clock.Now(), Action: "login"}, fmt.Sprint("key_", i))
			if i%100 == 99 {
				keys.FlushDue(rec, ctx)
			}
		}
		keys.FlushDue(rec, ctx)
	}
	pass()
	if st.written != n {
		t.Fatalf("first pass wrote %d last uses, want %d: one per key", st.written, n)
	}
	clock.Advance(30 * time.Second)
	pass()
	if st.written != n {
		t.Errorf("a pass 30 s later wrote %d more last uses, want none", st.written-n)
	}
	clock.Advance(31 * time.Second)
	pass()
	if st.written != 2*n {
		t.Errorf("a pass a minute after the first wrote %d, want %d", st.written-n, n)
	}
}

// TestLastUseRecordMakesRoom: when more keys are written than the recorder
// remembers, it forgets the writes over a minute old, not those that still
// keep their keys from being written again.
func TestLastUseRecordMakesRoom(t *testing.T) {
	ctx := t.Context()
	const n = 1000
	rec, st, clock := lastUseRecorder(n)
	use := func(prefix string, count int) int {
		before := st.written
		for i := range count {
			rec.Login(keys.AuditEvent{At: clock.Now(), Action: "login"}, fmt.Sprint(prefix, i))
		}
		keys.FlushDue(rec, ctx)
		return st.written - before
	}
	use("old_", n/2)
	clock.Advance(45 * time.Second)
	use("fresh_", n/2) // the record is full
	clock.Advance(16 * time.Second)
	if got := use("new_", 1); got != 1 {
		t.Fatalf("a new key wrote %d last uses, want 1", got)
	}
	clock.Advance(time.Second)
	if got := use("fresh_", n/2); got != 0 {
		t.Errorf("keys written 17 s ago wrote %d last uses again after the record made room, want none", got)
	}
}
