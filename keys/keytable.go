package keys

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"math"
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
// Nothing in a record, in the indexes or in the text the records' strings
// are kept in is a pointer, so the garbage collector never scans them: with
// 100,000 keys in use they are most of the live heap, and every collection
// marked all of them while each record held its strings and expiry itself
// (BENCHMARKS.md). A hit builds the name and key scopes from that text (a
// small allocation each) and the expiry from its milliseconds.
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

	// text holds the records' names and key scopes; dead is how many of
	// its bytes no record uses any more. Bytes are only ever appended: a
	// removed record's stay until compactText copies the rest anew.
	text []byte
	dead int
}

// chunkLen is how many records a chunk holds: the table grows a chunk at a
// time, where a slice would copy every record into one a quarter larger
// (and hold both until the next collection) as it grew.
const chunkLen = 1024

// record is one cached key. It holds no pointer (see keyTable).
type record struct {
	digest    Digest
	keyID     [idLen]byte
	companyID [idLen]byte // zero for a partner's own key
	name      span        // the owner's, in text
	keyScopes span        // joined, in text
	expiresMS int64       // UnixMilli of the key's expiry, if expires
	at        int64       // UnixNano when the read that found it started
	partner   int32       // in partners
	company   bool
	active    bool
	expires   bool
}

// span is where a string is in a keyTable's text.
type span struct{ off, len int32 }

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
	r := ResolvedKey{Digest: rec.digest, Principal: PrincipalOf(keyID, owner, t.str(rec.name)), Active: rec.active, KeyScopes: Scopes{t.str(rec.keyScopes)}, PartnerScopes: p.scopes}
	if rec.expires {
		at := time.UnixMilli(rec.expiresMS).UTC() // as every store reads it
		r.Principal.KeyExpiresAt = &at
	}
	return r
}

// str is the string at x in t.text.
func (t *keyTable) str(x span) string {
	if x.len == 0 {
		return ""
	}
	return string(t.text[x.off : x.off+x.len])
}

// keep appends s to t.text and says where it is.
func (t *keyTable) keep(s string) span {
	if s == "" {
		return span{}
	}
	x := span{int32(len(t.text)), int32(len(s))}
	t.text = append(t.text, s...)
	return x
}

// compactTextAt is the least number of dead bytes compactText is run for:
// below it a copy would cost more than it saved.
const compactTextAt = 4 << 10

// compactText copies the text records use into a text of its own once a
// quarter of it is dead (every put of a key already held leaves its old
// strings behind), so the text stays within a third more than what is in
// use; a copy costs about as much per key as a put.
func (t *keyTable) compactText() {
	if t.dead < compactTextAt || t.dead < len(t.text)/4 {
		return
	}
	live := len(t.text) - t.dead
	old := t.text
	t.text = make([]byte, 0, live+live/8)
	move := func(x span) span {
		y := span{int32(len(t.text)), x.len}
		t.text = append(t.text, old[x.off:x.off+x.len]...)
		return y
	}
	for i := range t.n {
		rec := t.record(i)
		rec.name, rec.keyScopes = move(rec.name), move(rec.keyScopes)
	}
	t.dead = 0
}

// sameKey reports whether a and b are the same resolved key, their
// expiries compared by value (a record gives back a new one).
func sameKey(a, b ResolvedKey) bool {
	ea, eb := a.Principal.KeyExpiresAt, b.Principal.KeyExpiresAt
	a.Principal.KeyExpiresAt, b.Principal.KeyExpiresAt = nil, nil
	if ea == nil || eb == nil {
		return a == b && ea == eb
	}
	return a == b && *ea == *eb // the same instant, location and monotonic reading
}

// put holds r, read at at (UnixNano), in place of any key with its digest
// or id, pushing out an arbitrary one if max are held already. It reports
// false, holding nothing new, if r has a form a record cannot give back.
func (t *keyTable) put(r ResolvedKey, at int64, max int) bool {
	mark := len(t.text)
	rec, p, ok := t.compact(r, at)
	if !ok || !sameKey(t.expand(&rec, p, ""), r) {
		t.text = t.text[:mark] // nothing refers to what compact kept
		return false
	}
	pi, known := t.partnerIdx[p.id]
	if !known && len(t.partners) >= max {
		t.text = t.text[:mark]
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
			t.text = t.text[:mark]
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
	t.compactText()
	return true
}

// compact is r as a record, its strings kept in t.text, with its partner
// apart; ok is false if its ids are not NewID's.
func (t *keyTable) compact(r ResolvedKey, at int64) (rec record, p cachedPartner, ok bool) {
	pr := r.Principal
	keyID, ok := IDBytes(keyIDPrefix, pr.KeyID)
	if !ok {
		return record{}, cachedPartner{}, false
	}
	if len(t.text)+len(pr.Name)+len(r.KeyScopes.joined) > math.MaxInt32 {
		return record{}, cachedPartner{}, false // past what a span can say
	}
	rec = record{digest: r.Digest, keyID: [idLen]byte(keyID), at: at, active: r.Active}
	rec.name, rec.keyScopes = t.keep(pr.Name), t.keep(r.KeyScopes.joined)
	if pr.KeyExpiresAt != nil {
		rec.expiresMS, rec.expires = pr.KeyExpiresAt.UnixMilli(), true
	}
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
	t.dead += int(rec.name.len + rec.keyScopes.len)
	last := t.n - 1
	if i != last {
		*rec = *t.record(last)
		t.byDigest[digestKey(rec.digest)] = i
		t.byID[t.recordIDHash(rec)] = i
	}
	t.n--
}
