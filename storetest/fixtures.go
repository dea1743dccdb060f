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

// familyOf is a new family as a login makes it; StartFamily fills in its
// principal.
func familyOf(at time.Time) tokens.Family {
	return tokens.Family{
		ID:              keys.NewID("fam_"),
		CreatedAt:       at,
		Generation:      1,
		RotatedAt:       at,
		ExpiresAt:       at.Add(time.Hour),
		PrincipalActive: true,
	}
}

// startFamily logs in with the key of digest, which must speak for want,
// creating f; it returns f as the store should now give it back.
func startFamily(t *testing.T, s store.Store, digest keys.Digest, want keys.Principal, f tokens.Family) tokens.Family {
	t.Helper()
	got, err := s.StartFamily(t.Context(), digest, f)
	if err != nil {
		t.Fatalf("StartFamily(key %s): %v", want.KeyID, err)
	}
	if got != want {
		t.Errorf("StartFamily = %+v, want %+v", got, want)
	}
	f.Principal = want
	return f
}

// wantNoLogin checks that the key of digest cannot log in: StartFamily
// answers keys.ErrInvalidKey, names no principal and creates no family.
func wantNoLogin(t *testing.T, s store.Store, what string, digest keys.Digest) {
	t.Helper()
	f := familyOf(t0)
	p, err := s.StartFamily(t.Context(), digest, f)
	wantErr(t, "StartFamily("+what+")", err, keys.ErrInvalidKey)
	if p != (keys.Principal{}) {
		t.Errorf("StartFamily(%s) returned a principal with its error: %+v", what, p)
	}
	if familyExists(t, s, f.ID) {
		t.Errorf("refused StartFamily(%s) created its family", what)
	}
}

// readFamily reads a family through UpdateFamily, the only read there is.
func readFamily(t *testing.T, s store.Store, id string) tokens.Family {
	t.Helper()
	var got tokens.Family
	err := s.UpdateFamily(t.Context(), id, func(f *tokens.Family) (tokens.Change, error) {
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
	err := s.UpdateFamily(t.Context(), id, func(f *tokens.Family) (tokens.Change, error) {
		f.RevokedAt, f.RevokeReason = &at, "logout"
		return tokens.Change{Write: true}, nil
	})
	if err != nil {
		t.Fatalf("UpdateFamily(%s) revoking: %v", id, err)
	}
}

func familyExists(t *testing.T, s store.Store, id string) bool {
	t.Helper()
	err := s.UpdateFamily(t.Context(), id, func(*tokens.Family) (tokens.Change, error) { return tokens.Change{}, nil })
	if errors.Is(err, keys.ErrNotFound) {
		return false
	}
	if err != nil {
		t.Fatalf("UpdateFamily(%s): %v", id, err)
	}
	return true
}
