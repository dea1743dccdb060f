package tokens

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
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
	return s.LoginWith(ctx, apiKey, addr, LoginOptions{})
}

// LoginOptions are what a login may ask for besides the key.
type LoginOptions struct {
	// ClientID, if set, must be the id of the key's principal: the OAuth
	// client_credentials grant, where the client authenticates with its
	// id and its key as the secret. Another id is keys.ErrInvalidKey, like
	// a wrong key, so that nothing tells the two apart.
	ClientID string
	// NoRefresh issues no refresh token (the client_credentials grant's
	// default, RFC 6749 §4.4.3).
	NoRefresh bool
	// Scope down-scopes the session: its zero value asks for all the key
	// may obtain; a scope asked for that the key does not hold is a
	// *keys.ScopeError (keys.ErrScopeNotAllowed).
	Scope keys.ScopeRequest
}

// LoginWith is Login with options.
func (s *Service) LoginWith(ctx context.Context, apiKey, addr string, o LoginOptions) (Pair, error) {
	if _, err := keys.ParseAPIKey(apiKey); err != nil {
		s.auth.RecordLogin(ctx, keys.Principal{}, keys.HintMalformed, addr, false)
		return Pair{}, keys.ErrInvalidKey
	}
	hint := keys.Hint(apiKey)
	p, err := s.auth.Authenticate(ctx, apiKey)
	if err == nil && o.ClientID != "" && subtle.ConstantTimeCompare([]byte(o.ClientID), []byte(p.ID)) != 1 {
		err = keys.ErrInvalidKey
	}
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
	granted, err := o.Scope.Grant(p.Scopes)
	if err != nil {
		return Pair{}, err
	}
	var mask uint32
	if !o.Scope.All() {
		mask = scopeMask(p.KeyScopes, granted)
	}
	p.Scopes = granted
	now := s.now()
	// The family's start is its id's millisecond, as a refresh will read it.
	created := time.UnixMilli(now.UnixMilli()).UTC()
	familyID := newFamilyID(created)
	var sid string
	if !o.NoRefresh {
		sid = hex.EncodeToString(familyID)
	}
	jwt, exp, err := s.jwt.Sign(p, sid, now)
	if err != nil {
		return Pair{}, err
	}
	s.auth.RecordLogin(ctx, p, hint, addr, true)
	pair := Pair{Principal: p, JWT: keys.Secret(jwt), ExpiresAt: exp}
	if !o.NoRefresh {
		pair.RefreshTokenExpiration = capAt(s.expiry(created, created), p.KeyExpiresAt)
		pair.RefreshToken = s.firstToken(familyID, keyID, pair.RefreshTokenExpiration, mask)
	}
	return pair, nil
}

// capAt is t, or limit if that is earlier: no token outlives its key.
func capAt(t time.Time, limit *time.Time) time.Time {
	if limit != nil && limit.Before(t) {
		return *limit
	}
	return t
}
