package tokens

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"keygate/keys"
)

// Algorithms keygate signs with.
const (
	ES256 = "ES256"
	EdDSA = "EdDSA"
	RS256 = "RS256"
	HS256 = "HS256"
)

// Algorithms lists the accepted values of tokens.algorithm.
var Algorithms = []string{ES256, EdDSA, RS256, HS256}

// MinHMACSecretLen is the shortest tokens.hmac_secret accepted, in bytes.
const MinHMACSecretLen = 32

// ErrHMACRotation: an HS256 secret comes from configuration, not the database.
var ErrHMACRotation = errors.New("HS256 signs with tokens.hmac_secret: rotate it in the configuration")

// ErrMasterKeyRotated: a keyring that loaded before met stored signing keys
// its master key cannot open, as after keygate master-key rotate. Load
// then keeps the keys it opened before (a re-sealed key is the same key)
// and leaves out the rest, so that the process goes on serving until it is
// restarted with the new master key.
var ErrMasterKeyRotated = errors.New("sealed under another master key than this process's (rotated?)")

// SigningKeyRecord is a signing key as stored: the private key sealed under
// the master key.
type SigningKeyRecord struct {
	KID         string
	Algorithm   string
	Sealed      []byte
	CreatedAt   time.Time
	ActivatesAt time.Time
}

// SigningKeyInfo describes a key for `keygate signing-key list`.
type SigningKeyInfo struct {
	KID         string
	Algorithm   string
	CreatedAt   time.Time
	ActivatesAt time.Time
	RetiredAt   *time.Time // when its successor took over
}

// KeyStore persists signing keys.
type KeyStore interface {
	AddSigningKey(ctx context.Context, k SigningKeyRecord) error
	// AddFirstSigningKey stores k unless a key of k.Algorithm is stored
	// already, deciding atomically, so that of several processes (replicas
	// starting together on an empty database) exactly one adds its key;
	// added reports whether this call's did.
	AddFirstSigningKey(ctx context.Context, k SigningKeyRecord) (added bool, err error)
	ListSigningKeys(ctx context.Context) ([]SigningKeyRecord, error)
}

// KeyringConfig is what the keyring needs from the configuration.
type KeyringConfig struct {
	Algorithm       string
	HMACSecret      string
	AccessTTL       time.Duration
	Leeway          time.Duration
	ActivationDelay time.Duration
}

// Keyring holds the parsed signing and verification keys. A snapshot is
// swapped in atomically on each reload, so signing and verifying never
// lock and never parse a key.
type Keyring struct {
	cfg    KeyringConfig
	master MasterKey
	store  KeyStore
	now    func() time.Time
	log    *slog.Logger

	set    atomic.Pointer[keySet]
	mu     sync.Mutex            // serialises reloads
	parsed map[string]signingKey // kid -> opened key, so a reload parses only new rows
}

type signingKey struct {
	sealed      []byte // as stored: a change means it was re-sealed
	kid         string
	alg         string
	private     crypto.Signer // nil for HS256
	public      crypto.PublicKey
	hmac        []byte
	header      string // the JWT header of tokens it signs, encoded
	activatesAt time.Time
	retiresAt   time.Time // zero while no successor is scheduled
	jwk         map[string]string
}

type keySet struct {
	signers []signingKey   // by activation time, oldest first
	verify  map[string]any // kid -> verification key
	jwks    []byte
}

// NewKeyring makes a keyring; call Load before use.
func NewKeyring(cfg KeyringConfig, master MasterKey, store KeyStore, now func() time.Time, log *slog.Logger) *Keyring {
	return &Keyring{cfg: cfg, master: master, store: store, now: now, log: log, parsed: make(map[string]signingKey)}
}

