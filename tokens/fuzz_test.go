package tokens_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"keygate/keys"
	"keygate/tokens"
)

// FuzzVerify: the verifier never panics, refuses everything with
// ErrInvalidToken, and accepts only tokens it signed, byte for byte.
// Seeds: testdata/fuzz/FuzzVerify, plus fresh tokens of every algorithm.
//
// The fuzzing workers are separate processes with signing keys of their
// own, so an ES256 or EdDSA token is accepted only by the process that
// signed it, and must be one of its tokens exactly. HS256 uses the fixed
// test secret, so seeds stay valid in every worker and mutations of real
// tokens are explored; an accepted HS256 token must be exactly what the
// signer would write for the claims it carries.
func FuzzVerify(f *testing.F) {
	type verifier struct {
		e      *env
		kid    string
		issued map[string]bool // every token this process signed
	}
	var verifiers []verifier
	for _, alg := range []string{tokens.HS256, tokens.ES256, tokens.EdDSA} {
		e := newEnv(f, withAlg(alg))
		p := e.newPartner(f, "Acme")
		c := e.newCompany(f, p, "Widgets")
		v := verifier{e: e, issued: map[string]bool{}}
		for _, pr := range []principal{p, c} {
			tok := e.sign(f, pr.Principal)
			v.issued[tok] = true
			v.kid, _ = headerOf(f, tok)["kid"].(string)
			h, cl, s := splitJWT(f, tok)
			f.Add(tok)
			f.Add(h + "." + cl + ".")
			f.Add(h + "." + cl + "." + flipUnusedBit(f, s))
			noneHeader := encodeSegment(f, map[string]any{"alg": "none", "kid": v.kid, "typ": "at+jwt"})
			f.Add(noneHeader + "." + cl + ".")
		}
		verifiers = append(verifiers, v)
	}

	f.Fuzz(func(t *testing.T, raw string) {
		for _, v := range verifiers {
			claims, err := v.e.jwt.Verify(raw)
			if err != nil {
				if !errors.Is(err, tokens.ErrInvalidToken) {
					t.Fatalf("%s: Verify error %v is not ErrInvalidToken", v.e.cfg.alg, err)
				}
				if claims != nil {
					t.Fatalf("%s: claims returned with an error", v.e.cfg.alg)
				}
				continue
			}
			if claims == nil {
				t.Fatalf("%s: accepted without claims", v.e.cfg.alg)
			}
			if v.e.cfg.alg != tokens.HS256 {
				if !v.issued[raw] {
					t.Fatalf("%s: accepted a token it never signed: %q", v.e.cfg.alg, raw)
				}
				continue
			}
			if want := canonicalHS256(t, v.kid, claims); raw != want {
				t.Fatalf("HS256: accepted %q, but the signer writes these claims as %q", raw, want)
			}
		}
	})
}

// canonicalHS256 is the token the gateway's signer writes for claims.
func canonicalHS256(tb testing.TB, kid string, claims *tokens.Claims) string {
	tb.Helper()
	input := encodeSegment(tb, map[string]any{"alg": tokens.HS256, "kid": kid, "typ": tokens.TokenType}) + "." + encodeSegment(tb, claims)
	return input + "." + hs256(input, []byte(testHMACSecret))
}

// FuzzRefreshParse: Refresh, Logout and FamilyOf never panic on any string,
// and Refresh accepts only tokens this process's service issued (the
// families, and the keys a login's token names, live in its own database).
// Seeds: testdata/fuzz/FuzzRefreshParse, plus this run's tokens.
func FuzzRefreshParse(f *testing.F) {
	e := newEnv(f)
	p := e.newPartner(f, "Acme")
	var mu sync.Mutex
	issued := map[string]bool{}
	for range 2 {
		first := e.login(f, p)
		later := e.refresh(f, e.login(f, p).RefreshToken) // a token of each form
		for _, pair := range []tokens.Pair{first, later} {
			tok := pair.RefreshToken.Reveal()
			issued[tok] = true
			f.Add(tok)
			f.Add(tamper(f, tok, 0))
			f.Add(tamper(f, tok, len(payloadOf(f, tok))-1))
			f.Add(pair.JWT.Reveal())
		}
	}
	f.Add(p.apiKey)

	ctx := context.Background()
	f.Fuzz(func(t *testing.T, raw string) {
		mu.Lock()
		defer mu.Unlock()
		// Every worker shares the test master key, so FamilyOf accepts
		// tokens other workers issued; each must be in its one encoding.
		if _, ok := familyOf(e.svc, raw); ok {
			if !canonicalRefreshToken(raw) {
				t.Fatalf("FamilyOf accepted a non-canonical token: %q", raw)
			}
		} else if issued[raw] {
			t.Fatalf("FamilyOf refused a token the service issued: %q", raw)
		}
		pair, err := e.svc.Refresh(ctx, raw, testAddr)
		switch {
		case err == nil && !issued[raw]:
			t.Fatalf("Refresh accepted a token never issued: %q", raw)
		case err == nil:
			issued[pair.RefreshToken.Reveal()] = true
		case !errors.Is(err, tokens.ErrInvalidRefreshToken):
			t.Fatalf("Refresh error %v is not ErrInvalidRefreshToken", err)
		}
		if err := e.svc.Logout(ctx, raw); err != nil {
			t.Fatalf("Logout: %v", err)
		}
	})
}

// canonicalRefreshToken reports whether raw is a refresh token of either
// form in its one encoding.
func canonicalRefreshToken(raw string) bool {
	for _, n := range []int{refreshPayloadLen, firstPayloadLen} {
		if payload, err := keys.Decode(raw, keys.RefreshTokenPrefix, n); err == nil {
			return keys.Encode(keys.RefreshTokenPrefix, payload).Reveal() == raw
		}
	}
	return false
}
