package verify_test

import (
	"context"
	"errors"
	"testing"

	"keygate/tokens"
	"keygate/verify"
	"keygate/verify/accesstoken/accesstokentest"
)

// FuzzVerify: the verifier never panics, refuses everything with
// ErrInvalidToken, and accepts only tokens keygate issued, byte for byte.
// Each fuzzing worker is a process with a keygate and signing keys of its
// own, so a token is accepted only by the process that signed it.
func FuzzVerify(f *testing.F) {
	k := startKeygate(f, tokens.ES256, &clock{now: t0})
	v := newVerifier(f, k, nil)
	issued := map[string]bool{}
	for _, tok := range []string{k.sign(f, k.partner), k.sign(f, k.company)} {
		issued[tok] = true
		f.Add(tok)
		h, c, s := accesstokentest.Split(f, tok)
		f.Add(h + "." + c + ".")
		f.Add(h + "." + c + "." + accesstokentest.FlipUnusedBit(f, s))
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, raw string) {
		claims, err := v.Verify(ctx, raw)
		if err != nil {
			if !errors.Is(err, verify.ErrInvalidToken) || claims != nil {
				t.Fatalf("Verify = %v, %v; want no claims and ErrInvalidToken", claims, err)
			}
			return
		}
		if !issued[raw] {
			t.Fatalf("accepted a token keygate never issued: %q", raw)
		}
	})
}