// EnsureKey creates a signing key for the configured algorithm, active at
// once, if none exists yet: the first start of a fresh gateway. The store
// decides (AddFirstSigningKey), so that replicas starting together on an
// empty database end up with one key between them, and publish the same
// JWKS from the start.
func (k *Keyring) EnsureKey(ctx context.Context) error {
	if k.cfg.Algorithm == HS256 {
		return nil
	}
	recs, err := k.store.ListSigningKeys(ctx)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if r.Algorithm == k.cfg.Algorithm {
			return nil
		}
	}
	rec, err := k.newKey(0)
	if err != nil {
		return err
	}
	_, err = k.store.AddFirstSigningKey(ctx, rec)
	return err
}

// Rotate adds a new signing key. It is published at once and signs only
// after the activation delay, so verifiers' JWKS caches learn it first.
func (k *Keyring) Rotate(ctx context.Context) (SigningKeyInfo, error) {
	if k.cfg.Algorithm == HS256 {
		return SigningKeyInfo{}, ErrHMACRotation
	}
	// Prove that this master key opens every stored key before sealing a
	// new one under it: a key nobody can open would stop the next start.
	if err := k.Load(ctx); err != nil {
		return SigningKeyInfo{}, fmt.Errorf("refusing to add a signing key: %w", err)
	}
	return k.addKey(ctx, k.cfg.ActivationDelay)
}

func (k *Keyring) addKey(ctx context.Context, delay time.Duration) (SigningKeyInfo, error) {
	rec, err := k.newKey(delay)
	if err != nil {
		return SigningKeyInfo{}, err
	}
	if err := k.store.AddSigningKey(ctx, rec); err != nil {
		return SigningKeyInfo{}, err
	}
	return SigningKeyInfo{KID: rec.KID, Algorithm: rec.Algorithm, CreatedAt: rec.CreatedAt, ActivatesAt: rec.ActivatesAt}, nil
}

