package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"keygate/store"
	"keygate/tokens"
)

// The sealed secrets (the refresh tokens' MAC key) and re-sealing all that
// is sealed under the master key (a master-key rotation).

// testSealedSecrets: a secret is stored once; a second one of its name is
// not; a placeholder (no seal) is replaced by the first real one.
func testSealedSecrets(t *testing.T, s store.Store) {
	ctx := t.Context()
	got, err := s.ListSealedSecrets(ctx)
	must(t, "ListSealedSecrets on an empty store", err)
	if len(got) != 0 {
		t.Fatalf("empty store lists %d sealed secrets", len(got))
	}

	first := tokens.SealedSecret{Name: "one", Sealed: []byte{0, 1, 2, 255}, CreatedAt: t0}
	in := first
	in.Sealed = slices.Clone(first.Sealed)
	added, err := s.AddSealedSecret(ctx, in)
	if err != nil || !added {
		t.Fatalf("AddSealedSecret to an empty store = %v, %v; want true, nil", added, err)
	}
	in.Sealed[0] ^= 0xff // the store keeps its own copy
	if added, err := s.AddSealedSecret(ctx, tokens.SealedSecret{Name: "one", Sealed: []byte("another"), CreatedAt: t0.Add(time.Hour)}); err != nil || added {
		t.Errorf("AddSealedSecret of a stored name = %v, %v; want false, nil", added, err)
	}

	// A placeholder is stored as such, and gives way to the first secret.
	if added, err := s.AddSealedSecret(ctx, tokens.SealedSecret{Name: "derived", CreatedAt: t0}); err != nil || !added {
		t.Fatalf("AddSealedSecret of a placeholder = %v, %v; want true, nil", added, err)
	}
	if p := wantSecret(t, s, "derived"); !p.Placeholder() {
		t.Errorf("a placeholder reads back with %d sealed bytes", len(p.Sealed))
	}
	filled := tokens.SealedSecret{Name: "derived", Sealed: []byte("sealed derived"), CreatedAt: t0.Add(time.Minute)}
	if added, err := s.AddSealedSecret(ctx, filled); err != nil || !added {
		t.Fatalf("AddSealedSecret over a placeholder = %v, %v; want true, nil", added, err)
	}
	if added, err := s.AddSealedSecret(ctx, tokens.SealedSecret{Name: "derived", Sealed: []byte("late"), CreatedAt: t0}); err != nil || added {
		t.Errorf("AddSealedSecret over a filled placeholder = %v, %v; want false, nil", added, err)
	}

	got, err = s.ListSealedSecrets(ctx)
	must(t, "ListSealedSecrets", err)
	if len(got) != 2 {
		t.Fatalf("ListSealedSecrets = %d secrets, want 2", len(got))
	}
	for _, want := range []tokens.SealedSecret{first, filled} {
		g := wantSecret(t, s, want.Name)
		if !slices.Equal(g.Sealed, want.Sealed) {
			t.Errorf("sealed secret %s = %x, want %x", want.Name, g.Sealed, want.Sealed)
		}
		sameTime(t, "sealed secret "+want.Name+" CreatedAt", g.CreatedAt, want.CreatedAt)
	}
}

// testSealedSecretsConcurrent: processes starting together each offer a
// secret of one name at once, on an empty store and over a placeholder;
// exactly one is stored, the one whose call reported it added.
func testSealedSecretsConcurrent(t *testing.T, s store.Store) {
	for _, name := range []string{"fresh", "placeholder"} {
		if name == "placeholder" {
			if _, err := s.AddSealedSecret(t.Context(), tokens.SealedSecret{Name: name, CreatedAt: t0}); err != nil {
				t.Fatalf("AddSealedSecret of a placeholder: %v", err)
			}
		}
		const n = 8
		added := make([]bool, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				var err error
				added[i], err = s.AddSealedSecret(t.Context(), tokens.SealedSecret{Name: name, Sealed: []byte{byte(i), 7}, CreatedAt: t0})
				if err != nil {
					t.Errorf("AddSealedSecret %d: %v", i, err)
				}
			})
		}
		close(start)
		wg.Wait()
		winner := slices.Index(added, true)
		if winner < 0 || slices.Index(added[winner+1:], true) >= 0 {
			t.Fatalf("%s: AddSealedSecret reported added %v, want exactly one true", name, added)
		}
		if got := wantSecret(t, s, name); !slices.Equal(got.Sealed, []byte{byte(winner), 7}) {
			t.Fatalf("%s: stored %x, but the call that reported added offered %x", name, got.Sealed, []byte{byte(winner), 7})
		}
	}
}

