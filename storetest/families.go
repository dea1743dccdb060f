package storetest

import (
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"keygate/keys"
	"keygate/store"
	"keygate/tokens"
)

// Refresh-token families once their row exists: what they store, how
// UpdateFamily decides, who wins a race, and their deletion. How the row
// comes to exist (UpdateFamily with a seed) is in seeds.go.

func testFamily(t *testing.T, s store.Store) {
	ctx := t.Context()
	w := newWorld(t, s, "Acme")

	// Every time reads back in UTC at millisecond precision, the generation-0
	// token's expiry (FirstExpiresAt) and the parent's included.
	pf := seedFamily(t, s, w.p.principal(), t0)
	cf := seedFamily(t, s, w.c.principal(), t0.Add(time.Second))
	checkFamily(t, readFamily(t, s, pf.ID), pf)
	checkFamily(t, readFamily(t, s, cf.ID), cf)
	if pf.ParentExpiresAt.IsZero() || pf.FirstExpiresAt.IsZero() {
		t.Fatal("seedFamily left ParentExpiresAt or FirstExpiresAt zero: the round trip proves nothing")
	}

	// A rotation persists every field it changes.
	rotated := pf
	rotated.Generation = 2
	rotated.RotatedAt = t0.Add(2 * time.Minute)
	rotated.ParentExpiresAt = pf.ExpiresAt
	rotated.ExpiresAt = t0.Add(2 * time.Hour)
	err := s.UpdateFamily(ctx, pf.ID, nil, func(f *tokens.Family) (tokens.Change, error) {
		f.Generation, f.RotatedAt, f.ParentExpiresAt, f.ExpiresAt = rotated.Generation, rotated.RotatedAt, rotated.ParentExpiresAt, rotated.ExpiresAt
		return tokens.Change{Write: true}, nil
	})
	must(t, "UpdateFamily rotating", err)
	checkFamily(t, readFamily(t, s, pf.ID), rotated)

	// So does a revocation.
	revoked := rotated
	revoked.RevokedAt, revoked.RevokeReason = ptr(t0.Add(3*time.Minute)), "reuse"
	err = s.UpdateFamily(ctx, pf.ID, nil, func(f *tokens.Family) (tokens.Change, error) {
		f.RevokedAt, f.RevokeReason = ptr(*revoked.RevokedAt), revoked.RevokeReason
		return tokens.Change{Write: true}, nil
	})
	must(t, "UpdateFamily revoking", err)
	checkFamily(t, readFamily(t, s, pf.ID), revoked)
	checkFamily(t, readFamily(t, s, cf.ID), cf) // the other family is untouched

	// Write=false writes nothing, whatever decide did to its copy.
	err = s.UpdateFamily(ctx, cf.ID, nil, func(f *tokens.Family) (tokens.Change, error) {
		f.Generation, f.RotatedAt, f.ExpiresAt = 9, t0.Add(time.Hour), t0.Add(time.Hour)
		f.ParentExpiresAt, f.FirstExpiresAt = t0, t0
		f.RevokedAt, f.RevokeReason = ptr(t0), "never written"
		return tokens.Change{}, nil
	})
	must(t, "UpdateFamily without Write", err)
	checkFamily(t, readFamily(t, s, cf.ID), cf)

	called := false
	err = s.UpdateFamily(ctx, "fam_unknown", nil, func(*tokens.Family) (tokens.Change, error) {
		called = true
		return tokens.Change{Write: true}, nil
	})
	wantErr(t, "UpdateFamily(unknown, no seed)", err, keys.ErrNotFound)
	if called {
		t.Errorf("UpdateFamily called decide for an unknown family without a seed")
	}
}

func testFamilyPrincipalActive(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, tc := range []struct {
		name                  string
		kill                  func(t *testing.T, w world, at time.Time)
		partnerDies, compDies bool
	}{
		{"partner key revoked", func(t *testing.T, w world, at time.Time) {
			must(t, "RevokeKey", s.RevokeKey(ctx, w.p.owner(), w.p.key.ID, at, event(at, "key.revoked", "key", w.p.key.ID)))
		}, true, false},
		{"company key revoked", func(t *testing.T, w world, at time.Time) {
			must(t, "RevokeKey", s.RevokeKey(ctx, w.c.owner(), w.c.key.ID, at, event(at, "key.revoked", "key", w.c.key.ID)))
		}, false, true},
		{"company disabled", func(t *testing.T, w world, at time.Time) {
			must(t, "DisableCompany", s.DisableCompany(ctx, w.p.ID, w.c.ID, at, event(at, "company.disabled", "company", w.c.ID)))
		}, false, true},
		{"partner disabled", func(t *testing.T, w world, at time.Time) {
			must(t, "DisablePartner", s.DisablePartner(ctx, w.p.ID, at, event(at, "partner.disabled", "partner", w.p.ID)))
		}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, s, tc.name)
			bystander := newWorld(t, s, tc.name+" bystander")
			pf := seedFamily(t, s, w.p.principal(), t0)
			cf := seedFamily(t, s, w.c.principal(), t0)
			bf := seedFamily(t, s, bystander.c.principal(), t0)
			for _, id := range []string{pf.ID, cf.ID, bf.ID} {
				if !readFamily(t, s, id).PrincipalActive {
					t.Fatalf("family %s inactive before anything happened", id)
				}
			}
			tc.kill(t, w, t0.Add(time.Hour))
			for _, c := range []struct {
				what string
				f    tokens.Family
				dies bool
			}{{"partner's family", pf, tc.partnerDies}, {"company's family", cf, tc.compDies}, {"bystander's family", bf, false}} {
				if got := readFamily(t, s, c.f.ID).PrincipalActive; got == c.dies {
					t.Errorf("%s: PrincipalActive = %v, want %v", c.what, got, !c.dies)
				}
				// A login's family without a row yet reads the same rules.
				seed := seedOf(c.f.Principal.KeyID, t0.Add(2*time.Hour))
				if got := seedActive(t, s, seed); got == c.dies {
					t.Errorf("%s: a new seed of its key: PrincipalActive = %v, want %v", c.what, got, !c.dies)
				}
			}
		})
	}
}

