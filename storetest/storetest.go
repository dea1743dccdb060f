// Package storetest is one contract suite every store implementation must
// pass: the semantics the keys.Store and tokens.Store doc comments promise,
// checked the same way against SQLite, the in-memory store and any backend
// that comes later, so that none of them drifts from what the services
// rely on.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"keygate/keys"
	"keygate/tokens"
)

// Store is everything keygate persists.
type Store interface {
	keys.Store
	tokens.Store
}

// Run runs the contract against stores made by open, a fresh empty one per
// subtest. open registers its own cleanup with t.
func Run(t *testing.T, open func(t *testing.T) Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"Partners", testPartners},
		{"CreatePartnerIsAtomic", testCreatePartnerIsAtomic},
		{"CreateKey", testCreateKey},
		{"LookupKey", testLookupKey},
		{"StartFamily", testStartFamily},
		{"ActivePrincipal", testActivePrincipal},
		{"CreateCompany", testCreateCompany},
		{"CreateCompanyConcurrentExternalID", testCreateCompanyConcurrentExternalID},
		{"GetCompany", testGetCompany},
		{"ListCompanies", testListCompanies},
		{"ListCompaniesWhileAdding", testListCompaniesWhileAdding},
		{"DisableCompany", testDisableCompany},
		{"ListKeys", testListKeys},
		{"RevokeKey", testRevokeKey},
		{"RecordUsage", testRecordUsage},
		{"ListAudit", testListAudit},
		{"SigningKeys", testSigningKeys},
		{"Family", testFamily},
		{"FamilyPrincipalActive", testFamilyPrincipalActive},
		{"UpdateFamilyDecisions", testUpdateFamilyDecisions},
		{"UpdateFamilyConcurrent", testUpdateFamilyConcurrent},
		{"DeleteFamilies", testDeleteFamilies},
		{"DeleteFamiliesLimit", testDeleteFamiliesLimit},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

// t0 is the suite's clock. It has a non-UTC zone and sub-millisecond digits
// on purpose: stores give times back in UTC at millisecond precision.
var t0 = time.Date(2026, 6, 26, 9, 56, 42, 199_654_321, time.FixedZone("CEST", 2*60*60))

// stored is what a store gives back for t.
func stored(t time.Time) time.Time { return t.Truncate(time.Millisecond).UTC() }

func ptr[T any](v T) *T { return &v }

// ---------------------------------------------------------------------------
// Fixtures

func newKey(partnerID, companyID string, at time.Time) (keys.Key, keys.Digest) {
	prefix := keys.PartnerKeyPrefix
	if companyID != "" {
		prefix = keys.CompanyKeyPrefix
	}
	secret := keys.NewAPIKey(prefix).Reveal()
	k := keys.Key{ID: keys.NewID("key_"), PartnerID: partnerID, CompanyID: companyID, Hint: keys.Hint(secret), CreatedAt: at}
	return k, keys.DigestOf(secret)
}

func event(at time.Time, action, targetType, target string) keys.AuditEvent {
	return keys.AuditEvent{
		At: at, ActorType: "operator", ActorID: "operator", Action: action,
		TargetType: targetType, Target: target, Addr: "local", Outcome: keys.OutcomeSuccess, Detail: "storetest",
	}
}

// partner is a partner with its first key.
type partner struct {
	keys.Partner
	key    keys.Key
	digest keys.Digest
}

func createPartner(t *testing.T, s Store, name string, at time.Time) partner {
	t.Helper()
	p := keys.Partner{ID: keys.NewID("par_"), Name: name, Status: keys.StatusActive, CreatedAt: at}
	k, d := newKey(p.ID, "", at)
	evs := []keys.AuditEvent{event(at, "partner.created", "partner", p.ID), event(at, "key.created", "key", k.ID)}
	if err := s.CreatePartner(t.Context(), p, k, d, evs); err != nil {
		t.Fatalf("CreatePartner(%s): %v", name, err)
	}
	return partner{Partner: p, key: k, digest: d}
}

func (p partner) principal() keys.Principal {
	return keys.Principal{Kind: keys.KindPartner, ID: p.ID, PartnerID: p.ID, KeyID: p.key.ID, Name: p.Name}
}

// company is a company with its first key.
type company struct {
	keys.Company
	key    keys.Key
	digest keys.Digest
}

func companyInput(partnerID, name string, externalID *string, at time.Time) company {
	c := keys.Company{ID: keys.NewID("com_"), PartnerID: partnerID, Name: name, ExternalID: externalID, Status: keys.StatusActive, CreatedAt: at}
	k, d := newKey(partnerID, c.ID, at)
	return company{Company: c, key: k, digest: d}
}

func (c company) create(ctx context.Context, s Store) error {
	evs := []keys.AuditEvent{event(c.CreatedAt, "company.created", "company", c.ID), event(c.CreatedAt, "key.created", "key", c.key.ID)}
	return s.CreateCompany(ctx, c.Company, c.key, c.digest, evs)
}

func createCompany(t *testing.T, s Store, partnerID, name string, externalID *string, at time.Time) company {
	t.Helper()
	c := companyInput(partnerID, name, externalID, at)
	if err := c.create(t.Context(), s); err != nil {
		t.Fatalf("CreateCompany(%s): %v", name, err)
	}
	return c
}

func (c company) principal() keys.Principal {
	return principalOf(c.key, c.Name)
}

func principalOf(k keys.Key, name string) keys.Principal {
	p := keys.Principal{Kind: keys.KindPartner, ID: k.PartnerID, PartnerID: k.PartnerID, KeyID: k.ID, Name: name}
	if k.CompanyID != "" {
		p.Kind, p.ID, p.CompanyID = keys.KindCompany, k.CompanyID, k.CompanyID
	}
	return p
}

func createKey(t *testing.T, s Store, partnerID, companyID string, at time.Time) (keys.Key, keys.Digest) {
	t.Helper()
	k, d := newKey(partnerID, companyID, at)
	if err := s.CreateKey(t.Context(), k, d, event(at, "key.created", "key", k.ID)); err != nil {
		t.Fatalf("CreateKey(%s, %q): %v", partnerID, companyID, err)
	}
	return k, d
}

// world is one partner with a company, each with a key.
type world struct {
	p partner
	c company
}

func newWorld(t *testing.T, s Store, name string) world {
	t.Helper()
	p := createPartner(t, s, name, t0)
	c := createCompany(t, s, p.ID, name+" customer", nil, t0.Add(time.Second))
	return world{p: p, c: c}
}

func familyOf(p keys.Principal, at time.Time) tokens.Family {
	return tokens.Family{
		ID:              keys.NewID("fam_"),
		Principal:       p,
		CreatedAt:       at,
		Generation:      1,
		RotatedAt:       at,
		ExpiresAt:       at.Add(time.Hour),
		PrincipalActive: true,
	}
}

