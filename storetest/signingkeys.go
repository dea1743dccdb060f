package storetest

import (
	"fmt"
	"slices"
	"sync"
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
	first := firstSigningKeys(t, s)
	want := []tokens.SigningKeyRecord{
		first,
		{KID: "kid_one", Algorithm: tokens.ES256, Sealed: []byte{1, 2, 3, 0, 255}, CreatedAt: t0, ActivatesAt: t0},
		{KID: "kid_two", Algorithm: tokens.EdDSA, Sealed: []byte("sealed two"), CreatedAt: t0.Add(time.Minute), ActivatesAt: t0.Add(time.Hour)},
	}
	for _, r := range want[1:] {
		in := r
		in.Sealed = slices.Clone(r.Sealed)
		must(t, "AddSigningKey", s.AddSigningKey(ctx, in))
		in.Sealed[0] ^= 0xff // the store keeps its own copy
	}
	if added, err := s.AddFirstSigningKey(ctx, tokens.SigningKeyRecord{KID: "kid_late", Algorithm: tokens.EdDSA, Sealed: []byte{1}, CreatedAt: t0, ActivatesAt: t0}); err != nil || added {
		t.Errorf("AddFirstSigningKey of an algorithm that has keys = %v, %v; want false, nil", added, err)
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

// firstSigningKeys: processes starting together on an empty store each
// offer a first RS256 key at once (AddFirstSigningKey); exactly one is
// stored, and it is the one whose call reported it added. It returns that
// key.
func firstSigningKeys(t *testing.T, s store.Store) tokens.SigningKeyRecord {
	t.Helper()
	const n = 8
	offers := make([]tokens.SigningKeyRecord, n)
	added := make([]bool, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		offers[i] = tokens.SigningKeyRecord{KID: fmt.Sprintf("kid_first_%d", i), Algorithm: tokens.RS256,
			Sealed: []byte{byte(i)}, CreatedAt: t0, ActivatesAt: t0}
		wg.Go(func() {
			<-start
			var err error
			added[i], err = s.AddFirstSigningKey(t.Context(), offers[i])
			if err != nil {
				t.Errorf("AddFirstSigningKey %d: %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	recs, err := s.ListSigningKeys(t.Context())
	must(t, "ListSigningKeys", err)
	if len(recs) != 1 {
		t.Fatalf("%d concurrent first keys on an empty store left %d keys, want 1", n, len(recs))
	}
	winner := slices.Index(added, true)
	if winner < 0 || slices.Index(added[winner+1:], true) >= 0 {
		t.Fatalf("AddFirstSigningKey reported added %v, want exactly one true", added)
	}
	if recs[0].KID != offers[winner].KID {
		t.Fatalf("stored first key %s, but the call that reported added offered %s", recs[0].KID, offers[winner].KID)
	}
	return offers[winner]
}
