package keys

// SetKeyCacheSize bounds the service's cache of resolved keys to n entries.
func SetKeyCacheSize(s *Service, n int) { s.cache.max = n }

// CachedKeys reports how many resolved keys the service's cache holds.
func CachedKeys(s *Service) int {
	s.cache.mu.RLock()
	defer s.cache.mu.RUnlock()
	return len(s.cache.byID)
}

// KeyCheckInterval is how stale another process's change may be.
const KeyCheckInterval = keyCheckInterval