func createFamily(t *testing.T, s Store, p keys.Principal, at time.Time) tokens.Family {
	t.Helper()
	f := familyOf(p, at)
	if err := s.CreateFamily(t.Context(), f); err != nil {
		t.Fatalf("CreateFamily: %v", err)
	}
	return f
}

// readFamily reads a family through UpdateFamily, the only read there is.
func readFamily(t *testing.T, s Store, id string) tokens.Family {
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
func revokeFamily(t *testing.T, s Store, id string, at time.Time) {
	t.Helper()
	err := s.UpdateFamily(t.Context(), id, func(f *tokens.Family) (tokens.Change, error) {
		f.RevokedAt, f.RevokeReason = &at, "logout"
		return tokens.Change{Write: true}, nil
	})
	if err != nil {
		t.Fatalf("UpdateFamily(%s) revoking: %v", id, err)
	}
}

func familyExists(t *testing.T, s Store, id string) bool {
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

// ---------------------------------------------------------------------------
// Assertions

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: err = %v, want %v", what, err, want)
	}
}

func sameTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(stored(want)) || got.Location() != time.UTC {
		t.Errorf("%s = %v, want %v (UTC, millisecond precision)", what, got, stored(want))
	}
}

func sameTimePtr(t *testing.T, what string, got, want *time.Time) {
	t.Helper()
	switch {
	case got == nil && want == nil:
	case got == nil || want == nil:
		t.Errorf("%s = %s, want %s", what, showTime(got), showTime(want))
	default:
		sameTime(t, what, *got, *want)
	}
}

func showTime(v *time.Time) string {
	if v == nil {
		return "nil"
	}
	return stored(*v).String()
}

func showString(v *string) string {
	if v == nil {
		return "nil"
	}
	return fmt.Sprintf("%q", *v)
}

func checkPartner(t *testing.T, got, want keys.Partner) {
	t.Helper()
	if got.ID != want.ID || got.Name != want.Name || got.Status != want.Status {
		t.Errorf("partner = {%s %q %s}, want {%s %q %s}", got.ID, got.Name, got.Status, want.ID, want.Name, want.Status)
	}
	sameTime(t, "partner CreatedAt", got.CreatedAt, want.CreatedAt)
}

func checkCompany(t *testing.T, got, want keys.Company) {
	t.Helper()
	if got.ID != want.ID || got.PartnerID != want.PartnerID || got.Name != want.Name || got.Status != want.Status {
		t.Errorf("company = {%s %s %q %s}, want {%s %s %q %s}",
			got.ID, got.PartnerID, got.Name, got.Status, want.ID, want.PartnerID, want.Name, want.Status)
	}
	if showString(got.ExternalID) != showString(want.ExternalID) {
		t.Errorf("company %s ExternalID = %s, want %s", want.ID, showString(got.ExternalID), showString(want.ExternalID))
	}
	sameTime(t, "company CreatedAt", got.CreatedAt, want.CreatedAt)
}

func checkKey(t *testing.T, got, want keys.Key) {
	t.Helper()
	if got.ID != want.ID || got.PartnerID != want.PartnerID || got.CompanyID != want.CompanyID || got.Hint != want.Hint {
		t.Errorf("key = {%s %s %q %q}, want {%s %s %q %q}",
			got.ID, got.PartnerID, got.CompanyID, got.Hint, want.ID, want.PartnerID, want.CompanyID, want.Hint)
	}
	sameTime(t, "key CreatedAt", got.CreatedAt, want.CreatedAt)
	sameTimePtr(t, "key LastUsedAt", got.LastUsedAt, want.LastUsedAt)
	sameTimePtr(t, "key RevokedAt", got.RevokedAt, want.RevokedAt)
}

// checkFamily compares everything a family stores; the principal's name is
// not stored.
func checkFamily(t *testing.T, got, want tokens.Family) {
	t.Helper()
	wantP := want.Principal
	wantP.Name = ""
	if got.ID != want.ID || got.Principal != wantP {
		t.Errorf("family = {%s %+v}, want {%s %+v}", got.ID, got.Principal, want.ID, wantP)
	}
	if got.Generation != want.Generation || got.RevokeReason != want.RevokeReason || got.PrincipalActive != want.PrincipalActive {
		t.Errorf("family %s: generation %d, reason %q, active %v; want %d, %q, %v", want.ID,
			got.Generation, got.RevokeReason, got.PrincipalActive, want.Generation, want.RevokeReason, want.PrincipalActive)
	}
	sameTime(t, "family CreatedAt", got.CreatedAt, want.CreatedAt)
	sameTime(t, "family RotatedAt", got.RotatedAt, want.RotatedAt)
	sameTime(t, "family ExpiresAt", got.ExpiresAt, want.ExpiresAt)
	sameTime(t, "family ParentExpiresAt", got.ParentExpiresAt, want.ParentExpiresAt)
	sameTimePtr(t, "family RevokedAt", got.RevokedAt, want.RevokedAt)
}

func checkEvent(t *testing.T, got, want keys.AuditEvent) {
	t.Helper()
	g, w := got, want
	g.At, w.At = time.Time{}, time.Time{}
	if g != w {
		t.Errorf("audit event = %+v, want %+v", g, w)
	}
	sameTime(t, "audit event At", got.At, want.At)
}

// hasEvent reports whether the audit trail holds an event with this action
// and target.
func hasEvent(t *testing.T, s Store, action, target string) bool {
	t.Helper()
	evs, err := s.ListAudit(t.Context(), time.Time{})
	must(t, "ListAudit", err)
	return slices.ContainsFunc(evs, func(e keys.AuditEvent) bool { return e.Action == action && e.Target == target })
}

func wantEvent(t *testing.T, s Store, action, target string) {
	t.Helper()
	if !hasEvent(t, s, action, target) {
		t.Errorf("audit trail lacks %s %s", action, target)
	}
}

func findPartner(t *testing.T, s Store, id string) (keys.Partner, bool) {
	t.Helper()
	ps, err := s.ListPartners(t.Context())
	must(t, "ListPartners", err)
	i := slices.IndexFunc(ps, func(p keys.Partner) bool { return p.ID == id })
	if i < 0 {
		return keys.Partner{}, false
	}
	return ps[i], true
}

func findKey(t *testing.T, s Store, partnerID, companyID, keyID string) keys.Key {
	t.Helper()
	ks, err := s.ListKeys(t.Context(), partnerID, companyID)
	must(t, "ListKeys", err)
	i := slices.IndexFunc(ks, func(k keys.Key) bool { return k.ID == keyID })
	if i < 0 {
		t.Fatalf("ListKeys(%s, %q) lacks key %s", partnerID, companyID, keyID)
	}
	return ks[i]
}

