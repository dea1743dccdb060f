package keys

import (
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// resolvedFor is a key as a store would resolve it; company picks its
// owner's kind.
func resolvedFor(d Digest, keyID, partnerID, companyID string, company bool) ResolvedKey {
	o := PartnerOwner(partnerID)
	if company {
		o = CompanyOwner(partnerID, companyID)
	}
	return ResolvedKey{Digest: d, Principal: PrincipalOf(keyID, o, "Name of "+keyID), Active: true}
}

func TestKeyTableGivesBackWhatItWasGiven(t *testing.T) {
	expires := time.Date(2027, 1, 2, 3, 4, 5, 6_000_000, time.UTC)
	company := resolvedFor(Digest{1}, NewID("key_"), NewID("par_"), NewID("com_"), true)
	company.KeyScopes, company.PartnerScopes = StoredScopes("a b"), StoredScopes("a b c")
	company.Principal.KeyExpiresAt = &expires
	partner := resolvedFor(Digest{2}, NewID("key_"), company.Principal.PartnerID, "", false)
	partner.Active, partner.PartnerScopes = false, company.PartnerScopes
	tb := newKeyTable()
	for _, r := range []ResolvedKey{company, partner} {
		if !tb.put(r, 42, 10) {
			t.Fatalf("put(%+v) held nothing", r.Principal)
		}
	}
	for _, want := range []ResolvedKey{company, partner} {
		got, at, ok := tb.digest(want.Digest)
		if !ok || !sameKey(got, want) || at != 42 {
			t.Errorf("digest: %+v, %d, %v; want %+v, 42", got, at, ok, want)
		}
		got, at, ok = tb.id(want.Principal.KeyID)
		if !ok || !sameKey(got, want) || at != 42 {
			t.Errorf("id: %+v, %d, %v; want %+v, 42", got, at, ok, want)
		}
	}
	if len(tb.partners) != 1 {
		t.Errorf("%d partners held for two keys of one partner", len(tb.partners))
	}
	// Neither a digest nor an id that differs in one byte finds a key.
	other := company.Digest
	other[31] ^= 1
	if _, _, ok := tb.digest(other); ok {
		t.Error("a digest differing in its last byte found a key")
	}
	id := []byte(company.Principal.KeyID)
	id[len(id)-1] ^= 1
	for _, s := range []string{string(id), company.Principal.KeyID[1:], "", "com_" + company.Principal.KeyID[4:]} {
		if _, _, ok := tb.id(s); ok {
			t.Errorf("id(%q) found a key", s)
		}
	}
}

func TestKeyTableHoldsOnlyWhatItCanGiveBack(t *testing.T) {
	ok := resolvedFor(Digest{1}, NewID("key_"), NewID("par_"), NewID("com_"), true)
	cases := map[string]ResolvedKey{
		"key id not NewID's":     resolvedFor(Digest{1}, "key_1", NewID("par_"), "", false),
		"company id not NewID's": resolvedFor(Digest{1}, NewID("key_"), NewID("par_"), "com_1", true),
		"company id a key id":    resolvedFor(Digest{1}, NewID("key_"), NewID("par_"), NewID("key_"), true),
		"principal with scopes": func() ResolvedKey {
			r := ok
			r.Principal.Scopes = StoredScopes("a")
			return r
		}(),
		"id not the company's": func() ResolvedKey {
			r := ok
			r.Principal.ID = r.Principal.PartnerID
			return r
		}(),
		"expiry finer than a millisecond": withExpiry(ok, time.Date(2027, 1, 2, 3, 4, 5, 6_000_001, time.UTC)),
		"expiry not in UTC":               withExpiry(ok, time.Date(2027, 1, 2, 3, 4, 5, 0, time.FixedZone("X", 3600))),
	}
	for name, r := range cases {
		tb := newKeyTable()
		if tb.put(r, 1, 10) || tb.len() != 0 || len(tb.text) != 0 {
			t.Errorf("%s: held (%d keys, %d bytes of text)", name, tb.len(), len(tb.text))
		}
	}
}

func withExpiry(r ResolvedKey, at time.Time) ResolvedKey {
	r.Principal.KeyExpiresAt = &at
	return r
}

func TestSameKeyComparesExpiriesByValue(t *testing.T) {
	r := resolvedFor(Digest{1}, NewID("key_"), NewID("par_"), "", false)
	at := time.UnixMilli(1_800_000_000_000).UTC()
	cases := []struct {
		a, b ResolvedKey
		same bool
	}{
		{r, r, true},
		{withExpiry(r, at), withExpiry(r, at), true}, // two pointers, one time
		{withExpiry(r, at), withExpiry(r, at.Add(time.Millisecond)), false},
		{withExpiry(r, at), r, false},
		{r, withExpiry(r, at), false},
		{withExpiry(r, at), withExpiry(r, at.In(time.FixedZone("X", 0))), false},
	}
	for i, c := range cases {
		if got := sameKey(c.a, c.b); got != c.same {
			t.Errorf("case %d: sameKey = %v, want %v", i, got, c.same)
		}
	}
}

// TestKeyTableRecordsHoldNoPointers keeps the records out of the garbage
// collector's way: a pointer in one makes it scan every record at every
// collection (see keyTable).
func TestKeyTableRecordsHoldNoPointers(t *testing.T) {
	var walk func(path string, typ reflect.Type)
	walk = func(path string, typ reflect.Type) {
		switch typ.Kind() {
		case reflect.Struct:
			for i := range typ.NumField() {
				f := typ.Field(i)
				walk(path+"."+f.Name, f.Type)
			}
		case reflect.Array:
			walk(path+"[]", typ.Elem())
		case reflect.Pointer, reflect.String, reflect.Slice, reflect.Map, reflect.Interface, reflect.Chan, reflect.Func, reflect.UnsafePointer:
			t.Errorf("%s is a %s", path, typ.Kind())
		}
	}
	walk("record", reflect.TypeFor[record]())
}

// TestKeyTableStaysConsistent puts keys at random into a small table,
// with digests that often share the 64 bits the index uses, and checks
// after every put that each key found is the last one put under its
// digest, and that every record is found through both indexes.
func TestKeyTableStaysConsistent(t *testing.T) {
	const max = 40
	rng := rand.New(rand.NewPCG(1, 2))
	partnerIDs := []string{NewID("par_"), NewID("par_"), NewID("par_")}
	keyIDs := make([]string, 100)
	digests := make([]Digest, len(keyIDs))
	for i := range keyIDs {
		keyIDs[i] = NewID("key_")
		digests[i][0] = byte(rng.IntN(60)) // 60 index keys for 100 digests
		digests[i][8] = byte(i)
	}
	last := map[Digest]ResolvedKey{}
	tb := newKeyTable()
	for step := range 5000 {
		i := rng.IntN(len(keyIDs))
		r := resolvedFor(digests[i], keyIDs[i], partnerIDs[i%3], NewID("com_"), i%2 == 0)
		r.Principal.Name = strings.Repeat("n", rng.IntN(40)) // empty at times
		r.PartnerScopes = StoredScopes(string(rune('a' + step%26)))
		if step%3 == 0 {
			r.KeyScopes = StoredScopes("a b" + strings.Repeat("c", step%5))
		}
		if step%4 == 0 {
			r = withExpiry(r, time.UnixMilli(int64(step)*1_000_003).UTC())
		}
		if !tb.put(r, int64(step), max) {
			t.Fatalf("step %d: put held nothing", step)
		}
		last[r.Digest] = r
		if tb.len() > max {
			t.Fatalf("step %d: %d keys held, bound %d", step, tb.len(), max)
		}
		if len(tb.byDigest) != tb.len() || len(tb.byID) != tb.len() {
			t.Fatalf("step %d: %d records, %d and %d index entries", step, tb.len(), len(tb.byDigest), len(tb.byID))
		}
		live := 0
		for j := range tb.n {
			rec := tb.record(j)
			live += int(rec.name.len + rec.keyScopes.len)
		}
		if live != len(tb.text)-tb.dead || tb.dead >= compactTextAt && tb.dead >= len(tb.text)/4 {
			t.Fatalf("step %d: %d bytes of text, %d dead, %d in use", step, len(tb.text), tb.dead, live)
		}
		for j := range tb.n {
			rec := tb.record(j)
			want := last[rec.digest]
			// The partner's scopes are the latest read of any of its keys.
			want.PartnerScopes = tb.partners[rec.partner].scopes
			got, _, ok := tb.digest(rec.digest)
			if !ok || !sameKey(got, want) {
				t.Fatalf("step %d: by digest %+v, %v; want %+v", step, got, ok, want)
			}
			if got, _, ok := tb.id(want.Principal.KeyID); !ok || !sameKey(got, want) {
				t.Fatalf("step %d: by id %+v, %v; want %+v", step, got, ok, want)
			}
		}
		if got, _, ok := tb.digest(r.Digest); !ok || !sameKey(got, r) {
			t.Fatalf("step %d: the key just put is not found", step)
		}
	}
}
