package tokens

import (
	"context"
	"encoding/hex"
	"errors"

	"keygate/keys"
)

// Login exchanges an API key for an access token and a new token family.
// The family row is committed before the pair is returned.
func (s *Service) Login(ctx context.Context, apiKey, addr string) (Pair, error) {
	if _, err := keys.ParseAPIKey(apiKey); err != nil {
		s.auth.RecordLogin(ctx, keys.Principal{}, keys.HintMalformed, addr, false)
		return Pair{}, keys.ErrInvalidKey
	}
	hint := keys.Hint(apiKey)
	now := s.now()
	idBytes := newFamilyID(now)
	f := Family{
		ID:              hex.EncodeToString(idBytes),
		CreatedAt:       now,
		Generation:      1,
		RotatedAt:       now,
		PrincipalActive: true,
	}
	f.ExpiresAt = s.expiry(f, now)
	// One store round trip looks the key up and starts the family; the
	// token is signed only once that row has committed.
	p, err := s.store.StartFamily(ctx, keys.DigestOf(apiKey), f)
	if err != nil {
		if errors.Is(err, keys.ErrInvalidKey) {
			s.auth.RecordLogin(ctx, keys.Principal{}, hint, addr, false)
		}
		return Pair{}, err
	}
	s.auth.RecordLogin(ctx, p, hint, addr, true)
	jwt, exp, err := s.jwt.Sign(p, now)
	if err != nil {
		return Pair{}, err
	}
	return Pair{JWT: keys.Secret(jwt), ExpiresAt: exp, RefreshToken: s.token(idBytes, 1), RefreshTokenExpiration: f.ExpiresAt}, nil
}
