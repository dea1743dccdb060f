package memstore_test

import (
	"context"
	"testing"
	"time"

	"keygate/keys"
	"keygate/memstore"
	"keygate/store"
	"keygate/storetest"
	"keygate/tokens"
)

func TestStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s := memstore.New()
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	})
}

// BenchmarkStartFamily is the floor of sqlite's BenchmarkStartFamily.
func BenchmarkStartFamily(b *testing.B) {
	s := memstore.New()
	now := time.Now()
	p := keys.Partner{ID: keys.NewID("par_"), Name: "Acme", Status: keys.StatusActive, CreatedAt: now}
	secret := keys.NewAPIKey(keys.PartnerKeyPrefix).Reveal()
	k := keys.Key{ID: keys.NewID("key_"), Owner: keys.PartnerOwner(p.ID), Hint: keys.Hint(secret), CreatedAt: now}
	digest := keys.DigestOf(secret)
	if err := s.CreatePartner(context.Background(), p, k, digest, nil); err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			f := tokens.Family{ID: keys.NewID("fam_"), CreatedAt: now, Generation: 1, RotatedAt: now, ExpiresAt: now.Add(time.Hour)}
			if _, err := s.StartFamily(context.Background(), digest, f); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
