package tokens

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// MinMasterKeyLen is the shortest master key accepted, in bytes.
const MinMasterKeyLen = 32

// ErrSealed reports sealed data that the master key cannot open: the wrong
// master key, or a tampered row.
var ErrSealed = errors.New("cannot open sealed signing key: wrong master key or tampered data")

// MasterKey is the secret kept outside the database. Signing keys are sealed
// under a key derived from it and refresh tokens are MACed with another, so a
// copy of the database alone can neither sign a JWT nor forge a refresh token.
type MasterKey struct {
	sealer     cipher.AEAD // AES-256-GCM for signing keys at rest
	refreshMAC []byte      // HMAC key for refresh tokens
}

func (MasterKey) String() string { return "REDACTED" }

// GoString keeps %#v from printing the derived keys.
func (MasterKey) GoString() string { return "REDACTED" }

// LogValue implements slog.LogValuer.
func (MasterKey) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// NewMasterKey accepts a master key of at least MinMasterKeyLen bytes.
func NewMasterKey(secret string) (MasterKey, error) {
	if len(secret) < MinMasterKeyLen {
		return MasterKey{}, fmt.Errorf("master key must be at least %d bytes, got %d", MinMasterKeyLen, len(secret))
	}
	sealKey, err := hkdf.Key(sha256.New, []byte(secret), nil, "keygate signing-key seal v1", 32)
	if err != nil {
		return MasterKey{}, err
	}
	macKey, err := hkdf.Key(sha256.New, []byte(secret), nil, "keygate refresh-token mac v1", 32)
	if err != nil {
		return MasterKey{}, err
	}
	block, err := aes.NewCipher(sealKey)
	if err != nil {
		return MasterKey{}, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return MasterKey{}, err
	}
	return MasterKey{sealer: gcm, refreshMAC: macKey}, nil
}

// LoadOrCreateMasterKeyFile reads the master key file at path, creating it
// with a fresh random key and mode 0600 if it does not exist.
func LoadOrCreateMasterKeyFile(path string) (MasterKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return MasterKey{}, fmt.Errorf("creating master key directory: %w", err)
		}
		secret := make([]byte, 32)
		_, _ = rand.Read(secret)
		encoded := base64.RawURLEncoding.EncodeToString(secret)
		if err := writeNewFile(path, []byte(encoded+"\n")); errors.Is(err, fs.ErrExist) {
			return LoadOrCreateMasterKeyFile(path) // another process won the race
		} else if err != nil {
			return MasterKey{}, fmt.Errorf("creating master key file: %w", err)
		}
		return NewMasterKey(encoded)
	}
	if err != nil {
		return MasterKey{}, fmt.Errorf("reading master key file: %w", err)
	}
	return NewMasterKey(strings.TrimSpace(string(b)))
}

// seal encrypts plaintext with AES-256-GCM; aad binds it to its row.
func (m MasterKey) seal(plaintext, aad []byte) []byte {
	gcm := m.sealer
	nonce := make([]byte, gcm.NonceSize())
	_, _ = rand.Read(nonce)
	return gcm.Seal(nonce, nonce, plaintext, aad)
}

func (m MasterKey) open(sealed, aad []byte) ([]byte, error) {
	gcm := m.sealer
	if len(sealed) < gcm.NonceSize() {
		return nil, ErrSealed
	}
	pt, err := gcm.Open(nil, sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():], aad)
	if err != nil {
		return nil, ErrSealed
	}
	return pt, nil
}

// writeNewFile writes data to path only if path does not exist, atomically:
// the data goes to a temporary file first and is linked into place, so a
// crash never leaves an empty or half-written key file behind.
func writeNewFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".keygate-key-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	_, werr := tmp.Write(data)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return err
	}
	// The new name must survive a power cut as surely as the database
	// rows sealed under this key will.
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}
