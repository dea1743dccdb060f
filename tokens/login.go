package tokens

import (
	"context"
	"errors"
	"fmt"
	"time"

	"keygate/keys"
)

// Login exchanges an API key for an access token and the generation-0
// refresh token of a new family. It writes nothing: the key resolves from
// the keys cache (the store only on a miss), the refresh token is
// self-contained, and the audit event and the key's last use are batched.
// So a login never waits for a database writer, and a crash right after it
// loses at most its audit event: both tokens it returned stay good.
func (s *Service) Login(ctx context.Context, apiKey, addr string) (Pair, error) {
	if _, err := keys.ParseAPIKey(apiKey); err != nil {
		s.auth.RecordLogin(ctx, keys.Principal{}, keys.HintMalformed, addr, false)
		return Pair{}, keys.ErrInvalidKey
	}
	hint := keys.Hint(apiKey)
	p, err := s.auth.Authenticate(ctx, apiKey)
	if err != nil {
		if errors.Is(err, keys.ErrInvalidKey) {
			s.auth.RecordLogin(ctx, keys.Principal{}, hint, addr, false)
		}
		return Pair{}, err
	}
	keyID, ok := keys.IDBytes("key_", p.KeyID)
	if !ok {
		return Pair{}, fmt.Errorf("key id %q is not one keygate made", p.KeyID)
	}
	now := s.now()
	jwt, exp, err := s.jwt.Sign(p, now)
	if err != nil {
		return Pair{}, err
	}
	// The family's start is its id's millisecond, as a refresh will read it.
	created := time.UnixMilli(now.UnixMilli()).UTC()
	expires := s.expiry(created, created)
	rt := s.firstToken(newFamilyID(created), keyID, expires)
	s.auth.RecordLogin(ctx, p, hint, addr, true)
	return Pair{JWT: keys.Secret(jwt), ExpiresAt: exp, RefreshToken: rt, RefreshTokenExpiration: expires}, nil
}
