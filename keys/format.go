package keys

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"log/slog"
	"math/big"
	"math/bits"
	"strings"
)

// Prefixes of every kind of secret keygate hands out. They let operators and
// secret scanners tell a leaked credential's kind at a glance.
const (
	PartnerKeyPrefix   = "pk_"
	CompanyKeyPrefix   = "ck_"
	RefreshTokenPrefix = "rt_"
)

// checksumLen is the base62 width of a CRC32 (62^6 > 2^32).
const checksumLen = 6

// hintLen is how much of a key listings show: the prefix and four characters
// of the body, 24 bits of a 256-bit secret.
const hintLen = 7

// apiKeyBytes is the entropy of an API key: 256 bits.
const apiKeyBytes = 32

// ErrMalformed reports a string that is not a well-formed keygate secret of
// the expected kind: wrong prefix, length, alphabet or checksum.
var ErrMalformed = errors.New("malformed secret")

// Secret is a plaintext credential. It never prints itself, so a secret that
// reaches a log line or an error by mistake shows up as REDACTED.
type Secret string

// Reveal returns the plaintext, for the one response that hands it out.
func (s Secret) Reveal() string { return string(s) }

func (Secret) String() string { return "REDACTED" }

// GoString keeps %#v from printing the plaintext.
func (Secret) GoString() string { return "REDACTED" }

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// MarshalText keeps encoders from writing the plaintext; responses that must
// carry it call Reveal explicitly.
func (Secret) MarshalText() ([]byte, error) { return []byte("REDACTED"), nil }

// Digest is the SHA-256 of a secret's full text: all keygate stores of it.
type Digest [sha256.Size]byte

// DigestOf hashes a secret's full text.
func DigestOf(s string) Digest { return sha256.Sum256([]byte(s)) }

// Hint returns the displayable start of a key for listings and audit rows.
func Hint(s string) string {
	if len(s) < hintLen {
		return s
	}
	return s[:hintLen]
}

// encodedLen returns the base62 width needed for n bytes.
func encodedLen(n int) int {
	// ceil(n*8 / log2(62)); log2(62) ~= 5.954.
	return (n*8*1000 + 5953) / 5954
}

// Encode formats payload as prefix + fixed-width base62 + CRC32 checksum.
func Encode(prefix string, payload []byte) Secret {
	width := encodedLen(len(payload))
	body := pad(new(big.Int).SetBytes(payload).Text(62), width)
	sum := crc32.ChecksumIEEE([]byte(prefix + body))
	return Secret(prefix + body + pad(big.NewInt(int64(sum)).Text(62), checksumLen))
}

// Decode checks a secret's prefix, length, alphabet and checksum and returns
// its payload of payloadLen bytes. It touches no storage, so a mistyped or
// truncated secret is refused at the door.
func Decode(s, prefix string, payloadLen int) ([]byte, error) {
	width := encodedLen(payloadLen)
	if len(s) != len(prefix)+width+checksumLen || !strings.HasPrefix(s, prefix) {
		return nil, ErrMalformed
	}
	for i := len(prefix); i < len(s); i++ {
		if !isBase62(s[i]) {
			return nil, ErrMalformed
		}
	}
	head, check := s[:len(s)-checksumLen], s[len(s)-checksumLen:]
	sum := crc32.ChecksumIEEE([]byte(head))
	if pad(big.NewInt(int64(sum)).Text(62), checksumLen) != check {
		return nil, ErrMalformed
	}
	n, ok := new(big.Int).SetString(head[len(prefix):], 62)
	if !ok || n.BitLen() > payloadLen*8 {
		return nil, ErrMalformed
	}
	return n.FillBytes(make([]byte, payloadLen)), nil
}

// NewAPIKey generates a fresh API key with the given prefix.
func NewAPIKey(prefix string) Secret {
	return Encode(prefix, randomBytes(apiKeyBytes))
}

// ParseAPIKey validates an API key's format and tells its kind.
func ParseAPIKey(s string) (Kind, error) {
	var kind Kind
	switch {
	case strings.HasPrefix(s, PartnerKeyPrefix):
		kind = KindPartner
	case strings.HasPrefix(s, CompanyKeyPrefix):
		kind = KindCompany
	default:
		return "", ErrMalformed
	}
	if _, err := Decode(s, s[:3], apiKeyBytes); err != nil {
		return "", err
	}
	return kind, nil
}

// idLen is the random part of an id, in bytes; idTextLen its width in
// base62, encodedLen(idLen).
const (
	idLen     = 16
	idTextLen = 22
)

// NewID returns a random identifier such as "par_3kTMd9Qw0bY8sV1Xc2LpZa".
func NewID(prefix string) string { return IDFromBytes(prefix, randomBytes(idLen)) }

// IDFromBytes formats the 16 bytes of an id as NewID does.
func IDFromBytes(prefix string, b []byte) string {
	if len(b) != idLen {
		return prefix + pad(new(big.Int).SetBytes(b).Text(62), encodedLen(idLen))
	}
	text := base62ID([idLen]byte(b))
	return prefix + string(text[:])
}

// base62Digits are math/big's digits for base 62, in order.
const base62Digits = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

// base62ID is what big.Int's Text(62) makes of b, padded with zeros to
// encodedLen(idLen), without the big.Int: the key cache turns the ids it
// holds as bytes back into text on every hit (a tenth of the time).
func base62ID(b [idLen]byte) [idTextLen]byte {
	const chunk = 839299365868340224 // 62^10, the most digits a uint64 holds
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	var out [idTextLen]byte
	i := len(out)
	for range 2 { // the last 20 digits, 10 at a time: hi:lo, r = hi:lo / 62^10
		var r uint64
		hi, r = hi/chunk, hi%chunk
		lo, r = bits.Div64(r, lo, chunk)
		for range 10 {
			i--
			out[i] = base62Digits[r%62]
			r /= 62
		}
	}
	for i > 0 { // 2^128 < 62^22: what is left is below 62^2, in lo
		i--
		out[i] = base62Digits[lo%62]
		lo /= 62
	}
	return out
}

// IDBytes returns the 16 bytes behind an id NewID(prefix) made, so that a
// token can carry the id in 16 bytes; ok is false for anything else.
func IDBytes(prefix, id string) (b []byte, ok bool) {
	body, found := strings.CutPrefix(id, prefix)
	if !found || len(body) != encodedLen(idLen) {
		return nil, false
	}
	for i := 0; i < len(body); i++ {
		if !isBase62(body[i]) {
			return nil, false
		}
	}
	n, okNum := new(big.Int).SetString(body, 62)
	if !okNum || n.BitLen() > idLen*8 {
		return nil, false
	}
	return n.FillBytes(make([]byte, idLen)), true
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	// crypto/rand.Read never returns an error since Go 1.24; it crashes the
	// program rather than hand out predictable bytes.
	_, _ = rand.Read(b)
	return b
}

func pad(s string, width int) string {
	if len(s) >= width {
		return s
	}
	return strings.Repeat("0", width-len(s)) + s
}

func isBase62(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}
