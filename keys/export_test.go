package keys

import "context"

// SetKeyCacheSize bounds the service's cache of resolved keys to n entries.
func SetKeyCacheSize(s *Service, n int) { s.cache.max = n }

// CachedKeys reports how many resolved keys the service's cache holds.
func CachedKeys(s *Service) int {
	s.cache.mu.RLock()
	defer s.cache.mu.RUnlock()
	return s.cache.table.len()
}

// KeyCheckInterval is how stale another process's change may be.
const KeyCheckInterval = keyCheckInterval

// FailureBuckets reports how many failure counts the recorder holds.
func FailureBuckets(r *Recorder) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.failures)
}

// MaxFailureBuckets bounds the failure counts a recorder holds.
const MaxFailureBuckets = maxFailureBuckets

// FlushDue is what a running Recorder does every interval.
func FlushDue(r *Recorder, ctx context.Context) { r.flush(ctx, false) }

// MaxWrittenKeys bounds the last writes a recorder remembers, and
// MaxCachedKeys the key cache: the keys in use.
const MaxWrittenKeys, MaxCachedKeys = maxWrittenKeys, maxCachedKeys

// SetMaxWrittenKeys lowers r's bound to n.
func SetMaxWrittenKeys(r *Recorder, n int) { r.maxWritten = n }
