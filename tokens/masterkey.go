package tokens

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
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
// master key (or one rotated away from), or a tampered row.
var ErrSealed = errors.New("cannot open sealed data: wrong master key or tampered data")

// MasterKey is the secret kept outside the database. Signing keys and the
// sealed secrets (the refresh tokens' MAC key, secrets.go) are sealed under
// a key derived from it, so a copy of the database alone can neither sign a
// JWT nor forge a refresh token; keygate master-key rotate re-seals them
// under another (reseal.go).
type MasterKey struct {
	sealer cipher.AEAD // AES-256-GCM for what is sealed at rest
	// derivedMAC is the refresh tokens' MAC key as keygate derived it before
	// it stored one: what a database used before then keeps (secrets.go).
	// Two master keys are the same key exactly when these are equal.
	derivedMAC []byte
	text       string // the key itself, for PrepareKeyFile
}

func (MasterKey) String() string { return "REDACTED" }

// GoString keeps %#v from printing the key and what is derived from it.
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
	return MasterKey{sealer: gcm, derivedMAC: macKey, text: secret}, nil
}

// Equal reports whether o is the same master key as m, in constant time.
func (m MasterKey) Equal(o MasterKey) bool {
	return len(m.derivedMAC) > 0 && hmac.Equal(m.derivedMAC, o.derivedMAC)
}

// ReadMasterKeyFile reads a master key from the file at path, surrounding
// white space trimmed. Unlike LoadOrCreateMasterKeyFile it never creates
// one.
func ReadMasterKeyFile(path string) (MasterKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return MasterKey{}, err
	}
	return NewMasterKey(strings.TrimSpace(string(b)))
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

// A PendingKeyFile is a new master key written and synced beside the key
// file it is to replace, not yet in its place: keygate master-key rotate
// prepares it before it re-seals the database, so that after the commit
// only a rename is left to do.
type PendingKeyFile struct {
	tmp, path string
}

// PrepareKeyFile writes m to a temporary file (mode 0600) in the directory
// of path, and syncs it.
func PrepareKeyFile(path string, m MasterKey) (*PendingKeyFile, error) {
	if m.text == "" {
		return nil, errors.New("no master key to write")
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".keygate-key-*")
	if err != nil {
		return nil, err
	}
	p := &PendingKeyFile{tmp: tmp.Name(), path: path}
	cerr := tmp.Chmod(0o600)
	if cerr == nil {
		_, cerr = tmp.Write([]byte(m.text + "\n"))
	}
	if cerr == nil {
		cerr = tmp.Sync()
	}
	if err := errors.Join(cerr, tmp.Close()); err != nil {
		p.Discard()
		return nil, err
	}
	return p, nil
}

// Install renames the new key file over the old one and syncs the
// directory, so that the new name survives a power cut as surely as the
// commit that re-sealed the database under it.
func (p *PendingKeyFile) Install() error {
	if err := os.Rename(p.tmp, p.path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(p.path))
}

// Discard removes the temporary file, if it is still there.
func (p *PendingKeyFile) Discard() { _ = os.Remove(p.tmp) }

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
	return syncDir(filepath.Dir(path))
}

func syncDir(path string) error {
	dir, err := os.Open(path)
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}
