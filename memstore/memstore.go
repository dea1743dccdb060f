// Package memstore is an in-memory Store, the floor of the benchmarks and a
// second implementation that keeps the contract suite honest; not for
// production: nothing survives a restart.
//
// It keeps what the SQLite store keeps, at the same millisecond precision in
// UTC, behind one sync.RWMutex. The hot paths (LookupKey, ActivePrincipal,
// CreateFamily, UpdateFamily) are map lookups.
package memstore

import (
	"context"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"keygate/keys"
	"keygate/tokens"
)

var (
	_ keys.Store   = (*Store)(nil)
	_ tokens.Store = (*Store)(nil)
)

// Store implements keys.Store and tokens.Store in memory. It is safe for
// concurrent use.
type Store struct {
	mu sync.RWMutex

	partners  map[string]*keys.Partner
	companies map[string]*company            // by company id
	listing   map[string][]*company          // by partner id, in creation order
	external  map[externalKey]struct{}       // external ids taken, per partner
	keys      map[string]*keys.Key           // by key id
	digests   map[keys.Digest]*keys.Key      // the lookup path of logins
	owned     map[owner][]*keys.Key          // the keys of one partner or company
	families  map[string]*tokens.Family      // by family id
	byKey     map[string]map[string]struct{} // key id -> its families' ids
	signing   []tokens.SigningKeyRecord
	audit     []keys.AuditEvent
	seq       int64 // listing position of the last company created
}

type company struct {
	keys.Company
	seq int64
}

type externalKey struct{ partnerID, externalID string }

// owner is a partner (companyID empty) or one of its companies.
type owner struct{ partnerID, companyID string }

// New returns an empty Store.
func New() *Store {
	return &Store{
		partners:  make(map[string]*keys.Partner),
		companies: make(map[string]*company),
		listing:   make(map[string][]*company),
		external:  make(map[externalKey]struct{}),
		keys:      make(map[string]*keys.Key),
		digests:   make(map[keys.Digest]*keys.Key),
		owned:     make(map[owner][]*keys.Key),
		families:  make(map[string]*tokens.Family),
		byKey:     make(map[string]map[string]struct{}),
	}
}

// Ready always answers: memory does not fail the way disks do.
func (s *Store) Ready(context.Context) error { return nil }

// ms is what the SQLite store gives back for t: milliseconds, in UTC.
func ms(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return time.UnixMilli(t.UnixMilli()).UTC()
}

func msPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := ms(*t)
	return &v
}

func cloneString(s *string) *string {
	if s == nil {
		return nil
	}
	v := *s
	return &v
}

func cloneKey(k *keys.Key) keys.Key {
	c := *k
	c.LastUsedAt, c.RevokedAt = msPtr(k.LastUsedAt), msPtr(k.RevokedAt)
	return c
}

func cloneFamily(f *tokens.Family) tokens.Family {
	c := *f
	c.RevokedAt = msPtr(f.RevokedAt)
	return c
}

// ---------------------------------------------------------------------------
// keys.Store

// LookupKey implements keys.Store.
func (s *Store) LookupKey(_ context.Context, digest keys.Digest) (keys.Principal, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	k, ok := s.digests[digest]
	if !ok || !s.keyActive(k) {
		return keys.Principal{}, keys.ErrInvalidKey
	}
	return s.principal(k), nil
}

// ActivePrincipal implements keys.Store.
func (s *Store) ActivePrincipal(_ context.Context, want keys.Principal) (keys.Principal, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	k, ok := s.keys[want.KeyID]
	if !ok || k.PartnerID != want.PartnerID || k.CompanyID != want.CompanyID || !s.keyActive(k) {
		return keys.Principal{}, keys.ErrInactive
	}
	p := s.principal(k)
	if p.Kind != want.Kind || p.ID != want.ID {
		return keys.Principal{}, keys.ErrInactive
	}
	return p, nil
}

// keyActive reports whether a key may log in: not revoked, its partner and
// company (if any) active. The caller holds mu.
func (s *Store) keyActive(k *keys.Key) bool {
	return k.RevokedAt == nil && s.ownerActive(k.PartnerID, k.CompanyID)
}

// ownerActive reports whether a partner, or a company of it, exists and may
// act. The caller holds mu.
func (s *Store) ownerActive(partnerID, companyID string) bool {
	p, ok := s.partners[partnerID]
	if !ok || p.Status != keys.StatusActive {
		return false
	}
	if companyID == "" {
		return true
	}
	c, ok := s.companies[companyID]
	return ok && c.PartnerID == partnerID && c.Status == keys.StatusActive
}

