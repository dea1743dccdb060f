package keys

import (
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// ActorReporter is the actor of a leaked-key report: a secret scanner
// whose signature was checked (Actor.ID says which way: ReporterGitHub or
// ReporterHMAC).
const ActorReporter ActorType = "reporter"

// MaxLeakReports is the most tokens one report may carry, as in GitHub's
// secret scanning partner program.
const MaxLeakReports = 1000

// LeakReport is one token a secret scanner found in public, and where.
type LeakReport struct {
	Token  Secret // whatever the scanner matched: a key, or junk
	Type   string // the scanner's name for the kind of token
	URL    string // where it was found
	Source string // what it was found in (GitHub: content, commit, ...)
}

// LeakLabel is the verdict on a reported token.
type LeakLabel string

const (
	// LeakTruePositive: the token is a key of this keygate, now revoked.
	LeakTruePositive LeakLabel = "true_positive"
	// LeakFalsePositive: the token is no key of this keygate.
	LeakFalsePositive LeakLabel = "false_positive"
)

// LeakVerdict answers one LeakReport.
type LeakVerdict struct {
	TokenHash string // hex SHA-256 of the token, so the scanner can match it
	TokenType string // the report's Type
	Label     LeakLabel
}

// leakWorkers bounds how many reported keys are resolved and revoked at
// once: enough that SQLite's writer commits a report's revocations
// together, few enough that a report cannot hog the store's connections.
const leakWorkers = 8

// Bounds of what a key.leaked event's detail quotes from a report.
const (
	maxLeakSource = 64
	maxLeakURL    = 512
)

// leak is one distinct well-formed token of a report.
type leak struct {
	digest Digest
	first  LeakReport // the first item that carried it: its url and source are audited
	found  bool
}

// ReportLeaked revokes every key of this keygate among the reported tokens
// and says which were its keys. A token that fails the format or checksum
// check is a false positive without any lookup; a well-formed one is
// looked up by digest, and a key found is revoked at once (its refresh
// tokens die with it; keygate's own endpoints refuse its access tokens),
// with a key.leaked event naming the key, the reporter, and where the
// token was found. A key that was already revoked is a true positive too
// and gets no event: the store records a revocation once, so a report sent
// again changes nothing and the trail shows the revocation that counted.
// Tokens never reach a log or the audit trail; keys appear by id and hint.
func (s *Service) ReportLeaked(ctx context.Context, actor Actor, reports []LeakReport) ([]LeakVerdict, error) {
	if len(reports) > MaxLeakReports {
		return nil, &ValidationError{Field: "body", Message: "must hold at most 1000 tokens"}
	}
	verdicts := make([]LeakVerdict, len(reports))
	byDigest := map[Digest]*leak{}
	var leaks []*leak
	firstOf := make([]*leak, len(reports)) // the leak each report names, nil for junk
	for i, r := range reports {
		token := r.Token.Reveal()
		d := DigestOf(token)
		verdicts[i] = LeakVerdict{TokenHash: hex.EncodeToString(d[:]), TokenType: r.Type, Label: LeakFalsePositive}
		if _, err := ParseAPIKey(token); err != nil {
			continue // junk: refused without a lookup
		}
		l, ok := byDigest[d]
		if !ok {
			l = &leak{digest: d, first: r}
			byDigest[d] = l
			leaks = append(leaks, l)
		}
		firstOf[i] = l
	}
	if len(leaks) == 0 {
		return verdicts, nil
	}
	defer s.cache.invalidate()
	now := s.now()
	err := forEach(ctx, leaks, leakWorkers, func(ctx context.Context, l *leak) error {
		r, err := s.store.ResolveKey(ctx, l.digest)
		if errors.Is(err, ErrInvalidKey) {
			return nil // well-formed, but no key of ours
		}
		if err != nil {
			return err
		}
		l.found = true
		p := r.Principal
		ev := AuditEvent{
			At: now, ActorType: actor.Type, ActorID: actor.ID, Action: "key.leaked", TargetType: "key", Target: p.KeyID,
			Addr: actor.Addr, Outcome: OutcomeSuccess, Detail: leakDetail(l.first),
		}
		// Revoking an already revoked key writes nothing, its event included.
		if err := s.store.RevokeKey(ctx, p.Owner(), p.KeyID, now, ev); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		s.log.WarnContext(ctx, "leaked key reported", "key_id", p.KeyID, "hint", Hint(l.first.Token.Reveal()),
			"owner", p.ID, "was_active", r.Active, "reporter", actor.ID,
			"source", clean(l.first.Source, maxLeakSource), "url", clean(l.first.URL, maxLeakURL))
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, l := range firstOf {
		if l != nil && l.found {
			verdicts[i].Label = LeakTruePositive
		}
	}
	return verdicts, nil
}

// leakDetail is a key.leaked event's detail: where the token was found,
// as the reporter said, bounded and without control characters.
func leakDetail(r LeakReport) string {
	return "source=" + clean(r.Source, maxLeakSource) + " url=" + clean(r.URL, maxLeakURL)
}

// clean makes reporter-supplied text safe to log and audit: at most max
// characters (cut ones end in "..."), invalid UTF-8, control characters
// and spaces replaced with U+FFFD, so that it cannot forge a line or a
// field of its own.
func clean(s string, max int) string {
	var b strings.Builder
	n := 0
	for len(s) > 0 {
		if n == max {
			b.WriteString("...")
			break
		}
		c, size := utf8.DecodeRuneInString(s)
		s = s[size:]
		if c == utf8.RuneError || unicode.IsControl(c) || unicode.IsSpace(c) || !unicode.IsPrint(c) {
			c = utf8.RuneError
		}
		b.WriteRune(c)
		n++
	}
	if b.Len() == 0 {
		return `""`
	}
	return b.String()
}

// forEach calls fn on every item, at most workers at a time, and returns
// the first error (the others stop early through ctx).
func forEach[T any](ctx context.Context, items []T, workers int, fn func(context.Context, T) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan T)
	var wg sync.WaitGroup
	for range min(workers, len(items)) {
		wg.Go(func() {
			for it := range next {
				if err := fn(ctx, it); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for _, it := range items {
		if ctx.Err() != nil {
			break
		}
		select {
		case next <- it:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && ctx.Err() != nil {
		return err
	}
	return nil
}
