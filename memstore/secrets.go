package memstore

// tokens.SecretStore: the sealed secrets, and re-sealing.

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"keygate/tokens"
)

// ListSealedSecrets implements tokens.SecretStore.
func (s *Store) ListSealedSecrets(context.Context) ([]tokens.SealedSecret, error) {
	s.mu.RLock()
	out := make([]tokens.SealedSecret, 0, len(s.secrets))
	for _, sec := range s.secrets {
		sec.Sealed = slices.Clone(sec.Sealed)
		out = append(out, sec)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b tokens.SealedSecret) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// AddSealedSecret implements tokens.SecretStore: the check and the insert
// happen under one hold of the store's lock.
func (s *Store) AddSealedSecret(_ context.Context, sec tokens.SealedSecret) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.secrets[sec.Name]; ok && !old.Placeholder() {
		return false, nil
	}
	if s.secrets == nil {
		s.secrets = make(map[string]tokens.SealedSecret)
	}
	sec.Sealed = slices.Clone(sec.Sealed)
	sec.CreatedAt = ms(sec.CreatedAt)
	s.secrets[sec.Name] = sec
	return true, nil
}

// Reseal implements tokens.SecretStore: every check before any write, all
// under one hold of the store's lock.
func (s *Store) Reseal(_ context.Context, plan tokens.ResealPlan) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.signing) != len(plan.SigningKeys) || len(s.secrets) != len(plan.Secrets) {
		return fmt.Errorf("%w: %d signing keys and %d sealed secrets stored, %d and %d re-sealed",
			tokens.ErrResealConflict, len(s.signing), len(s.secrets), len(plan.SigningKeys), len(plan.Secrets))
	}
	keyAt := make([]int, len(plan.SigningKeys))
	for i, r := range plan.SigningKeys {
		keyAt[i] = slices.IndexFunc(s.signing, func(k tokens.SigningKeyRecord) bool { return k.KID == r.Name })
		if keyAt[i] < 0 || !slices.Equal(s.signing[keyAt[i]].Sealed, r.Old) || slices.Contains(keyAt[:i], keyAt[i]) {
			return fmt.Errorf("%w: %s", tokens.ErrResealConflict, r.Name)
		}
	}
	for i, r := range plan.Secrets {
		sec, ok := s.secrets[r.Name]
		if !ok || !slices.Equal(sec.Sealed, r.Old) || slices.ContainsFunc(plan.Secrets[:i], func(o tokens.Reseal) bool { return o.Name == r.Name }) {
			return fmt.Errorf("%w: %s", tokens.ErrResealConflict, r.Name)
		}
	}
	for i, r := range plan.SigningKeys {
		s.signing[keyAt[i]].Sealed = slices.Clone(r.New)
	}
	for _, r := range plan.Secrets {
		sec := s.secrets[r.Name]
		sec.Sealed = slices.Clone(r.New)
		s.secrets[r.Name] = sec
	}
	return nil
}
