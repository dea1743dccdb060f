package tokens

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"time"

	"keygate/keys"
)

// A refresh token is rt_ + base62(family id | generation | MAC) + checksum.
// The MAC is an HMAC of family and generation under a key derived from the
// master key, which never enters the database: the database holds only the
// family's state, so nothing in it lets a reader use a token, and the token
// of any generation can be derived again. That is what makes a retry within
// the grace window return the identical successor.
const (
	familyIDLen = 16
	genLen      = 4
	macLen      = 24 // 192-bit secret
	refreshLen  = familyIDLen + genLen + macLen
)

// newFamilyID lays out 48 bits of milliseconds then 80 random bits, as
// UUIDv7 does: new families sort last, so the store appends to its index
// instead of touching a random page per login. The id is no secret (the
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

// expiry is the earlier of the inactivity and the absolute limit.
func (s *Service) expiry(f Family, now time.Time) time.Time {
	inactivity := now.Add(s.cfg.TTL)
	absolute := f.CreatedAt.Add(s.cfg.MaxLifetime)
	if absolute.Before(inactivity) {
		return absolute
	}
	return inactivity
}

func (s *Service) token(familyID []byte, gen int64) keys.Secret {
	payload := make([]byte, 0, refreshLen)
	payload = append(payload, familyID...)
	payload = binary.BigEndian.AppendUint32(payload, uint32(gen))
	payload = append(payload, s.mac(familyID, uint32(gen))...)
	return keys.Encode(keys.RefreshTokenPrefix, payload)
}

func (s *Service) parse(raw string) (familyID []byte, gen int64, ok bool) {
	payload, err := keys.Decode(raw, keys.RefreshTokenPrefix, refreshLen)
	if err != nil {
		return nil, 0, false
	}
	familyID = payload[:familyIDLen]
	g := binary.BigEndian.Uint32(payload[familyIDLen : familyIDLen+genLen])
	if !hmac.Equal(payload[familyIDLen+genLen:], s.mac(familyID, g)) {
		return nil, 0, false
	}
	return familyID, int64(g), true
}

func (s *Service) mac(familyID []byte, gen uint32) []byte {
	m := hmac.New(sha256.New, s.macKey)
	m.Write([]byte("keygate refresh v1"))
	m.Write(familyID)
	_ = binary.Write(m, binary.BigEndian, gen)
	return m.Sum(nil)[:macLen]
}
