package keys

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"math/rand/v2"
	"time"
)

// keyTable holds the key cache's resolved keys compactly: 100,000 keys in
// use take about 17 MB, where ResolvedKey values in two maps, with the
// strings read from SQLite, took about 450 bytes a key (BENCHMARKS.md).
// Each key is one fixed-size record in chunks of records, its ids as their
// 16 bytes, its partner's id and scopes shared by the partner's keys; the
// two indexes map 64 bits of the digest, and a hash of the key id, to the
// record, which is compared in full before it is used. The ids go back to
// text on every hit (IDFromBytes, under 100 ns each).
//
// It holds a key only if it can give back exactly the ResolvedKey the
// store returned (put checks): a key whose ids NewID did not make is read
// from the store each time instead. The caller (keyCache) locks it.
type keyTable struct {
	chunks     []*[chunkLen]record // records 0 to n-1, in order
	n          int32
	byDigest   map[uint64]int32 // the digest's first 8 bytes
	byID       map[uint64]int32 // idHash of the key id
	partners   []cachedPartner
	partnerIdx map[string]int32
	seed       maphash.Seed
}

// chunkLen is how many records a chunk holds: the table grows a chunk at a
// time, where a slice would copy every record into one a quarter larger
// (and hold both until the next collection) as it grew.
const chunkLen = 1024

// record is one cached key.
type record struct {
	digest    Digest
	keyID     [idLen]byte
	companyID [idLen]byte // zero for a partner's own key
	name      string      // the owner's
	keyScopes Scopes
	expiresAt *time.Time
	at        int64 // UnixNano when the read that found it started
	partner   int32 // in partners
	company   bool
	active    bool
}

// cachedPartner is what a partner's keys share.
type cachedPartner struct {
	id     string
	scopes Scopes
}

// Id prefixes: the ids a record holds as bytes are NewID(prefix)'s.
const (
	keyIDPrefix     = "key_"
	companyIDPrefix = "com_"
)

func newKeyTable() *keyTable {
	return &keyTable{byDigest: map[uint64]int32{}, byID: map[uint64]int32{}, partnerIdx: map[string]int32{}, seed: maphash.MakeSeed()}
}

func (t *keyTable) len() int { return int(t.n) }

// record returns record i.
func (t *keyTable) record(i int32) *record { return &t.chunks[i/chunkLen][i%chunkLen] }

func digestKey(d Digest) uint64 { return binary.LittleEndian.Uint64(d[:8]) }

// idHash is what byID indexes a key id's text (after its prefix) by.
func (t *keyTable) idHash(body []byte) uint64 { return maphash.Bytes(t.seed, body) }

func (t *keyTable) recordIDHash(rec *record) uint64 {
	text := base62ID(rec.keyID)
	return t.idHash(text[:])
}

// digest returns the key with digest d and when it was read.
func (t *keyTable) digest(d Digest) (ResolvedKey, int64, bool) {
	i, ok := t.byDigest[digestKey(d)]
	if !ok {
		return ResolvedKey{}, 0, false
	}
	rec := t.record(i)
	if rec.digest != d {
		return ResolvedKey{}, 0, false
	}
	return t.expand(rec, t.partners[rec.partner], ""), rec.at, true
}

// id returns the key with that id and when it was read.
func (t *keyTable) id(id string) (ResolvedKey, int64, bool) {
	if len(id) != len(keyIDPrefix)+idTextLen || id[:len(keyIDPrefix)] != keyIDPrefix {
		return ResolvedKey{}, 0, false
	}
	body := []byte(id[len(keyIDPrefix):]) // does not escape: no allocation
	i, ok := t.byID[t.idHash(body)]
	if !ok {
		return ResolvedKey{}, 0, false
	}
	rec := t.record(i)
	if text := base62ID(rec.keyID); !bytes.Equal(text[:], body) {
		return ResolvedKey{}, 0, false
	}
	return t.expand(rec, t.partners[rec.partner], id), rec.at, true
}

// expand is the ResolvedKey rec holds; keyID is its key id's text if the
// caller has it.
func (t *keyTable) expand(rec *record, p cachedPartner, keyID string) ResolvedKey {
	if keyID == "" {
		keyID = IDFromBytes(keyIDPrefix, rec.keyID[:])
	}
	owner := PartnerOwner(p.id)
	if rec.company {
		owner = CompanyOwner(p.id, IDFromBytes(companyIDPrefix, rec.companyID[:]))
	}
	r := ResolvedKey{Digest: rec.digest, Principal: PrincipalOf(keyID, owner, rec.name), Active: rec.active, KeyScopes: rec.keyScopes, PartnerScopes: p.scopes}
	r.Principal.KeyExpiresAt = rec.expiresAt
	return r
}

// put holds r, read at at (UnixNano), in place of any key with its digest
// or id, pushing out an arbitrary one if max are held already. It reports
// false, holding nothing new, if r has a form a record cannot give back.
func (t *keyTable) put(r ResolvedKey, at int64, max int) bool {
	rec, p, ok := compact(r, at)
	if !ok || t.expand(&rec, p, "") != r {
		return false
	}
	pi, known := t.partnerIdx[p.id]
	if !known && len(t.partners) >= max {
		return false
	}
	idKey := t.recordIDHash(&rec)
	if i, ok := t.byDigest[digestKey(rec.digest)]; ok {
		t.remove(i)
	}
	if i, ok := t.byID[idKey]; ok {
		t.remove(i)
	}
	if int(t.n) >= max {
		if max <= 0 {
			return false
		}
		t.remove(rand.Int32N(t.n))
	}
	if known {
		t.partners[pi] = p // the latest read of the partner
	} else {
		pi = int32(len(t.partners))
		t.partners = append(t.partners, p)
		t.partnerIdx[p.id] = pi
	}
	rec.partner = pi
	i := t.n
	if int(i) == len(t.chunks)*chunkLen {
		t.chunks = append(t.chunks, new([chunkLen]record))
	}
	t.n++
	*t.record(i) = rec
	t.byDigest[digestKey(rec.digest)] = i
	t.byID[idKey] = i
	return true
}

// compact is r as a record, with its partner apart; ok is false if its ids
// are not NewID's.
func compact(r ResolvedKey, at int64) (rec record, p cachedPartner, ok bool) {
	pr := r.Principal
	keyID, ok := IDBytes(keyIDPrefix, pr.KeyID)
	if !ok {
		return record{}, cachedPartner{}, false
	}
	rec = record{digest: r.Digest, keyID: [idLen]byte(keyID), name: pr.Name, keyScopes: r.KeyScopes, expiresAt: pr.KeyExpiresAt, at: at, active: r.Active}
	if pr.Kind == KindCompany {
		companyID, ok := IDBytes(companyIDPrefix, pr.CompanyID)
		if !ok {
			return record{}, cachedPartner{}, false
		}
		rec.companyID, rec.company = [idLen]byte(companyID), true
	}
	return rec, cachedPartner{id: pr.PartnerID, scopes: r.PartnerScopes}, true
}

// remove drops record i, moving the last record into its place.
func (t *keyTable) remove(i int32) {
	rec := t.record(i)
	delete(t.byDigest, digestKey(rec.digest))
	delete(t.byID, t.recordIDHash(rec))
	last := t.n - 1
	if i != last {
		*rec = *t.record(last)
		t.byDigest[digestKey(rec.digest)] = i
		t.byID[t.recordIDHash(rec)] = i
	}
	*t.record(last) = record{} // let its strings go
	t.n--
}
