package tokens

import (
	"context"
	"encoding/hex"
	"errors"

	"keygate/keys"
)

// Logout revokes the whole family of a refresh token. Unknown, malformed or
// already revoked tokens are no error: logout is no oracle.
func (s *Service) Logout(ctx context.Context, raw string) error {
	idBytes, _, ok := s.parse(raw)
	if !ok {
		return nil
	}
	err := s.store.UpdateFamily(ctx, hex.EncodeToString(idBytes), func(f *Family) (Change, error) {
		if f.RevokedAt != nil {
			return Change{}, nil
		}
		now := s.now()
		f.RevokedAt, f.RevokeReason = &now, "logout"
		return Change{Write: true}, nil
	})
	if errors.Is(err, keys.ErrNotFound) {
		return nil
	}
	return err
}
