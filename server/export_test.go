package server

// TrackedBuckets reports how many rate-limit buckets each limiter holds, so
// the external tests can check that memory stays bounded.
func (s *Server) TrackedBuckets() map[string]int {
	return map[string]int{
		"failures": s.limits.failures.len(),
		"login":    s.limits.login.len(),
		"refresh":  s.limits.refresh.len(),
		"api":      s.limits.api.len(),
	}
}

// AdminConfigForTests is the admin listener's configuration in tests.
func AdminConfigForTests() AdminConfig { return AdminConfig{} }
