package tokens

import "context"

// Housekeep deletes dead families in small batches, each its own short
// transaction, so logins queued behind it wait for one batch at most.
func (s *Service) Housekeep(ctx context.Context) (int, error) {
	const batch = 500
	before := s.now().Add(-s.cfg.Retention)
	total := 0
	for {
		n, err := s.store.DeleteFamilies(ctx, before, batch)
		total += n
		if err != nil || n < batch {
			return total, err
		}
	}
}
