package memstore

// tokens.Store: signing keys and refresh-token families.

import (
	"context"
	"keygate/keys"
	"keygate/tokens"
	"slices"
	"time"
)

// AddSigningKey implements tokens.KeyStore.
func (s *Store) AddSigningKey(_ context.Context, k tokens.SigningKeyRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addSigningKey(k)
}

// addSigningKey stores k; the caller holds mu.
func (s *Store) addSigningKey(k tokens.SigningKeyRecord) error {
	if slices.ContainsFunc(s.signing, func(r tokens.SigningKeyRecord) bool { return r.KID == k.KID }) {
		return keys.ErrConflict
	}
	k.Sealed = slices.Clone(k.Sealed)
	k.CreatedAt, k.ActivatesAt = ms(k.CreatedAt), ms(k.ActivatesAt)
	s.signing = append(s.signing, k)
	return nil
}

// AddFirstSigningKey implements tokens.KeyStore: the check and the insert
// happen under one hold of the store's lock.
func (s *Store) AddFirstSigningKey(ctx context.Context, k tokens.SigningKeyRecord) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.ContainsFunc(s.signing, func(r tokens.SigningKeyRecord) bool { return r.Algorithm == k.Algorithm }) {
		return false, nil
	}
	return true, s.addSigningKey(k)
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

// UpdateFamily implements tokens.FamilyStore. decide runs under the store's
// write lock, which makes read, decision and write one step; it must not
// call the store.
func (s *Store) UpdateFamily(_ context.Context, id string, seed *tokens.Family, decide func(f *tokens.Family) (tokens.Change, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var f tokens.Family
	stored, exists := s.families[id]
	switch {
	case exists:
		f = cloneFamily(stored)
	case seed != nil:
		k, ok := s.keys[seed.Principal.KeyID]
		if !ok {
			return keys.ErrNotFound
		}
		f = *seed
		f.ID = id
		f.Principal = s.principal(k)
		f.Principal.Name = "" // not stored
	default:
		return keys.ErrNotFound
	}
	k := s.keys[f.Principal.KeyID]
	f.PrincipalActive = s.keyActive(k)
	f.KeyScopes, f.PartnerScopes, f.KeyExpiresAt = k.Scopes, s.partners[k.Owner.PartnerID()].Scopes, msPtr(k.ExpiresAt)
	change, err := decide(&f)
	if change.Write {
		if !exists {
			stored = &tokens.Family{ID: id, Principal: f.Principal, CreatedAt: ms(f.CreatedAt), FirstExpiresAt: ms(f.FirstExpiresAt), Scope: f.Scope}
			s.families[id] = stored
			ids := s.byKey[f.Principal.KeyID]
			if ids == nil {
				ids = make(map[string]struct{})
				s.byKey[f.Principal.KeyID] = ids
			}
			ids[id] = struct{}{}
		}
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
		dead := f.ExpiresAt.Before(before) || f.RevokedAt != nil && f.RevokedAt.Before(before)
		if dead && f.FirstExpiresAt.Before(before) {
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
