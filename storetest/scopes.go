package storetest

import (
	"testing"
	"time"

	"keygate/keys"
	"keygate/store"
	"keygate/tokens"
)

// Keys with scopes, names and expiry: what partners allow, what keys hold,
// what a login's family asked for, and what a refresh reads of them all.

func scopes(t *testing.T, s string) keys.Scopes {
	t.Helper()
	v, err := keys.ParseScopeString("scopes", s)
	must(t, "ParseScopeString", err)
	return v
}

// testPartnerScopes: a partner's allowed scopes are stored, read back by
// GetPartner and ListPartners, replaced by SetPartnerScopes (which moves
// the key epoch and audits, in its transaction), and resolved with every
// key of the partner and of its companies.
func testPartnerScopes(t *testing.T, s store.Store) {
	ctx := t.Context()
	rw := scopes(t, "orders:read orders:write")
	p := keys.Partner{ID: keys.NewID("par_"), Name: "Acme", Status: keys.StatusActive, CreatedAt: t0, Scopes: rw}
	k, d := newKey(keys.PartnerOwner(p.ID), t0)
	must(t, "CreatePartner with scopes", s.CreatePartner(ctx, p, k, d, nil))
	c := createCompany(t, s, p.ID, "Globex", nil, t0)

	got, err := s.GetPartner(ctx, p.ID)
	must(t, "GetPartner", err)
	checkPartner(t, got, p)
	if got.Scopes != rw {
		t.Errorf("GetPartner scopes = %q, want %q", got.Scopes, rw)
	}
	if listed, _ := findPartner(t, s, p.ID); listed.Scopes != rw {
		t.Errorf("ListPartners scopes = %q, want %q", listed.Scopes, rw)
	}
	_, err = s.GetPartner(ctx, "par_unknown")
	wantErr(t, "GetPartner(unknown)", err, keys.ErrNotFound)
	plain := createPartner(t, s, "Plain", t0)
	if got, err := s.GetPartner(ctx, plain.ID); err != nil || !got.Scopes.Empty() {
		t.Errorf("a partner created without scopes has %q, %v; want none", got.Scopes, err)
	}
	resolvedScopes := func(what string, digest keys.Digest, want keys.Scopes) {
		t.Helper()
		r, err := s.ResolveKey(ctx, digest)
		must(t, "ResolveKey", err)
		if r.PartnerScopes != want {
			t.Errorf("%s: ResolveKey PartnerScopes = %q, want %q", what, r.PartnerScopes, want)
		}
	}
	resolvedScopes("partner key", d, rw)
	resolvedScopes("company key", c.digest, rw)

	before, err := s.KeyEpoch(ctx)
	must(t, "KeyEpoch", err)
	r := scopes(t, "orders:read")
	ev := event(t0.Add(time.Minute), "partner.scopes_set", "partner", p.ID)
	must(t, "SetPartnerScopes", s.SetPartnerScopes(ctx, p.ID, r, t0.Add(time.Minute), ev))
	if after, _ := s.KeyEpoch(ctx); after == before {
		t.Error("SetPartnerScopes did not move the key epoch: other processes' caches keep the old scopes")
	}
	wantEvent(t, s, "partner.scopes_set", p.ID)
	if got, _ := s.GetPartner(ctx, p.ID); got.Scopes != r {
		t.Errorf("after SetPartnerScopes: %q, want %q", got.Scopes, r)
	}
	resolvedScopes("partner key after narrowing", d, r)
	resolvedScopes("company key after narrowing", c.digest, r)
	must(t, "SetPartnerScopes to none", s.SetPartnerScopes(ctx, p.ID, keys.Scopes{}, t0.Add(2*time.Minute), ev))
	resolvedScopes("company key with none allowed", c.digest, keys.Scopes{})
	err = s.SetPartnerScopes(ctx, "par_unknown", r, t0, event(t0, "partner.scopes_set", "partner", "par_unknown"))
	wantErr(t, "SetPartnerScopes(unknown)", err, keys.ErrNotFound)
}

// testKeyFields: a key's name, scopes and expiry are stored with it,
// listed, and resolved (KeyScopes, Principal.KeyExpiresAt); a key made
// without them has none.
func testKeyFields(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := createPartner(t, s, "Acme", t0)
	c := createCompany(t, s, a.ID, "Globex", nil, t0)
	expires := t0.Add(90 * 24 * time.Hour)
	k, d := newKey(c.owner(), t0.Add(time.Second))
	k.Name, k.Scopes, k.ExpiresAt = "CI deploys \u00e9", scopes(t, "orders:read reports:read"), &expires
	must(t, "CreateKey with a name, scopes and expiry", s.CreateKey(ctx, k, d, event(t0, "key.created", "key", k.ID)))

	listed := findKey(t, s, c.owner(), k.ID)
	checkKey(t, listed, k)
	if listed.Name != k.Name || listed.Scopes != k.Scopes {
		t.Errorf("ListKeys: name %q scopes %q, want %q %q", listed.Name, listed.Scopes, k.Name, k.Scopes)
	}
	sameTimePtr(t, "ListKeys ExpiresAt", listed.ExpiresAt, k.ExpiresAt)
	first := findKey(t, s, c.owner(), c.key.ID)
	if first.Name != "" || !first.Scopes.Empty() || first.ExpiresAt != nil {
		t.Errorf("a key made without them has name %q, scopes %q, expiry %v", first.Name, first.Scopes, showTime(first.ExpiresAt))
	}

	for _, r := range []func() (keys.ResolvedKey, error){
		func() (keys.ResolvedKey, error) { return s.ResolveKey(ctx, d) },
		func() (keys.ResolvedKey, error) { return s.ResolveKeyID(ctx, k.ID) },
	} {
		got, err := r()
		must(t, "ResolveKey", err)
		if got.KeyScopes != k.Scopes || !got.Active {
			t.Errorf("resolved key scopes %q active %v, want %q true", got.KeyScopes, got.Active, k.Scopes)
		}
		sameTimePtr(t, "resolved KeyExpiresAt", got.Principal.KeyExpiresAt, k.ExpiresAt)
	}
	if got, err := s.ResolveKey(ctx, c.digest); err != nil || !got.KeyScopes.Empty() || got.Principal.KeyExpiresAt != nil {
		t.Errorf("a key without scopes or expiry resolves with %q and %v, %v", got.KeyScopes, showTime(got.Principal.KeyExpiresAt), err)
	}
}