func testUpdateFamilyDecisions(t *testing.T, s store.Store) {
	ctx := t.Context()
	w := newWorld(t, s, "Acme")
	f := seedFamily(t, s, w.c.principal(), t0)
	errDecided := errors.New("decided against it")
	audit := func(action string) keys.AuditEvent {
		return keys.AuditEvent{At: t0.Add(time.Minute), ActorType: keys.ActorCompany, ActorID: w.c.ID, Action: action,
			TargetType: "token_family", Target: f.ID, Addr: "203.0.113.9", Outcome: tokens.OutcomeRevoked, Detail: "key=" + w.c.key.ID}
	}

	// decide's error is returned, and its audit events are written anyway.
	err := s.UpdateFamily(ctx, f.ID, nil, func(*tokens.Family) (tokens.Change, error) {
		return tokens.Change{Audit: []keys.AuditEvent{audit("refresh.refused")}}, errDecided
	})
	wantErr(t, "UpdateFamily with decide failing", err, errDecided)
	checkFamily(t, readFamily(t, s, f.ID), f)

	// A write that comes with an error is still made (reuse detection
	// revokes the family and refuses the request).
	revoked := f
	revoked.RevokedAt, revoked.RevokeReason = ptr(t0.Add(time.Minute)), "reuse"
	err = s.UpdateFamily(ctx, f.ID, nil, func(g *tokens.Family) (tokens.Change, error) {
		g.RevokedAt, g.RevokeReason = ptr(*revoked.RevokedAt), revoked.RevokeReason
		return tokens.Change{Write: true, Audit: []keys.AuditEvent{audit("refresh.reuse_detected")}}, errDecided
	})
	wantErr(t, "UpdateFamily writing with decide failing", err, errDecided)
	checkFamily(t, readFamily(t, s, f.ID), revoked)

	evs := auditSince(t, s, t0.Add(time.Minute))
	var got []keys.AuditEvent
	for _, e := range evs {
		if e.Target == f.ID {
			got = append(got, e)
		}
	}
	want := []keys.AuditEvent{audit("refresh.refused"), audit("refresh.reuse_detected")}
	if len(got) != len(want) {
		t.Fatalf("audit events of the family = %+v, want %+v", got, want)
	}
	for i := range want {
		checkEvent(t, got[i], want[i])
	}
}

// Of many concurrent conditional updates of one generation, exactly one
// succeeds: the store decides, not the callers.
func testUpdateFamilyConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	w := newWorld(t, s, "Acme")
	f := seedFamily(t, s, w.p.principal(), t0)
	errStale := errors.New("generation already rotated")

	const n = 50
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = s.UpdateFamily(ctx, f.ID, nil, func(g *tokens.Family) (tokens.Change, error) {
				// Widen the window between read and write, where a store
				// that does not hold the family would let a rival in.
				runtime.Gosched()
				if g.Generation != 1 {
					return tokens.Change{}, errStale
				}
				g.Generation++
				g.RotatedAt = t0.Add(time.Duration(i+1) * time.Second)
				return tokens.Change{Write: true}, nil
			})
		})
	}
	close(start)
	wg.Wait()

	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Errorf("updates %d and %d both rotated generation 1", won, i)
		case err == nil:
			won = i
		case !errors.Is(err, errStale):
			t.Errorf("update %d: err = %v, want nil or the stale error", i, err)
		}
	}
	if won < 0 {
		t.Fatal("no update succeeded")
	}
	got := readFamily(t, s, f.ID)
	if got.Generation != 2 {
		t.Errorf("generation = %d after one rotation, want 2", got.Generation)
	}
	sameTime(t, "RotatedAt of the winner", got.RotatedAt, t0.Add(time.Duration(won+1)*time.Second))
}

