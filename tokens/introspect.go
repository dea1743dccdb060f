package tokens

import (
	"context"
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
// at once rather than at exp. An access token is active if it verifies and
// its key and owners may still act; a refresh token if it is its family's
// live one, unexpired, its family not revoked and its key and owners may
// act. A client viewer sees only its own tokens and, a partner, its
// companies': anything else is inactive, like an unknown token.
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
		now := s.now()
		if f.RevokedAt != nil || !f.PrincipalActive || t.gen != f.Generation || !now.Before(f.ExpiresAt) || !visible(viewer, f.Principal) {
			return Change{}, nil
		}
		in = Introspection{
			Active: true, TokenType: TokenTypeRefresh, Principal: f.Principal, Issuer: s.jwt.cfg.Issuer,
			ExpiresAt: f.ExpiresAt, IssuedAt: f.RotatedAt,
		}
		return Change{}, nil
	})
	if errors.Is(err, keys.ErrNotFound) {
		return Introspection{}, nil
	}
	return in, err
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