// testFamilyScopes: a family keeps the scopes its login asked for, from
// the seed that makes its row on; every decision sees what its key may do
// now (the key's scopes, its partner's, its expiry), also after the
// partner's scopes changed.
func testFamilyScopes(t *testing.T, s store.Store) {
	ctx := t.Context()
	all := scopes(t, "a b c")
	p := keys.Partner{ID: keys.NewID("par_"), Name: "Acme", Status: keys.StatusActive, CreatedAt: t0, Scopes: all}
	pk, pd := newKey(keys.PartnerOwner(p.ID), t0)
	pk.Scopes = all
	must(t, "CreatePartner", s.CreatePartner(ctx, p, pk, pd, nil))
	expires := t0.Add(48 * time.Hour)
	k, d := newKey(keys.PartnerOwner(p.ID), t0)
	k.Scopes, k.ExpiresAt = scopes(t, "a c"), &expires
	must(t, "CreateKey", s.CreateKey(ctx, k, d, event(t0, "key.created", "key", k.ID)))

	sawKey := func(what string, f tokens.Family, keyScopes, partnerScopes keys.Scopes, exp *time.Time) {
		t.Helper()
		if f.KeyScopes != keyScopes || f.PartnerScopes != partnerScopes || !f.PrincipalActive {
			t.Errorf("%s: decide saw key scopes %q, partner scopes %q, active %v; want %q, %q, true",
				what, f.KeyScopes, f.PartnerScopes, f.PrincipalActive, keyScopes, partnerScopes)
		}
		sameTimePtr(t, what+": KeyExpiresAt", f.KeyExpiresAt, exp)
	}

	// A down-scoped seed (as a generation-0 token carries it: bits over
	// the key's own scopes) and one asking for all.
	scoped := seedOf(k.ID, t0)
	scoped.SeedScopes = 0b10 // "c" of "a c"
	var saw tokens.Family
	err := s.UpdateFamily(ctx, scoped.ID, &scoped, func(f *tokens.Family) (tokens.Change, error) {
		saw = *f
		f.Scope = keys.Only(scopes(t, "c")) // what tokens' decision makes of SeedScopes
		rotate(f, t0.Add(time.Minute))
		return tokens.Change{Write: true}, nil
	})
	must(t, "UpdateFamily with a down-scoped seed", err)
	if saw.SeedScopes != 0b10 {
		t.Errorf("decide saw SeedScopes %b, want the seed's 10", saw.SeedScopes)
	}
	sawKey("a seed", saw, k.Scopes, all, k.ExpiresAt)

	whole := seedOf(pk.ID, t0)
	writeSeed(t, s, principalOf(pk, ""), whole, func(f *tokens.Family) { rotate(f, t0.Add(time.Minute)) })

	got := readFamily(t, s, scoped.ID)
	if got.Scope.All() || got.Scope.Scopes() != scopes(t, "c") || got.SeedScopes != 0 {
		t.Errorf("stored family Scope = all %v %q (seed bits %b), want only %q", got.Scope.All(), got.Scope.Scopes(), got.SeedScopes, "c")
	}
	sawKey("a stored family", got, k.Scopes, all, k.ExpiresAt)
	if got := readFamily(t, s, whole.ID); !got.Scope.All() {
		t.Errorf("a family that asked for all its key's scopes reads back as only %q", got.Scope.Scopes())
	}

	// Narrowing the partner is seen by the next decision, cached row or not.
	narrow := scopes(t, "a")
	must(t, "SetPartnerScopes", s.SetPartnerScopes(ctx, p.ID, narrow, t0.Add(time.Hour), event(t0, "partner.scopes_set", "partner", p.ID)))
	sawKey("after narrowing the partner", readFamily(t, s, scoped.ID), k.Scopes, narrow, k.ExpiresAt)
	// A rotation keeps the family's scopes.
	err = s.UpdateFamily(ctx, scoped.ID, nil, func(f *tokens.Family) (tokens.Change, error) {
		rotate(f, t0.Add(2*time.Hour))
		return tokens.Change{Write: true}, nil
	})
	must(t, "UpdateFamily rotating", err)
	if got := readFamily(t, s, scoped.ID); got.Scope.Scopes() != scopes(t, "c") || got.Generation != 2 {
		t.Errorf("after a rotation: generation %d, scopes %q; want 2, %q", got.Generation, got.Scope.Scopes(), "c")
	}
}