func keyIDs(ks []keys.Key) []string {
	ids := make([]string, len(ks))
	for i, k := range ks {
		ids[i] = k.ID
	}
	slices.Sort(ids)
	return ids
}

func sorted(ids ...string) []string {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	return ids
}

// ---------------------------------------------------------------------------
// keys.Store

func testPartners(t *testing.T, s Store) {
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
func testCreatePartnerIsAtomic(t *testing.T, s Store) {
	ctx := t.Context()
	a := createPartner(t, s, "Acme", t0)

	p := keys.Partner{ID: keys.NewID("par_"), Name: "Copycat", Status: keys.StatusActive, CreatedAt: t0}
	k, _ := newKey(p.ID, "", t0)
	evs := []keys.AuditEvent{event(t0, "partner.created", "partner", p.ID)}
	err := s.CreatePartner(ctx, p, k, a.digest, evs) // a digest already taken
	wantErr(t, "CreatePartner with a duplicate key digest", err, keys.ErrConflict)
	if _, ok := findPartner(t, s, p.ID); ok {
		t.Errorf("failed CreatePartner left partner %s behind", p.ID)
	}
	if hasEvent(t, s, "partner.created", p.ID) {
		t.Errorf("failed CreatePartner left its audit event behind")
	}
	got, err := s.LookupKey(ctx, a.digest)
	must(t, "LookupKey of the first owner of the digest", err)
	if got != a.principal() {
		t.Errorf("LookupKey = %+v, want %+v", got, a.principal())
	}
}

func testCreateKey(t *testing.T, s Store) {
	ctx := t.Context()
	w := newWorld(t, s, "Acme")
	other := newWorld(t, s, "Bolt")

	pk, pd := createKey(t, s, w.p.ID, "", t0.Add(time.Minute))
	ck, cd := createKey(t, s, w.p.ID, w.c.ID, t0.Add(time.Minute))
	wantEvent(t, s, "key.created", pk.ID)
	wantEvent(t, s, "key.created", ck.ID)
	for _, tc := range []struct {
		digest keys.Digest
		want   keys.Principal
	}{{pd, principalOf(pk, w.p.Name)}, {cd, principalOf(ck, w.c.Name)}} {
		got, err := s.LookupKey(ctx, tc.digest)
		must(t, "LookupKey of a new key", err)
		if got != tc.want {
			t.Errorf("LookupKey = %+v, want %+v", got, tc.want)
		}
	}
	checkKey(t, findKey(t, s, w.p.ID, "", pk.ID), pk)
	checkKey(t, findKey(t, s, w.p.ID, w.c.ID, ck.ID), ck)

	// Refused owners: no key, no audit event, nothing that logs in.
	disabled := newWorld(t, s, "Dormant")
	must(t, "DisableCompany", s.DisableCompany(ctx, disabled.p.ID, disabled.c.ID, t0, event(t0, "company.disabled", "company", disabled.c.ID)))
	gone := newWorld(t, s, "Gone")
	must(t, "DisablePartner", s.DisablePartner(ctx, gone.p.ID, t0, event(t0, "partner.disabled", "partner", gone.p.ID)))

	for _, tc := range []struct {
		name                 string
		partnerID, companyID string
		want                 error
	}{
		{"unknown partner", "par_unknown", "", keys.ErrNotFound},
		{"unknown company", w.p.ID, "com_unknown", keys.ErrNotFound},
		{"another partner's company", w.p.ID, other.c.ID, keys.ErrNotFound},
		{"disabled company", disabled.p.ID, disabled.c.ID, keys.ErrDisabled},
		{"disabled partner", gone.p.ID, "", keys.ErrDisabled},
		{"company of a disabled partner", gone.p.ID, gone.c.ID, keys.ErrDisabled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, d := newKey(tc.partnerID, tc.companyID, t0)
			err := s.CreateKey(ctx, k, d, event(t0, "key.created", "key", k.ID))
			wantErr(t, "CreateKey", err, tc.want)
			if _, err := s.LookupKey(ctx, d); !errors.Is(err, keys.ErrInvalidKey) {
				t.Errorf("refused key: LookupKey err = %v, want ErrInvalidKey", err)
			}
			if hasEvent(t, s, "key.created", k.ID) {
				t.Errorf("refused key left its audit event behind")
			}
		})
	}
}

func testLookupKey(t *testing.T, s Store) {
	ctx := t.Context()
	w := newWorld(t, s, "Acme")
	pk2, pd2 := createKey(t, s, w.p.ID, "", t0)
	ck2, cd2 := createKey(t, s, w.p.ID, w.c.ID, t0)
	c2 := createCompany(t, s, w.p.ID, "Acme second customer", nil, t0)

	lookup := func(t *testing.T, d keys.Digest, want keys.Principal) {
		t.Helper()
		got, err := s.LookupKey(ctx, d)
		if err != nil {
			t.Errorf("LookupKey(%s): %v", want.KeyID, err)
			return
		}
		if got != want {
			t.Errorf("LookupKey = %+v, want %+v", got, want)
		}
	}
	invalid := func(t *testing.T, what string, d keys.Digest) {
		t.Helper()
		p, err := s.LookupKey(ctx, d)
		wantErr(t, "LookupKey("+what+")", err, keys.ErrInvalidKey)
		if p != (keys.Principal{}) {
			t.Errorf("LookupKey(%s) returned a principal with its error: %+v", what, p)
		}
	}

	lookup(t, w.p.digest, w.p.principal())
	lookup(t, w.c.digest, w.c.principal())
	invalid(t, "unknown digest", keys.DigestOf("pk_unknown"))

	at := t0.Add(time.Hour)
	must(t, "RevokeKey", s.RevokeKey(ctx, w.p.ID, "", w.p.key.ID, at, event(at, "key.revoked", "key", w.p.key.ID)))
	invalid(t, "revoked partner key", w.p.digest)
	lookup(t, pd2, principalOf(pk2, w.p.Name))

	must(t, "RevokeKey", s.RevokeKey(ctx, w.p.ID, w.c.ID, w.c.key.ID, at, event(at, "key.revoked", "key", w.c.key.ID)))
	invalid(t, "revoked company key", w.c.digest)
	lookup(t, cd2, principalOf(ck2, w.c.Name))

	must(t, "DisableCompany", s.DisableCompany(ctx, w.p.ID, w.c.ID, at, event(at, "company.disabled", "company", w.c.ID)))
	invalid(t, "key of a disabled company", cd2)
	lookup(t, pd2, principalOf(pk2, w.p.Name))
	lookup(t, c2.digest, c2.principal())

	must(t, "DisablePartner", s.DisablePartner(ctx, w.p.ID, at, event(at, "partner.disabled", "partner", w.p.ID)))
	invalid(t, "key of a disabled partner", pd2)
	invalid(t, "company key of a disabled partner", c2.digest)
}

