package tokens_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"keygate/tokens"
)

func TestEnsureKeyFirstStart(t *testing.T) {
	for _, alg := range asymmetric {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t, withAlg(alg)) // runs EnsureKey and Load
			list, err := e.ring.List(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != 1 {
				t.Fatalf("%d keys after first start, want 1", len(list))
			}
			k := list[0]
			if k.Algorithm != alg || !k.CreatedAt.Equal(t0) || !k.ActivatesAt.Equal(t0) || k.RetiredAt != nil {
				t.Fatalf("first key %+v: want %s, created and active at %v, not retired", k, alg, t0)
			}
			tok := e.sign(t, e.newPartner(t, "Acme").Principal)
			if kid := headerOf(t, tok)["kid"]; kid != k.KID {
				t.Fatalf("signed with %v, want %s", kid, k.KID)
			}

			// A restart finds the key and creates none.
			ring := e.newKeyring(e.master)
			if err := ring.EnsureKey(t.Context()); err != nil {
				t.Fatal(err)
			}
			if err := ring.Load(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got := onlyKID(t, e); got != k.KID {
				t.Fatalf("kid %s after restart, want %s", got, k.KID)
			}
			j, err := tokens.NewJWT(tokens.JWTConfig{Issuer: testIssuer, Audience: testAudience, Algorithm: alg, AccessTTL: testAccessTTL, Leeway: testLeeway}, ring, e.clock.Now)
			if err != nil {
				t.Fatal(err)
			}
			mustVerify(t, j, tok)
		})
	}
}

// jwksKIDs returns the kids the keyring publishes, in order.
func jwksKIDs(tb testing.TB, ring *tokens.Keyring) []string {
	tb.Helper()
	var kids []string
	for _, k := range parseJWKS(tb, ring.JWKS()) {
		kids = append(kids, k["kid"].(string))
	}
	return kids
}

func signedBy(tb testing.TB, tok string) string {
	tb.Helper()
	kid, _ := headerOf(tb, tok)["kid"].(string)
	return kid
}

func TestRotation(t *testing.T) {
	for _, alg := range asymmetric {
		t.Run(alg, func(t *testing.T) {
			ctx := t.Context()
			e := newEnv(t, withAlg(alg))
			p := e.newPartner(t, "Acme")
			oldKID := onlyKID(t, e)

			// The CLI rotates from its own process; the server reloads.
			cli := e.newKeyring(e.master)
			info, err := cli.Rotate(ctx)
			if err != nil {
				t.Fatalf("Rotate: %v", err)
			}
			if info.Algorithm != alg || !info.CreatedAt.Equal(t0) || !info.ActivatesAt.Equal(t0.Add(testDelay)) {
				t.Fatalf("Rotate returned %+v, want activation at %v", info, t0.Add(testDelay))
			}
			newKID := info.KID
			if err := e.ring.Load(ctx); err != nil {
				t.Fatal(err)
			}
			if got := jwksKIDs(t, e.ring); !slices.Equal(got, []string{oldKID, newKID}) {
				t.Fatalf("JWKS right after rotation has %v, want old and new %v", got, []string{oldKID, newKID})
			}
			if kid := signedBy(t, e.sign(t, p.Principal)); kid != oldKID {
				t.Fatalf("signed with %s before activation, want the old key %s", kid, oldKID)
			}

			e.clock.Set(t0.Add(testDelay - time.Second))
			if err := e.ring.Load(ctx); err != nil {
				t.Fatal(err)
			}
			lastOld := e.sign(t, p.Principal)
			if kid := signedBy(t, lastOld); kid != oldKID {
				t.Fatalf("signed with %s a second before activation, want %s", kid, oldKID)
			}

			retired := t0.Add(testDelay)
			e.clock.Set(retired)
			if err := e.ring.Load(ctx); err != nil {
				t.Fatal(err)
			}
			firstNew := e.sign(t, p.Principal)
			if kid := signedBy(t, firstNew); kid != newKID {
				t.Fatalf("signed with %s at activation, want the new key %s", kid, newKID)
			}
			mustVerify(t, e.jwt, lastOld)
			mustVerify(t, e.jwt, firstNew)
			list, err := e.ring.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != 2 || list[0].RetiredAt == nil || !list[0].RetiredAt.Equal(retired) || list[1].RetiredAt != nil {
				t.Fatalf("List after activation: %+v", list)
			}

			// The old key stays until every token it signed has expired.
			lastExpiry := t0.Add(testDelay - time.Second + testAccessTTL)
			e.clock.Set(lastExpiry.Add(testLeeway - time.Second))
			if err := e.ring.Load(ctx); err != nil {
				t.Fatal(err)
			}
			if got := jwksKIDs(t, e.ring); !slices.Equal(got, []string{oldKID, newKID}) {
				t.Fatalf("JWKS while old tokens live has %v", got)
			}
			mustVerify(t, e.jwt, lastOld)

			e.clock.Set(retired.Add(testAccessTTL + testLeeway))
			if err := e.ring.Load(ctx); err != nil {
				t.Fatal(err)
			}
			if got := jwksKIDs(t, e.ring); !slices.Equal(got, []string{oldKID, newKID}) {
				t.Fatalf("JWKS at retirement+AccessTTL+Leeway has %v, want both", got)
			}

			e.clock.Set(retired.Add(testAccessTTL + testLeeway + time.Second))
			if err := e.ring.Load(ctx); err != nil {
				t.Fatal(err)
			}
			if got := jwksKIDs(t, e.ring); !slices.Equal(got, []string{newKID}) {
				t.Fatalf("JWKS after the old key's last token expired has %v, want only %s", got, newKID)
			}
			// Refused for its kid, before any claim is looked at.
			if err := mustReject(t, e.jwt, lastOld); !errors.Is(err, jwt.ErrTokenUnverifiable) {
				t.Fatalf("old token refused with %v, want an unknown kid", err)
			}
			mustVerify(t, e.jwt, e.sign(t, p.Principal))
		})
	}
}