// checkOwner is ownerActive with the reason: keys.ErrNotFound or
// keys.ErrDisabled. The caller holds mu.
func (s *Store) checkOwner(partnerID, companyID string) error {
	p, ok := s.partners[partnerID]
	if !ok {
		return keys.ErrNotFound
	}
	if companyID != "" {
		c, ok := s.companies[companyID]
		if !ok || c.PartnerID != partnerID {
			return keys.ErrNotFound
		}
		if c.Status != keys.StatusActive {
			return keys.ErrDisabled
		}
	}
	if p.Status != keys.StatusActive {
		return keys.ErrDisabled
	}
	return nil
}

// principal is who a key speaks for. The caller holds mu.
func (s *Store) principal(k *keys.Key) keys.Principal {
	p := keys.Principal{Kind: keys.KindPartner, ID: k.PartnerID, PartnerID: k.PartnerID, KeyID: k.ID}
	if k.CompanyID == "" {
		p.Name = s.partners[k.PartnerID].Name
	} else {
		p.Kind, p.ID, p.CompanyID, p.Name = keys.KindCompany, k.CompanyID, k.CompanyID, s.companies[k.CompanyID].Name
	}
	return p
}

// CreatePartner implements keys.Store.
func (s *Store) CreatePartner(_ context.Context, p keys.Partner, k keys.Key, digest keys.Digest, evs []keys.AuditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.partners[p.ID]; ok {
		return keys.ErrConflict
	}
	if err := s.checkNewKey(k, digest); err != nil {
		return err
	}
	p.CreatedAt = ms(p.CreatedAt)
	s.partners[p.ID] = &p
	s.insertKey(k, digest)
	s.appendAudit(evs...)
	return nil
}

