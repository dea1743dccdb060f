package storetest

import (
	"slices"
	"testing"
	"time"

	"keygate/store"
	"keygate/tokens"
)

// The sealed signing keys of the JWT keyring.

func testSigningKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	recs, err := s.ListSigningKeys(ctx)
	must(t, "ListSigningKeys on an empty store", err)
	if len(recs) != 0 {
		t.Fatalf("empty store lists %d signing keys", len(recs))
	}
	want := []tokens.SigningKeyRecord{
		{KID: "kid_one", Algorithm: tokens.ES256, Sealed: []byte{1, 2, 3, 0, 255}, CreatedAt: t0, ActivatesAt: t0},
		{KID: "kid_two", Algorithm: tokens.EdDSA, Sealed: []byte("sealed two"), CreatedAt: t0.Add(time.Minute), ActivatesAt: t0.Add(time.Hour)},
	}
	for _, r := range want {
		in := r
		in.Sealed = slices.Clone(r.Sealed)
		must(t, "AddSigningKey", s.AddSigningKey(ctx, in))
		in.Sealed[0] ^= 0xff // the store keeps its own copy
	}
	recs, err = s.ListSigningKeys(ctx)
	must(t, "ListSigningKeys", err)
	if len(recs) != len(want) {
		t.Fatalf("ListSigningKeys = %d keys, want %d", len(recs), len(want))
	}
	for _, w := range want {
		i := slices.IndexFunc(recs, func(r tokens.SigningKeyRecord) bool { return r.KID == w.KID })
		if i < 0 {
			t.Errorf("ListSigningKeys lacks %s", w.KID)
			continue
		}
		got := recs[i]
		if got.Algorithm != w.Algorithm || !slices.Equal(got.Sealed, w.Sealed) {
			t.Errorf("signing key %s = {%s %x}, want {%s %x}", w.KID, got.Algorithm, got.Sealed, w.Algorithm, w.Sealed)
		}
		sameTime(t, "signing key CreatedAt", got.CreatedAt, w.CreatedAt)
		sameTime(t, "signing key ActivatesAt", got.ActivatesAt, w.ActivatesAt)
	}
}
