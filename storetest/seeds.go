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

// A login writes nothing: its generation-0 refresh token carries the
// family's seed, and the family's row is created by the first refresh (or
// a logout) through UpdateFamily with that seed, in the same conditional
// write as every rotation.

// seedActive reads the family of seed, whose row must not exist, without
// writing: it reports the PrincipalActive decide saw, and checks that the
// row still does not exist.
func seedActive(t *testing.T, s store.Store, seed tokens.Family) bool {
	t.Helper()
	var active bool
	err := s.UpdateFamily(t.Context(), seed.ID, &seed, func(f *tokens.Family) (tokens.Change, error) {
		active = f.PrincipalActive
		return tokens.Change{}, nil
	})
	must(t, "UpdateFamily with a seed, not writing", err)
	if familyExists(t, s, seed.ID) {
		t.Errorf("UpdateFamily with a seed and no Write created family %s", seed.ID)
	}
	return active
}

func testUpdateFamilySeed(t *testing.T, s store.Store) {
	ctx := t.Context()
	w := newWorld(t, s, "Acme")
	other := newWorld(t, s, "Bolt")
	errDecided := errors.New("decided against it")

	// decide sees the seed at generation 0 with its key's principal, whatever
	// else the seed claims; without Write nothing is stored, audit aside.
	seed := seedOf(w.c.key.ID, t0)
	seed.Principal = other.p.principal()
	seed.Principal.KeyID = w.c.key.ID
	wantP := w.c.principal()
	wantP.Name = ""
	var saw tokens.Family
	refused := event(t0, "refresh.refused", "token_family", seed.ID)
	err := s.UpdateFamily(ctx, seed.ID, &seed, func(f *tokens.Family) (tokens.Change, error) {
		saw = *f
		return tokens.Change{Audit: []keys.AuditEvent{refused}}, errDecided
	})
	wantErr(t, "UpdateFamily with a seed, decide failing", err, errDecided)
	if saw.ID != seed.ID || saw.Generation != 0 || saw.Principal != wantP || !saw.PrincipalActive || saw.RevokedAt != nil || !saw.ParentExpiresAt.IsZero() {
		t.Errorf("decide saw %+v, want the seed at generation 0 with principal %+v, active, not revoked", saw, wantP)
	}
	for _, c := range []struct {
		what      string
		got, want time.Time
	}{{"CreatedAt", saw.CreatedAt, seed.CreatedAt}, {"RotatedAt", saw.RotatedAt, seed.RotatedAt},
		{"ExpiresAt", saw.ExpiresAt, seed.ExpiresAt}, {"FirstExpiresAt", saw.FirstExpiresAt, seed.FirstExpiresAt}} {
		if !sameInstant(c.got, c.want) {
			t.Errorf("decide saw the seed's %s = %v, want %v", c.what, c.got, stored(c.want))
		}
	}
	if familyExists(t, s, seed.ID) {
		t.Fatalf("UpdateFamily with a seed and no Write created family %s", seed.ID)
	}
	wantEvent(t, s, "refresh.refused", seed.ID)

	// The first refresh inserts the row at generation 1.
	want := seed
	want.Principal, want.PrincipalActive = w.c.principal(), true
	rotate(&want, t0.Add(time.Minute))
	err = s.UpdateFamily(ctx, seed.ID, &seed, func(f *tokens.Family) (tokens.Change, error) {
		rotate(f, t0.Add(time.Minute))
		return tokens.Change{Write: true}, nil
	})
	must(t, "UpdateFamily with a seed, rotating", err)
	checkFamily(t, readFamily(t, s, seed.ID), want)

	// Once the row exists, the seed is ignored, even one naming another key.
	for _, sd := range []tokens.Family{seed, seedOf(w.p.key.ID, t0.Add(time.Hour))} {
		sd.ID = seed.ID
		err = s.UpdateFamily(ctx, seed.ID, &sd, func(f *tokens.Family) (tokens.Change, error) {
			saw = *f
			return tokens.Change{}, nil
		})
		must(t, "UpdateFamily with a seed and a row", err)
		checkFamily(t, saw, want)
	}

	// A seed naming no key finds no one: no decision, no row.
	for _, keyID := range []string{"key_unknown", ""} {
		unknown := seedOf(keyID, t0)
		called := false
		err = s.UpdateFamily(ctx, unknown.ID, &unknown, func(*tokens.Family) (tokens.Change, error) {
			called = true
			return tokens.Change{Write: true}, nil
		})
		wantErr(t, "UpdateFamily with the seed of key "+keyID, err, keys.ErrNotFound)
		if created := familyExists(t, s, unknown.ID); called || created {
			t.Errorf("seed of key %q: decide called %v, row created %v", keyID, called, created)
		}
	}

	// A logout with a generation-0 token inserts the row at generation 0,
	// revoked; the seed then finds it revoked.
	out := seedOf(w.p.key.ID, t0)
	loggedOut := writeSeed(t, s, w.p.principal(), out, func(f *tokens.Family) {
		f.RevokedAt, f.RevokeReason = ptr(t0.Add(time.Minute)), "logout"
	})
	checkFamily(t, readFamily(t, s, out.ID), loggedOut)
	err = s.UpdateFamily(ctx, out.ID, &out, func(f *tokens.Family) (tokens.Change, error) {
		saw = *f
		return tokens.Change{}, nil
	})
	must(t, "UpdateFamily with the seed of a logged-out family", err)
	checkFamily(t, saw, loggedOut)

	// A revoked key's seed reads inactive, with the key's principal still;
	// a refresh then writes the family revoked.
	pk2, _ := createKey(t, s, w.p.owner(), t0)
	at := t0.Add(time.Hour)
	must(t, "RevokeKey", s.RevokeKey(ctx, w.p.owner(), pk2.ID, at, event(at, "key.revoked", "key", pk2.ID)))
	dead := seedOf(pk2.ID, t0)
	if seedActive(t, s, dead) {
		t.Errorf("seed of a revoked key: PrincipalActive true")
	}
	err = s.UpdateFamily(ctx, dead.ID, &dead, func(f *tokens.Family) (tokens.Change, error) {
		saw = *f
		f.RevokedAt, f.RevokeReason = ptr(at), "principal_inactive"
		return tokens.Change{Write: true}, nil
	})
	must(t, "UpdateFamily revoking a revoked key's seed", err)
	wantP = principalOf(pk2, w.p.Name)
	wantP.Name = ""
	if saw.Principal != wantP || saw.PrincipalActive || saw.Generation != 0 {
		t.Errorf("seed of a revoked key: decide saw generation %d, %+v, active %v; want 0, %+v, false", saw.Generation, saw.Principal, saw.PrincipalActive, wantP)
	}
	wantDead := dead
	wantDead.Principal = principalOf(pk2, w.p.Name)
	wantDead.RevokedAt, wantDead.RevokeReason = ptr(at), "principal_inactive"
	checkFamily(t, readFamily(t, s, dead.ID), wantDead)
}

