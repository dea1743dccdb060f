package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"keygate/keys"
	"keygate/store"
	"keygate/tokens"
)

// newKey mints a key of o, with the digest a store keeps of it.
func newKey(o keys.Owner, at time.Time) (keys.Key, keys.Digest) {
	prefix := keys.PartnerKeyPrefix
	if o.Kind() == keys.KindCompany {
		prefix = keys.CompanyKeyPrefix
	}
	secret := keys.NewAPIKey(prefix).Reveal()
	k := keys.Key{ID: keys.NewID("key_"), Owner: o, Hint: keys.Hint(secret), CreatedAt: at}
	return k, keys.DigestOf(secret)
}

func event(at time.Time, action, targetType, target string) keys.AuditEvent {
	return keys.AuditEvent{
		At: at, ActorType: keys.ActorOperator, ActorID: "operator", Action: action,
		TargetType: targetType, Target: target, Addr: "local", Outcome: keys.OutcomeSuccess, Detail: "storetest",
	}
}

// partner is a partner with its first key.
type partner struct {
	keys.Partner
	key    keys.Key
	digest keys.Digest
}

func createPartner(t *testing.T, s store.Store, name string, at time.Time) partner {
	t.Helper()
	p := keys.Partner{ID: keys.NewID("par_"), Name: name, Status: keys.StatusActive, CreatedAt: at}
	k, d := newKey(keys.PartnerOwner(p.ID), at)
	evs := []keys.AuditEvent{event(at, "partner.created", "partner", p.ID), event(at, "key.created", "key", k.ID)}
	if err := s.CreatePartner(t.Context(), p, k, d, evs); err != nil {
		t.Fatalf("CreatePartner(%s): %v", name, err)
	}
	return partner{Partner: p, key: k, digest: d}
}

func (p partner) owner() keys.Owner { return keys.PartnerOwner(p.ID) }

func (p partner) principal() keys.Principal {
	return principalOf(p.key, p.Name)
}

// company is a company with its first key.
type company struct {
	keys.Company
	key    keys.Key
	digest keys.Digest
}

func companyInput(partnerID, name string, externalID *string, at time.Time) company {
	c := keys.Company{ID: keys.NewID("com_"), PartnerID: partnerID, Name: name, ExternalID: externalID, Status: keys.StatusActive, CreatedAt: at}
	k, d := newKey(keys.CompanyOwner(partnerID, c.ID), at)
	return company{Company: c, key: k, digest: d}
}

func (c company) create(ctx context.Context, s store.Store) error {
	evs := []keys.AuditEvent{event(c.CreatedAt, "company.created", "company", c.ID), event(c.CreatedAt, "key.created", "key", c.key.ID)}
	return s.CreateCompany(ctx, c.Company, c.key, c.digest, evs)
}

func createCompany(t *testing.T, s store.Store, partnerID, name string, externalID *string, at time.Time) company {
	t.Helper()
	c := companyInput(partnerID, name, externalID, at)
	if err := c.create(t.Context(), s); err != nil {
		t.Fatalf("CreateCompany(%s): %v", name, err)
	}
	return c
}

func (c company) owner() keys.Owner { return keys.CompanyOwner(c.PartnerID, c.ID) }

func (c company) principal() keys.Principal {
	return principalOf(c.key, c.Name)
}

// principalOf is who a key speaks for, built here by hand rather than with
// keys.PrincipalOf, so that the suite does not share a mistake with a store
// that uses it.
func principalOf(k keys.Key, name string) keys.Principal {
	p := keys.Principal{Kind: keys.KindPartner, ID: k.Owner.PartnerID(), PartnerID: k.Owner.PartnerID(), KeyID: k.ID, Name: name}
	if k.Owner.Kind() == keys.KindCompany {
		p.Kind, p.ID, p.CompanyID = keys.KindCompany, k.Owner.CompanyID(), k.Owner.CompanyID()
	}
	return p
}

func createKey(t *testing.T, s store.Store, o keys.Owner, at time.Time) (keys.Key, keys.Digest) {
	t.Helper()
	k, d := newKey(o, at)
	if err := s.CreateKey(t.Context(), k, d, event(at, "key.created", "key", k.ID)); err != nil {
		t.Fatalf("CreateKey(%+v): %v", o, err)
	}
	return k, d
}

// world is one partner with a company, each with a key.
type world struct {
	p partner
	c company
}

func newWorld(t *testing.T, s store.Store, name string) world {
	t.Helper()
	p := createPartner(t, s, name, t0)
	c := createCompany(t, s, p.ID, name+" customer", nil, t0.Add(time.Second))
	return world{p: p, c: c}
}

// wantKey checks who the key of digest speaks for and whether it may act,
// by digest (a login) and by key id (a token's check): the same answer
// both ways, with the owner's name.
func wantKey(t *testing.T, s store.Store, digest keys.Digest, want keys.Principal, active bool) {
	t.Helper()
	wantR := keys.ResolvedKey{Digest: digest, Principal: want, Active: active}
	got, err := s.ResolveKey(t.Context(), digest)
	if err != nil || got != wantR {
		t.Errorf("ResolveKey(key %s) = %+v, %v; want %+v", want.KeyID, got, err, wantR)
	}
	got, err = s.ResolveKeyID(t.Context(), want.KeyID)
	if err != nil || got != wantR {
		t.Errorf("ResolveKeyID(%s) = %+v, %v; want %+v", want.KeyID, got, err, wantR)
	}
}

