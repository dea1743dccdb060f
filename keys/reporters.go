package keys

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// ErrBadSignature reports a leaked-key report whose signature is missing,
// malformed, or made with a key keygate does not know.
var ErrBadSignature = errors.New("missing or invalid report signature")

// MinReporterSecretLen is the shortest HMAC secret a reporter may share.
const MinReporterSecretLen = 32

// The reporters a report can come from, as its audit event's actor id.
const (
	ReporterGitHub = "github" // GitHub's secret scanning partner program
	ReporterHMAC   = "hmac"   // any scanner holding the shared secret
)

// Reporters are the secret scanners whose leaked-key reports keygate
// believes: GitHub, by the public keys it publishes, and others, by a
// shared HMAC secret. A nil *Reporters believes no one.
type Reporters struct {
	github *GitHubKeys // nil: GitHub's reports are refused
	hmac   Secret      // "": HMAC-signed reports are refused
}

// NewReporters believes reports signed by one of github's keys, and those
// signed with secret (at least MinReporterSecretLen bytes). Neither: nil.
func NewReporters(github *GitHubKeys, secret Secret) (*Reporters, error) {
	if n := len(secret); n > 0 && n < MinReporterSecretLen {
		return nil, fmt.Errorf("must be at least %d bytes, got %d", MinReporterSecretLen, n)
	}
	if github == nil && secret == "" {
		return nil, nil
	}
	return &Reporters{github: github, hmac: secret}, nil
}

// Signatures are what a report's request carries to prove who sent it:
// GitHub's key identifier and signature, and keygate's own HMAC header.
type Signatures struct {
	GitHubKeyID string // Github-Public-Key-Identifier
	GitHub      string // Github-Public-Key-Signature: base64 of an ASN.1 ECDSA signature
	HMAC        string // X-Keygate-Signature: sha256=<hex HMAC-SHA256 of the body>
}

// Verify checks body's signatures, before anything reads the body, and
// says which reporter signed it: ReporterGitHub or ReporterHMAC, the first
// whose signature is there and holds. Anything else is ErrBadSignature.
func (r *Reporters) Verify(body []byte, sig Signatures) (string, error) {
	if r == nil {
		return "", ErrBadSignature
	}
	if r.github != nil && sig.GitHub != "" && r.github.verify(body, sig.GitHubKeyID, sig.GitHub) {
		return ReporterGitHub, nil
	}
	if r.hmac != "" && sig.HMAC != "" && verifyHMAC(r.hmac, body, sig.HMAC) {
		return ReporterHMAC, nil
	}
	return "", ErrBadSignature
}

// verifyHMAC checks header, sha256=<hex>, against body's HMAC-SHA256 in
// constant time.
func verifyHMAC(secret Secret, body []byte, header string) bool {
	got, err := hex.DecodeString(strings.TrimPrefix(header, "sha256="))
	if err != nil || !strings.HasPrefix(header, "sha256=") {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret.Reveal()))
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

// GitHubKeys are the public keys GitHub signs its secret scanning reports
// with, read from a file in the format of
// https://api.github.com/meta/public_keys/secret_scanning. The file is
// read again when its modification time or size changes, so that a
// rotation of GitHub's keys needs no restart; a change that does not
// parse keeps the keys read before, with a warning.
type GitHubKeys struct {
	path string
	log  *slog.Logger

	mu     sync.Mutex
	keys   map[string]*ecdsa.PublicKey // by key_identifier
	stamp  fileStamp
	failed bool // the last change could not be read: warned once
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(fi os.FileInfo) fileStamp { return fileStamp{mod: fi.ModTime(), size: fi.Size()} }

// LoadGitHubKeys reads GitHub's public keys from path; a file that cannot
// be read or holds no usable ECDSA P-256 key is an error.
func LoadGitHubKeys(path string, log *slog.Logger) (*GitHubKeys, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	keys, err := readGitHubKeys(path)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &GitHubKeys{path: path, log: log, keys: keys, stamp: stampOf(fi)}, nil
}

// Len is how many keys are loaded.
func (g *GitHubKeys) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.keys)
}

func (g *GitHubKeys) verify(body []byte, keyID, sig string) bool {
	pub := g.current()[keyID]
	if pub == nil {
		return false
	}
	der, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return false
	}
	digest := sha256.Sum256(body)
	return ecdsa.VerifyASN1(pub, digest[:], der)
}

// current returns the keys, rereading the file if it changed.
func (g *GitHubKeys) current() map[string]*ecdsa.PublicKey {
	fi, statErr := os.Stat(g.path)
	g.mu.Lock()
	defer g.mu.Unlock()
	if statErr == nil && stampOf(fi) == g.stamp {
		g.failed = false
		return g.keys
	}
	var err error = statErr
	if err == nil {
		var keys map[string]*ecdsa.PublicKey
		if keys, err = readGitHubKeys(g.path); err == nil {
			g.keys, g.stamp, g.failed = keys, stampOf(fi), false
			g.log.Info("reread GitHub's secret scanning public keys", "path", g.path, "keys", len(keys))
			return g.keys
		}
		g.stamp = stampOf(fi) // warn once per change, not once per report
	}
	if !g.failed {
		g.failed = true
		g.log.Warn("GitHub's secret scanning public keys changed but cannot be read: keeping the keys read before", "path", g.path, "err", err)
	}
	return g.keys
}

// readGitHubKeys parses GitHub's public-keys document, keeping its ECDSA
// P-256 keys (every one listed, current or not: GitHub may still sign with
// a key it is retiring).
func readGitHubKeys(path string) (map[string]*ecdsa.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		PublicKeys []struct {
			KeyIdentifier string `json:"key_identifier"`
			Key           string `json:"key"`
		} `json:"public_keys"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%s is not GitHub's public-keys JSON ({\"public_keys\":[{\"key_identifier\",\"key\"}]}): %w", path, err)
	}
	keys := map[string]*ecdsa.PublicKey{}
	for _, k := range doc.PublicKeys {
		block, _ := pem.Decode([]byte(k.Key))
		if k.KeyIdentifier == "" || block == nil || block.Type != "PUBLIC KEY" {
			continue
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if ec, ok := pub.(*ecdsa.PublicKey); err == nil && ok && ec.Curve == elliptic.P256() {
			keys[k.KeyIdentifier] = ec
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no ECDSA P-256 public key (PEM \"PUBLIC KEY\" with a key_identifier)", path)
	}
	return keys, nil
}
