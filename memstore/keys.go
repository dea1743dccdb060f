package memstore

// keys.Store: partners, companies, keys and the audit trail.

import (
	"cmp"
	"context"
	"keygate/keys"
	"slices"
	"sort"
	"strings"
	"time"
)

// ResolveKey implements keys.Store.
func (s *Store) ResolveKey(_ context.Context, digest keys.Digest) (keys.ResolvedKey, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	k, ok := s.digests[digest]
	if !ok {
		return keys.ResolvedKey{}, keys.ErrInvalidKey
	}
	return s.resolved(digest, k), nil
}

// resolved is a key as a lookup returns it. The caller holds mu.
func (s *Store) resolved(digest keys.Digest, k *keys.Key) keys.ResolvedKey {
	p := s.principal(k)
	p.KeyExpiresAt = msPtr(k.ExpiresAt)
	return keys.ResolvedKey{
		Digest: digest, Principal: p, Active: s.keyActive(k),
		KeyScopes: k.Scopes, PartnerScopes: s.partners[k.Owner.PartnerID()].Scopes,
	}
}

// ResolveKeyID implements keys.Store.
func (s *Store) ResolveKeyID(_ context.Context, keyID string) (keys.ResolvedKey, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	k, ok := s.keys[keyID]
	if !ok {
		return keys.ResolvedKey{}, keys.ErrInvalidKey
	}
	return s.resolved(s.digestOf[keyID], k), nil
}

// KeyEpoch implements keys.Store.
func (s *Store) KeyEpoch(context.Context) (int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.epoch, nil
}

// keyActive reports whether a key may log in: not revoked, its partner and
// company (if any) active. The caller holds mu.
func (s *Store) keyActive(k *keys.Key) bool {
	return k.RevokedAt == nil && s.checkOwner(k.Owner) == nil
}

// checkOwner reports whether a partner, or a company of it, exists
// (keys.ErrNotFound otherwise) and may act (keys.ErrDisabled otherwise).
// The caller holds mu.
func (s *Store) checkOwner(o keys.Owner) error {
	p, ok := s.partners[o.PartnerID()]
	if !ok || o.Kind() != keys.KindPartner && o.Kind() != keys.KindCompany {
		return keys.ErrNotFound
	}
	if o.Kind() == keys.KindCompany {
		c, ok := s.companies[o.CompanyID()]
		if !ok || c.PartnerID != o.PartnerID() {
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
	name := s.partners[k.Owner.PartnerID()].Name
	if k.Owner.Kind() == keys.KindCompany {
		name = s.companies[k.Owner.CompanyID()].Name
	}
	return keys.PrincipalOf(k.ID, k.Owner, name)
}

// CreatePartner implements keys.Store.
func (s *Store) CreatePartner(_ context.Context, p keys.Partner, k keys.Key, digest keys.Digest, evs []keys.AuditEvent) error {
	if k.Owner != keys.PartnerOwner(p.ID) {
		return keys.ErrWrongOwner
	}
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

// GetPartner implements keys.Store.
func (s *Store) GetPartner(_ context.Context, id string) (keys.Partner, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, ok := s.partners[id]
	if !ok {
		return keys.Partner{}, keys.ErrNotFound
	}
	return *p, nil
}

// SetPartnerScopes implements keys.Store.
func (s *Store) SetPartnerScopes(_ context.Context, id string, scopes keys.Scopes, _ time.Time, ev keys.AuditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.partners[id]
	if !ok {
		return keys.ErrNotFound
	}
	p.Scopes = scopes
	s.epoch++
	s.appendAudit(ev)
	return nil
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
		if o.PartnerID() == id {
			s.revokeFamilies(ks, at, "partner_disabled")
		}
	}
	s.epoch++
	s.appendAudit(ev)
	return nil
}

// CreateCompany implements keys.Store.
func (s *Store) CreateCompany(_ context.Context, c keys.Company, k keys.Key, digest keys.Digest, evs []keys.AuditEvent) error {
	if k.Owner != keys.CompanyOwner(c.PartnerID, c.ID) {
		return keys.ErrWrongOwner
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOwner(keys.PartnerOwner(c.PartnerID)); err != nil {
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
	s.revokeFamilies(s.owned[keys.CompanyOwner(partnerID, id)], at, "company_disabled")
	s.epoch++
	s.appendAudit(ev)
	return nil
}

// CreateKey implements keys.Store.
func (s *Store) CreateKey(_ context.Context, k keys.Key, digest keys.Digest, ev keys.AuditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOwner(k.Owner); err != nil {
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
func (s *Store) ListKeys(_ context.Context, o keys.Owner) ([]keys.Key, error) {
	s.mu.RLock()
	ks := s.owned[o]
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
func (s *Store) RevokeKey(_ context.Context, o keys.Owner, keyID string, at time.Time, ev keys.AuditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[keyID]
	if !ok || k.Owner != o {
		return keys.ErrNotFound
	}
	if k.RevokedAt != nil {
		return nil
	}
	k.RevokedAt = msPtr(&at)
	s.revokeFamilies([]*keys.Key{k}, at, "key_revoked")
	s.epoch++
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

// ListAudit implements keys.Store: events strictly after the cursor,
// ordered by time and then by ID (the order written). s.audit is kept in
// that order.
func (s *Store) ListAudit(_ context.Context, after keys.AuditCursor, limit int) ([]keys.AuditEvent, error) {
	after.At = ms(after.At) // what the SQLite store compares
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, _ := slices.BinarySearchFunc(s.audit, after, func(e keys.AuditEvent, c keys.AuditCursor) int {
		if auditOrder(e, c) <= 0 {
			return -1
		}
		return 1
	})
	rest := s.audit[i:]
	return slices.Clone(rest[:min(len(rest), max(limit, 0))]), nil
}

// auditOrder compares an event with a cursor in the trail's order.
func auditOrder(e keys.AuditEvent, c keys.AuditCursor) int {
	if n := e.At.Compare(c.At); n != 0 {
		return n
	}
	return cmp.Compare(e.ID, c.ID)
}

// DeleteAudit implements keys.Store: the oldest events come first in s.audit.
func (s *Store) DeleteAudit(_ context.Context, before time.Time, limit int) (int, error) {
	before = ms(before)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for n < len(s.audit) && n < limit && s.audit[n].At.Before(before) {
		n++
	}
	s.audit = slices.Delete(s.audit, 0, n)
	return n, nil
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
	k.CreatedAt, k.LastUsedAt, k.RevokedAt, k.ExpiresAt = ms(k.CreatedAt), nil, nil, msPtr(k.ExpiresAt)
	stored := &k
	s.keys[k.ID] = stored
	s.digests[digest] = stored
	s.digestOf[k.ID] = digest
	s.owned[k.Owner] = append(s.owned[k.Owner], stored)
}

// appendAudit records events. The caller holds mu.
func (s *Store) appendAudit(evs ...keys.AuditEvent) {
	for _, e := range evs {
		s.auditSeq++
		e.ID, e.At = s.auditSeq, ms(e.At)
		// Kept in (At, ID) order: a new event goes after every event not
		// later than it, which is nearly always the end.
		i := len(s.audit)
		for i > 0 && s.audit[i-1].At.After(e.At) {
			i--
		}
		s.audit = slices.Insert(s.audit, i, e)
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