// newKey generates a key of the configured algorithm, sealed under the
// master key, that activates delay from now.
func (k *Keyring) newKey(delay time.Duration) (SigningKeyRecord, error) {
	priv, err := generateKey(k.cfg.Algorithm)
	if err != nil {
		return SigningKeyRecord{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return SigningKeyRecord{}, err
	}
	now := k.now()
	rec := SigningKeyRecord{
		KID:         keys.NewID("kid_"),
		Algorithm:   k.cfg.Algorithm,
		CreatedAt:   now,
		ActivatesAt: now.Add(delay),
	}
	rec.Sealed = k.master.seal(der, sealAAD(rec))
	return rec, nil
}

// List describes every stored signing key, oldest first.
func (k *Keyring) List(ctx context.Context) ([]SigningKeyInfo, error) {
	recs, err := k.store.ListSigningKeys(ctx)
	if err != nil {
		return nil, err
	}
	sortRecords(recs)
	out := make([]SigningKeyInfo, len(recs))
	for i, r := range recs {
		out[i] = SigningKeyInfo{KID: r.KID, Algorithm: r.Algorithm, CreatedAt: r.CreatedAt, ActivatesAt: r.ActivatesAt}
		if next := successor(recs, i); next != nil {
			at := next.ActivatesAt
			out[i].RetiredAt = &at
		}
	}
	return out, nil
}

// Load reads the key set from the store and swaps it in. Keys already
// opened are reused, so a reload with nothing new costs one query.
func (k *Keyring) Load(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()

	var signers []signingKey
	var unopened []string // kids sealed under a master key this one is not
	if k.cfg.Algorithm == HS256 {
		sum := sha256.Sum256([]byte(k.cfg.HMACSecret))
		kid := "hs256-" + hex.EncodeToString(sum[:8])
		signers = []signingKey{{kid: kid, alg: HS256, hmac: []byte(k.cfg.HMACSecret), header: encodedHeader(HS256, kid)}}
	} else {
		recs, err := k.store.ListSigningKeys(ctx)
		if err != nil {
			return err
		}
		recs = slices.DeleteFunc(recs, func(r SigningKeyRecord) bool { return r.Algorithm != k.cfg.Algorithm })
		sortRecords(recs)
		// A keyring that has loaded before keeps serving through keys it
		// cannot open: see ErrMasterKeyRotated.
		running := k.set.Load() != nil
		usable := recs[:0]
		for _, r := range recs {
			sk, ok := k.parsed[r.KID]
			if ok && bytes.Equal(sk.sealed, r.Sealed) {
				usable = append(usable, r)
				continue
			}
			opened, err := k.open(r)
			switch {
			case err == nil:
				k.parsed[r.KID] = opened
			case running && errors.Is(err, ErrSealed):
				// Re-sealed under another master key (the key itself is the
				// same: keep the one opened before), or new under it (this
				// process cannot sign with it, nor retire a key for it).
				unopened = append(unopened, r.KID)
				if !ok {
					continue
				}
			default:
				return fmt.Errorf("signing key %s: %w", r.KID, err)
			}
			usable = append(usable, r)
		}
		for i, r := range usable {
			sk := k.parsed[r.KID]
			sk.retiresAt = time.Time{}
			if next := successor(usable, i); next != nil {
				sk.retiresAt = next.ActivatesAt
			}
			signers = append(signers, sk)
		}
	}
	if len(signers) == 0 {
		return fmt.Errorf("no %s signing key: run keygate serve once or keygate signing-key rotate", k.cfg.Algorithm)
	}

	// A retired key stays published and accepted until every token it
	// signed has expired; after that it is dropped from both.
	now := k.now()
	set := &keySet{verify: make(map[string]any, len(signers))}
	jwks := struct {
		Keys []map[string]string `json:"keys"`
	}{Keys: []map[string]string{}}
	for _, sk := range signers {
		if !sk.retiresAt.IsZero() && now.After(sk.retiresAt.Add(k.cfg.AccessTTL+k.cfg.Leeway)) {
			continue
		}
		set.signers = append(set.signers, sk)
		if sk.hmac != nil {
			set.verify[sk.kid] = sk.hmac // never published
			continue
		}
		set.verify[sk.kid] = sk.public
		jwks.Keys = append(jwks.Keys, sk.jwk)
	}
	var err error
	if set.jwks, err = json.Marshal(jwks); err != nil {
		return err
	}
	k.set.Store(set)
	if len(unopened) > 0 {
		return fmt.Errorf("signing keys %s: %w", strings.Join(unopened, ", "), ErrMasterKeyRotated)
	}
	return nil
}

// Run reloads the key set every interval until ctx ends, so a rotation made
// with the CLI reaches a running server without a restart.
func (k *Keyring) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			switch err := k.reload(ctx, interval); {
			case err == nil || ctx.Err() != nil:
			case errors.Is(err, ErrMasterKeyRotated):
				// Expected from a rotation until this process restarts:
				// one warning per reload, not an error.
				k.log.WarnContext(ctx, "signing keys are sealed under another master key, probably rotated with keygate master-key rotate: serving with the keys loaded before; restart with the new master key", "err", err)
			default:
				// Keep serving with the previous set; say so loudly.
				k.log.ErrorContext(ctx, "reloading signing keys", "err", err)
			}
		}
	}
}

// maxReloadTime bounds one reload in Run: a store that stopped answering
// must not hold the keyring's lock (and a Rotate behind it) for ever.
const maxReloadTime = 10 * time.Second

// reload is Load within maxReloadTime, and within interval, so that one
// reload ends before the next is due.
func (k *Keyring) reload(ctx context.Context, interval time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, min(interval, maxReloadTime))
	defer cancel()
	return k.Load(ctx)
}

// JWKS returns the public keys as an RFC 7517 JWK Set.
func (k *Keyring) JWKS() []byte { return k.set.Load().jwks }

// signer returns the newest key whose activation time has passed.
func (k *Keyring) signer(now time.Time) (signingKey, error) {
	set := k.set.Load()
	for i := len(set.signers) - 1; i >= 0; i-- {
		if !set.signers[i].activatesAt.After(now) {
			return set.signers[i], nil
		}
	}
	return signingKey{}, errors.New("no active signing key")
}

