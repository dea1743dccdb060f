package keys

import (
	"context"
	"time"
)

// Audit outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
)

// ActorType says what kind of actor an audit event names.
type ActorType string

// Actor types; a partner's and a company's are their Kind.
const (
	ActorPartner             = ActorType(KindPartner)
	ActorCompany             = ActorType(KindCompany)
	ActorOperator  ActorType = "operator"
	ActorAnonymous ActorType = "anonymous" // a failed login names no one
)

// AuditEvent is one security-relevant event. It never holds a secret: keys
// appear by id or hint only.
type AuditEvent struct {
	// ID is the store's sequence number of the event, set when it is read
	// back (zero on events being written): with At, it orders the trail.
	ID         int64
	At         time.Time
	ActorType  ActorType
	ActorID    string
	Action     string // e.g. company.created, key.revoked, login, refresh.reuse_detected
	TargetType string
	Target     string
	Addr       string
	Outcome    string
	Detail     string
}

// AuditCursor is a position in the audit trail, which is ordered by time
// and then by ID: a listing continues strictly after it. The cursor of
// time t and ID 0 starts at the first event at t.
type AuditCursor struct {
	At time.Time
	ID int64
}

// After is the cursor just past e.
func (e AuditEvent) After() AuditCursor { return AuditCursor{At: e.At, ID: e.ID} }

// auditPage is how many events a listing reads per store call, so that
// exporting a long trail holds one page in memory, not the trail.
const auditPage = 1000

// EachAudit calls fn with every audit event at or after since, oldest
// first, reading the trail a page at a time; it stops at fn's first error.
func (s *Service) EachAudit(ctx context.Context, since time.Time, fn func(AuditEvent) error) error {
	cur := AuditCursor{At: since}
	for {
		evs, err := s.store.ListAudit(ctx, cur, auditPage)
		if err != nil {
			return err
		}
		for _, e := range evs {
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(evs) < auditPage {
			return nil
		}
		cur = evs[len(evs)-1].After()
	}
}

// ListAudit returns every audit event at or after since, oldest first.
func (s *Service) ListAudit(ctx context.Context, since time.Time) ([]AuditEvent, error) {
	out := []AuditEvent{}
	err := s.EachAudit(ctx, since, func(e AuditEvent) error {
		out = append(out, e)
		return nil
	})
	return out, err
}

// auditDeleteBatch bounds each deletion's transaction, so that writes
// queued behind housekeeping wait for one small batch at most.
const auditDeleteBatch = 500

// ExpireAudit deletes the audit events older than retention, in small
// batches, and reports how many it deleted. A retention of 0 keeps
// everything.
func (s *Service) ExpireAudit(ctx context.Context, retention time.Duration) (int, error) {
	if retention <= 0 {
		return 0, nil
	}
	before := s.now().Add(-retention)
	total := 0
	for {
		n, err := s.store.DeleteAudit(ctx, before, auditDeleteBatch)
		total += n
		if err != nil || n < auditDeleteBatch {
			return total, err
		}
	}
}