// testStartFamily checks the login's one store call: the same key rules as
// LookupKey, and a family created only for an active key.
func testStartFamily(t *testing.T, s Store) {
	ctx := t.Context()
	w := newWorld(t, s, "Acme")
	start := func(t *testing.T, d keys.Digest, want keys.Principal) {
		t.Helper()
		f := familyOf(keys.Principal{}, t0)
		got, err := s.StartFamily(ctx, d, f)
		if err != nil {
			t.Fatalf("StartFamily(%s): %v", want.KeyID, err)
		}
		if got != want {
			t.Errorf("StartFamily = %+v, want %+v", got, want)
		}
		stored := readFamily(t, s, f.ID)
		if p := stored.Principal; p.KeyID != want.KeyID || p.ID != want.ID || p.Kind != want.Kind || p.PartnerID != want.PartnerID || p.CompanyID != want.CompanyID {
			t.Errorf("stored family principal = %+v, want %+v", p, want)
		}
		if stored.Generation != 1 || !stored.PrincipalActive {
			t.Errorf("stored family = %+v", stored)
		}
	}
	refused := func(t *testing.T, what string, d keys.Digest) {
		t.Helper()
		f := familyOf(keys.Principal{}, t0)
		p, err := s.StartFamily(ctx, d, f)
		wantErr(t, "StartFamily("+what+")", err, keys.ErrInvalidKey)
		if p != (keys.Principal{}) {
			t.Errorf("StartFamily(%s) returned a principal with its error: %+v", what, p)
		}
		if familyExists(t, s, f.ID) {
			t.Errorf("StartFamily(%s) created a family", what)
		}
	}
	start(t, w.p.digest, w.p.principal())
	start(t, w.c.digest, w.c.principal())
	refused(t, "unknown digest", keys.DigestOf("pk_unknown"))
	at := t0.Add(time.Hour)
	must(t, "DisableCompany", s.DisableCompany(ctx, w.p.ID, w.c.ID, at, event(at, "company.disabled", "company", w.c.ID)))
	refused(t, "key of a disabled company", w.c.digest)
	must(t, "RevokeKey", s.RevokeKey(ctx, w.p.ID, "", w.p.key.ID, at, event(at, "key.revoked", "key", w.p.key.ID)))
	refused(t, "revoked key", w.p.digest)
}

func testActivePrincipal(t *testing.T, s Store) {
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
		{"id not the key's owner", mismatch(pp, func(p *keys.Principal) { p.ID = other.p.ID })},
		{"company id not the key's", mismatch(cp, func(p *keys.Principal) { p.ID, p.CompanyID = other.c.ID, other.c.ID })},
		{"partner id not the key's", mismatch(cp, func(p *keys.Principal) { p.PartnerID = other.p.ID })},
		{"another partner's key", mismatch(pp, func(p *keys.Principal) { p.KeyID = other.p.key.ID })},
	} {
		inactive(t, tc.name, tc.p)
	}

	at := t0.Add(time.Hour)
	pk2, _ := createKey(t, s, w.p.ID, "", t0)
	must(t, "RevokeKey", s.RevokeKey(ctx, w.p.ID, "", w.p.key.ID, at, event(at, "key.revoked", "key", w.p.key.ID)))
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

func testCreateCompany(t *testing.T, s Store) {
	ctx := t.Context()
	a := createPartner(t, s, "Acme", t0)
	b := createPartner(t, s, "Bolt", t0)

	ext := "crm-42"
	c := createCompany(t, s, a.ID, "Widgets Ltd", &ext, t0.Add(time.Second))
	wantEvent(t, s, "company.created", c.ID)
	wantEvent(t, s, "key.created", c.key.ID)
	ext = "changed by the caller afterwards"
	got, err := s.GetCompany(ctx, a.ID, c.ID)
	must(t, "GetCompany", err)
	checkCompany(t, got, keys.Company{ID: c.ID, PartnerID: a.ID, Name: "Widgets Ltd", ExternalID: ptr("crm-42"), Status: keys.StatusActive, CreatedAt: t0.Add(time.Second)})
	p, err := s.LookupKey(ctx, c.digest)
	must(t, "LookupKey of the company's first key", err)
	if p != c.principal() {
		t.Errorf("LookupKey = %+v, want %+v", p, c.principal())
	}
	checkKey(t, findKey(t, s, a.ID, c.ID, c.key.ID), c.key)

	dup := companyInput(a.ID, "Widgets again", ptr("crm-42"), t0)
	wantErr(t, "CreateCompany with the partner's existing externalId", dup.create(ctx, s), keys.ErrConflict)
	if _, err := s.GetCompany(ctx, a.ID, dup.ID); !errors.Is(err, keys.ErrNotFound) {
		t.Errorf("refused company: GetCompany err = %v, want ErrNotFound", err)
	}
	if _, err := s.LookupKey(ctx, dup.digest); !errors.Is(err, keys.ErrInvalidKey) {
		t.Errorf("refused company's key: LookupKey err = %v, want ErrInvalidKey", err)
	}
	if hasEvent(t, s, "company.created", dup.ID) {
		t.Errorf("refused company left its audit event behind")
	}

	reuse := createCompany(t, s, b.ID, "Widgets at Bolt", ptr("crm-42"), t0)
	if got, err := s.GetCompany(ctx, b.ID, reuse.ID); err != nil || showString(got.ExternalID) != `"crm-42"` {
		t.Errorf("another partner's company with the same externalId: %+v, %v", got, err)
	}

	n1 := createCompany(t, s, a.ID, "No reference", nil, t0)
	n2 := createCompany(t, s, a.ID, "No reference either", nil, t0)
	for _, id := range []string{n1.ID, n2.ID} {
		got, err := s.GetCompany(ctx, a.ID, id)
		must(t, "GetCompany", err)
		if got.ExternalID != nil {
			t.Errorf("company without externalId reads back %s", showString(got.ExternalID))
		}
	}

	// A refused owner creates nothing.
	gone := createPartner(t, s, "Gone", t0)
	must(t, "DisablePartner", s.DisablePartner(ctx, gone.ID, t0, event(t0, "partner.disabled", "partner", gone.ID)))
	for _, tc := range []struct {
		name      string
		partnerID string
		want      error
	}{
		{"unknown partner", "par_unknown", keys.ErrNotFound},
		{"disabled partner", gone.ID, keys.ErrDisabled},
	} {
		c := companyInput(tc.partnerID, "Orphan", nil, t0)
		wantErr(t, "CreateCompany("+tc.name+")", c.create(ctx, s), tc.want)
		if _, err := s.LookupKey(ctx, c.digest); !errors.Is(err, keys.ErrInvalidKey) {
			t.Errorf("%s: refused company's key: LookupKey err = %v, want ErrInvalidKey", tc.name, err)
		}
	}
}

