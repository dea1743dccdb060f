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
	return s.revoke(ctx, raw, "")
}

// RevokeAs is Logout for an authenticated client (OAuth revocation,
// RFC 7009): a token of another principal than clientID changes nothing.
func (s *Service) RevokeAs(ctx context.Context, raw, clientID string) error {
	return s.revoke(ctx, raw, clientID)
}

func (s *Service) revoke(ctx context.Context, raw, clientID string) error {
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
		f.settle()
		if f.RevokedAt != nil || clientID != "" && f.Principal.ID != clientID {
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
