package tokens

import (
	"context"
	"errors"

	"keygate/keys"
)

// Refresh uses up a refresh token and returns its successor with a fresh
// access token. The database decides, in one transaction, whether this
// token is the live one (rotate), its parent retried within the grace
// window (same successor again), or an older one (reuse: the family dies).
//
// A generation-0 token (a login's) whose family has no row yet carries the
// family's seed: its first use creates the row at generation 1 in that same
// conditional write, and a second use of it is the parent's retry or reuse
// like any other.
func (s *Service) Refresh(ctx context.Context, raw, addr string) (Pair, error) {
	t, ok := s.ParseRefreshToken(raw)
	if !ok {
		return Pair{}, ErrInvalidRefreshToken
	}
	return s.RefreshParsed(ctx, t, addr)
}

// RefreshToken is a refresh token whose form and MAC checked out: a caller
// that needs its family (for a per-family limit) parses it once.
type RefreshToken struct{ t refreshToken }

// ParseRefreshToken checks a refresh token's form, checksum and MAC; ok is
// false for anything that is not a token this master key made.
func (s *Service) ParseRefreshToken(raw string) (RefreshToken, bool) {
	t, ok := s.parse(raw)
	return RefreshToken{t}, ok
}

// Family is the id of the token's family.
func (t RefreshToken) Family() string { return t.t.family() }

// RefreshParsed is Refresh of a token already parsed.
func (s *Service) RefreshParsed(ctx context.Context, rt RefreshToken, addr string) (Pair, error) {
	return s.refresh(ctx, rt, addr, holder{})
}

// RefreshAs is RefreshParsed for an authenticated client (the OAuth
// refresh_token grant): a token of another principal than clientID is
// refused with ErrOtherClient and changes nothing — no rotation, no reuse
// detection on someone else's family. scope may narrow this response's
// access token below the family's scopes (RFC 6749 §6); asking for one the
// family does not carry is a *keys.ScopeError, and changes nothing either.
func (s *Service) RefreshAs(ctx context.Context, rt RefreshToken, clientID string, scope keys.ScopeRequest, addr string) (Pair, error) {
	return s.refresh(ctx, rt, addr, holder{clientID: clientID, scope: scope})
}

// holder is who presents a refresh token: whoever holds it (the native
// API, where the token is the credential; its zero value), or an
// authenticated OAuth client, which must be the family's principal and may
// narrow the response's scopes.
type holder struct {
	clientID string
	scope    keys.ScopeRequest
}

func (s *Service) refresh(ctx context.Context, rt RefreshToken, addr string, h holder) (Pair, error) {
	p, err := s.rotate(ctx, rt, addr, h)
	if errors.Is(err, ErrInvalidRefreshToken) && !errors.Is(err, ErrReused) {
		// A reuse is audited where it is decided; every other refusal is
		// counted per address and minute, like a failed login.
		s.auth.RecordRefreshFailure(ctx, addr)
	}
	return p, err
}