// Concurrent creates with one externalId: exactly one wins, however the
// store batches or serialises them.
func testCreateCompanyConcurrentExternalID(t *testing.T, s Store) {
	ctx := t.Context()
	a := createPartner(t, s, "Acme", t0)
	const n = 20
	start := make(chan struct{})
	errs := make([]error, n)
	inputs := make([]company, n)
	var wg sync.WaitGroup
	for i := range n {
		ext := "shared"
		if i%2 == 1 {
			ext = fmt.Sprintf("own-%d", i)
		}
		inputs[i] = companyInput(a.ID, fmt.Sprintf("Company %d", i), &ext, t0)
		wg.Go(func() {
			<-start
			errs[i] = inputs[i].create(ctx, s)
		})
	}
	close(start)
	wg.Wait()

	won := 0
	for i, err := range errs {
		switch {
		case i%2 == 1 && err != nil:
			t.Errorf("company %d with its own externalId: %v", i, err)
		case i%2 == 0 && err == nil:
			won++
		case i%2 == 0 && !errors.Is(err, keys.ErrConflict):
			t.Errorf("company %d with the shared externalId: err = %v, want nil or ErrConflict", i, err)
		}
		_, gerr := s.GetCompany(ctx, a.ID, inputs[i].ID)
		if (err == nil) != (gerr == nil) {
			t.Errorf("company %d: create err = %v but GetCompany err = %v", i, err, gerr)
		}
	}
	if won != 1 {
		t.Errorf("%d creates with the same externalId succeeded, want exactly 1", won)
	}
}

func testGetCompany(t *testing.T, s Store) {
	ctx := t.Context()
	a := newWorld(t, s, "Acme")
	b := newWorld(t, s, "Bolt")

	got, err := s.GetCompany(ctx, a.p.ID, a.c.ID)
	must(t, "GetCompany", err)
	checkCompany(t, got, a.c.Company)

	for _, tc := range []struct{ name, partnerID, id string }{
		{"another partner's company", a.p.ID, b.c.ID},
		{"own company under another partner", b.p.ID, a.c.ID},
		{"unknown company", a.p.ID, "com_unknown"},
		{"unknown partner", "par_unknown", a.c.ID},
	} {
		_, err := s.GetCompany(ctx, tc.partnerID, tc.id)
		wantErr(t, "GetCompany("+tc.name+")", err, keys.ErrNotFound)
	}
}

func testListCompanies(t *testing.T, s Store) {
	ctx := t.Context()
	a := createPartner(t, s, "Acme", t0)
	b := createPartner(t, s, "Bolt", t0)

	page, err := s.ListCompanies(ctx, a.ID, keys.Page{Limit: 3})
	must(t, "ListCompanies with no companies", err)
	if len(page.Companies) != 0 || page.More {
		t.Errorf("no companies: got %d, More %v", len(page.Companies), page.More)
	}

	var want []keys.Company
	for i := range 7 {
		// Equal creation times on purpose: the order is the order of creation.
		c := createCompany(t, s, a.ID, fmt.Sprintf("Acme %d", i), nil, t0)
		want = append(want, c.Company)
		createCompany(t, s, b.ID, fmt.Sprintf("Bolt %d", i), nil, t0)
	}

	var got []keys.Company
	after := int64(0)
	for i, wantLen := range []int{3, 3, 1} {
		page, err := s.ListCompanies(ctx, a.ID, keys.Page{After: after, Limit: 3})
		must(t, "ListCompanies", err)
		if len(page.Companies) != wantLen || page.More != (i < 2) {
			t.Fatalf("page %d: %d companies, More %v; want %d, %v", i, len(page.Companies), page.More, wantLen, i < 2)
		}
		if page.Last <= after {
			t.Fatalf("page %d: Last %d does not move past After %d", i, page.Last, after)
		}
		got = append(got, page.Companies...)
		after = page.Last
	}
	if len(got) != len(want) {
		t.Fatalf("walk returned %d companies, want %d", len(got), len(want))
	}
	for i := range want {
		checkCompany(t, got[i], want[i])
	}

	page, err = s.ListCompanies(ctx, a.ID, keys.Page{After: after, Limit: 3})
	must(t, "ListCompanies past the end", err)
	if len(page.Companies) != 0 || page.More {
		t.Errorf("past the end: %d companies, More %v", len(page.Companies), page.More)
	}

	page, err = s.ListCompanies(ctx, a.ID, keys.Page{Limit: 7})
	must(t, "ListCompanies with Limit = count", err)
	if len(page.Companies) != 7 || page.More {
		t.Errorf("Limit = count: %d companies, More %v; want 7, false", len(page.Companies), page.More)
	}
	page, err = s.ListCompanies(ctx, a.ID, keys.Page{Limit: 200})
	must(t, "ListCompanies with a large Limit", err)
	if len(page.Companies) != 7 || page.More {
		t.Errorf("Limit > count: %d companies, More %v; want 7, false", len(page.Companies), page.More)
	}

	page, err = s.ListCompanies(ctx, "par_unknown", keys.Page{Limit: 3})
	must(t, "ListCompanies of an unknown partner", err)
	if len(page.Companies) != 0 {
		t.Errorf("unknown partner lists %d companies", len(page.Companies))
	}
}

// Companies created while a client walks the pages appear at the end: none
// is skipped, none repeated.
func testListCompaniesWhileAdding(t *testing.T, s Store) {
	ctx := t.Context()
	a := createPartner(t, s, "Acme", t0)
	b := createPartner(t, s, "Bolt", t0)
	var want []string
	add := func(i int) {
		t.Helper()
		want = append(want, createCompany(t, s, a.ID, fmt.Sprintf("Acme %d", i), nil, t0.Add(time.Duration(i)*time.Second)).ID)
		createCompany(t, s, b.ID, fmt.Sprintf("Bolt %d", i), nil, t0)
	}
	for i := range 5 {
		add(i)
	}
	var got []string
	after, added := int64(0), 5
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatal("the walk does not end")
		}
		page, err := s.ListCompanies(ctx, a.ID, keys.Page{After: after, Limit: 2})
		must(t, "ListCompanies", err)
		for _, c := range page.Companies {
			got = append(got, c.ID)
		}
		if !page.More {
			break
		}
		after = page.Last
		if added < 10 {
			add(added)
			added++
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("walk while adding:\n got %v\nwant %v", got, want)
	}
}

