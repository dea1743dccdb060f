package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"keygate/keys"
	"keygate/store"
)

// testOwnersNamingNoOne: an Owner that names no one owns no key. ListKeys
// lists nothing, RevokeKey finds nothing to revoke and CreateKey finds no
// one to give a key to. Above all, a company owner with an empty company id
// never reaches the partner's own keys: an empty id once let a partner's
// token mint partner keys.
func testOwnersNamingNoOne(t *testing.T, s store.Store) {
	ctx := t.Context()
	w := newWorld(t, s, "Acme")
	other := newWorld(t, s, "Bolt")
	pk2, pd2 := createKey(t, s, w.p.owner(), t0.Add(time.Minute))
	all := []struct {
		key    keys.Key
		digest keys.Digest
		p      keys.Principal
	}{
		{w.p.key, w.p.digest, w.p.principal()},
		{pk2, pd2, principalOf(pk2, w.p.Name)},
		{w.c.key, w.c.digest, w.c.principal()},
		{other.p.key, other.p.digest, other.p.principal()},
		{other.c.key, other.c.digest, other.c.principal()},
	}
	at := t0.Add(time.Hour)

	for _, tc := range []struct {
		name  string
		owner keys.Owner
	}{
		{"zero Owner", keys.Owner{}},
		{"company owner with an empty company id", keys.CompanyOwner(w.p.ID, "")},
		{"partner owner with an empty partner id", keys.PartnerOwner("")},
		{"company owner with an empty partner id", keys.CompanyOwner("", w.c.ID)},
		{"company of another partner", keys.CompanyOwner(w.p.ID, other.c.ID)},
		{"own company under another partner", keys.CompanyOwner(other.p.ID, w.c.ID)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ks, err := s.ListKeys(ctx, tc.owner)
			must(t, "ListKeys", err)
			if len(ks) != 0 {
				t.Errorf("ListKeys = %v, want none", keyIDs(ks))
			}

			for _, k := range all {
				err := s.RevokeKey(ctx, tc.owner, k.key.ID, at, event(at, "key.revoked", "key", k.key.ID))
				wantErr(t, "RevokeKey("+k.key.ID+")", err, keys.ErrNotFound)
			}

			k, d := newKey(tc.owner, at)
			err = s.CreateKey(ctx, k, d, event(at, "key.created", "key", k.ID))
			wantErr(t, "CreateKey", err, keys.ErrNotFound)
			wantNoKey(t, s, "key refused to an owner naming no one", d)
			if hasEvent(t, s, "key.created", k.ID) {
				t.Errorf("refused key left its audit event behind")
			}
		})
	}

	// Nothing above touched a real owner's keys: each lists exactly its own,
	// unrevoked, and every one still logs in.
	for _, o := range []keys.Owner{w.p.owner(), w.c.owner(), other.p.owner(), other.c.owner()} {
		ks, err := s.ListKeys(ctx, o)
		must(t, "ListKeys", err)
		var want []string
		for _, k := range all {
			if k.key.Owner == o {
				want = append(want, k.key.ID)
			}
		}
		if got := keyIDs(ks); !slices.Equal(got, sorted(want...)) {
			t.Errorf("ListKeys(%+v) = %v, want %v", o, got, sorted(want...))
		}
	}
	for _, k := range all {
		checkKey(t, findKey(t, s, k.key.Owner, k.key.ID), k.key)
		wantActive(t, s, k.digest, k.p)
		if hasEvent(t, s, "key.revoked", k.key.ID) {
			t.Errorf("key %s has a key.revoked event", k.key.ID)
		}
	}
}

// testFirstKeyOfAnotherOwner: a new partner's or company's first key must
// be its own. A store that took any key would let a bug in a caller mint a
// company whose "first key" logs in as its partner.
func testFirstKeyOfAnotherOwner(t *testing.T, s store.Store) {
	ctx := t.Context()
	w := newWorld(t, s, "Acme")

	for _, tc := range []struct {
		name  string
		owner func(p keys.Partner) keys.Owner
	}{
		{"zero Owner", func(keys.Partner) keys.Owner { return keys.Owner{} }},
		{"another partner", func(keys.Partner) keys.Owner { return w.p.owner() }},
		{"a company of its own", func(p keys.Partner) keys.Owner { return keys.CompanyOwner(p.ID, w.c.ID) }},
	} {
		t.Run("partner with a key of "+tc.name, func(t *testing.T) {
			p := keys.Partner{ID: keys.NewID("par_"), Name: "Bolt", Status: keys.StatusActive, CreatedAt: t0}
			k, d := newKey(tc.owner(p), t0)
			err := s.CreatePartner(ctx, p, k, d, []keys.AuditEvent{event(t0, "partner.created", "partner", p.ID)})
			wantErr(t, "CreatePartner", err, keys.ErrWrongOwner)
			if _, ok := findPartner(t, s, p.ID); ok {
				t.Errorf("the refused partner exists")
			}
			wantNoKey(t, s, "the refused key", d)
		})
	}
	for _, tc := range []struct {
		name  string
		owner func(c keys.Company) keys.Owner
	}{
		{"its partner", func(keys.Company) keys.Owner { return w.p.owner() }},
		{"another company", func(keys.Company) keys.Owner { return w.c.owner() }},
		{"an empty company id", func(keys.Company) keys.Owner { return keys.CompanyOwner(w.p.ID, "") }},
	} {
		t.Run("company with a key of "+tc.name, func(t *testing.T) {
			c := companyInput(w.p.ID, "Globex", nil, t0)
			c.key, c.digest = newKey(tc.owner(c.Company), t0)
			wantErr(t, "CreateCompany", c.create(ctx, s), keys.ErrWrongOwner)
			if _, err := s.GetCompany(ctx, w.p.ID, c.ID); !errors.Is(err, keys.ErrNotFound) {
				t.Errorf("the refused company exists: %v", err)
			}
			wantNoKey(t, s, "the refused key", c.digest)
		})
	}
}