// testDeleteFamilies: a family goes once it is dead (expired, or revoked,
// before the cutoff) and its generation-0 token has expired before the
// cutoff too; a zero FirstExpiresAt (a row from before generation 0) counts
// as long past. Each family is checked through three cutoffs.
func testDeleteFamilies(t *testing.T, s store.Store) {
	ctx := t.Context()
	w := newWorld(t, s, "Acme")
	cut := t0.Add(24 * time.Hour).Truncate(time.Millisecond)
	cuts := []time.Time{cut, cut.Add(time.Millisecond), cut.Add(2 * time.Hour)}
	never := len(cuts)

	type family struct {
		what    string
		expires time.Time
		revoked *time.Time
		first   time.Time // zero: a row from before generation 0
		gen0    bool      // logged out with its generation-0 token
		goneAt  int       // index of the first cutoff that deletes it
	}
	fams := []family{
		{"expired", cut.Add(-time.Millisecond), nil, time.Time{}, false, 0},
		{"revoked", cut.Add(3 * time.Hour), ptr(cut.Add(-time.Hour)), time.Time{}, false, 0},
		{"expired and revoked, counted once", cut.Add(-time.Hour), ptr(cut.Add(-2 * time.Hour)), time.Time{}, false, 0},
		{"expired, first token expired", cut.Add(-time.Hour), nil, cut.Add(-time.Millisecond), false, 0},
		{"revoked, first token expired", cut.Add(3 * time.Hour), ptr(cut.Add(-time.Hour)), cut.Add(-time.Hour), false, 0},
		{"live", cut.Add(3 * time.Hour), nil, time.Time{}, false, never},
		{"live, first token expired", cut.Add(3 * time.Hour), nil, cut.Add(-time.Hour), false, never},
		{"live, first token live", cut.Add(3 * time.Hour), nil, cut.Add(time.Hour), false, never},
		{"expires at the cutoff", cut, nil, time.Time{}, false, 1},
		{"revoked at the cutoff", cut.Add(3 * time.Hour), ptr(cut), time.Time{}, false, 1},
		{"revoked after the cutoff", cut.Add(3 * time.Hour), ptr(cut.Add(time.Millisecond)), time.Time{}, false, 2},
		{"expired, first token expires at the cutoff", cut.Add(-time.Hour), nil, cut, false, 1},
		{"revoked, first token live", cut.Add(3 * time.Hour), ptr(cut.Add(-time.Hour)), cut.Add(time.Hour), false, 2},
		{"expired and revoked, first token live", cut.Add(-time.Hour), ptr(cut.Add(-2 * time.Hour)), cut.Add(time.Hour), false, 2},
		{"logged out at generation 0, token live", cut.Add(time.Hour), ptr(cut.Add(-time.Hour)), cut.Add(time.Hour), true, 2},
	}
	ids := make([]string, len(fams))
	for i, fam := range fams {
		seed := seedOf(w.p.key.ID, t0)
		seed.FirstExpiresAt = fam.first
		ids[i] = writeSeed(t, s, w.p.principal(), seed, func(f *tokens.Family) {
			if !fam.gen0 {
				rotate(f, t0.Add(time.Minute))
			}
			f.ExpiresAt, f.RevokedAt = fam.expires, fam.revoked
			if fam.revoked != nil {
				f.RevokeReason = "logout"
			}
		}).ID
	}

	for round, before := range cuts {
		want := 0
		for _, fam := range fams {
			if fam.goneAt == round {
				want++
			}
		}
		n, err := s.DeleteFamilies(ctx, before, 100)
		must(t, "DeleteFamilies", err)
		if n != want {
			t.Errorf("DeleteFamilies(cutoff %d) = %d, want %d", round, n, want)
		}
		for i, fam := range fams {
			if exists, wantExists := familyExists(t, s, ids[i]), fam.goneAt > round; exists != wantExists {
				t.Errorf("after cutoff %d: family %q exists %v, want %v", round, fam.what, exists, wantExists)
			}
		}
		n, err = s.DeleteFamilies(ctx, before, 100)
		must(t, "DeleteFamilies again", err)
		if n != 0 {
			t.Errorf("DeleteFamilies(cutoff %d) again = %d, want 0", round, n)
		}
	}
}

func testDeleteFamiliesLimit(t *testing.T, s store.Store) {
	ctx := t.Context()
	w := newWorld(t, s, "Acme")
	cut := t0.Add(24 * time.Hour)
	live := seedFamily(t, s, w.p.principal(), cut)
	for range 5 {
		seedFamily(t, s, w.c.principal(), t0) // expired, and its first token, about an hour after t0
	}
	for i, want := range []int{2, 2, 1, 0} {
		n, err := s.DeleteFamilies(ctx, cut, 2)
		must(t, "DeleteFamilies", err)
		if n != want {
			t.Errorf("DeleteFamilies call %d = %d, want %d", i, n, want)
		}
	}
	if !familyExists(t, s, live.ID) {
		t.Errorf("live family deleted")
	}
}
