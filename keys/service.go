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

// CreatePartner creates a partner with its first key.
func (s *Service) CreatePartner(ctx context.Context, actor Actor, name string) (Partner, NewKey, error) {
	if err := validName("name", name); err != nil {
		return Partner{}, NewKey{}, err
	}
	now := s.now()
	p := Partner{ID: NewID("par_"), Name: name, Status: StatusActive, CreatedAt: now}
	k := newKey(PartnerOwner(p.ID), now)
	evs := []AuditEvent{
		event(now, actor, "partner.created", "partner", p.ID),
		event(now, actor, "key.created", "key", k.ID),
	}
	if err := s.store.CreatePartner(ctx, p, k.Key, DigestOf(k.APIKey.Reveal()), evs); err != nil {
		return Partner{}, NewKey{}, err
	}
	return p, k, nil
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
// owner's other keys keep working until revoked.
func (s *Service) CreateKey(ctx context.Context, actor Actor, o Owner) (NewKey, error) {
	now := s.now()
	k := newKey(o, now)
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

// newKey mints a key for o; the result holds the only copy of its plaintext.
func newKey(o Owner, now time.Time) NewKey {
	prefix := PartnerKeyPrefix
	if o.Kind() == KindCompany {
		prefix = CompanyKeyPrefix
	}
	secret := NewAPIKey(prefix)
	return NewKey{
		Key:    Key{ID: NewID("key_"), Owner: o, Hint: Hint(secret.Reveal()), CreatedAt: now},
		APIKey: secret,
	}
}

func event(at time.Time, actor Actor, action, targetType, target string) AuditEvent {
	return AuditEvent{At: at, ActorType: actor.Type, ActorID: actor.ID, Action: action, TargetType: targetType, Target: target, Addr: actor.Addr, Outcome: OutcomeSuccess}
}

// validName accepts 1..200 characters of valid UTF-8.
func validName(field, v string) error {
	switch n := utf8.RuneCountInString(v); {
	case !utf8.ValidString(v):
		return &ValidationError{Field: field, Message: "must be valid UTF-8"}
	case n == 0:
		return &ValidationError{Field: field, Message: "must not be empty"}
	case n > 200:
		return &ValidationError{Field: field, Message: fmt.Sprintf("must be at most 200 characters, got %d", n)}
	}
	return nil
}