// testReseal: one transaction re-seals every signing key and every sealed
// secret, placeholders too; a plan that misses a row, names one that is
// not there, or expects a seal that changed meanwhile changes nothing.
func testReseal(t *testing.T, s store.Store) {
	ctx := t.Context()
	keys := []tokens.SigningKeyRecord{
		{KID: "kid_a", Algorithm: tokens.ES256, Sealed: []byte("a sealed"), CreatedAt: t0, ActivatesAt: t0},
		{KID: "kid_b", Algorithm: tokens.ES256, Sealed: []byte("b sealed"), CreatedAt: t0.Add(time.Minute), ActivatesAt: t0.Add(time.Hour)},
		{KID: "kid_c", Algorithm: tokens.EdDSA, Sealed: []byte("c sealed"), CreatedAt: t0, ActivatesAt: t0},
	}
	for _, k := range keys {
		must(t, "AddSigningKey", s.AddSigningKey(ctx, k))
	}
	secrets := []tokens.SealedSecret{
		{Name: "s_one", Sealed: []byte("one sealed"), CreatedAt: t0},
		{Name: "s_placeholder", CreatedAt: t0},
	}
	for _, sec := range secrets {
		if _, err := s.AddSealedSecret(ctx, sec); err != nil {
			t.Fatalf("AddSealedSecret: %v", err)
		}
	}
	// The whole plan: kid_b is sealed under the new key already.
	full := func() tokens.ResealPlan {
		return tokens.ResealPlan{
			SigningKeys: []tokens.Reseal{
				{Name: "kid_a", Old: []byte("a sealed"), New: []byte("a new")},
				{Name: "kid_b", Old: []byte("b sealed"), New: []byte("b sealed")},
				{Name: "kid_c", Old: []byte("c sealed"), New: []byte("c new")},
			},
			Secrets: []tokens.Reseal{
				{Name: "s_one", Old: []byte("one sealed"), New: []byte("one new")},
				{Name: "s_placeholder", Old: nil, New: []byte("placeholder new")},
			},
		}
	}
	for _, tc := range []struct {
		name   string
		change func(p *tokens.ResealPlan)
	}{
		{"a signing key missing", func(p *tokens.ResealPlan) { p.SigningKeys = p.SigningKeys[:2] }},
		{"a secret missing", func(p *tokens.ResealPlan) { p.Secrets = p.Secrets[1:] }},
		{"a signing key that is not there", func(p *tokens.ResealPlan) { p.SigningKeys[2].Name = "kid_gone" }},
		{"a secret that is not there", func(p *tokens.ResealPlan) { p.Secrets[0].Name = "s_gone" }},
		{"an extra signing key", func(p *tokens.ResealPlan) {
			p.SigningKeys = append(p.SigningKeys, tokens.Reseal{Name: "kid_gone", Old: []byte("x"), New: []byte("y")})
		}},
		{"the last signing key's seal changed", func(p *tokens.ResealPlan) { p.SigningKeys[2].Old = []byte("c other") }},
		{"the last secret's seal changed", func(p *tokens.ResealPlan) { p.Secrets[1].Old = []byte("filled meanwhile") }},
		{"a secret read as a placeholder that is none", func(p *tokens.ResealPlan) { p.Secrets[0].Old = nil }},
	} {
		plan := full()
		tc.change(&plan)
		if err := s.Reseal(ctx, plan); !errors.Is(err, tokens.ErrResealConflict) {
			t.Errorf("Reseal with %s: err = %v, want ErrResealConflict", tc.name, err)
		}
		wantSeals(t, s, "after a refused Reseal ("+tc.name+")",
			map[string]string{"kid_a": "a sealed", "kid_b": "b sealed", "kid_c": "c sealed"},
			map[string]string{"s_one": "one sealed", "s_placeholder": ""})
	}

	must(t, "Reseal", s.Reseal(ctx, full()))
	wantSeals(t, s, "after Reseal",
		map[string]string{"kid_a": "a new", "kid_b": "b sealed", "kid_c": "c new"},
		map[string]string{"s_one": "one new", "s_placeholder": "placeholder new"})
	// Nothing else of a row changes.
	recs, err := s.ListSigningKeys(ctx)
	must(t, "ListSigningKeys", err)
	for _, want := range keys {
		i := slices.IndexFunc(recs, func(r tokens.SigningKeyRecord) bool { return r.KID == want.KID })
		if i < 0 {
			t.Fatalf("signing key %s gone after Reseal", want.KID)
		}
		if recs[i].Algorithm != want.Algorithm {
			t.Errorf("signing key %s algorithm %s after Reseal, want %s", want.KID, recs[i].Algorithm, want.Algorithm)
		}
		sameTime(t, "signing key CreatedAt after Reseal", recs[i].CreatedAt, want.CreatedAt)
		sameTime(t, "signing key ActivatesAt after Reseal", recs[i].ActivatesAt, want.ActivatesAt)
	}
	sameTime(t, "sealed secret CreatedAt after Reseal", wantSecret(t, s, "s_one").CreatedAt, t0)

	// The same plan again expects seals that are gone.
	if err := s.Reseal(ctx, full()); !errors.Is(err, tokens.ErrResealConflict) {
		t.Errorf("Reseal of a plan already written: err = %v, want ErrResealConflict", err)
	}
}

// wantSecret returns the stored secret of that name.
func wantSecret(t *testing.T, s store.Store, name string) tokens.SealedSecret {
	t.Helper()
	all, err := s.ListSealedSecrets(t.Context())
	must(t, "ListSealedSecrets", err)
	i := slices.IndexFunc(all, func(sec tokens.SealedSecret) bool { return sec.Name == name })
	if i < 0 {
		t.Fatalf("ListSealedSecrets lacks %s", name)
	}
	return all[i]
}

// wantSeals checks every stored signing key's and secret's seal, and that
// there are no others.
func wantSeals(t *testing.T, s store.Store, when string, signing, secrets map[string]string) {
	t.Helper()
	recs, err := s.ListSigningKeys(t.Context())
	must(t, "ListSigningKeys", err)
	got := map[string]string{}
	for _, r := range recs {
		got[r.KID] = string(r.Sealed)
	}
	if fmt.Sprint(got) != fmt.Sprint(signing) {
		t.Errorf("%s: signing keys' seals %q, want %q", when, got, signing)
	}
	all, err := s.ListSealedSecrets(t.Context())
	must(t, "ListSealedSecrets", err)
	got = map[string]string{}
	for _, sec := range all {
		got[sec.Name] = string(sec.Sealed)
	}
	if fmt.Sprint(got) != fmt.Sprint(secrets) {
		t.Errorf("%s: sealed secrets %q, want %q", when, got, secrets)
	}
}
