package memstore_test

import (
	"context"
	"testing"
	"time"

	"keygate/keys"
	"keygate/memstore"
	"keygate/storetest"
	"keygate/tokens"
)

func TestStoreContract(t *testing.T) {
	storetest.Run(t, func(*testing.T) storetest.Store { return memstore.New() })
}

// BenchmarkCreateFamily is the floor of sqlite's BenchmarkCreateFamily.
func BenchmarkCreateFamily(b *testing.B) {
	s := memstore.New()
	now := time.Now()
	p := keys.Partner{ID: keys.NewID("par_"), Name: "Acme", Status: keys.StatusActive, CreatedAt: now}
	secret := keys.NewAPIKey(keys.PartnerKeyPrefix).Reveal()
	k := keys.Key{ID: keys.NewID("key_"), PartnerID: p.ID, Hint: keys.Hint(secret), CreatedAt: now}
	if err := s.CreatePartner(context.Background(), p, k, keys.DigestOf(secret), nil); err != nil {
		b.Fatal(err)
	}
	principal := keys.Principal{Kind: keys.KindPartner, ID: p.ID, PartnerID: p.ID, KeyID: k.ID}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			f := tokens.Family{ID: keys.NewID("fam_"), Principal: principal, CreatedAt: now, Generation: 1, RotatedAt: now, ExpiresAt: now.Add(time.Hour)}
			if err := s.CreateFamily(context.Background(), f); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
