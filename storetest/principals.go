package storetest

import (
	"testing"
	"time"

	"keygate/keys"
	"keygate/store"
)

// Who a key speaks for, and whether it still may: ResolveKey resolves a
// login's key digest, ResolveKeyID the key id a token names. Both read the
// same rules: a revoked key, a disabled company and a disabled partner
// stop exactly their own keys, which still resolve, inactive. Whether a
// token's claims match the key is the keys package's business, not the
// store's.

// testResolveKey checks both lookups against every way a key stops: each
// key resolves to its owner, with the owner's name, the same by digest and
// by id; a key no one has is ErrInvalidKey.
func testResolveKey(t *testing.T, s store.Store) {
	ctx := t.Context()
	w := newWorld(t, s, "Acme")
	other := newWorld(t, s, "Bolt")
	pk2, pd2 := createKey(t, s, w.p.owner(), t0)
	ck2, cd2 := createKey(t, s, w.c.owner(), t0)
	c2 := createCompany(t, s, w.p.ID, "Acme second customer", nil, t0)
	pp2, cp2 := principalOf(pk2, w.p.Name), principalOf(ck2, w.c.Name)

	wantActive(t, s, w.p.digest, w.p.principal())
	wantActive(t, s, w.c.digest, w.c.principal())
	wantActive(t, s, pd2, pp2)
	wantActive(t, s, cd2, cp2)
	wantNoKey(t, s, "unknown digest", keys.DigestOf("pk_unknown"))
	for _, id := range []string{"key_unknown", "", w.p.ID, w.c.ID} {
		r, err := s.ResolveKeyID(ctx, id)
		wantErr(t, "ResolveKeyID("+id+")", err, keys.ErrInvalidKey)
		if r != (keys.ResolvedKey{}) {
			t.Errorf("ResolveKeyID(%q) returned a key with its error: %+v", id, r)
		}
	}

	at := t0.Add(time.Hour)
	must(t, "RevokeKey", s.RevokeKey(ctx, w.p.owner(), w.p.key.ID, at, event(at, "key.revoked", "key", w.p.key.ID)))
	wantInactive(t, s, w.p.digest, w.p.principal())
	wantActive(t, s, pd2, pp2)
	wantActive(t, s, w.c.digest, w.c.principal())

	must(t, "RevokeKey", s.RevokeKey(ctx, w.c.owner(), w.c.key.ID, at, event(at, "key.revoked", "key", w.c.key.ID)))
	wantInactive(t, s, w.c.digest, w.c.principal())
	wantActive(t, s, cd2, cp2)

	must(t, "DisableCompany", s.DisableCompany(ctx, w.p.ID, w.c.ID, at, event(at, "company.disabled", "company", w.c.ID)))
	wantInactive(t, s, cd2, cp2)
	wantInactive(t, s, w.c.digest, w.c.principal())
	wantActive(t, s, pd2, pp2)
	wantActive(t, s, c2.digest, c2.principal())

	must(t, "DisablePartner", s.DisablePartner(ctx, w.p.ID, at, event(at, "partner.disabled", "partner", w.p.ID)))
	wantInactive(t, s, pd2, pp2)
	wantInactive(t, s, w.p.digest, w.p.principal())
	wantInactive(t, s, c2.digest, c2.principal())
	wantInactive(t, s, cd2, cp2)
	wantActive(t, s, other.p.digest, other.p.principal())
	wantActive(t, s, other.c.digest, other.c.principal())
}