func (s *Service) rotate(ctx context.Context, rt RefreshToken, addr string, h holder) (Pair, error) {
	t := rt.t
	if t.familyID == nil {
		return Pair{}, ErrInvalidRefreshToken // the zero RefreshToken
	}
	var seed *Family
	if t.gen == 0 && s.now().Before(t.expires) {
		// Only a live login token may start its family. An expired one is
		// still looked up: replayed after the family moved on, it is reuse.
		seed = t.seed()
	}
	gen := t.gen
	var access <-chan signed // the last decision's tokens, made ahead
	err := s.store.UpdateFamily(ctx, t.family(), seed, func(f *Family) (Change, error) {
		access = nil
		f.settle()
		now := s.now()
		switch {
		case h.clientID != "" && f.Principal.ID != h.clientID:
			return Change{}, errOtherClient
		case f.RevokedAt != nil:
			return Change{}, ErrInvalidRefreshToken
		case !f.PrincipalActive:
			f.RevokedAt, f.RevokeReason = &now, "principal_inactive"
			return Change{Write: true}, ErrInvalidRefreshToken
		case f.KeyExpiresAt != nil && !now.Before(*f.KeyExpiresAt):
			return Change{}, errExpired // its tokens expired with the key; nothing to write
		case gen == f.Generation:
			if !now.Before(f.ExpiresAt) {
				return Change{}, errExpired
			}
			if _, err := h.scope.Grant(f.Scope.Narrow(f.held())); err != nil {
				return Change{}, err // narrowing to a scope the family lacks: nothing rotates
			}
			f.ParentExpiresAt = f.ExpiresAt
			f.Generation++
			f.RotatedAt = now
			f.ExpiresAt = capAt(s.expiry(f.CreatedAt, now), f.KeyExpiresAt)
			access = s.signAhead(*f, h, t.familyID, false)
			return Change{Write: true}, nil
		case gen == f.Generation-1 && s.cfg.ReuseGrace > 0 && now.Sub(f.RotatedAt) <= s.cfg.ReuseGrace:
			if !now.Before(f.ParentExpiresAt) || !now.Before(f.ExpiresAt) {
				return Change{}, errExpired // grace or not
			}
			if _, err := h.scope.Grant(f.Scope.Narrow(f.held())); err != nil {
				return Change{}, err
			}
			access = s.signAhead(*f, h, t.familyID, true)
			return Change{}, nil
		case gen < f.Generation:
			f.RevokedAt, f.RevokeReason = &now, "reuse"
			ev := keys.AuditEvent{
				At: now, ActorType: keys.ActorType(f.Principal.Kind), ActorID: f.Principal.ID,
				Action: "refresh.reuse_detected", TargetType: "token_family", Target: f.ID,
				Addr: addr, Outcome: OutcomeRevoked, Detail: "key=" + f.Principal.KeyID,
			}
			return Change{Write: true, Audit: []keys.AuditEvent{ev}}, ErrReused
		default: // a generation from the future: a forged token with a valid MAC cannot exist
			return Change{}, ErrInvalidRefreshToken
		}
	})
	switch {
	case err == nil:
	case errors.Is(err, keys.ErrNotFound) && seed == nil && t.gen == 0:
		return Pair{}, errExpired // an expired login token whose family never got a row
	case errors.Is(err, keys.ErrNotFound) || errors.Is(err, ErrReused):
		return Pair{}, errors.Join(ErrInvalidRefreshToken, err)
	default:
		return Pair{}, err
	}
	if access == nil { // every decision that returns nil signs ahead
		return Pair{}, errors.New("tokens: the store committed a rotation without its decision")
	}
	a := <-access
	return a.pair, a.err
}

// signed is a rotation's answer, made ahead.
type signed struct {
	pair Pair
	err  error
}

// signAhead makes the answer of a decision that f, at its successor
// generation, is what h gets (retry: again, within the grace window): the
// access token as h may hold it and the refresh token of family familyID,
// on a goroutine of its own. It returns where the answer will be: the
// signature, most of a refresh's CPU, is made while the rotation commits
// (an fsync, on SQLite), not after it. Tokens whose rotation does not
// commit are never sent.
func (s *Service) signAhead(f Family, h holder, familyID []byte, retry bool) <-chan signed {
	c := make(chan signed, 1)
	go func() {
		p := f.Principal
		p.KeyScopes, p.KeyExpiresAt = f.KeyScopes, f.KeyExpiresAt
		p.Scopes, _ = h.scope.Grant(f.Scope.Narrow(f.held())) // decide has checked it
		jwt, exp, err := s.jwt.Sign(p, f.ID, s.now())
		if err != nil {
			c <- signed{err: err}
			return
		}
		c <- signed{pair: Pair{
			Principal: p, GraceRetry: retry, JWT: keys.Secret(jwt), ExpiresAt: exp,
			RefreshToken: s.token(familyID, f.Generation), RefreshTokenExpiration: f.ExpiresAt,
		}}
	}()
	return c
}

// OutcomeRevoked is the audit outcome of a family killed on reuse.
const OutcomeRevoked = "revoked"
