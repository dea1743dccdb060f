package keys

import (
	"context"
	"errors"
	"time"
)

// HintMalformed names, in the audit trail, a presented key that is not a
// well-formed API key at all.
const HintMalformed = "malformed"

// RecordLogin audits a login attempt, naming the key by its hint only (or
// HintMalformed), and on success notes the key's last use. With a Recorder
// both are batched; without one they are written at once.
func (s *Service) RecordLogin(ctx context.Context, p Principal, hint, addr string, ok bool) {
	now := s.now()
	ev := AuditEvent{At: now, ActorType: ActorAnonymous, Action: "login", TargetType: "key", Target: hint, Addr: addr, Outcome: OutcomeFailure}
	if ok {
		ev.ActorType, ev.ActorID, ev.Target, ev.Outcome = ActorType(p.Kind), p.ID, p.KeyID, OutcomeSuccess
		ev.Detail = "hint=" + hint
	}
	if s.audit != nil {
		var keyID string
		if ok {
			keyID = p.KeyID
		}
		s.audit.Login(ev, keyID)
		return
	}
	var used map[string]time.Time
	if ok {
		used = map[string]time.Time{p.KeyID: now}
	}
	if err := s.store.RecordUsage(ctx, used, []AuditEvent{ev}); err != nil {
		s.log.ErrorContext(ctx, "recording login", "err", err)
	}
}

// Authenticate resolves a well-formed API key to the principal it speaks
// for: ErrInvalidKey if the key is unknown, revoked, or its partner or
// company disabled. A login calls it; it reads the store only on a cache
// miss and writes nothing.
func (s *Service) Authenticate(ctx context.Context, apiKey string) (Principal, error) {
	r, err := s.cache.byKeyDigest(ctx, DigestOf(apiKey))
	if err != nil {
		return Principal{}, err
	}
	if !r.Active {
		return Principal{}, ErrInvalidKey
	}
	return r.Principal, nil
}

// KnownActive reports whether apiKey is a well-formed key this process
// has seen log in and still holds as active, without touching the store:
// the server lets such a key through a client address's failure limit,
// which protects keygate's resources and the store, not the key (256
// random bits cannot be guessed). Anything else is false, at the cost of a
// hash and a map lookup.
func (s *Service) KnownActive(apiKey string) bool {
	if _, err := ParseAPIKey(apiKey); err != nil {
		return false
	}
	return s.cache.cachedActive(DigestOf(apiKey))
}

// ActivePrincipal checks that the principal a token names may still act,
// and fills in its name: ErrInactive if its key was revoked, or its
// partner or company disabled, since the token was issued.
func (s *Service) ActivePrincipal(ctx context.Context, want Principal) (Principal, error) {
	r, err := s.cache.byKeyID(ctx, want.KeyID)
	if errors.Is(err, ErrInvalidKey) {
		return Principal{}, ErrInactive
	}
	if err != nil {
		return Principal{}, err
	}
	p := r.Principal
	if !r.Active || p.Kind != want.Kind || p.ID != want.ID || p.PartnerID != want.PartnerID || p.CompanyID != want.CompanyID {
		return Principal{}, ErrInactive
	}
	return p, nil
}
