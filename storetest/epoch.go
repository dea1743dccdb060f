package storetest

import (
	"testing"
	"time"

	"keygate/keys"
	"keygate/store"
	"keygate/tokens"
)

// testKeyEpoch: the key epoch moves with every revocation of a key and
// every disabling of a partner or company, and with nothing else, so that
// a cache of resolved keys is forgotten exactly when it may be wrong, and
// not on every login's audit batch.
func testKeyEpoch(t *testing.T, s store.Store) {
	ctx := t.Context()
	epoch := func() int64 {
		t.Helper()
		e, err := s.KeyEpoch(ctx)
		must(t, "KeyEpoch", err)
		return e
	}
	check := func(what string, wantMove bool, do func()) {
		t.Helper()
		before := epoch()
		do()
		if moved := epoch() != before; moved != wantMove {
			t.Errorf("%s: key epoch moved %v, want %v", what, moved, wantMove)
		}
	}
	stays := func(what string, do func()) { t.Helper(); check(what, false, do) }
	moves := func(what string, do func()) { t.Helper(); check(what, true, do) }

	var w, other world
	stays("reading it", func() {})
	stays("creating partners and companies", func() { w, other = newWorld(t, s, "Acme"), newWorld(t, s, "Bolt") })
	var pk2, ck2 keys.Key
	stays("CreateKey", func() {
		pk2, _ = createKey(t, s, w.p.owner(), t0)
		ck2, _ = createKey(t, s, w.c.owner(), t0)
	})
	stays("reads", func() {
		_, err := s.ListKeys(ctx, w.p.owner())
		must(t, "ListKeys", err)
		_, err = s.ListPartners(ctx)
		must(t, "ListPartners", err)
		_, err = s.ListCompanies(ctx, w.p.ID, keys.Page{Limit: 10})
		must(t, "ListCompanies", err)
		wantActive(t, s, w.p.digest, w.p.principal())
	})
	var f tokens.Family
	stays("a family's first refresh", func() { f = seedFamily(t, s, w.p.principal(), t0) })
	stays("UpdateFamily rotating and revoking", func() {
		must(t, "UpdateFamily", s.UpdateFamily(ctx, f.ID, nil, func(g *tokens.Family) (tokens.Change, error) {
			rotate(g, t0.Add(2*time.Minute))
			return tokens.Change{Write: true}, nil
		}))
		revokeFamily(t, s, f.ID, t0.Add(3*time.Minute))
	})
	stays("RecordUsage", func() {
		ev := event(t0, "login", "key", w.p.key.ID)
		must(t, "RecordUsage", s.RecordUsage(ctx, map[string]time.Time{w.p.key.ID: t0}, []keys.AuditEvent{ev}))
	})
	stays("DeleteFamilies", func() {
		_, err := s.DeleteFamilies(ctx, t0.Add(48*time.Hour), 100)
		must(t, "DeleteFamilies", err)
	})

	at := t0.Add(time.Hour)
	moves("RevokeKey", func() {
		must(t, "RevokeKey", s.RevokeKey(ctx, w.p.owner(), pk2.ID, at, event(at, "key.revoked", "key", pk2.ID)))
	})
	moves("RevokeKey of a company key", func() {
		must(t, "RevokeKey", s.RevokeKey(ctx, w.c.owner(), ck2.ID, at, event(at, "key.revoked", "key", ck2.ID)))
	})
	stays("a refused RevokeKey", func() {
		err := s.RevokeKey(ctx, w.p.owner(), other.p.key.ID, at, event(at, "key.revoked", "key", other.p.key.ID))
		wantErr(t, "RevokeKey(another partner's key)", err, keys.ErrNotFound)
	})
	moves("DisableCompany", func() {
		must(t, "DisableCompany", s.DisableCompany(ctx, w.p.ID, w.c.ID, at, event(at, "company.disabled", "company", w.c.ID)))
	})
	stays("a refused DisableCompany", func() {
		err := s.DisableCompany(ctx, w.p.ID, other.c.ID, at, event(at, "company.disabled", "company", other.c.ID))
		wantErr(t, "DisableCompany(another partner's company)", err, keys.ErrNotFound)
	})
	moves("DisablePartner", func() {
		must(t, "DisablePartner", s.DisablePartner(ctx, w.p.ID, at, event(at, "partner.disabled", "partner", w.p.ID)))
	})
	stays("a refused DisablePartner", func() {
		err := s.DisablePartner(ctx, "par_unknown", at, event(at, "partner.disabled", "partner", "par_unknown"))
		wantErr(t, "DisablePartner(unknown)", err, keys.ErrNotFound)
	})
	moves("DisablePartner of another partner", func() {
		must(t, "DisablePartner", s.DisablePartner(ctx, other.p.ID, at, event(at, "partner.disabled", "partner", other.p.ID)))
	})
}
