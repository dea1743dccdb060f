package tokens

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"sync"
	"time"

	"keygate/keys"
)

// A refresh token is rt_ + base62(payload) + checksum, in one of three forms:
//
//   - the first token of a family, handed out by a login (generation 0):
//     family id | key id | expiry | MAC. It is self-contained: the family
//     id carries the login's time, the key id names the key and through it
//     the principal, and the expiry is the token's own. A login therefore
//     writes nothing; the family's row is created by the first refresh (or
//     a logout) in the same conditional write that every rotation is.
//   - the same for a login that down-scoped: family id | key id | expiry
//     in 6 bytes | scopes | MAC, where scopes has a bit for each of the
//     key's own scopes (at most 32, sorted; a key's scopes never change)
//     that the login asked for: a fixed width, whatever the scopes' names,
//     and at most 100 characters like every refresh token (48 bits of
//     milliseconds last until the year 10889).
//   - every later token (generation 1 and up): family id | generation |
//     MAC, its state in the family's row.
//
// The MAC is an HMAC under the refresh-token key (secrets.go), which the
// database holds only sealed under the master key: besides that it holds
// only each family's state, so nothing in it lets a reader use a token,
// and the token of any generation can be derived again. That is what makes
// a retry within the grace window return the identical successor.
const (
	familyIDLen = 16
	genLen      = 4
	keyIDLen    = 16
	expiryLen   = 8
	shortExpiry = 6 // the scoped form's expiry
	scopesLen   = 4
	macLen      = 24 // 192-bit secret
	refreshLen  = familyIDLen + genLen + macLen
	firstLen    = familyIDLen + keyIDLen + expiryLen + macLen
	scopedLen   = familyIDLen + keyIDLen + shortExpiry + scopesLen + macLen
)

// refreshToken is a parsed refresh token whose MAC checked out.
type refreshToken struct {
	familyID []byte
	gen      int64
	// Of a generation-0 token only:
	keyID   string
	expires time.Time
	scopes  uint32 // the down-scoping request, as Family.SeedScopes
}

// family is the token's family id as the store keeps it.
func (t refreshToken) family() string { return hex.EncodeToString(t.familyID) }

// seed is the family a generation-0 token stands for before its row
// exists: the store fills in the principal from the key.
func (t refreshToken) seed() *Family {
	created := familyTime(t.familyID)
	return &Family{
		ID:             t.family(),
		Principal:      keys.Principal{KeyID: t.keyID},
		CreatedAt:      created,
		RotatedAt:      created,
		ExpiresAt:      t.expires,
		FirstExpiresAt: t.expires,
		SeedScopes:     t.scopes,
	}
}

// newFamilyID lays out 48 bits of milliseconds then 80 random bits, as
// UUIDv7 does: new families sort last, so the store appends to its index
// instead of touching a random page per family. The id is no secret (the
// token's MAC is); 80 random bits keep ids of one millisecond apart.
func newFamilyID(now time.Time) []byte {
	id := make([]byte, familyIDLen)
	ms := uint64(now.UnixMilli())
	for i := 5; i >= 0; i-- {
		id[i] = byte(ms)
		ms >>= 8
	}
	_, _ = rand.Read(id[6:])
	return id
}

// familyTime is when a family id was made, to the millisecond.
func familyTime(id []byte) time.Time {
	var ms uint64
	for _, b := range id[:6] {
		ms = ms<<8 | uint64(b)
	}
	return time.UnixMilli(int64(ms)).UTC()
}

// expiry is the earlier of the inactivity and the absolute limit.
func (s *Service) expiry(created, now time.Time) time.Time {
	inactivity := now.Add(s.cfg.TTL)
	absolute := created.Add(s.cfg.MaxLifetime)
	if absolute.Before(inactivity) {
		return absolute
	}
	return inactivity
}

// firstToken is the generation-0 token of a new family; scopes is its
// login's down-scoping request over the key's own scopes, 0 for all.
func (s *Service) firstToken(familyID, keyID []byte, expires time.Time, scopes uint32) keys.Secret {
	payload := make([]byte, 0, firstLen)
	payload = append(payload, familyID...)
	payload = append(payload, keyID...)
	payload = binary.BigEndian.AppendUint64(payload, uint64(expires.UnixMilli()))
	domain := firstDomain
	if scopes != 0 {
		payload = append(payload[:familyIDLen+keyIDLen], payload[familyIDLen+keyIDLen+expiryLen-shortExpiry:]...)
		payload = binary.BigEndian.AppendUint32(payload, scopes)
		domain = scopedDomain
	}
	payload = append(payload, s.mac(domain, payload)...)
	return keys.Encode(keys.RefreshTokenPrefix, payload)
}

