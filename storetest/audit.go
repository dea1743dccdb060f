package storetest

import (
	"strconv"
	"testing"
	"time"

	"keygate/keys"
	"keygate/store"
)

// Key usage and the audit trail: RecordUsage, the batched write of logins,
// ListAudit and DeleteAudit.

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
	got := auditSince(t, s, t2)
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

	all, err := s.ListAudit(ctx, keys.AuditCursor{}, 100)
	must(t, "ListAudit", err)
	if len(all) != 4 {
		t.Fatalf("ListAudit = %d events, want 4: %+v", len(all), all)
	}
	seen := map[int64]bool{}
	for i, e := range all {
		if e.ID == 0 || seen[e.ID] {
			t.Errorf("event %d has ID %d: want a distinct non-zero ID", i, e.ID)
		}
		seen[e.ID] = true
	}
	for _, tc := range []struct {
		name  string
		after keys.AuditCursor
		limit int
		want  []keys.AuditEvent
	}{
		{"everything", keys.AuditCursor{}, 100, []keys.AuditEvent{e0, e1a, e1b, e2}},
		{"limited", keys.AuditCursor{}, 2, []keys.AuditEvent{e0, e1a}},
		{"a time with ID 0 starts at that time", keys.AuditCursor{At: t0.Add(time.Second)}, 100, []keys.AuditEvent{e1a, e1b, e2}},
		{"between events", keys.AuditCursor{At: t0.Add(1500 * time.Millisecond)}, 100, []keys.AuditEvent{e2}},
		{"after an event: strictly after it, even at the same time", all[1].After(), 100, []keys.AuditEvent{e1b, e2}},
		{"after the last", all[3].After(), 100, nil},
		{"after the last time", keys.AuditCursor{At: t0.Add(time.Hour)}, 100, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.ListAudit(ctx, tc.after, tc.limit)
			must(t, "ListAudit", err)
			if got == nil {
				t.Error("ListAudit = nil, want an empty slice")
			}
			if len(got) != len(tc.want) {
				t.Fatalf("ListAudit = %d events, want %d: %+v", len(got), len(tc.want), got)
			}
			for i := range tc.want {
				checkEvent(t, got[i], tc.want[i])
			}
		})
	}
	if got := auditSince(t, s, time.Time{}); len(got) != 4 {
		t.Errorf("paging by three = %d events, want 4", len(got))
	}
}

// testDeleteAudit: retention deletes the oldest events first, strictly
// before the given time, at most limit per call.
func testDeleteAudit(t *testing.T, s store.Store) {
	ctx := t.Context()
	var evs []keys.AuditEvent
	for i := range 7 {
		evs = append(evs, keys.AuditEvent{At: t0.Add(time.Duration(i) * time.Minute), ActorType: keys.ActorOperator, ActorID: "operator", Action: "a" + strconv.Itoa(i), TargetType: "key", Target: "key_1", Addr: "local", Outcome: keys.OutcomeSuccess})
	}
	must(t, "RecordUsage", s.RecordUsage(ctx, nil, evs))

	n, err := s.DeleteAudit(ctx, t0.Add(5*time.Minute), 0)
	must(t, "DeleteAudit with limit 0", err)
	if n != 0 {
		t.Errorf("DeleteAudit with limit 0 deleted %d", n)
	}
	n, err = s.DeleteAudit(ctx, t0.Add(5*time.Minute), 3)
	must(t, "DeleteAudit", err)
	if n != 3 {
		t.Errorf("DeleteAudit deleted %d, want 3 (its limit)", n)
	}
	n, err = s.DeleteAudit(ctx, t0.Add(5*time.Minute), 3)
	must(t, "DeleteAudit", err)
	if n != 2 {
		t.Errorf("second DeleteAudit deleted %d, want 2: the events strictly before the time", n)
	}
	got := auditSince(t, s, time.Time{})
	if len(got) != 2 {
		t.Fatalf("%d events left, want 2: %+v", len(got), got)
	}
	checkEvent(t, got[0], evs[5])
	checkEvent(t, got[1], evs[6])
	n, err = s.DeleteAudit(ctx, t0.Add(5*time.Minute), 3)
	must(t, "DeleteAudit with nothing due", err)
	if n != 0 {
		t.Errorf("DeleteAudit with nothing due deleted %d", n)
	}
}

// testRecordUsageMany: a second's batch of logins is thousands of events;
// every one is written, in order, whatever the batch's size (1,000 and
// then 127 events: a store writing them in chunks meets chunks of many
// sizes).
func testRecordUsageMany(t *testing.T, s store.Store) {
	evs := make([]keys.AuditEvent, 1127)
	for i := range evs {
		evs[i] = keys.AuditEvent{At: t0, ActorType: keys.ActorAnonymous, Action: "login", TargetType: "key", Target: "pk_" + strconv.Itoa(i), Addr: "192.0.2.1", Outcome: keys.OutcomeFailure}
	}
	must(t, "RecordUsage", s.RecordUsage(t.Context(), nil, evs[:1000]))
	must(t, "RecordUsage", s.RecordUsage(t.Context(), nil, evs[1000:]))
	got := auditSince(t, s, time.Time{})
	if len(got) != len(evs) {
		t.Fatalf("%d events read back, want %d", len(got), len(evs))
	}
	for i := range evs {
		checkEvent(t, got[i], evs[i])
	}
}
