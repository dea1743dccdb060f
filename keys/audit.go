package keys

import "time"

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
