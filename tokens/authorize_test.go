package tokens_test

import (
	"errors"
	"testing"

	"keygate/keys"
	"keygate/tokens"
)

func TestAuthorize(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	p := e.newPartner(t, "Acme")
	pair := e.login(t, p)
	sess, err := e.svc.Authorize(ctx, pair.JWT.Reveal())
	if err != nil {
		t.Fatalf("Authorize: %v", err)
	}
	if sess.Principal.ID != p.ID || sess.Principal.KeyID != p.KeyID || sess.Principal.Name != "Acme" || !sess.ExpiresAt.Equal(pair.ExpiresAt) {
		t.Fatalf("session %+v", sess)
	}
	for name, tok := range map[string]string{"refresh token": pair.RefreshToken.Reveal(), "API key": p.apiKey, "empty": ""} {
		if _, err := e.svc.Authorize(ctx, tok); !errors.Is(err, tokens.ErrInvalidToken) {
			t.Errorf("Authorize(%s) = %v, want ErrInvalidToken", name, err)
		}
	}
	if err := e.keys.RevokeKey(ctx, keys.Operator, p.Owner(), p.KeyID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Authorize(ctx, pair.JWT.Reveal()); !errors.Is(err, tokens.ErrInvalidToken) {
		t.Fatalf("Authorize after the key was revoked = %v, want ErrInvalidToken", err)
	}
}
