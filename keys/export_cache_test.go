package keys

// KeyTTL is how long a cached key is used without being read again.
const KeyTTL = keyTTL

// LocalKeyTTL is KeyTTL on a store one process owns.
const LocalKeyTTL = localKeyTTL

// QueuedEpochWaiters reports how many lookups wait for the epoch read
// queued behind the one in flight.
func QueuedEpochWaiters(s *Service) int {
	s.cache.checkMu.Lock()
	defer s.cache.checkMu.Unlock()
	if s.cache.queued == nil {
		return 0
	}
	return s.cache.queued.waiters
}
