package tokens

import (
	"context"
	"encoding/hex"
	"errors"
	"time"

	"keygate/keys"
)

// Introspection is what token introspection (RFC 7662) says of a token.
// Only Active is meaningful when it is false.
type Introspection struct {
	Active    bool
	TokenType string // TokenTypeAccess or TokenTypeRefresh
	Principal keys.Principal
	Issuer    string
	Audience  []string
	ExpiresAt time.Time
	IssuedAt  time.Time
	NotBefore time.Time // access tokens only
	ID        string    // jti, access tokens only
}

// Token types an introspection reports.
const (
	TokenTypeAccess  = "Bearer"
	TokenTypeRefresh = "refresh_token"
)

// Introspect reports whether raw is an active access or refresh token and
// what it says: the online check for services that must see a revocation
// at once rather than at exp. An access token is active if it verifies,
// its key and owners may still act, and the session it names (its sid, the
// refresh-token family it came with) has not been logged out or revoked on
// reuse; a refresh token if it is its family's live one, unexpired, its
// family not revoked and its key and owners may act. A client viewer sees
// only its own tokens and, a partner, its companies': anything else is
// inactive, like an unknown token.
//
// Both read the family through the store's write path (UpdateFamily,
// deciding to write nothing): introspection is the careful, online check,
// not the hot path; access tokens are verified offline.
func (s *Service) Introspect(ctx context.Context, raw string, viewer Viewer) (Introspection, error) {
	if claims, err := s.jwt.Verify(raw); err == nil {
		p := claims.Principal()
		if !visible(viewer, p) {
			return Introspection{}, nil
		}
		if _, err := s.auth.ActivePrincipal(ctx, p); err != nil {
			if errors.Is(err, keys.ErrInactive) {
				return Introspection{}, nil
			}
			return Introspection{}, err
		}
		if claims.SessionID != "" {
			ended, err := s.sessionEnded(ctx, claims.SessionID)
			if err != nil || ended {
				return Introspection{}, err
			}
		}
		in := Introspection{
			Active: true, TokenType: TokenTypeAccess, Principal: p, Issuer: claims.Issuer,
			Audience: claims.Audience, ID: claims.ID, ExpiresAt: claims.ExpiresAt.Time,
		}
		if claims.IssuedAt != nil {
			in.IssuedAt = claims.IssuedAt.Time
		}
		if claims.NotBefore != nil {
			in.NotBefore = claims.NotBefore.Time
		}
		return in, nil
	}
	t, ok := s.parse(raw)
	if !ok || t.gen == 0 && !s.now().Before(t.expires) {
		return Introspection{}, nil
	}
	var seed *Family
	if t.gen == 0 {
		seed = t.seed()
	}
	var in Introspection
	err := s.store.UpdateFamily(ctx, t.family(), seed, func(f *Family) (Change, error) {
		f.settle()
		now := s.now()
		expired := !now.Before(f.ExpiresAt) || f.KeyExpiresAt != nil && !now.Before(*f.KeyExpiresAt)
		if f.RevokedAt != nil || !f.PrincipalActive || t.gen != f.Generation || expired || !visible(viewer, f.Principal) {
			return Change{}, nil
		}
		p := f.Principal
		p.Scopes = f.Scope.Narrow(f.held()) // what its next access token would carry
		in = Introspection{
			Active: true, TokenType: TokenTypeRefresh, Principal: p, Issuer: s.jwt.cfg.Issuer,
			ExpiresAt: f.ExpiresAt, IssuedAt: f.RotatedAt,
		}
		return Change{}, nil
	})
	if errors.Is(err, keys.ErrNotFound) {
		return Introspection{}, nil
	}
	return in, err
}

// sessionEnded reports whether the refresh-token family an access token
// names was logged out or revoked: it then has a row saying so (a family
// without a row has never been refreshed or logged out, and housekeeping
// deletes a revoked family's row only long after its access tokens
// expired).
func (s *Service) sessionEnded(ctx context.Context, sid string) (bool, error) {
	if _, err := hex.DecodeString(sid); err != nil || len(sid) != 2*familyIDLen {
		return true, nil // not a session keygate made
	}
	var ended bool
	err := s.store.UpdateFamily(ctx, sid, nil, func(f *Family) (Change, error) {
		ended = f.RevokedAt != nil
		return Change{}, nil
	})
	if errors.Is(err, keys.ErrNotFound) {
		return false, nil
	}
	return ended, err
}

// Viewer is who asks about a token: a client (the main listener's
// introspection), or the operators (the admin listener's), who see every
// tenant's tokens. The zero Viewer is a client that is no principal: it
// sees nothing.
type Viewer struct {
	client   keys.Principal
	operator bool
}

// AsClient is the viewer of an authenticated client: it sees its own
// tokens and, a partner, its companies'.
func AsClient(p keys.Principal) Viewer { return Viewer{client: p} }

// AsOperator is the viewer of the admin listener, which only operators
// reach: it sees every token.
func AsOperator() Viewer { return Viewer{operator: true} }

// visible reports whether viewer may learn about a token of p.
func visible(viewer Viewer, p keys.Principal) bool {
	c := viewer.client
	switch {
	case viewer.operator:
		return true
	case c.ID == "":
		return false
	case c.Kind == keys.KindPartner:
		return p.PartnerID == c.ID
	default:
		return p.Kind == c.Kind && p.ID == c.ID
	}
}