func testDisableCompany(t *testing.T, s Store) {
	ctx := t.Context()
	a := newWorld(t, s, "Acme")
	b := newWorld(t, s, "Bolt")
	at := t0.Add(time.Hour)

	must(t, "DisableCompany", s.DisableCompany(ctx, a.p.ID, a.c.ID, at, event(at, "company.disabled", "company", a.c.ID)))
	wantEvent(t, s, "company.disabled", a.c.ID)
	got, err := s.GetCompany(ctx, a.p.ID, a.c.ID)
	must(t, "GetCompany", err)
	if got.Status != keys.StatusDisabled {
		t.Errorf("disabled company has status %q", got.Status)
	}
	must(t, "DisableCompany again", s.DisableCompany(ctx, a.p.ID, a.c.ID, at, event(at, "company.disabled", "company", a.c.ID)))

	err = s.DisableCompany(ctx, a.p.ID, b.c.ID, at, event(at, "company.disabled", "company", b.c.ID))
	wantErr(t, "DisableCompany(another partner's company)", err, keys.ErrNotFound)
	if got, err := s.GetCompany(ctx, b.p.ID, b.c.ID); err != nil || got.Status != keys.StatusActive {
		t.Errorf("another partner's company after a refused disable: status %q, err %v", got.Status, err)
	}
	err = s.DisableCompany(ctx, a.p.ID, "com_unknown", at, event(at, "company.disabled", "company", "com_unknown"))
	wantErr(t, "DisableCompany(unknown)", err, keys.ErrNotFound)

	// The partner itself is untouched.
	if _, err := s.LookupKey(ctx, a.p.digest); err != nil {
		t.Errorf("partner key after disabling its company: %v", err)
	}
}

