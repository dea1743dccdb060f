package keys

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// maxPendingEvents bounds the login events held between flushes, so a flood
// of failed logins cannot grow memory without bound.
const maxPendingEvents = 50_000

// flushThreshold starts a flush early when this many events are waiting.
const flushThreshold = 1_000

// Recorder batches what every login writes besides its token family: the
// key's last-use time and the login's audit event. One transaction per
// interval replaces a write per login; last-use times coalesce per key.
type Recorder struct {
	store    Store
	log      *slog.Logger
	interval time.Duration

	mu      sync.Mutex
	used    map[string]time.Time // last use not yet written, per key
	written map[string]time.Time // last use written, per key
	events  []AuditEvent
	dropped int
	kick    chan struct{}
}

// usageResolution is how stale a written lastUsedAt may get: a busy key's
// row is rewritten once a minute, not on every flush, which keeps a
// thousand keys' random pages out of every second's transaction.
const usageResolution = time.Minute

// maxWrittenKeys bounds the memory of what was written; past it, keys are
// simply rewritten sooner.
const maxWrittenKeys = 100_000

// NewRecorder makes a Recorder that flushes every interval once Run starts.
func NewRecorder(store Store, interval time.Duration, log *slog.Logger) *Recorder {
	return &Recorder{
		store:    store,
		log:      log,
		interval: interval,
		used:     make(map[string]time.Time),
		written:  make(map[string]time.Time),
		kick:     make(chan struct{}, 1),
	}
}

// Login queues a login's audit event and, for a success, its key's use.
func (r *Recorder) Login(ev AuditEvent, keyID string) {
	r.mu.Lock()
	if keyID != "" {
		if ev.At.After(r.used[keyID]) {
			r.used[keyID] = ev.At
		}
	}
	if len(r.events) < maxPendingEvents {
		r.events = append(r.events, ev)
	} else {
		r.dropped++
	}
	n := len(r.events)
	r.mu.Unlock()
	if n >= flushThreshold {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
}

// Run flushes until ctx ends, then flushes once more.
func (r *Recorder) Run(ctx context.Context) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// The caller's context is gone; give the last flush its own deadline.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			r.Flush(fctx)
			cancel()
			return
		case <-t.C:
		case <-r.kick:
		}
		r.flush(ctx, false)
	}
}

// Flush writes everything pending, last uses included.
func (r *Recorder) Flush(ctx context.Context) { r.flush(ctx, true) }

// flush writes the pending audit events and the last uses that are due
// (all of them if all). On failure the batch is put back, so a passing
// database fault delays the audit trail rather than losing it.
func (r *Recorder) flush(ctx context.Context, all bool) {
	r.mu.Lock()
	events, dropped := r.events, r.dropped
	used := make(map[string]time.Time)
	for id, at := range r.used {
		if all || at.Sub(r.written[id]) >= usageResolution {
			used[id] = at
			delete(r.used, id)
		}
	}
	if len(used) == 0 && len(events) == 0 && dropped == 0 {
		r.mu.Unlock()
		return
	}
	r.events, r.dropped = nil, 0
	r.mu.Unlock()

	if dropped > 0 {
		r.log.WarnContext(ctx, "audit events dropped: too many pending", "dropped", dropped)
	}
	err := r.store.RecordUsage(ctx, used, events)
	if err == nil {
		r.mu.Lock()
		if len(r.written)+len(used) > maxWrittenKeys {
			r.written = make(map[string]time.Time)
		}
		for id, at := range used {
			r.written[id] = at
		}
		r.mu.Unlock()
		return
	}
	r.log.ErrorContext(ctx, "flushing login audit", "err", err, "events", len(events))
	r.mu.Lock()
	for id, at := range used {
		if at.After(r.used[id]) {
			r.used[id] = at
		}
	}
	room := maxPendingEvents - len(r.events)
	if room < len(events) {
		r.dropped += len(events) - room
		events = events[:room]
	}
	r.events = append(events, r.events...)
	r.mu.Unlock()
}
