package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"keygate/keys"
	"keygate/store"
	"keygate/tokens"
)

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: err = %v, want %v", what, err, want)
	}
}

func sameTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(stored(want)) || got.Location() != time.UTC {
		t.Errorf("%s = %v, want %v (UTC, millisecond precision)", what, got, stored(want))
	}
}

func sameTimePtr(t *testing.T, what string, got, want *time.Time) {
	t.Helper()
	switch {
	case got == nil && want == nil:
	case got == nil || want == nil:
		t.Errorf("%s = %s, want %s", what, showTime(got), showTime(want))
	default:
		sameTime(t, what, *got, *want)
	}
}

func showTime(v *time.Time) string {
	if v == nil {
		return "nil"
	}
	return stored(*v).String()
}

func showString(v *string) string {
	if v == nil {
		return "nil"
	}
	return fmt.Sprintf("%q", *v)
}

func checkPartner(t *testing.T, got, want keys.Partner) {
	t.Helper()
	if got.ID != want.ID || got.Name != want.Name || got.Status != want.Status {
		t.Errorf("partner = {%s %q %s}, want {%s %q %s}", got.ID, got.Name, got.Status, want.ID, want.Name, want.Status)
	}
	sameTime(t, "partner CreatedAt", got.CreatedAt, want.CreatedAt)
}

func checkCompany(t *testing.T, got, want keys.Company) {
	t.Helper()
	if got.ID != want.ID || got.PartnerID != want.PartnerID || got.Name != want.Name || got.Status != want.Status {
		t.Errorf("company = {%s %s %q %s}, want {%s %s %q %s}",
			got.ID, got.PartnerID, got.Name, got.Status, want.ID, want.PartnerID, want.Name, want.Status)
	}
	if showString(got.ExternalID) != showString(want.ExternalID) {
		t.Errorf("company %s ExternalID = %s, want %s", want.ID, showString(got.ExternalID), showString(want.ExternalID))
	}
	sameTime(t, "company CreatedAt", got.CreatedAt, want.CreatedAt)
}

func checkKey(t *testing.T, got, want keys.Key) {
	t.Helper()
	if got.ID != want.ID || got.Owner != want.Owner || got.Hint != want.Hint {
		t.Errorf("key = {%s %+v %q}, want {%s %+v %q}", got.ID, got.Owner, got.Hint, want.ID, want.Owner, want.Hint)
	}
	sameTime(t, "key CreatedAt", got.CreatedAt, want.CreatedAt)
	sameTimePtr(t, "key LastUsedAt", got.LastUsedAt, want.LastUsedAt)
	sameTimePtr(t, "key RevokedAt", got.RevokedAt, want.RevokedAt)
}

// checkFamily compares everything a family stores; the principal's name is
// not stored.
func checkFamily(t *testing.T, got, want tokens.Family) {
	t.Helper()
	wantP := want.Principal
	wantP.Name = ""
	if got.ID != want.ID || got.Principal != wantP {
		t.Errorf("family = {%s %+v}, want {%s %+v}", got.ID, got.Principal, want.ID, wantP)
	}
	if got.Generation != want.Generation || got.RevokeReason != want.RevokeReason || got.PrincipalActive != want.PrincipalActive {
		t.Errorf("family %s: generation %d, reason %q, active %v; want %d, %q, %v", want.ID,
			got.Generation, got.RevokeReason, got.PrincipalActive, want.Generation, want.RevokeReason, want.PrincipalActive)
	}
	sameTime(t, "family CreatedAt", got.CreatedAt, want.CreatedAt)
	sameTime(t, "family RotatedAt", got.RotatedAt, want.RotatedAt)
	sameTime(t, "family ExpiresAt", got.ExpiresAt, want.ExpiresAt)
	sameTime(t, "family ParentExpiresAt", got.ParentExpiresAt, want.ParentExpiresAt)
	sameTime(t, "family FirstExpiresAt", got.FirstExpiresAt, want.FirstExpiresAt)
	sameTimePtr(t, "family RevokedAt", got.RevokedAt, want.RevokedAt)
}

// sameInstant reports whether got is want, allowing for a store that has
// already reduced it to what it keeps.
func sameInstant(got, want time.Time) bool { return stored(got).Equal(stored(want)) }

func checkEvent(t *testing.T, got, want keys.AuditEvent) {
	t.Helper()
	g, w := got, want
	g.At, w.At = time.Time{}, time.Time{}
	g.ID, w.ID = 0, 0 // the store's numbering
	if g != w {
		t.Errorf("audit event = %+v, want %+v", g, w)
	}
	sameTime(t, "audit event At", got.At, want.At)
}

// hasEvent reports whether the audit trail holds an event with this action
// and target.
func hasEvent(t *testing.T, s store.Store, action, target string) bool {
	t.Helper()
	evs := auditSince(t, s, time.Time{})
	return slices.ContainsFunc(evs, func(e keys.AuditEvent) bool { return e.Action == action && e.Target == target })
}

func wantEvent(t *testing.T, s store.Store, action, target string) {
	t.Helper()
	if !hasEvent(t, s, action, target) {
		t.Errorf("audit trail lacks %s %s", action, target)
	}
}

func findPartner(t *testing.T, s store.Store, id string) (keys.Partner, bool) {
	t.Helper()
	ps, err := s.ListPartners(t.Context())
	must(t, "ListPartners", err)
	i := slices.IndexFunc(ps, func(p keys.Partner) bool { return p.ID == id })
	if i < 0 {
		return keys.Partner{}, false
	}
	return ps[i], true
}

func findKey(t *testing.T, s store.Store, o keys.Owner, keyID string) keys.Key {
	t.Helper()
	ks, err := s.ListKeys(t.Context(), o)
	must(t, "ListKeys", err)
	i := slices.IndexFunc(ks, func(k keys.Key) bool { return k.ID == keyID })
	if i < 0 {
		t.Fatalf("ListKeys(%+v) lacks key %s", o, keyID)
	}
	return ks[i]
}

func keyIDs(ks []keys.Key) []string {
	ids := make([]string, len(ks))
	for i, k := range ks {
		ids[i] = k.ID
	}
	slices.Sort(ids)
	return ids
}

func sorted(ids ...string) []string {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	return ids
}

// auditSince is the whole audit trail from since on, read in pages of
// three so that paging itself is exercised.
func auditSince(t *testing.T, s store.Store, since time.Time) []keys.AuditEvent {
	t.Helper()
	out := []keys.AuditEvent{}
	cur := keys.AuditCursor{At: since}
	for {
		evs, err := s.ListAudit(t.Context(), cur, 3)
		must(t, "ListAudit", err)
		out = append(out, evs...)
		if len(evs) < 3 {
			return out
		}
		cur = evs[len(evs)-1].After()
	}
}
