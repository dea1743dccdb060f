// Package memstore is an in-memory Store, the floor of the benchmarks and a
// second implementation that keeps the contract suite honest; not for
// production: nothing survives a restart.
//
// It keeps what the SQLite store keeps, at the same millisecond precision in
// UTC, behind one sync.RWMutex. The hot paths (ResolveKey, ResolveKeyID,
// UpdateFamily) are map lookups.
package memstore

import (
	"context"
	"sync"
	"time"

	"keygate/keys"
	"keygate/tokens"
)

var (
	_ keys.Store   = (*Store)(nil)
	_ tokens.Store = (*Store)(nil)
)

// Store implements keys.Store and tokens.Store in memory. It is safe for
// concurrent use.
type Store struct {
	mu sync.RWMutex

	partners  map[string]*keys.Partner
	companies map[string]*company            // by company id
	listing   map[string][]*company          // by partner id, in creation order
	external  map[externalKey]struct{}       // external ids taken, per partner
	keys      map[string]*keys.Key           // by key id
	digests   map[keys.Digest]*keys.Key      // the lookup path of logins
	digestOf  map[string]keys.Digest         // by key id
	owned     map[keys.Owner][]*keys.Key     // the keys of one partner or company
	families  map[string]*tokens.Family      // by family id
	byKey     map[string]map[string]struct{} // key id -> its families' ids
	signing   []tokens.SigningKeyRecord
	secrets   map[string]tokens.SealedSecret // by name; nil until one is added
	audit     []keys.AuditEvent
	auditSeq  int64 // ID of the last audit event
	seq       int64 // listing position of the last company created
	epoch     int64 // see keys.Store.KeyEpoch
}

type company struct {
	keys.Company
	seq int64
}

type externalKey struct{ partnerID, externalID string }

// New returns an empty Store.
func New() *Store {
	return &Store{
		partners:  make(map[string]*keys.Partner),
		companies: make(map[string]*company),
		listing:   make(map[string][]*company),
		external:  make(map[externalKey]struct{}),
		keys:      make(map[string]*keys.Key),
		digests:   make(map[keys.Digest]*keys.Key),
		digestOf:  make(map[string]keys.Digest),
		owned:     make(map[keys.Owner][]*keys.Key),
		families:  make(map[string]*tokens.Family),
		byKey:     make(map[string]map[string]struct{}),
	}
}

// Ready always answers: memory does not fail the way disks do.
func (s *Store) Ready(context.Context) error { return nil }

// ms is what the SQLite store gives back for t: milliseconds, in UTC.
func ms(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return time.UnixMilli(t.UnixMilli()).UTC()
}

func msPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := ms(*t)
	return &v
}

func cloneString(s *string) *string {
	if s == nil {
		return nil
	}
	v := *s
	return &v
}

func cloneKey(k *keys.Key) keys.Key {
	c := *k
	c.LastUsedAt, c.RevokedAt, c.ExpiresAt = msPtr(k.LastUsedAt), msPtr(k.RevokedAt), msPtr(k.ExpiresAt)
	return c
}

func cloneFamily(f *tokens.Family) tokens.Family {
	c := *f
	c.RevokedAt = msPtr(f.RevokedAt)
	return c
}

// Close implements store.Store; there is nothing to release.
func (s *Store) Close() error { return nil }
