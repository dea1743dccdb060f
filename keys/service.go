package keys

import (
	"context"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"
)

// Service is what operators and partners do with principals and keys.
type Service struct {
	store Store
	audit *Recorder
	cache *keyCache
	now   func() time.Time
	log   *slog.Logger
}

// NewService wires a Service. audit may be nil, in which case login outcomes
// are written synchronously (the CLI's case).
func NewService(store Store, audit *Recorder, now func() time.Time, log *slog.Logger) *Service {
	return &Service{store: store, audit: audit, cache: newKeyCache(store, now), now: now, log: log}
}

// PartnerInput is what an operator gives to create a partner.
type PartnerInput struct {
	Name   string
	Scopes Scopes   // the scopes it is allowed
	Key    KeyInput // its first key
}

// KeyInput is what may be asked of a new key besides its owner.
type KeyInput struct {
	Name      string     // "" for none; else 1 to 100 characters
	ExpiresAt *time.Time // nil: it does not expire; else in the future
	Scopes    *Scopes    // nil: all its partner allows; else a subset of that
}

// CreatePartner creates a partner with its first key.
func (s *Service) CreatePartner(ctx context.Context, actor Actor, in PartnerInput) (Partner, NewKey, error) {
	if err := validName("name", in.Name); err != nil {
		return Partner{}, NewKey{}, err
	}
	now := s.now()
	p := Partner{ID: NewID("par_"), Name: in.Name, Status: StatusActive, CreatedAt: now, Scopes: in.Scopes}
	k, err := newKey(PartnerOwner(p.ID), p.Scopes, in.Key, now)
	if err != nil {
		return Partner{}, NewKey{}, err
	}
	evs := []AuditEvent{
		event(now, actor, "partner.created", "partner", p.ID),
		event(now, actor, "key.created", "key", k.ID),
	}
	if err := s.store.CreatePartner(ctx, p, k.Key, DigestOf(k.APIKey.Reveal()), evs); err != nil {
		return Partner{}, NewKey{}, err
	}
	return p, k, nil
}

// SetPartnerScopes replaces the scopes a partner allows. Narrowing them
// narrows what its keys and its companies' keys obtain from the next
// login or refresh on; its keys keep their own scopes, so widening them
// again gives back no more than each key holds.
func (s *Service) SetPartnerScopes(ctx context.Context, actor Actor, partnerID string, scopes Scopes) error {
	now := s.now()
	defer s.cache.invalidate()
	ev := event(now, actor, "partner.scopes_set", "partner", partnerID)
	ev.Detail = "scopes=" + scopes.String()
	return s.store.SetPartnerScopes(ctx, partnerID, scopes, now, ev)
}

// ListPartners lists every partner.
func (s *Service) ListPartners(ctx context.Context) ([]Partner, error) {
	return s.store.ListPartners(ctx)
}

// DisablePartner stops every key of a partner and of its companies from
// logging in or refreshing.
func (s *Service) DisablePartner(ctx context.Context, actor Actor, id string) error {
	now := s.now()
	defer s.cache.invalidate()
	return s.store.DisablePartner(ctx, id, now, event(now, actor, "partner.disabled", "partner", id))
}

// CreateKey adds a key to an owner, for rotation without downtime: the
// owner's other keys keep working until revoked. Its scopes must be within
// what the owner's partner allows (a *ScopeError names one that is not).
func (s *Service) CreateKey(ctx context.Context, actor Actor, o Owner, in KeyInput) (NewKey, error) {
	p, err := s.store.GetPartner(ctx, o.PartnerID())
	if err != nil {
		return NewKey{}, err
	}
	now := s.now()
	k, err := newKey(o, p.Scopes, in, now)
	if err != nil {
		return NewKey{}, err
	}
	ev := event(now, actor, "key.created", "key", k.ID)
	if err := s.store.CreateKey(ctx, k.Key, DigestOf(k.APIKey.Reveal()), ev); err != nil {
		return NewKey{}, err
	}
	return k, nil
}

// ListKeys lists an owner's keys, oldest first.
func (s *Service) ListKeys(ctx context.Context, o Owner) ([]Key, error) {
	return s.store.ListKeys(ctx, o)
}

// RevokeKey revokes one of an owner's keys; the refresh tokens obtained
// with it die with it.
func (s *Service) RevokeKey(ctx context.Context, actor Actor, o Owner, keyID string) error {
	now := s.now()
	defer s.cache.invalidate()
	return s.store.RevokeKey(ctx, o, keyID, now, event(now, actor, "key.revoked", "key", keyID))
}

// newKey mints a key for o, whose partner allows the scopes allowed; the
// result holds the only copy of its plaintext.
func newKey(o Owner, allowed Scopes, in KeyInput, now time.Time) (NewKey, error) {
	if in.Name != "" {
		if err := validLength("name", in.Name, 100); err != nil {
			return NewKey{}, err
		}
	}
	if in.ExpiresAt != nil && !in.ExpiresAt.After(now) {
		return NewKey{}, &ValidationError{Field: "expiresAt", Message: "must be in the future"}
	}
	scopes := allowed
	if in.Scopes != nil {
		if err := in.Scopes.Within(allowed); err != nil {
			return NewKey{}, err
		}
		scopes = *in.Scopes
	}
	prefix := PartnerKeyPrefix
	if o.Kind() == KindCompany {
		prefix = CompanyKeyPrefix
	}
	secret := NewAPIKey(prefix)
	return NewKey{
		Key: Key{
			ID: NewID("key_"), Owner: o, Hint: Hint(secret.Reveal()), Name: in.Name, Scopes: scopes,
			CreatedAt: now, ExpiresAt: in.ExpiresAt,
		},
		APIKey: secret,
	}, nil
}

func event(at time.Time, actor Actor, action, targetType, target string) AuditEvent {
	return AuditEvent{At: at, ActorType: actor.Type, ActorID: actor.ID, Action: action, TargetType: targetType, Target: target, Addr: actor.Addr, Outcome: OutcomeSuccess}
}

// validName accepts 1..200 characters of valid UTF-8.
func validName(field, v string) error { return validLength(field, v, 200) }

// validLength accepts 1..max characters of valid UTF-8.
func validLength(field, v string, max int) error {
	switch n := utf8.RuneCountInString(v); {
	case !utf8.ValidString(v):
		return &ValidationError{Field: field, Message: "must be valid UTF-8"}
	case n == 0:
		return &ValidationError{Field: field, Message: "must not be empty"}
	case n > max:
		return &ValidationError{Field: field, Message: fmt.Sprintf("must be at most %d characters, got %d", max, n)}
	}
	return nil
}