func (k *Keyring) verificationKey(kid string) (any, bool) {
	key, ok := k.set.Load().verify[kid]
	return key, ok
}

func (k *Keyring) open(r SigningKeyRecord) (signingKey, error) {
	der, err := k.master.open(r.Sealed, sealAAD(r))
	if err != nil {
		return signingKey{}, err
	}
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return signingKey{}, err
	}
	priv, ok := parsed.(crypto.Signer)
	if !ok {
		return signingKey{}, fmt.Errorf("unsupported key type %T", parsed)
	}
	sk := signingKey{sealed: r.Sealed, kid: r.KID, alg: r.Algorithm, private: priv, public: priv.Public(), activatesAt: r.ActivatesAt}
	if sk.jwk, err = publicJWK(sk.public); err != nil {
		return signingKey{}, err
	}
	sk.jwk["kid"], sk.jwk["alg"], sk.jwk["use"] = r.KID, r.Algorithm, "sig"
	sk.header = encodedHeader(r.Algorithm, r.KID)
	return sk, nil
}

func generateKey(alg string) (crypto.Signer, error) {
	switch alg {
	case ES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case EdDSA:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	case RS256:
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, fmt.Errorf("unknown algorithm %q", alg)
}

func publicJWK(pub crypto.PublicKey) (map[string]string, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		ecdhPub, err := pub.ECDH()
		if err != nil {
			return nil, err
		}
		point := ecdhPub.Bytes() // 0x04 || X || Y
		size := (len(point) - 1) / 2
		return map[string]string{"kty": "EC", "crv": "P-256", "x": b64(point[1 : 1+size]), "y": b64(point[1+size:])}, nil
	case ed25519.PublicKey:
		return map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64(pub)}, nil
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes())}, nil
	}
	return nil, fmt.Errorf("unsupported public key %T", pub)
}

// signingMethod returns nil for anything but the algorithms keygate signs
// with: golang-jwt also knows "none", HS384, PS256 and more.
func signingMethod(alg string) jwt.SigningMethod {
	if !slices.Contains(Algorithms, alg) {
		return nil
	}
	return jwt.GetSigningMethod(alg)
}

// encodedHeader is the JWT header of every token a key signs, base64url
// encoded once: the members golang-jwt would write, in its order.
func encodedHeader(alg, kid string) string {
	h, _ := json.Marshal(map[string]string{"alg": alg, "kid": kid, "typ": TokenType})
	return base64.RawURLEncoding.EncodeToString(h)
}

func sealAAD(r SigningKeyRecord) []byte { return []byte(r.KID + "/" + r.Algorithm) }

func sortRecords(recs []SigningKeyRecord) {
	slices.SortStableFunc(recs, func(a, b SigningKeyRecord) int {
		if c := a.ActivatesAt.Compare(b.ActivatesAt); c != 0 {
			return c
		}
		return a.CreatedAt.Compare(b.CreatedAt)
	})
}

// successor returns the next key of the same algorithm, which retires recs[i]
// when it activates.
func successor(recs []SigningKeyRecord, i int) *SigningKeyRecord {
	for j := i + 1; j < len(recs); j++ {
		if recs[j].Algorithm == recs[i].Algorithm {
			return &recs[j]
		}
	}
	return nil
}

// States counts the loaded signing keys: the one that signs now, those
// published but not yet signing, and those retired but still published for
// verification.
func (k *Keyring) States() (active, pending, retired int) {
	set := k.set.Load()
	if set == nil {
		return 0, 0, 0
	}
	now := k.now()
	signing := -1
	for i := len(set.signers) - 1; i >= 0; i-- {
		if !set.signers[i].activatesAt.After(now) {
			signing = i
			break
		}
	}
	for i, sk := range set.signers {
		switch {
		case i == signing:
			active++
		case sk.activatesAt.After(now):
			pending++
		default:
			retired++
		}
	}
	return active, pending, retired
}
