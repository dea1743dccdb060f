package storetest

import (
	"slices"
	"testing"
	"time"

	"keygate/keys"
	"keygate/store"
)

// Partners and the API keys of partners and companies: creating, listing
// and revoking them. What an Owner that names no one does is in owners.go;
// whether a key logs in is in principals.go.

func testPartners(t *testing.T, s store.Store) {
	ctx := t.Context()
	ps, err := s.ListPartners(ctx)
	must(t, "ListPartners on an empty store", err)
	if len(ps) != 0 {
		t.Fatalf("empty store lists %d partners", len(ps))
	}

	a := createPartner(t, s, "Acme", t0)
	b := createPartner(t, s, "Bolt", t0.Add(time.Minute))
	ps, err = s.ListPartners(ctx)
	must(t, "ListPartners", err)
	if len(ps) != 2 {
		t.Fatalf("ListPartners = %d partners, want 2", len(ps))
	}
	for _, want := range []keys.Partner{a.Partner, b.Partner} {
		got, ok := findPartner(t, s, want.ID)
		if !ok {
			t.Fatalf("ListPartners lacks %s", want.ID)
		}
		checkPartner(t, got, want)
	}
	wantEvent(t, s, "partner.created", a.ID)
	wantEvent(t, s, "key.created", a.key.ID)

	must(t, "DisablePartner", s.DisablePartner(ctx, a.ID, t0.Add(time.Hour), event(t0.Add(time.Hour), "partner.disabled", "partner", a.ID)))
	must(t, "DisablePartner again", s.DisablePartner(ctx, a.ID, t0.Add(2*time.Hour), event(t0.Add(2*time.Hour), "partner.disabled", "partner", a.ID)))
	wantEvent(t, s, "partner.disabled", a.ID)
	if got, _ := findPartner(t, s, a.ID); got.Status != keys.StatusDisabled {
		t.Errorf("disabled partner has status %q", got.Status)
	}
	if got, _ := findPartner(t, s, b.ID); got.Status != keys.StatusActive {
		t.Errorf("other partner has status %q after disabling %s", got.Status, a.ID)
	}

	err = s.DisablePartner(ctx, "par_unknown", t0, event(t0, "partner.disabled", "partner", "par_unknown"))
	wantErr(t, "DisablePartner(unknown)", err, keys.ErrNotFound)
}

// A create that fails must leave nothing behind: its rows and audit events
// share one transaction.
func testCreatePartnerIsAtomic(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := createPartner(t, s, "Acme", t0)

	p := keys.Partner{ID: keys.NewID("par_"), Name: "Copycat", Status: keys.StatusActive, CreatedAt: t0}
	k, _ := newKey(keys.PartnerOwner(p.ID), t0)
	evs := []keys.AuditEvent{event(t0, "partner.created", "partner", p.ID)}
	err := s.CreatePartner(ctx, p, k, a.digest, evs) // a digest already taken
	wantErr(t, "CreatePartner with a duplicate key digest", err, keys.ErrConflict)
	if _, ok := findPartner(t, s, p.ID); ok {
		t.Errorf("failed CreatePartner left partner %s behind", p.ID)
	}
	if hasEvent(t, s, "partner.created", p.ID) {
		t.Errorf("failed CreatePartner left its audit event behind")
	}
	// The digest still logs in as its first owner.
	wantActive(t, s, a.digest, a.principal())
}

func testCreateKey(t *testing.T, s store.Store) {
	ctx := t.Context()
	w := newWorld(t, s, "Acme")

	pk, pd := createKey(t, s, w.p.owner(), t0.Add(time.Minute))
	ck, cd := createKey(t, s, w.c.owner(), t0.Add(time.Minute))
	wantEvent(t, s, "key.created", pk.ID)
	wantEvent(t, s, "key.created", ck.ID)
	wantActive(t, s, pd, principalOf(pk, w.p.Name))
	wantActive(t, s, cd, principalOf(ck, w.c.Name))
	checkKey(t, findKey(t, s, w.p.owner(), pk.ID), pk)
	checkKey(t, findKey(t, s, w.c.owner(), ck.ID), ck)

	// Refused owners: no key, no audit event, nothing that logs in. Owners
	// that name no one at all are in testOwnersNamingNoOne.
	disabled := newWorld(t, s, "Dormant")
	must(t, "DisableCompany", s.DisableCompany(ctx, disabled.p.ID, disabled.c.ID, t0, event(t0, "company.disabled", "company", disabled.c.ID)))
	gone := newWorld(t, s, "Gone")
	must(t, "DisablePartner", s.DisablePartner(ctx, gone.p.ID, t0, event(t0, "partner.disabled", "partner", gone.p.ID)))

	for _, tc := range []struct {
		name  string
		owner keys.Owner
		want  error
	}{
		{"unknown partner", keys.PartnerOwner("par_unknown"), keys.ErrNotFound},
		{"unknown company", keys.CompanyOwner(w.p.ID, "com_unknown"), keys.ErrNotFound},
		{"disabled company", disabled.c.owner(), keys.ErrDisabled},
		{"disabled partner", gone.p.owner(), keys.ErrDisabled},
		{"company of a disabled partner", gone.c.owner(), keys.ErrDisabled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, d := newKey(tc.owner, t0)
			err := s.CreateKey(ctx, k, d, event(t0, "key.created", "key", k.ID))
			wantErr(t, "CreateKey", err, tc.want)
			wantNoKey(t, s, "refused key", d)
			if hasEvent(t, s, "key.created", k.ID) {
				t.Errorf("refused key left its audit event behind")
			}
		})
	}
}

func testListKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := newWorld(t, s, "Acme")
	b := newWorld(t, s, "Bolt")
	pk2, _ := createKey(t, s, a.p.owner(), t0.Add(time.Minute))
	ck2, _ := createKey(t, s, a.c.owner(), t0.Add(time.Minute))
	c2 := createCompany(t, s, a.p.ID, "Acme other customer", nil, t0)

	for _, tc := range []struct {
		name  string
		owner keys.Owner
		want  []keys.Key
	}{
		{"partner's own keys", a.p.owner(), []keys.Key{a.p.key, pk2}},
		{"company's keys", a.c.owner(), []keys.Key{a.c.key, ck2}},
		{"other company's keys", c2.owner(), []keys.Key{c2.key}},
		{"another partner's own keys", b.p.owner(), []keys.Key{b.p.key}},
		{"another partner's company", keys.CompanyOwner(a.p.ID, b.c.ID), nil},
		{"unknown company", keys.CompanyOwner(a.p.ID, "com_unknown"), nil},
		{"unknown partner", keys.PartnerOwner("par_unknown"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.ListKeys(ctx, tc.owner)
			must(t, "ListKeys", err)
			var wantIDs []string
			for _, k := range tc.want {
				wantIDs = append(wantIDs, k.ID)
			}
			if !slices.Equal(keyIDs(got), sorted(wantIDs...)) {
				t.Fatalf("ListKeys = %v, want %v", keyIDs(got), sorted(wantIDs...))
			}
			for _, w := range tc.want {
				checkKey(t, got[slices.IndexFunc(got, func(k keys.Key) bool { return k.ID == w.ID })], w)
			}
		})
	}
}

func testRevokeKey(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := newWorld(t, s, "Acme")
	b := newWorld(t, s, "Bolt")
	pk2, pd2 := createKey(t, s, a.p.owner(), t0)

	fam := seedFamily(t, s, a.p.principal(), t0)
	fam2 := seedFamily(t, s, a.p.principal(), t0)
	other := seedFamily(t, s, principalOf(pk2, a.p.Name), t0)
	early := t0.Add(time.Minute)
	revokeFamily(t, s, fam2.ID, early) // revoked before the key: keeps its own revocation

	at := t0.Add(time.Hour)
	must(t, "RevokeKey", s.RevokeKey(ctx, a.p.owner(), a.p.key.ID, at, event(at, "key.revoked", "key", a.p.key.ID)))
	wantEvent(t, s, "key.revoked", a.p.key.ID)
	want := a.p.key
	want.RevokedAt = &at
	checkKey(t, findKey(t, s, a.p.owner(), a.p.key.ID), want)
	wantInactive(t, s, a.p.digest, a.p.principal())

	// A store may mark the key's families revoked or leave them to be
	// refused through PrincipalActive; either way none may refresh.
	got := readFamily(t, s, fam.ID)
	if got.PrincipalActive {
		t.Errorf("family of the revoked key: PrincipalActive still true")
	}
	if got.RevokedAt != nil {
		sameTime(t, "family RevokedAt", *got.RevokedAt, at)
	}
	if got := readFamily(t, s, fam2.ID); got.RevokedAt == nil || !got.RevokedAt.Equal(stored(early)) || got.RevokeReason != "logout" {
		t.Errorf("family revoked earlier: RevokedAt %s, reason %q; want %s, logout", showTime(got.RevokedAt), got.RevokeReason, stored(early))
	}
	if got := readFamily(t, s, other.ID); got.RevokedAt != nil || !got.PrincipalActive {
		t.Errorf("family of another key: RevokedAt %s, active %v", showTime(got.RevokedAt), got.PrincipalActive)
	}

	later := t0.Add(2 * time.Hour)
	must(t, "RevokeKey again", s.RevokeKey(ctx, a.p.owner(), a.p.key.ID, later, event(later, "key.revoked_again", "key", a.p.key.ID)))
	checkKey(t, findKey(t, s, a.p.owner(), a.p.key.ID), want) // the first revocation time stays
	// ...and nothing else is written: a leaked-key report sent twice relies
	// on it to audit its revocation once.
	if hasEvent(t, s, "key.revoked_again", a.p.key.ID) {
		t.Errorf("revoking a revoked key wrote its audit event")
	}

	for _, tc := range []struct {
		name  string
		owner keys.Owner
		keyID string
	}{
		{"another partner's key", a.p.owner(), b.p.key.ID},
		{"another partner's company key", keys.CompanyOwner(a.p.ID, b.c.ID), b.c.key.ID},
		{"company key named as the partner's own", a.p.owner(), a.c.key.ID},
		{"partner key named as a company's", a.c.owner(), pk2.ID},
		{"unknown key", a.p.owner(), "key_unknown"},
	} {
		err := s.RevokeKey(ctx, tc.owner, tc.keyID, at, event(at, "key.revoked", "key", tc.keyID))
		wantErr(t, "RevokeKey("+tc.name+")", err, keys.ErrNotFound)
	}
	// The keys a refused revoke named still log in.
	wantActive(t, s, b.p.digest, b.p.principal())
	wantActive(t, s, b.c.digest, b.c.principal())
	wantActive(t, s, a.c.digest, a.c.principal())
	wantActive(t, s, pd2, principalOf(pk2, a.p.Name))

	// A company key.
	must(t, "RevokeKey(company key)", s.RevokeKey(ctx, a.c.owner(), a.c.key.ID, at, event(at, "key.revoked", "key", a.c.key.ID)))
	wantInactive(t, s, a.c.digest, a.c.principal())
}
