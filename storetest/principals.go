package storetest

import (
	"testing"
	"time"

	"keygate/keys"
	"keygate/store"
)

// Who a key or a token speaks for, and whether it still may: StartFamily
// resolves a login's key digest, ActivePrincipal re-reads a token's
// principal. Both follow the same rules: a revoked key, a disabled company
// and a disabled partner stop exactly their own keys.

// testStartFamily checks the login's one store call: it resolves the key to
// its principal and creates the family for it, or, for a key that may not
// log in, answers ErrInvalidKey and creates nothing.
func testStartFamily(t *testing.T, s store.Store) {
	ctx := t.Context()
	w := newWorld(t, s, "Acme")
	other := newWorld(t, s, "Bolt")
	pk2, pd2 := createKey(t, s, w.p.owner(), t0)
	ck2, cd2 := createKey(t, s, w.c.owner(), t0)
	c2 := createCompany(t, s, w.p.ID, "Acme second customer", nil, t0)

	// start logs in and checks the family the store made: its principal is
	// the key's, whatever the caller put in f.Principal.
	start := func(t *testing.T, d keys.Digest, want keys.Principal) {
		t.Helper()
		f := familyOf(t0)
		f.Principal = other.p.principal()
		f = startFamily(t, s, d, want, f)
		checkFamily(t, readFamily(t, s, f.ID), f)
	}

	start(t, w.p.digest, w.p.principal())
	start(t, w.c.digest, w.c.principal())
	start(t, pd2, principalOf(pk2, w.p.Name))
	start(t, cd2, principalOf(ck2, w.c.Name))
	wantNoLogin(t, s, "unknown digest", keys.DigestOf("pk_unknown"))

	at := t0.Add(time.Hour)
	must(t, "RevokeKey", s.RevokeKey(ctx, w.p.owner(), w.p.key.ID, at, event(at, "key.revoked", "key", w.p.key.ID)))
	wantNoLogin(t, s, "revoked partner key", w.p.digest)
	start(t, pd2, principalOf(pk2, w.p.Name))
	start(t, w.c.digest, w.c.principal())

	must(t, "RevokeKey", s.RevokeKey(ctx, w.c.owner(), w.c.key.ID, at, event(at, "key.revoked", "key", w.c.key.ID)))
	wantNoLogin(t, s, "revoked company key", w.c.digest)
	start(t, cd2, principalOf(ck2, w.c.Name))

	must(t, "DisableCompany", s.DisableCompany(ctx, w.p.ID, w.c.ID, at, event(at, "company.disabled", "company", w.c.ID)))
	wantNoLogin(t, s, "key of a disabled company", cd2)
	start(t, pd2, principalOf(pk2, w.p.Name))
	start(t, c2.digest, c2.principal())

	must(t, "DisablePartner", s.DisablePartner(ctx, w.p.ID, at, event(at, "partner.disabled", "partner", w.p.ID)))
	wantNoLogin(t, s, "key of a disabled partner", pd2)
	wantNoLogin(t, s, "company key of a disabled partner", c2.digest)
	start(t, other.p.digest, other.p.principal())
	start(t, other.c.digest, other.c.principal())

	// A family id already taken is a conflict; the family keeps its owner.
	first := startFamily(t, s, other.p.digest, other.p.principal(), familyOf(t0))
	dup := familyOf(t0.Add(time.Minute))
	dup.ID = first.ID
	_, err := s.StartFamily(ctx, other.c.digest, dup)
	wantErr(t, "StartFamily with an existing family id", err, keys.ErrConflict)
	checkFamily(t, readFamily(t, s, first.ID), first)
}

func testActivePrincipal(t *testing.T, s store.Store) {
	ctx := t.Context()
	w := newWorld(t, s, "Acme")
	other := newWorld(t, s, "Bolt")

	// A token names its principal without a name; the store fills it in.
	claims := func(p keys.Principal) keys.Principal { p.Name = ""; return p }
	active := func(t *testing.T, p keys.Principal) {
		t.Helper()
		got, err := s.ActivePrincipal(ctx, claims(p))
		if err != nil {
			t.Errorf("ActivePrincipal(%+v): %v", p, err)
			return
		}
		if got != p {
			t.Errorf("ActivePrincipal = %+v, want %+v", got, p)
		}
	}
	inactive := func(t *testing.T, what string, p keys.Principal) {
		t.Helper()
		_, err := s.ActivePrincipal(ctx, claims(p))
		wantErr(t, "ActivePrincipal("+what+")", err, keys.ErrInactive)
	}
	active(t, w.p.principal())
	active(t, w.c.principal())

	mismatch := func(p keys.Principal, change func(*keys.Principal)) keys.Principal { change(&p); return p }
	pp, cp := w.p.principal(), w.c.principal()
	for _, tc := range []struct {
		name string
		p    keys.Principal
	}{
		{"unknown key", mismatch(pp, func(p *keys.Principal) { p.KeyID = "key_unknown" })},
		{"partner key claiming company kind", mismatch(pp, func(p *keys.Principal) { p.Kind = keys.KindCompany })},
		{"company key claiming partner kind", mismatch(cp, func(p *keys.Principal) { p.Kind = keys.KindPartner; p.ID = p.PartnerID })},
		{"company key without its company", mismatch(cp, func(p *keys.Principal) { p.Kind, p.ID, p.CompanyID = keys.KindPartner, p.PartnerID, "" })},
		{"company key with an empty company id", mismatch(cp, func(p *keys.Principal) { p.ID, p.CompanyID = "", "" })},
		{"id not the key's owner", mismatch(pp, func(p *keys.Principal) { p.ID = other.p.ID })},
		{"company id not the key's", mismatch(cp, func(p *keys.Principal) { p.ID, p.CompanyID = other.c.ID, other.c.ID })},
		{"partner id not the key's", mismatch(cp, func(p *keys.Principal) { p.PartnerID = other.p.ID })},
		{"another partner's key", mismatch(pp, func(p *keys.Principal) { p.KeyID = other.p.key.ID })},
		{"zero principal", keys.Principal{}},
	} {
		inactive(t, tc.name, tc.p)
	}

	at := t0.Add(time.Hour)
	pk2, _ := createKey(t, s, w.p.owner(), t0)
	must(t, "RevokeKey", s.RevokeKey(ctx, w.p.owner(), w.p.key.ID, at, event(at, "key.revoked", "key", w.p.key.ID)))
	inactive(t, "revoked key", pp)
	active(t, principalOf(pk2, w.p.Name))
	active(t, cp)

	must(t, "DisableCompany", s.DisableCompany(ctx, w.p.ID, w.c.ID, at, event(at, "company.disabled", "company", w.c.ID)))
	inactive(t, "disabled company", cp)
	active(t, principalOf(pk2, w.p.Name))

	c2 := createCompany(t, s, w.p.ID, "Acme second customer", nil, t0)
	active(t, c2.principal())
	must(t, "DisablePartner", s.DisablePartner(ctx, w.p.ID, at, event(at, "partner.disabled", "partner", w.p.ID)))
	inactive(t, "disabled partner", principalOf(pk2, w.p.Name))
	inactive(t, "company of a disabled partner", c2.principal())
	active(t, other.p.principal())
	active(t, other.c.principal())
}
