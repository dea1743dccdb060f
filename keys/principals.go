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
// both are batched, and failures are counted per address and minute
// rather than written one by one; without one they are written at once.
func (s *Service) RecordLogin(ctx context.Context, p Principal, hint, addr string, ok bool) {
	now := s.now()
	if !ok {
		s.recordFailure(ctx, FailedLogin, now, addr, hint)
		return
	}
	ev := AuditEvent{
		At: now, ActorType: ActorType(p.Kind), ActorID: p.ID, Action: "login", TargetType: "key", Target: p.KeyID,
		Addr: addr, Outcome: OutcomeSuccess, Detail: "hint=" + hint,
	}
	if s.audit != nil {
		s.audit.Login(ev, p.KeyID)
		return
	}
	if err := s.store.RecordUsage(ctx, map[string]time.Time{p.KeyID: now}, []AuditEvent{ev}); err != nil {
		s.log.ErrorContext(ctx, "recording login", "err", err)
	}
}

// RecordRefreshFailure audits a refused refresh token (one that was not
// the family's live token, its parent's retry, or a reuse, which is
// audited where it is decided), counted like a failed login.
func (s *Service) RecordRefreshFailure(ctx context.Context, addr string) {
	s.recordFailure(ctx, FailedRefresh, s.now(), addr, "")
}

func (s *Service) recordFailure(ctx context.Context, action string, at time.Time, addr, hint string) {
	if s.audit != nil {
		s.audit.Failure(action, at, addr, hint)
		return
	}
	var hints []string
	if hint != "" {
		hints = []string{hint}
	}
	ev := failureEvent(action, at, AddrBucket(addr), 1, hints)
	if err := s.store.RecordUsage(ctx, nil, []AuditEvent{ev}); err != nil {
		s.log.ErrorContext(ctx, "recording a failure", "err", err)
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
	if !r.usable(s.now()) {
		return Principal{}, ErrInvalidKey // revoked, disabled or expired alike
	}
	return r.principal(), nil
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
	return s.cache.cachedActive(DigestOf(apiKey), s.now())
}

// ActivePrincipal checks that the principal a token names may still act,
// and fills in its name: ErrInactive if its key was revoked or has
// expired, or its partner or company disabled, since the token was issued.
func (s *Service) ActivePrincipal(ctx context.Context, want Principal) (Principal, error) {
	r, err := s.cache.byKeyID(ctx, want.KeyID)
	if errors.Is(err, ErrInvalidKey) {
		return Principal{}, ErrInactive
	}
	if err != nil {
		return Principal{}, err
	}
	p := r.Principal
	if !r.usable(s.now()) || p.Kind != want.Kind || p.ID != want.ID || p.PartnerID != want.PartnerID || p.CompanyID != want.CompanyID {
		return Principal{}, ErrInactive
	}
	p.Scopes = want.Scopes // what the token carries
	return p, nil
}
