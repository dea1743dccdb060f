package tokens

import (
	"context"
	"errors"

	"keygate/keys"
)

// Logout revokes the whole family of a refresh token. Unknown, malformed or
// already revoked tokens are no error: logout is no oracle. Logging out
// with a generation-0 token writes the family's row, revoked, so that the
// token cannot start the family later.
func (s *Service) Logout(ctx context.Context, raw string) error {
	t, ok := s.parse(raw)
	if !ok {
		return nil
	}
	var seed *Family
	if t.gen == 0 && s.now().Before(t.expires) {
		// A live login token may start its family: make its row, revoked.
		// An expired one may not, but still ends the family if it has a row.
		seed = t.seed()
	}
	err := s.store.UpdateFamily(ctx, t.family(), seed, func(f *Family) (Change, error) {
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
