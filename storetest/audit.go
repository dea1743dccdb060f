package storetest

import (
	"testing"
	"time"

	"keygate/keys"
	"keygate/store"
)

// Key usage and the audit trail: RecordUsage, the batched write of logins,
// and ListAudit.

func testRecordUsage(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := createPartner(t, s, "Acme", t0)
	k2, _ := createKey(t, s, a.owner(), t0)

	used := func(want *time.Time) {
		t.Helper()
		sameTimePtr(t, "LastUsedAt", findKey(t, s, a.owner(), a.key.ID).LastUsedAt, want)
	}
	must(t, "RecordUsage with nothing", s.RecordUsage(ctx, nil, nil))
	used(nil)

	t1, t2 := t0.Add(10*time.Second), t0.Add(20*time.Second)
	must(t, "RecordUsage", s.RecordUsage(ctx, map[string]time.Time{a.key.ID: t1}, nil))
	used(&t1)
	if got := findKey(t, s, a.owner(), k2.ID).LastUsedAt; got != nil {
		t.Errorf("unused key has LastUsedAt %s", got)
	}
	must(t, "RecordUsage with an older time", s.RecordUsage(ctx, map[string]time.Time{a.key.ID: t0.Add(5 * time.Second)}, nil))
	used(&t1)
	must(t, "RecordUsage with an unknown key", s.RecordUsage(ctx, map[string]time.Time{a.key.ID: t2, "key_unknown": t2}, nil))
	used(&t2)

	evs := []keys.AuditEvent{
		{At: t2, ActorType: keys.ActorPartner, ActorID: a.ID, Action: "login", TargetType: "key", Target: a.key.ID, Addr: "192.0.2.1", Outcome: keys.OutcomeSuccess, Detail: "hint=" + a.key.Hint},
		{At: t2, ActorType: keys.ActorAnonymous, Action: "login", TargetType: "key", Target: "pk_abcd", Addr: "192.0.2.2", Outcome: keys.OutcomeFailure},
	}
	must(t, "RecordUsage with events", s.RecordUsage(ctx, nil, evs))
	got, err := s.ListAudit(ctx, t2)
	must(t, "ListAudit", err)
	if len(got) != 2 {
		t.Fatalf("ListAudit = %d events, want 2: %+v", len(got), got)
	}
	for i := range evs {
		checkEvent(t, got[i], evs[i])
	}
}

func testListAudit(t *testing.T, s store.Store) {
	ctx := t.Context()
	ev := func(at time.Time, action string) keys.AuditEvent {
		return keys.AuditEvent{At: at, ActorType: keys.ActorCompany, ActorID: "com_1", Action: action, TargetType: "key", Target: "key_1", Addr: "198.51.100.7", Outcome: keys.OutcomeSuccess, Detail: "d=" + action}
	}
	e0, e1a, e1b, e2 := ev(t0, "first"), ev(t0.Add(time.Second), "second"), ev(t0.Add(time.Second), "third"), ev(t0.Add(2*time.Second), "fourth")
	// Written out of order; read oldest first, ties in the order written.
	must(t, "RecordUsage", s.RecordUsage(ctx, nil, []keys.AuditEvent{e2, e1a}))
	must(t, "RecordUsage", s.RecordUsage(ctx, nil, []keys.AuditEvent{e0, e1b}))

	for _, tc := range []struct {
		name  string
		since time.Time
		want  []keys.AuditEvent
	}{
		{"everything", time.Time{}, []keys.AuditEvent{e0, e1a, e1b, e2}},
		{"since is inclusive", t0.Add(time.Second), []keys.AuditEvent{e1a, e1b, e2}},
		{"since between events", t0.Add(1500 * time.Millisecond), []keys.AuditEvent{e2}},
		{"since after the last", t0.Add(time.Hour), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.ListAudit(ctx, tc.since)
			must(t, "ListAudit", err)
			if len(got) != len(tc.want) {
				t.Fatalf("ListAudit = %d events, want %d: %+v", len(got), len(tc.want), got)
			}
			for i := range tc.want {
				checkEvent(t, got[i], tc.want[i])
			}
		})
	}
}
