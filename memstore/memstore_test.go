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

// BenchmarkFirstRefresh is the floor of sqlite's BenchmarkFirstRefresh:
// each op is a login's first refresh, which inserts its family's row.
func BenchmarkFirstRefresh(b *testing.B) {
	s := memstore.New()
	now := time.Now()
	p := keys.Partner{ID: keys.NewID("par_"), Name: "Acme", Status: keys.StatusActive, CreatedAt: now}
	secret := keys.NewAPIKey(keys.PartnerKeyPrefix).Reveal()
	k := keys.Key{ID: keys.NewID("key_"), Owner: keys.PartnerOwner(p.ID), Hint: keys.Hint(secret), CreatedAt: now}
	if err := s.CreatePartner(context.Background(), p, k, keys.DigestOf(secret), nil); err != nil {
		b.Fatal(err)
	}
	rotate := func(f *tokens.Family) (tokens.Change, error) {
		f.ParentExpiresAt, f.Generation, f.ExpiresAt = f.ExpiresAt, f.Generation+1, f.ExpiresAt.Add(time.Hour)
		return tokens.Change{Write: true}, nil
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			seed := tokens.Family{ID: keys.NewID("fam_"), Principal: keys.Principal{KeyID: k.ID}, CreatedAt: now, RotatedAt: now,
				ExpiresAt: now.Add(time.Hour), FirstExpiresAt: now.Add(time.Hour)}
			if err := s.UpdateFamily(context.Background(), seed.ID, &seed, rotate); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
