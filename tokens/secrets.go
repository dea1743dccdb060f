package tokens

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// RefreshMACSecret names the refresh tokens' MAC key among the sealed
// secrets.
const RefreshMACSecret = "refresh-token-mac"

// refreshMACLen is the length of a new refresh-token MAC key: 256 bits.
const refreshMACLen = 32

// SealedSecret is a secret stored sealed under the master key, as the
// signing keys are, so that a master-key rotation re-seals it and the
// secret itself stays the same.
type SealedSecret struct {
	Name string
	// Sealed is the secret sealed under the master key, bound to Name.
	// Empty: a placeholder, which the migration that added sealed secrets
	// left in a database already in use. Its secret is the one the master
	// key derives (keygate derived the refresh tokens' MAC key before it
	// stored one), and the first start after the upgrade stores it sealed,
	// so that every refresh token issued before keeps working.
	Sealed    []byte
	CreatedAt time.Time
}

// Placeholder reports whether s holds no sealed secret yet.
func (s SealedSecret) Placeholder() bool { return len(s.Sealed) == 0 }

// SecretStore persists the sealed secrets, and re-seals everything sealed
// under the master key.
type SecretStore interface {
	// ListSealedSecrets returns every stored secret, placeholders too.
	ListSealedSecrets(ctx context.Context) ([]SealedSecret, error)
	// AddSealedSecret stores s unless a secret of s.Name is stored already,
	// deciding atomically, so that of several processes (replicas starting
	// together) exactly one adds its secret; a placeholder is no secret:
	// s replaces it. added reports whether this call's s was stored.
	AddSealedSecret(ctx context.Context, s SealedSecret) (added bool, err error)
	// Reseal writes a master-key rotation in one transaction: every row it
	// names gets its New seal, each only if its seal is still Old, and only
	// if the plan names every signing key and every sealed secret stored.
	// Otherwise nothing changes and it returns ErrResealConflict.
	Reseal(ctx context.Context, plan ResealPlan) error
}

// SealedStore is what holds sealed data: the signing keys and the secrets.
type SealedStore interface {
	KeyStore
	SecretStore
}

// RefreshKey is the refresh tokens' MAC key, opened: LoadRefreshKey makes
// one, NewService takes it.
type RefreshKey struct {
	mac []byte
}

func (RefreshKey) String() string { return "REDACTED" }

// GoString keeps %#v from printing the key.
func (RefreshKey) GoString() string { return "REDACTED" }

// LogValue implements slog.LogValuer.
func (RefreshKey) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// LoadRefreshKey opens the refresh tokens' MAC key stored in st. A store
// that has none yet gets one, in the same insert-if-absent as the first
// signing key, so that replicas starting together end with one between
// them: a random key in a fresh database; in a database used before keygate
// stored the key (a placeholder), the key master derives, as keygate did
// then, so that no outstanding refresh token is stranded. A running process
// never reloads it: a master-key rotation re-seals the same key.
func LoadRefreshKey(ctx context.Context, st SealedStore, master MasterKey, now func() time.Time) (RefreshKey, error) {
	stored, found, err := refreshSecret(ctx, st)
	if err != nil {
		return RefreshKey{}, err
	}
	if !found || stored.Placeholder() {
		var key []byte
		if found {
			// A wrong master key would derive a wrong key and store it
			// for good: prove it first on what it sealed before.
			if err := openSigningKeys(ctx, st, master); err != nil {
				return RefreshKey{}, err
			}
			key = master.derivedMAC
		} else {
			key = make([]byte, refreshMACLen)
			_, _ = rand.Read(key)
		}
		s := SealedSecret{Name: RefreshMACSecret, Sealed: master.seal(key, secretAAD(RefreshMACSecret)), CreatedAt: now()}
		if _, err := st.AddSealedSecret(ctx, s); err != nil {
			return RefreshKey{}, err
		}
		// Whoever's key was stored is the key.
		if stored, found, err = refreshSecret(ctx, st); err != nil {
			return RefreshKey{}, err
		}
		if !found || stored.Placeholder() {
			return RefreshKey{}, errors.New("the refresh-token MAC key was stored but is not there")
		}
	}
	key, err := master.open(stored.Sealed, secretAAD(stored.Name))
	if err != nil {
		return RefreshKey{}, fmt.Errorf("sealed secret %s: %w", stored.Name, err)
	}
	return RefreshKey{mac: key}, nil
}

func refreshSecret(ctx context.Context, st SecretStore) (SealedSecret, bool, error) {
	all, err := st.ListSealedSecrets(ctx)
	if err != nil {
		return SealedSecret{}, false, err
	}
	i := slices.IndexFunc(all, func(s SealedSecret) bool { return s.Name == RefreshMACSecret })
	if i < 0 {
		return SealedSecret{}, false, nil
	}
	return all[i], true, nil
}

// openSigningKeys opens every stored signing key, of any algorithm, with
// master: the proof that it is the master key they were sealed under.
func openSigningKeys(ctx context.Context, st KeyStore, master MasterKey) error {
	recs, err := st.ListSigningKeys(ctx)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if _, err := master.open(r.Sealed, sealAAD(r)); err != nil {
			return fmt.Errorf("signing key %s: %w", r.KID, err)
		}
	}
	return nil
}

// secretAAD binds a sealed secret to its name, apart from every signing
// key's (kid/algorithm).
func secretAAD(name string) []byte { return []byte("sealed-secret/" + name) }