// ListPartners implements keys.Store.
func (s *Store) ListPartners(context.Context) ([]keys.Partner, error) {
	s.mu.RLock()
	out := make([]keys.Partner, 0, len(s.partners))
	for _, p := range s.partners {
		out = append(out, *p)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b keys.Partner) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// DisablePartner implements keys.Store. Disabling twice is not an error.
func (s *Store) DisablePartner(_ context.Context, id string, at time.Time, ev keys.AuditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.partners[id]
	if !ok {
		return keys.ErrNotFound
	}
	if p.Status != keys.StatusActive {
		return nil
	}
	p.Status = keys.StatusDisabled
	for o, ks := range s.owned {
		if o.partnerID == id {
			s.revokeFamilies(ks, at, "partner_disabled")
		}
	}
	s.appendAudit(ev)
	return nil
}

// CreateCompany implements keys.Store.
func (s *Store) CreateCompany(_ context.Context, c keys.Company, k keys.Key, digest keys.Digest, evs []keys.AuditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOwner(c.PartnerID, ""); err != nil {
		return err
	}
	if _, ok := s.companies[c.ID]; ok {
		return keys.ErrConflict
	}
	if c.ExternalID != nil {
		if _, ok := s.external[externalKey{c.PartnerID, *c.ExternalID}]; ok {
			return keys.ErrConflict
		}
	}
	if err := s.checkNewKey(k, digest); err != nil {
		return err
	}
	s.seq++
	c.ExternalID, c.CreatedAt = cloneString(c.ExternalID), ms(c.CreatedAt)
	stored := &company{Company: c, seq: s.seq}
	s.companies[c.ID] = stored
	s.listing[c.PartnerID] = append(s.listing[c.PartnerID], stored)
	if c.ExternalID != nil {
		s.external[externalKey{c.PartnerID, *c.ExternalID}] = struct{}{}
	}
	s.insertKey(k, digest)
	s.appendAudit(evs...)
	return nil
}

// GetCompany implements keys.Store.
func (s *Store) GetCompany(_ context.Context, partnerID, id string) (keys.Company, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.companies[id]
	if !ok || c.PartnerID != partnerID {
		return keys.Company{}, keys.ErrNotFound
	}
	out := c.Company
	out.ExternalID = cloneString(c.ExternalID)
	return out, nil
}

// ListCompanies implements keys.Store: keyset pagination on the creation
// sequence, like the SQLite store.
func (s *Store) ListCompanies(_ context.Context, partnerID string, page keys.Page) (keys.CompanyPage, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	all := s.listing[partnerID]
	i := sort.Search(len(all), func(i int) bool { return all[i].seq > page.After })
	n := min(max(page.Limit, 0), len(all)-i)
	out := keys.CompanyPage{Companies: make([]keys.Company, 0, n), More: i+n < len(all)}
	for _, c := range all[i : i+n] {
		cc := c.Company
		cc.ExternalID = cloneString(c.ExternalID)
		out.Companies = append(out.Companies, cc)
		out.Last = c.seq
	}
	return out, nil
}

// DisableCompany implements keys.Store.
func (s *Store) DisableCompany(_ context.Context, partnerID, id string, at time.Time, ev keys.AuditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.companies[id]
	if !ok || c.PartnerID != partnerID {
		return keys.ErrNotFound
	}
	if c.Status != keys.StatusActive {
		return nil
	}
	c.Status = keys.StatusDisabled
	s.revokeFamilies(s.owned[owner{partnerID, id}], at, "company_disabled")
	s.appendAudit(ev)
	return nil
}

// CreateKey implements keys.Store.
func (s *Store) CreateKey(_ context.Context, k keys.Key, digest keys.Digest, ev keys.AuditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOwner(k.PartnerID, k.CompanyID); err != nil {
		return err
	}
	if err := s.checkNewKey(k, digest); err != nil {
		return err
	}
	s.insertKey(k, digest)
	s.appendAudit(ev)
	return nil
}

// ListKeys implements keys.Store.
func (s *Store) ListKeys(_ context.Context, partnerID, companyID string) ([]keys.Key, error) {
	s.mu.RLock()
	ks := s.owned[owner{partnerID, companyID}]
	out := make([]keys.Key, len(ks))
	for i, k := range ks {
		out[i] = cloneKey(k)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b keys.Key) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// RevokeKey implements keys.Store. The key's refresh-token families are
// revoked with it.
func (s *Store) RevokeKey(_ context.Context, partnerID, companyID, keyID string, at time.Time, ev keys.AuditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[keyID]
	if !ok || k.PartnerID != partnerID || k.CompanyID != companyID {
		return keys.ErrNotFound
	}
	if k.RevokedAt != nil {
		return nil
	}
	k.RevokedAt = msPtr(&at)
	s.revokeFamilies([]*keys.Key{k}, at, "key_revoked")
	s.appendAudit(ev)
	return nil
}

// RecordUsage implements keys.Store. Unknown keys are skipped; last-use
// times only move forward.
func (s *Store) RecordUsage(_ context.Context, lastUsed map[string]time.Time, evs []keys.AuditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, at := range lastUsed {
		k, ok := s.keys[id]
		if !ok {
			continue
		}
		if at = ms(at); k.LastUsedAt == nil || at.After(*k.LastUsedAt) {
			k.LastUsedAt = &at
		}
	}
	s.appendAudit(evs...)
	return nil
}

// ListAudit implements keys.Store: events at or after since, oldest first,
// ties in the order written.
func (s *Store) ListAudit(_ context.Context, since time.Time) ([]keys.AuditEvent, error) {
	since = time.UnixMilli(since.UnixMilli()) // what the SQLite store compares
	s.mu.RLock()
	out := []keys.AuditEvent{}
	for _, e := range s.audit {
		if !e.At.Before(since) {
			out = append(out, e)
		}
	}
	s.mu.RUnlock()
	slices.SortStableFunc(out, func(a, b keys.AuditEvent) int { return a.At.Compare(b.At) })
	return out, nil
}

// checkNewKey refuses a key whose id or digest is taken. The caller holds mu.
func (s *Store) checkNewKey(k keys.Key, digest keys.Digest) error {
	if _, ok := s.keys[k.ID]; ok {
		return keys.ErrConflict
	}
	if _, ok := s.digests[digest]; ok {
		return keys.ErrConflict
	}
	return nil
}

// insertKey stores a new key; checkNewKey has passed. The caller holds mu.
func (s *Store) insertKey(k keys.Key, digest keys.Digest) {
	k.CreatedAt, k.LastUsedAt, k.RevokedAt = ms(k.CreatedAt), nil, nil
	stored := &k
	s.keys[k.ID] = stored
	s.digests[digest] = stored
	o := owner{k.PartnerID, k.CompanyID}
	s.owned[o] = append(s.owned[o], stored)
}

// appendAudit records events. The caller holds mu.
func (s *Store) appendAudit(evs ...keys.AuditEvent) {
	for _, e := range evs {
		e.At = ms(e.At)
		s.audit = append(s.audit, e)
	}
}

// revokeFamilies ends every live family of the given keys. The caller holds mu.
func (s *Store) revokeFamilies(ks []*keys.Key, at time.Time, reason string) {
	for _, k := range ks {
		for id := range s.byKey[k.ID] {
			if f := s.families[id]; f.RevokedAt == nil {
				f.RevokedAt, f.RevokeReason = msPtr(&at), reason
			}
		}
	}
}

// ---------------------------------------------------------------------------
// tokens.Store

// AddSigningKey implements tokens.KeyStore.
func (s *Store) AddSigningKey(_ context.Context, k tokens.SigningKeyRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.ContainsFunc(s.signing, func(r tokens.SigningKeyRecord) bool { return r.KID == k.KID }) {
		return keys.ErrConflict
	}
	k.Sealed = slices.Clone(k.Sealed)
	k.CreatedAt, k.ActivatesAt = ms(k.CreatedAt), ms(k.ActivatesAt)
	s.signing = append(s.signing, k)
	return nil
}

// ListSigningKeys implements tokens.KeyStore.
func (s *Store) ListSigningKeys(context.Context) ([]tokens.SigningKeyRecord, error) {
	s.mu.RLock()
	out := make([]tokens.SigningKeyRecord, len(s.signing))
	for i, r := range s.signing {
		r.Sealed = slices.Clone(r.Sealed)
		out[i] = r
	}
	s.mu.RUnlock()
	slices.SortStableFunc(out, func(a, b tokens.SigningKeyRecord) int {
		if c := a.ActivatesAt.Compare(b.ActivatesAt); c != 0 {
			return c
		}
		return a.CreatedAt.Compare(b.CreatedAt)
	})
	return out, nil
}

// CreateFamily implements tokens.FamilyStore. Its key must exist
// (keys.ErrNotFound otherwise).
func (s *Store) CreateFamily(_ context.Context, f tokens.Family) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.createFamilyLocked(f)
}

// createFamilyLocked stores f; the caller holds mu.
func (s *Store) createFamilyLocked(f tokens.Family) error {
	if _, ok := s.families[f.ID]; ok {
		return keys.ErrConflict
	}
	if _, ok := s.keys[f.Principal.KeyID]; !ok {
		return keys.ErrNotFound
	}
	f.Principal.Name, f.PrincipalActive = "", false // neither is stored
	f.CreatedAt, f.RotatedAt, f.ExpiresAt, f.ParentExpiresAt = ms(f.CreatedAt), ms(f.RotatedAt), ms(f.ExpiresAt), ms(f.ParentExpiresAt)
	f.RevokedAt = msPtr(f.RevokedAt)
	s.families[f.ID] = &f
	ids := s.byKey[f.Principal.KeyID]
	if ids == nil {
		ids = make(map[string]struct{})
		s.byKey[f.Principal.KeyID] = ids
	}
	ids[f.ID] = struct{}{}
	return nil
}

// StartFamily implements tokens.FamilyStore.
func (s *Store) StartFamily(ctx context.Context, digest keys.Digest, f tokens.Family) (keys.Principal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.digests[digest]
	if !ok || !s.keyActive(k) {
		return keys.Principal{}, keys.ErrInvalidKey
	}
	p := s.principal(k)
	f.Principal = p
	if err := s.createFamilyLocked(f); err != nil {
		return keys.Principal{}, err
	}
	return p, nil
}

// UpdateFamily implements tokens.FamilyStore. decide runs under the store's
// write lock, which makes read, decision and write one step; it must not
// call the store.
func (s *Store) UpdateFamily(_ context.Context, id string, decide func(f *tokens.Family) (tokens.Change, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	stored, ok := s.families[id]
	if !ok {
		return keys.ErrNotFound
	}
	f := cloneFamily(stored)
	k := s.keys[f.Principal.KeyID]
	f.PrincipalActive = k.RevokedAt == nil && s.ownerActive(f.Principal.PartnerID, f.Principal.CompanyID)
	change, err := decide(&f)
	if change.Write {
		// The fields a decision may change, as the SQLite store writes them.
		stored.Generation = f.Generation
		stored.RotatedAt, stored.ExpiresAt, stored.ParentExpiresAt = ms(f.RotatedAt), ms(f.ExpiresAt), ms(f.ParentExpiresAt)
		stored.RevokedAt, stored.RevokeReason = msPtr(f.RevokedAt), f.RevokeReason
	}
	s.appendAudit(change.Audit...)
	return err
}

// DeleteFamilies implements tokens.FamilyStore.
func (s *Store) DeleteFamilies(_ context.Context, before time.Time, limit int) (int, error) {
	before = time.UnixMilli(before.UnixMilli()) // what the SQLite store compares
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id, f := range s.families {
		if n >= limit {
			break
		}
		if f.ExpiresAt.Before(before) || f.RevokedAt != nil && f.RevokedAt.Before(before) {
			delete(s.families, id)
			ids := s.byKey[f.Principal.KeyID]
			delete(ids, id)
			if len(ids) == 0 {
				delete(s.byKey, f.Principal.KeyID)
			}
			n++
		}
	}
	return n, nil
}
