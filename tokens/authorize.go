package tokens

import (
	"context"
	"errors"

	"keygate/keys"
)

// Authorize verifies an access token and checks that its principal may
// still act: keygate's own endpoints honour revocation (at once for changes
// made through this process, within the store's cache lifetime for others),
// while downstream services rely on the token's short lifetime.
func (s *Service) Authorize(ctx context.Context, raw string) (Session, error) {
	claims, err := s.jwt.Verify(raw)
	if err != nil {
		return Session{}, err
	}
	p, err := s.auth.ActivePrincipal(ctx, claims.Principal())
	if err != nil {
		if errors.Is(err, keys.ErrInactive) {
			return Session{}, errors.Join(ErrInvalidToken, err)
		}
		return Session{}, err
	}
	return Session{Principal: p, ExpiresAt: claims.ExpiresAt.Time}, nil
}