// testUpdateFamilySeedConcurrent: a login's token refreshed many times at
// once creates one row: one caller inserts it, every other finds it.
func testUpdateFamilySeedConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	w := newWorld(t, s, "Acme")
	seed := seedOf(w.c.key.ID, t0)

	const n = 50
	start := make(chan struct{})
	errs := make([]error, n)
	saw := make([]int64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sd := seed
			<-start
			errs[i] = s.UpdateFamily(ctx, sd.ID, &sd, func(f *tokens.Family) (tokens.Change, error) {
				// Widen the window between read and write, where a store
				// that does not hold the family would let a rival in.
				runtime.Gosched()
				saw[i] = f.Generation
				if f.Generation != 0 {
					return tokens.Change{}, nil
				}
				rotate(f, t0.Add(time.Duration(i+1)*time.Second))
				return tokens.Change{Write: true}, nil
			})
		})
	}
	close(start)
	wg.Wait()

	won := -1
	for i, err := range errs {
		switch {
		case err != nil:
			t.Errorf("update %d: %v", i, err)
		case saw[i] == 0 && won >= 0:
			t.Errorf("updates %d and %d both saw no row and inserted it", won, i)
		case saw[i] == 0:
			won = i
		case saw[i] != 1:
			t.Errorf("update %d saw generation %d, want 1", i, saw[i])
		}
	}
	if won < 0 {
		t.Fatal("no update inserted the family")
	}
	want := seed
	want.Principal, want.PrincipalActive = w.c.principal(), true
	rotate(&want, t0.Add(time.Duration(won+1)*time.Second))
	checkFamily(t, readFamily(t, s, seed.ID), want)
}

// testUpdateFamilySeedKeepsItsID: the row is the id UpdateFamily names,
// whatever the seed's own ID field says.
func testUpdateFamilySeedKeepsItsID(t *testing.T, s store.Store) {
	w := newWorld(t, s, "Acme")
	seed := seedOf(w.p.key.ID, t0)
	id := seed.ID
	seed.ID = ""
	err := s.UpdateFamily(t.Context(), id, &seed, func(f *tokens.Family) (tokens.Change, error) {
		if f.ID != id {
			t.Errorf("decide saw id %q, want %q", f.ID, id)
		}
		rotate(f, t0.Add(time.Minute))
		return tokens.Change{Write: true}, nil
	})
	must(t, "UpdateFamily with a seed without an id", err)
	if got := readFamily(t, s, id); got.Generation != 1 {
		t.Errorf("family %s at generation %d, want 1", id, got.Generation)
	}
	if familyExists(t, s, "") {
		t.Errorf("a row was written under the seed's empty id")
	}
}
