package keys

import (
	"context"
	"hash/maphash"
	"log/slog"
	"slices"
	"strconv"
	"strings"
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
//
// Failed logins and refreshes are counted, not listed: one audit event per
// client address bucket (AddrBucket), action and minute, with the number of
// attempts and the first few key hints, written once the minute is over.
// Someone spraying bad credentials from many addresses therefore adds at
// most one row per address and minute, and no more than maxFailureBuckets
// of them are held at once; past that, the minute's further failures are
// counted in one bucket of their own (address "other").
type Recorder struct {
	store    Store
	log      *slog.Logger
	interval time.Duration
	now      func() time.Time

	mu         sync.Mutex
	used       map[string]time.Time // last use due to be written, per key (see Login)
	written    map[uint64]int64     // last use written, UnixNano, by writtenKey of the key id
	seed       maphash.Seed
	maxWritten int // maxWrittenKeys; tests lower it
	events     []AuditEvent
	failures   map[failureKey]*failureCount
	dropped    int
	kick       chan struct{}
}

// failureKey is what failures are counted by.
type failureKey struct {
	action string // "login" or "refresh"
	bucket string // AddrBucket of the client's address, or overflowBucket
	minute int64  // Unix minute of the attempts
}

// failureCount is one minute's failures from one address bucket.
type failureCount struct {
	first time.Time
	n     int
	hints []string // the first maxFailureHints distinct key hints
}

// maxFailureBuckets bounds the failure counts held at once, as
// ratelimit.max_tracked (100,000 by default) bounds the limiter's.
const maxFailureBuckets = 100_000

// maxFailureHints is how many distinct key hints a failure row names.
const maxFailureHints = 5

// overflowBucket counts the failures of a minute whose address bucket did
// not fit in maxFailureBuckets.
const overflowBucket = "other"

// usageResolution is how stale a written lastUsedAt may get: a busy key's
// row is rewritten once a minute, not on every flush, which keeps a
// thousand keys' random pages out of every second's transaction.
const usageResolution = time.Minute

// maxWrittenKeys bounds the memory of what was written (about 25 bytes a
// key); past it, the writes over a minute old are forgotten, and if more
// than half of the record is younger than that, all of it (keys are then
// rewritten sooner). It is the key cache's bound. It was 100,000, and with
// the benchmark's 100,000 companies and their partner the record filled
// and started again on every flush: every key in use was rewritten each
// time it filled, about every 17 s instead of once a minute.
const maxWrittenKeys = maxCachedKeys

// NewRecorder makes a Recorder that flushes every interval once Run starts;
// now tells it when a minute of failures is over.
func NewRecorder(store Store, interval time.Duration, now func() time.Time, log *slog.Logger) *Recorder {
	return &Recorder{
		store:      store,
		log:        log,
		interval:   interval,
		now:        now,
		used:       make(map[string]time.Time),
		written:    make(map[uint64]int64),
		seed:       maphash.MakeSeed(),
		maxWritten: maxWrittenKeys,
		failures:   make(map[failureKey]*failureCount),
		kick:       make(chan struct{}, 1),
	}
}

// pruneWritten forgets the writes over a minute old, which no longer keep
// a key from being written, and everything if more than half of the
// record is younger than that (it would fill again at once). The caller
// holds mu.
func (r *Recorder) pruneWritten() {
	old := r.now().UnixNano() - int64(usageResolution)
	for k, at := range r.written {
		if at <= old {
			delete(r.written, k)
		}
	}
	if len(r.written) > r.maxWritten/2 {
		r.written = make(map[uint64]int64)
	}
}

// writtenKey is what written holds a key id's last write by: 64 bits of a
// seeded hash, so that the map holds no strings for the collector to scan
// and no copies of the ids. Two keys of a process sharing one (about one
// chance in 10^9 with 250,000 keys in use) only share their rewriting
// schedule: one of them may be written up to a minute late.
func (r *Recorder) writtenKey(id string) uint64 { return maphash.String(r.seed, id) }

// Failure counts a failed login or refresh (action) at a time from a
// client address, naming the key by its hint if there is one.
func (r *Recorder) Failure(action string, at time.Time, addr, hint string) {
	k := failureKey{action: action, bucket: AddrBucket(addr), minute: at.Unix() / 60}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.failures[k]
	if !ok {
		if len(r.failures) >= maxFailureBuckets {
			k.bucket = overflowBucket
			c, ok = r.failures[k]
		}
		if !ok {
			c = &failureCount{first: at}
			r.failures[k] = c
		}
	}
	c.n++
	if hint != "" && len(c.hints) < maxFailureHints && !slices.Contains(c.hints, hint) {
		c.hints = append(c.hints, hint)
	}
}

// failureEvents takes the failure counts of minutes that are over (all of
// them if all) as audit events, oldest first. The caller holds mu.
func (r *Recorder) failureEvents(all bool) []AuditEvent {
	current := r.now().Unix() / 60
	var out []AuditEvent
	for k, c := range r.failures {
		if !all && k.minute >= current {
			continue
		}
		delete(r.failures, k)
		ev := failureEvent(k.action, c.first, k.bucket, c.n, c.hints)
		out = append(out, ev)
	}
	slices.SortFunc(out, func(a, b AuditEvent) int { return a.At.Compare(b.At) })
	return out
}

// failureEvent is the audit event of n failed attempts of an action from
// an address bucket, the first at a time.
func failureEvent(action string, at time.Time, bucket string, n int, hints []string) AuditEvent {
	ev := AuditEvent{
		At: at, ActorType: ActorAnonymous, Action: action, TargetType: "key",
		Addr: bucket, Outcome: OutcomeFailure, Detail: "attempts=" + strconv.Itoa(n),
	}
	if action == FailedRefresh {
		ev.TargetType = "refresh_token"
	}
	if len(hints) > 0 {
		ev.Target = hints[0]
		ev.Detail += " hints=" + strings.Join(hints, ",")
	}
	return ev
}

// The actions of aggregated failures.
const (
	FailedLogin   = "login"
	FailedRefresh = "refresh"
)

// Login queues a login's audit event and, for a success, its key's use if
// the last one written is a minute old (usageResolution): the uses in
// between are not kept, so a flush has only the due ones to look at, not
// every key in use.
func (r *Recorder) Login(ev AuditEvent, keyID string) {
	r.mu.Lock()
	if keyID != "" && ev.At.UnixNano()-r.written[r.writtenKey(keyID)] >= int64(usageResolution) && ev.At.After(r.used[keyID]) {
		r.used[keyID] = ev.At
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

// Flush writes everything pending, the current minute's failure counts
// included.
func (r *Recorder) Flush(ctx context.Context) { r.flush(ctx, true) }

// flush writes the pending audit events, the failure counts of the minutes
// that are over (and of the current one if all) and the due last uses. On
// failure the batch is put back, so a passing database fault delays the
// audit trail rather than losing it.
func (r *Recorder) flush(ctx context.Context, all bool) {
	r.mu.Lock()
	events, dropped, used := append(r.events, r.failureEvents(all)...), r.dropped, r.used
	if len(used) == 0 && len(events) == 0 && dropped == 0 {
		r.mu.Unlock()
		return
	}
	r.events, r.dropped = nil, 0
	if len(used) > 0 {
		r.used = make(map[string]time.Time)
	}
	r.mu.Unlock()

	if dropped > 0 {
		r.log.WarnContext(ctx, "audit events dropped: too many pending", "dropped", dropped)
	}
	err := r.store.RecordUsage(ctx, used, events)
	if err == nil {
		r.mu.Lock()
		if len(r.written)+len(used) > r.maxWritten {
			r.pruneWritten()
		}
		for id, at := range used {
			r.written[r.writtenKey(id)] = at.UnixNano()
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