// TestRotationBeforeActivation: a key rotated twice before the first new
// key activates never signs out of order, and the oldest stays until its
// tokens expire.
func TestRotationTwice(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	p := e.newPartner(t, "Acme")
	first := onlyKID(t, e)
	second, err := e.ring.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(testDelay / 2)
	third, err := e.ring.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ring.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if got := jwksKIDs(t, e.ring); !slices.Equal(got, []string{first, second.KID, third.KID}) {
		t.Fatalf("JWKS %v", got)
	}
	for _, step := range []struct {
		at   time.Time
		want string
	}{
		{t0.Add(testDelay - time.Second), first},
		{second.ActivatesAt, second.KID},
		{third.ActivatesAt.Add(-time.Second), second.KID},
		{third.ActivatesAt, third.KID},
	} {
		e.clock.Set(step.at)
		if err := e.ring.Load(ctx); err != nil {
			t.Fatal(err)
		}
		if kid := signedBy(t, e.sign(t, p.Principal)); kid != step.want {
			t.Fatalf("at %v signed with %s, want %s", step.at, kid, step.want)
		}
	}
}

func TestJWKSPublishesNoPrivateParts(t *testing.T) {
	for _, alg := range asymmetric {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t, withAlg(alg))
			if _, err := e.ring.Rotate(t.Context()); err != nil {
				t.Fatal(err)
			}
			if err := e.ring.Load(t.Context()); err != nil {
				t.Fatal(err)
			}
			set := parseJWKS(t, e.ring.JWKS())
			if len(set) != 2 {
				t.Fatalf("%d keys published, want 2", len(set))
			}
			wantMembers := map[string][]string{
				tokens.ES256: {"alg", "crv", "kid", "kty", "use", "x", "y"},
				tokens.EdDSA: {"alg", "crv", "kid", "kty", "use", "x"},
				tokens.RS256: {"alg", "e", "kid", "kty", "n", "use"},
			}[alg]
			for _, k := range set {
				for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
					if _, ok := k[private]; ok {
						t.Fatalf("JWK %v publishes private member %q", k["kid"], private)
					}
				}
				var members []string
				for m := range k {
					members = append(members, m)
				}
				slices.Sort(members)
				if !slices.Equal(members, wantMembers) {
					t.Errorf("JWK members %v, want %v", members, wantMembers)
				}
				if k["alg"] != alg || k["use"] != "sig" || k["kid"] == "" {
					t.Errorf("JWK %v: want alg %s, use sig and a kid", k, alg)
				}
				if alg == tokens.RS256 && k["e"] != "AQAB" {
					t.Errorf("RSA exponent %v, want AQAB", k["e"])
				}
				publicKeyOf(t, k) // a usable key
			}
		})
	}
}

func TestHS256Keyring(t *testing.T) {
	e := newEnv(t, withAlg(tokens.HS256))
	if got := string(e.ring.JWKS()); got != `{"keys":[]}` {
		t.Fatalf("HS256 JWKS %s, want no keys", got)
	}
	if _, err := e.ring.Rotate(t.Context()); !errors.Is(err, tokens.ErrHMACRotation) {
		t.Fatalf("Rotate = %v, want ErrHMACRotation", err)
	}
	list, err := e.ring.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 0 {
		t.Fatalf("HS256 stored %d signing keys", len(list))
	}
	mustVerify(t, e.jwt, e.sign(t, e.newPartner(t, "Acme").Principal))
}

func TestKeyringWrongMasterKey(t *testing.T) {
	e := newEnv(t)
	other, err := tokens.NewMasterKey(otherMasterKey)
	if err != nil {
		t.Fatal(err)
	}
	ring := e.newKeyring(other)
	if err := ring.Load(t.Context()); !errors.Is(err, tokens.ErrSealed) {
		t.Fatalf("Load with another master key = %v, want ErrSealed", err)
	}
	// The right key still opens them.
	if err := e.newKeyring(e.master).Load(t.Context()); err != nil {
		t.Fatalf("Load with the master key: %v", err)
	}
}

func TestKeyringLoadWithoutKeys(t *testing.T) {
	e := newEnv(t)
	// A keyring for another algorithm finds no key of its own in the store.
	ring := tokens.NewKeyring(tokens.KeyringConfig{Algorithm: tokens.EdDSA, AccessTTL: testAccessTTL, Leeway: testLeeway}, e.master, e.db, e.clock.Now, discardLogger())
	if err := ring.Load(t.Context()); err == nil {
		t.Fatal("Load with no key of the configured algorithm succeeded")
	}
}