// token is the token of generation gen (1 and up) of a family.
func (s *Service) token(familyID []byte, gen int64) keys.Secret {
	payload := make([]byte, 0, refreshLen)
	payload = append(payload, familyID...)
	payload = binary.BigEndian.AppendUint32(payload, uint32(gen))
	payload = append(payload, s.mac(laterDomain, payload)...)
	return keys.Encode(keys.RefreshTokenPrefix, payload)
}

// parse checks a refresh token's form, checksum and MAC; ok is false for
// anything that is not a token made under this refresh-token key.
func (s *Service) parse(raw string) (refreshToken, bool) {
	if payload, err := keys.Decode(raw, keys.RefreshTokenPrefix, refreshLen); err == nil {
		body := payload[:familyIDLen+genLen]
		if !hmac.Equal(payload[len(body):], s.mac(laterDomain, body)) {
			return refreshToken{}, false
		}
		gen := int64(binary.BigEndian.Uint32(body[familyIDLen:]))
		if gen == 0 {
			return refreshToken{}, false // generation 0 has its own form
		}
		return refreshToken{familyID: body[:familyIDLen], gen: gen}, true
	}
	n, domain := firstLen, firstDomain
	payload, err := keys.Decode(raw, keys.RefreshTokenPrefix, firstLen)
	if err != nil {
		n, domain = scopedLen, scopedDomain
		if payload, err = keys.Decode(raw, keys.RefreshTokenPrefix, scopedLen); err != nil {
			return refreshToken{}, false
		}
	}
	body := payload[:n-macLen]
	if !hmac.Equal(payload[len(body):], s.mac(domain, body)) {
		return refreshToken{}, false
	}
	t := refreshToken{
		familyID: body[:familyIDLen],
		keyID:    keys.IDFromBytes("key_", body[familyIDLen:familyIDLen+keyIDLen]),
	}
	rest := body[familyIDLen+keyIDLen:]
	if n == firstLen {
		t.expires = time.UnixMilli(int64(binary.BigEndian.Uint64(rest))).UTC()
		return t, true
	}
	var ms [8]byte
	copy(ms[8-shortExpiry:], rest[:shortExpiry])
	t.expires = time.UnixMilli(int64(binary.BigEndian.Uint64(ms[:]))).UTC()
	if t.scopes = binary.BigEndian.Uint32(rest[shortExpiry:]); t.scopes == 0 {
		return refreshToken{}, false // a down-scoped request asks for something
	}
	return t, true
}

// MAC domains keep the two forms' MACs apart. laterDomain is the one
// keygate has always used, so tokens issued before the first form existed
// keep working.
const (
	firstDomain  = "keygate refresh v1 first"
	scopedDomain = "keygate refresh v1 first scoped"
	laterDomain  = "keygate refresh v1"
)

// mac is the MAC of body under domain.
func (s *Service) mac(domain string, body []byte) []byte {
	m := s.hmacs.Get().(hash.Hash)
	defer s.hmacs.Put(m)
	m.Reset()
	m.Write([]byte(domain))
	m.Write(body)
	var sum [sha256.Size]byte
	return m.Sum(sum[:0])[:macLen]
}

// newHMACPool keeps HMAC states for reuse: each holds the key's padded
// blocks, which cost two SHA-256 blocks to make.
func newHMACPool(key []byte) *sync.Pool {
	return &sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}
}

// scopeMask is a down-scoping request as bits over the key's own scopes
// (in their order): the scopes asked for must be among them.
func scopeMask(own, asked keys.Scopes) uint32 {
	var mask uint32
	i := 0
	for v := range own.Each() {
		if asked.Has(v) {
			mask |= 1 << i
		}
		i++
	}
	return mask
}

// maskScopes is the set of the key's own scopes that mask selects.
func maskScopes(own keys.Scopes, mask uint32) keys.Scopes {
	var picked []string
	i := 0
	for v := range own.Each() {
		if i < 32 && mask&(1<<i) != 0 {
			picked = append(picked, v)
		}
		i++
	}
	s, _ := keys.ParseScopes("scope", picked) // stored scopes are valid
	return s
}