// wantActive checks that the key of digest speaks for want and may log in.
func wantActive(t *testing.T, s store.Store, digest keys.Digest, want keys.Principal) {
	t.Helper()
	wantKey(t, s, digest, want, true)
}

// wantInactive checks that the key of digest still speaks for want but may
// not act: it, its company or its partner is revoked or disabled.
func wantInactive(t *testing.T, s store.Store, digest keys.Digest, want keys.Principal) {
	t.Helper()
	wantKey(t, s, digest, want, false)
}

// wantNoKey checks that no key has this digest: ResolveKey answers
// keys.ErrInvalidKey and resolves nothing.
func wantNoKey(t *testing.T, s store.Store, what string, digest keys.Digest) {
	t.Helper()
	r, err := s.ResolveKey(t.Context(), digest)
	wantErr(t, "ResolveKey("+what+")", err, keys.ErrInvalidKey)
	if r != (keys.ResolvedKey{}) {
		t.Errorf("ResolveKey(%s) returned a key with its error: %+v", what, r)
	}
}

// seedOf is the family a login's generation-0 token stands for before its
// row exists: issued at at by the key keyID, valid for an hour. The store
// fills in the principal from the key.
func seedOf(keyID string, at time.Time) tokens.Family {
	return tokens.Family{
		ID:             keys.NewID("fam_"),
		Principal:      keys.Principal{KeyID: keyID},
		CreatedAt:      at,
		RotatedAt:      at,
		ExpiresAt:      at.Add(time.Hour),
		FirstExpiresAt: at.Add(time.Hour),
	}
}

// rotate does to f what a refresh does: the next generation, issued at
// now and expiring an hour later.
func rotate(f *tokens.Family, now time.Time) {
	f.ParentExpiresAt = f.ExpiresAt
	f.Generation++
	f.RotatedAt = now
	f.ExpiresAt = now.Add(time.Hour)
}

// seedFamily creates a family's row as the first refresh of a login by
// want's key does: UpdateFamily with the generation-0 seed issued at at,
// rotated to generation 1 a minute later. It returns the family as the
// store should now give it back.
func seedFamily(t *testing.T, s store.Store, want keys.Principal, at time.Time) tokens.Family {
	t.Helper()
	return writeSeed(t, s, want, seedOf(want.KeyID, at), func(f *tokens.Family) { rotate(f, at.Add(time.Minute)) })
}

// writeSeed creates a family's row from seed, an active key's, with change
// applied to it in decide, and returns the family as the store should now
// give it back. decide must see the seed at generation 0 with the key's
// principal (without its name) and PrincipalActive.
func writeSeed(t *testing.T, s store.Store, want keys.Principal, seed tokens.Family, change func(f *tokens.Family)) tokens.Family {
	t.Helper()
	var saw tokens.Family
	err := s.UpdateFamily(t.Context(), seed.ID, &seed, func(f *tokens.Family) (tokens.Change, error) {
		saw = *f
		change(f)
		return tokens.Change{Write: true}, nil
	})
	if err != nil {
		t.Fatalf("UpdateFamily(%s) with the seed of key %s: %v", seed.ID, want.KeyID, err)
	}
	wantP := want
	wantP.Name = ""
	if saw.ID != seed.ID || saw.Generation != 0 || saw.Principal != wantP || !saw.PrincipalActive {
		t.Errorf("UpdateFamily with a seed: decide saw {%s gen %d %+v active %v}, want {%s gen 0 %+v active true}",
			saw.ID, saw.Generation, saw.Principal, saw.PrincipalActive, seed.ID, wantP)
	}
	f := seed
	f.Principal, f.PrincipalActive = want, true
	change(&f)
	return f
}

// readFamily reads a family's row through UpdateFamily, the only read
// there is.
func readFamily(t *testing.T, s store.Store, id string) tokens.Family {
	t.Helper()
	var got tokens.Family
	err := s.UpdateFamily(t.Context(), id, nil, func(f *tokens.Family) (tokens.Change, error) {
		got = *f
		return tokens.Change{}, nil
	})
	if err != nil {
		t.Fatalf("UpdateFamily(%s) reading: %v", id, err)
	}
	return got
}

// revokeFamily marks a family revoked at the given time.
func revokeFamily(t *testing.T, s store.Store, id string, at time.Time) {
	t.Helper()
	err := s.UpdateFamily(t.Context(), id, nil, func(f *tokens.Family) (tokens.Change, error) {
		f.RevokedAt, f.RevokeReason = &at, "logout"
		return tokens.Change{Write: true}, nil
	})
	if err != nil {
		t.Fatalf("UpdateFamily(%s) revoking: %v", id, err)
	}
}

// familyExists reports whether the family has a row.
func familyExists(t *testing.T, s store.Store, id string) bool {
	t.Helper()
	err := s.UpdateFamily(t.Context(), id, nil, func(*tokens.Family) (tokens.Change, error) { return tokens.Change{}, nil })
	if errors.Is(err, keys.ErrNotFound) {
		return false
	}
	if err != nil {
		t.Fatalf("UpdateFamily(%s): %v", id, err)
	}
	return true
}