func testListKeys(t *testing.T, s Store) {
	ctx := t.Context()
	a := newWorld(t, s, "Acme")
	b := newWorld(t, s, "Bolt")
	pk2, _ := createKey(t, s, a.p.ID, "", t0.Add(time.Minute))
	ck2, _ := createKey(t, s, a.p.ID, a.c.ID, t0.Add(time.Minute))
	c2 := createCompany(t, s, a.p.ID, "Acme other customer", nil, t0)

	for _, tc := range []struct {
		name                 string
		partnerID, companyID string
		want                 []keys.Key
	}{
		{"partner's own keys", a.p.ID, "", []keys.Key{a.p.key, pk2}},
		{"company's keys", a.p.ID, a.c.ID, []keys.Key{a.c.key, ck2}},
		{"other company's keys", a.p.ID, c2.ID, []keys.Key{c2.key}},
		{"another partner's company", a.p.ID, b.c.ID, nil},
		{"unknown company", a.p.ID, "com_unknown", nil},
		{"unknown partner", "par_unknown", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.ListKeys(ctx, tc.partnerID, tc.companyID)
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

func testRevokeKey(t *testing.T, s Store) {
	ctx := t.Context()
	a := newWorld(t, s, "Acme")
	b := newWorld(t, s, "Bolt")
	pk2, _ := createKey(t, s, a.p.ID, "", t0)

	fam := createFamily(t, s, a.p.principal(), t0)
	fam2 := createFamily(t, s, a.p.principal(), t0)
	other := createFamily(t, s, principalOf(pk2, a.p.Name), t0)
	early := t0.Add(time.Minute)
	revokeFamily(t, s, fam2.ID, early) // revoked before the key: keeps its own revocation

	at := t0.Add(time.Hour)
	must(t, "RevokeKey", s.RevokeKey(ctx, a.p.ID, "", a.p.key.ID, at, event(at, "key.revoked", "key", a.p.key.ID)))
	wantEvent(t, s, "key.revoked", a.p.key.ID)
	want := a.p.key
	want.RevokedAt = &at
	checkKey(t, findKey(t, s, a.p.ID, "", a.p.key.ID), want)

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
	must(t, "RevokeKey again", s.RevokeKey(ctx, a.p.ID, "", a.p.key.ID, later, event(later, "key.revoked", "key", a.p.key.ID)))
	checkKey(t, findKey(t, s, a.p.ID, "", a.p.key.ID), want) // the first revocation time stays

	for _, tc := range []struct{ name, partnerID, companyID, keyID string }{
		{"another partner's key", a.p.ID, "", b.p.key.ID},
		{"another partner's company key", a.p.ID, b.c.ID, b.c.key.ID},
		{"company key named as the partner's own", a.p.ID, "", a.c.key.ID},
		{"partner key named as a company's", a.p.ID, a.c.ID, pk2.ID},
		{"unknown key", a.p.ID, "", "key_unknown"},
	} {
		err := s.RevokeKey(ctx, tc.partnerID, tc.companyID, tc.keyID, at, event(at, "key.revoked", "key", tc.keyID))
		wantErr(t, "RevokeKey("+tc.name+")", err, keys.ErrNotFound)
	}
	for _, d := range []keys.Digest{b.p.digest, b.c.digest, a.c.digest} {
		if _, err := s.LookupKey(ctx, d); err != nil {
			t.Errorf("key survived a refused revoke? LookupKey: %v", err)
		}
	}

	// A company key.
	must(t, "RevokeKey(company key)", s.RevokeKey(ctx, a.p.ID, a.c.ID, a.c.key.ID, at, event(at, "key.revoked", "key", a.c.key.ID)))
	if _, err := s.LookupKey(ctx, a.c.digest); !errors.Is(err, keys.ErrInvalidKey) {
		t.Errorf("revoked company key: LookupKey err = %v, want ErrInvalidKey", err)
	}
}

func testRecordUsage(t *testing.T, s Store) {
	ctx := t.Context()
	a := createPartner(t, s, "Acme", t0)
	k2, _ := createKey(t, s, a.ID, "", t0)

	used := func(want *time.Time) {
		t.Helper()
		sameTimePtr(t, "LastUsedAt", findKey(t, s, a.ID, "", a.key.ID).LastUsedAt, want)
	}
	must(t, "RecordUsage with nothing", s.RecordUsage(ctx, nil, nil))
	used(nil)

	t1, t2 := t0.Add(10*time.Second), t0.Add(20*time.Second)
	must(t, "RecordUsage", s.RecordUsage(ctx, map[string]time.Time{a.key.ID: t1}, nil))
	used(&t1)
	if got := findKey(t, s, a.ID, "", k2.ID).LastUsedAt; got != nil {
		t.Errorf("unused key has LastUsedAt %s", got)
	}
	must(t, "RecordUsage with an older time", s.RecordUsage(ctx, map[string]time.Time{a.key.ID: t0.Add(5 * time.Second)}, nil))
	used(&t1)
	must(t, "RecordUsage with an unknown key", s.RecordUsage(ctx, map[string]time.Time{a.key.ID: t2, "key_unknown": t2}, nil))
	used(&t2)

	evs := []keys.AuditEvent{
		{At: t2, ActorType: "partner", ActorID: a.ID, Action: "login", TargetType: "key", Target: a.key.ID, Addr: "192.0.2.1", Outcome: keys.OutcomeSuccess, Detail: "hint=" + a.key.Hint},
		{At: t2, ActorType: "anonymous", Action: "login", TargetType: "key", Target: "pk_abcd", Addr: "192.0.2.2", Outcome: keys.OutcomeFailure},
	}
	must(t, "RecordUsage with events", s.RecordUsage(ctx, nil, evs))
	got, err := s.ListAudit(ctx, t2)
	must(t, "ListAudit", err)
	if len(got) != 2 {
		t.Fatalf("ListAudit = %d events, want 2: %+v", len(got), got)
	}
	for i := range evs {
		checkEvent(t, got[i], evs[i])
	}
}

func testListAudit(t *testing.T, s Store) {
	ctx := t.Context()
	ev := func(at time.Time, action string) keys.AuditEvent {
		return keys.AuditEvent{At: at, ActorType: "company", ActorID: "com_1", Action: action, TargetType: "key", Target: "key_1", Addr: "198.51.100.7", Outcome: keys.OutcomeSuccess, Detail: "d=" + action}
	}
	e0, e1a, e1b, e2 := ev(t0, "first"), ev(t0.Add(time.Second), "second"), ev(t0.Add(time.Second), "third"), ev(t0.Add(2*time.Second), "fourth")
	// Written out of order; read oldest first, ties in the order written.
	must(t, "RecordUsage", s.RecordUsage(ctx, nil, []keys.AuditEvent{e2, e1a}))
	must(t, "RecordUsage", s.RecordUsage(ctx, nil, []keys.AuditEvent{e0, e1b}))

	for _, tc := range []struct {
		name  string
		since time.Time
		want  []keys.AuditEvent
	}{
		{"everything", time.Time{}, []keys.AuditEvent{e0, e1a, e1b, e2}},
		{"since is inclusive", t0.Add(time.Second), []keys.AuditEvent{e1a, e1b, e2}},
		{"since between events", t0.Add(1500 * time.Millisecond), []keys.AuditEvent{e2}},
		{"since after the last", t0.Add(time.Hour), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.ListAudit(ctx, tc.since)
			must(t, "ListAudit", err)
			if len(got) != len(tc.want) {
				t.Fatalf("ListAudit = %d events, want %d: %+v", len(got), len(tc.want), got)
			}
			for i := range tc.want {
				checkEvent(t, got[i], tc.want[i])
			}
		})
	}
}

// ---------------------------------------------------------------------------
// tokens.Store

func testSigningKeys(t *testing.T, s Store) {
	ctx := t.Context()
	recs, err := s.ListSigningKeys(ctx)
	must(t, "ListSigningKeys on an empty store", err)
	if len(recs) != 0 {
		t.Fatalf("empty store lists %d signing keys", len(recs))
	}
	want := []tokens.SigningKeyRecord{
		{KID: "kid_one", Algorithm: tokens.ES256, Sealed: []byte{1, 2, 3, 0, 255}, CreatedAt: t0, ActivatesAt: t0},
		{KID: "kid_two", Algorithm: tokens.EdDSA, Sealed: []byte("sealed two"), CreatedAt: t0.Add(time.Minute), ActivatesAt: t0.Add(time.Hour)},
	}
	for _, r := range want {
		in := r
		in.Sealed = slices.Clone(r.Sealed)
		must(t, "AddSigningKey", s.AddSigningKey(ctx, in))
		in.Sealed[0] ^= 0xff // the store keeps its own copy
	}
	recs, err = s.ListSigningKeys(ctx)
	must(t, "ListSigningKeys", err)
	if len(recs) != len(want) {
		t.Fatalf("ListSigningKeys = %d keys, want %d", len(recs), len(want))
	}
	for _, w := range want {
		i := slices.IndexFunc(recs, func(r tokens.SigningKeyRecord) bool { return r.KID == w.KID })
		if i < 0 {
			t.Errorf("ListSigningKeys lacks %s", w.KID)
			continue
		}
		got := recs[i]
		if got.Algorithm != w.Algorithm || !slices.Equal(got.Sealed, w.Sealed) {
			t.Errorf("signing key %s = {%s %x}, want {%s %x}", w.KID, got.Algorithm, got.Sealed, w.Algorithm, w.Sealed)
		}
		sameTime(t, "signing key CreatedAt", got.CreatedAt, w.CreatedAt)
		sameTime(t, "signing key ActivatesAt", got.ActivatesAt, w.ActivatesAt)
	}
}

func testFamily(t *testing.T, s Store) {
	ctx := t.Context()
	w := newWorld(t, s, "Acme")

	pf := createFamily(t, s, w.p.principal(), t0)
	cf := createFamily(t, s, w.c.principal(), t0.Add(time.Second))
	checkFamily(t, readFamily(t, s, pf.ID), pf)
	checkFamily(t, readFamily(t, s, cf.ID), cf)

	dup := familyOf(w.c.principal(), t0)
	dup.ID = pf.ID
	wantErr(t, "CreateFamily with an existing id", s.CreateFamily(ctx, dup), keys.ErrConflict)
	checkFamily(t, readFamily(t, s, pf.ID), pf)

	// A rotation persists every field it changes.
	rotated := pf
	rotated.Generation = 2
	rotated.RotatedAt = t0.Add(time.Minute)
	rotated.ParentExpiresAt = pf.ExpiresAt
	rotated.ExpiresAt = t0.Add(2 * time.Hour)
	err := s.UpdateFamily(ctx, pf.ID, func(f *tokens.Family) (tokens.Change, error) {
		f.Generation, f.RotatedAt, f.ParentExpiresAt, f.ExpiresAt = rotated.Generation, rotated.RotatedAt, rotated.ParentExpiresAt, rotated.ExpiresAt
		return tokens.Change{Write: true}, nil
	})
	must(t, "UpdateFamily rotating", err)
	checkFamily(t, readFamily(t, s, pf.ID), rotated)

	// So does a revocation.
	revoked := rotated
	revoked.RevokedAt, revoked.RevokeReason = ptr(t0.Add(3*time.Minute)), "reuse"
	err = s.UpdateFamily(ctx, pf.ID, func(f *tokens.Family) (tokens.Change, error) {
		f.RevokedAt, f.RevokeReason = ptr(*revoked.RevokedAt), revoked.RevokeReason
		return tokens.Change{Write: true}, nil
	})
	must(t, "UpdateFamily revoking", err)
	checkFamily(t, readFamily(t, s, pf.ID), revoked)
	checkFamily(t, readFamily(t, s, cf.ID), cf) // the other family is untouched

	// Write=false writes nothing, whatever decide did to its copy.
	err = s.UpdateFamily(ctx, cf.ID, func(f *tokens.Family) (tokens.Change, error) {
		f.Generation, f.RotatedAt, f.ExpiresAt = 9, t0.Add(time.Hour), t0.Add(time.Hour)
		f.RevokedAt, f.RevokeReason = ptr(t0), "never written"
		return tokens.Change{}, nil
	})
	must(t, "UpdateFamily without Write", err)
	checkFamily(t, readFamily(t, s, cf.ID), cf)

	called := false
	err = s.UpdateFamily(ctx, "fam_unknown", func(*tokens.Family) (tokens.Change, error) {
		called = true
		return tokens.Change{Write: true}, nil
	})
	wantErr(t, "UpdateFamily(unknown)", err, keys.ErrNotFound)
	if called {
		t.Errorf("UpdateFamily called decide for an unknown family")
	}
}

func testFamilyPrincipalActive(t *testing.T, s Store) {
	ctx := t.Context()
	for _, tc := range []struct {
		name                  string
		kill                  func(t *testing.T, w world, at time.Time)
		partnerDies, compDies bool
	}{
		{"partner key revoked", func(t *testing.T, w world, at time.Time) {
			must(t, "RevokeKey", s.RevokeKey(ctx, w.p.ID, "", w.p.key.ID, at, event(at, "key.revoked", "key", w.p.key.ID)))
		}, true, false},
		{"company key revoked", func(t *testing.T, w world, at time.Time) {
			must(t, "RevokeKey", s.RevokeKey(ctx, w.p.ID, w.c.ID, w.c.key.ID, at, event(at, "key.revoked", "key", w.c.key.ID)))
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
			pf := createFamily(t, s, w.p.principal(), t0)
			cf := createFamily(t, s, w.c.principal(), t0)
			bf := createFamily(t, s, bystander.c.principal(), t0)
			for _, id := range []string{pf.ID, cf.ID, bf.ID} {
				if !readFamily(t, s, id).PrincipalActive {
					t.Fatalf("family %s inactive before anything happened", id)
				}
			}
			tc.kill(t, w, t0.Add(time.Hour))
			for _, c := range []struct {
				what string
				id   string
				dies bool
			}{{"partner's family", pf.ID, tc.partnerDies}, {"company's family", cf.ID, tc.compDies}, {"bystander's family", bf.ID, false}} {
				if got := readFamily(t, s, c.id).PrincipalActive; got == c.dies {
					t.Errorf("%s: PrincipalActive = %v, want %v", c.what, got, !c.dies)
				}
			}
		})
	}
}

func testUpdateFamilyDecisions(t *testing.T, s Store) {
	ctx := t.Context()
	w := newWorld(t, s, "Acme")
	f := createFamily(t, s, w.c.principal(), t0)
	errDecided := errors.New("decided against it")
	audit := func(action string) keys.AuditEvent {
		return keys.AuditEvent{At: t0.Add(time.Minute), ActorType: "company", ActorID: w.c.ID, Action: action,
			TargetType: "token_family", Target: f.ID, Addr: "203.0.113.9", Outcome: tokens.OutcomeRevoked, Detail: "key=" + w.c.key.ID}
	}

	// decide's error is returned, and its audit events are written anyway.
	err := s.UpdateFamily(ctx, f.ID, func(*tokens.Family) (tokens.Change, error) {
		return tokens.Change{Audit: []keys.AuditEvent{audit("refresh.refused")}}, errDecided
	})
	wantErr(t, "UpdateFamily with decide failing", err, errDecided)
	checkFamily(t, readFamily(t, s, f.ID), f)

	// A write that comes with an error is still made (reuse detection
	// revokes the family and refuses the request).
	revoked := f
	revoked.RevokedAt, revoked.RevokeReason = ptr(t0.Add(time.Minute)), "reuse"
	err = s.UpdateFamily(ctx, f.ID, func(g *tokens.Family) (tokens.Change, error) {
		g.RevokedAt, g.RevokeReason = ptr(*revoked.RevokedAt), revoked.RevokeReason
		return tokens.Change{Write: true, Audit: []keys.AuditEvent{audit("refresh.reuse_detected")}}, errDecided
	})
	wantErr(t, "UpdateFamily writing with decide failing", err, errDecided)
	checkFamily(t, readFamily(t, s, f.ID), revoked)

	evs, err := s.ListAudit(ctx, t0.Add(time.Minute))
	must(t, "ListAudit", err)
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
func testUpdateFamilyConcurrent(t *testing.T, s Store) {
	ctx := t.Context()
	w := newWorld(t, s, "Acme")
	f := createFamily(t, s, w.p.principal(), t0)
	errStale := errors.New("generation already rotated")

	const n = 50
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = s.UpdateFamily(ctx, f.ID, func(g *tokens.Family) (tokens.Change, error) {
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

func testDeleteFamilies(t *testing.T, s Store) {
	ctx := t.Context()
	w := newWorld(t, s, "Acme")
	cut := t0.Add(24 * time.Hour).Truncate(time.Millisecond)

	family := func(expires time.Time, revoked *time.Time) string {
		t.Helper()
		f := familyOf(w.p.principal(), t0)
		f.ExpiresAt = expires
		must(t, "CreateFamily", s.CreateFamily(ctx, f))
		if revoked != nil {
			revokeFamily(t, s, f.ID, *revoked)
		}
		return f.ID
	}
	gone := []string{
		family(cut.Add(-time.Millisecond), nil),                 // expired
		family(cut.Add(time.Hour), ptr(cut.Add(-time.Hour))),    // revoked
		family(cut.Add(-time.Hour), ptr(cut.Add(-2*time.Hour))), // both, counted once
	}
	kept := []string{
		family(cut.Add(time.Hour), nil),                            // live
		family(cut, nil),                                           // expires at the cutoff, not before
		family(cut.Add(time.Hour), ptr(cut)),                       // revoked at the cutoff
		family(cut.Add(time.Hour), ptr(cut.Add(time.Millisecond))), // revoked after
	}

	n, err := s.DeleteFamilies(ctx, cut, 100)
	must(t, "DeleteFamilies", err)
	if n != len(gone) {
		t.Errorf("DeleteFamilies = %d, want %d", n, len(gone))
	}
	for _, id := range gone {
		if familyExists(t, s, id) {
			t.Errorf("family %s survived DeleteFamilies", id)
		}
	}
	for _, id := range kept {
		if !familyExists(t, s, id) {
			t.Errorf("family %s deleted, want kept", id)
		}
	}
	n, err = s.DeleteFamilies(ctx, cut, 100)
	must(t, "DeleteFamilies again", err)
	if n != 0 {
		t.Errorf("DeleteFamilies again = %d, want 0", n)
	}
}

func testDeleteFamiliesLimit(t *testing.T, s Store) {
	ctx := t.Context()
	w := newWorld(t, s, "Acme")
	cut := t0.Add(24 * time.Hour)
	live := createFamily(t, s, w.p.principal(), cut)
	for range 5 {
		createFamily(t, s, w.c.principal(), t0) // expired an hour after t0
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
