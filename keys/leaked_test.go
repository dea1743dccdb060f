package keys_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"keygate/keys"
	"keygate/memstore"
)

// lookupStore is a memstore that counts key lookups by digest and can make
// them fail.
type lookupStore struct {
	*memstore.Store
	mu      sync.Mutex
	lookups map[keys.Digest]int
	fail    map[keys.Digest]error
}

func (s *lookupStore) ResolveKey(ctx context.Context, d keys.Digest) (keys.ResolvedKey, error) {
	s.mu.Lock()
	s.lookups[d]++
	err := s.fail[d]
	s.mu.Unlock()
	if err != nil {
		return keys.ResolvedKey{}, err
	}
	return s.Store.ResolveKey(ctx, d)
}

func (s *lookupStore) count() (n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.lookups {
		n += c
	}
	return n
}

func leakService(t *testing.T) (*keys.Service, *lookupStore) {
	t.Helper()
	st := &lookupStore{Store: memstore.New(), lookups: map[keys.Digest]int{}, fail: map[keys.Digest]error{}}
	clock := &manualClock{t: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	return keys.NewService(st, nil, clock.Now, slog.New(slog.DiscardHandler)), st
}

var reporter = keys.Actor{Type: keys.ActorReporter, ID: keys.ReporterHMAC, Addr: "192.0.2.1"}

func leaksOf(tokens ...string) []keys.LeakReport {
	out := make([]keys.LeakReport, len(tokens))
	for i, tok := range tokens {
		out[i] = keys.LeakReport{Token: keys.Secret(tok), Type: "t", URL: "https://example.com/" + tok[:min(len(tok), 7)], Source: "content"}
	}
	return out
}

// TestReportLeakedManyKeys: a report of many live keys revokes every one,
// each with one event, looked up once each even when a key is reported
// twice; the verdicts keep the report's order.
func TestReportLeakedManyKeys(t *testing.T) {
	svc, st := leakService(t)
	ctx := t.Context()
	var tokens []string
	for range 40 {
		_, k, err := svc.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "P"})
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, k.APIKey.Reveal(), "pk_junk")
	}
	tokens = append(tokens, tokens[0])
	got, err := svc.ReportLeaked(ctx, reporter, leaksOf(tokens...))
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		d := sha256.Sum256([]byte(tokens[i]))
		want := keys.LeakVerdict{TokenHash: hex.EncodeToString(d[:]), TokenType: "t", Label: keys.LeakFalsePositive}
		if tokens[i] != "pk_junk" {
			want.Label = keys.LeakTruePositive
		}
		if v != want {
			t.Errorf("verdict %d: %+v, want %+v", i, v, want)
		}
	}
	if n := st.count(); n != 40 {
		t.Errorf("%d lookups for 40 distinct keys", n)
	}
	var leaked int
	for _, ev := range auditTrail(t, svc) {
		if ev.Action == "key.leaked" {
			leaked++
		}
	}
	if leaked != 40 {
		t.Errorf("%d key.leaked events, want 40", leaked)
	}
	for _, tok := range tokens {
		if _, err := svc.Authenticate(ctx, tok); tok != "pk_junk" && !errors.Is(err, keys.ErrInvalidKey) {
			t.Errorf("a reported key still authenticates: %v", err)
		}
	}
}

// TestReportLeakedStoreFailure: a lookup that fails fails the report (the
// scanner retries), and the retry finishes the job without revoking twice.
func TestReportLeakedStoreFailure(t *testing.T) {
	svc, st := leakService(t)
	ctx := t.Context()
	var tokens []string
	for range 3 {
		_, k, err := svc.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "P"})
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, k.APIKey.Reveal())
	}
	st.fail[keys.DigestOf(tokens[1])] = keys.ErrUnavailable
	if _, err := svc.ReportLeaked(ctx, reporter, leaksOf(tokens...)); !errors.Is(err, keys.ErrUnavailable) {
		t.Fatalf("ReportLeaked with a failing store: %v, want ErrUnavailable", err)
	}
	delete(st.fail, keys.DigestOf(tokens[1]))
	got, err := svc.ReportLeaked(ctx, reporter, leaksOf(tokens...))
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if v.Label != keys.LeakTruePositive {
			t.Errorf("verdict %d: %+v", i, v)
		}
	}
	leaked := map[string]int{}
	for _, ev := range auditTrail(t, svc) {
		if ev.Action == "key.leaked" {
			leaked[ev.Target]++
		}
	}
	if len(leaked) != 3 {
		t.Errorf("key.leaked events by key: %v, want one for each of 3", leaked)
	}
	for id, n := range leaked {
		if n != 1 {
			t.Errorf("key %s: %d key.leaked events", id, n)
		}
	}
}

// TestReportLeakedTooMany: more than MaxLeakReports tokens is refused
// before anything is looked up.
func TestReportLeakedTooMany(t *testing.T) {
	svc, st := leakService(t)
	tokens := make([]string, keys.MaxLeakReports+1)
	for i := range tokens {
		tokens[i] = keys.NewAPIKey(keys.PartnerKeyPrefix).Reveal()
	}
	_, err := svc.ReportLeaked(t.Context(), reporter, leaksOf(tokens...))
	var ve *keys.ValidationError
	if !errors.As(err, &ve) || ve.Field != "body" {
		t.Errorf("ReportLeaked(1001 tokens) = %v, want a validation error of the body", err)
	}
	if n := st.count(); n != 0 {
		t.Errorf("%d lookups", n)
	}
	got, err := svc.ReportLeaked(t.Context(), reporter, leaksOf(tokens[:keys.MaxLeakReports]...))
	if err != nil || len(got) != keys.MaxLeakReports {
		t.Errorf("ReportLeaked(1000 tokens): %d verdicts, %v", len(got), err)
	}
}

// TestReportLeakedCancelled: a report whose context ends stops with its
// error rather than answering verdicts it did not reach.
func TestReportLeakedCancelled(t *testing.T) {
	svc, _ := leakService(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	tokens := make([]string, 50)
	for i := range tokens {
		tokens[i] = keys.NewAPIKey(keys.CompanyKeyPrefix).Reveal()
	}
	if _, err := svc.ReportLeaked(ctx, reporter, leaksOf(tokens...)); !errors.Is(err, context.Canceled) {
		t.Errorf("ReportLeaked(cancelled) = %v", err)
	}
}

// scannerPattern is the regular expression docs/operations.md gives secret
// scanners for keygate's keys.
const scannerPattern = `\b(pk|ck)_[0-9A-Za-z]{49}\b`

// TestKeyPatternForScanners: the documented pattern matches every key
// keygate makes, and only whole keys, so scanners can be given it.
func TestKeyPatternForScanners(t *testing.T) {
	re := regexp.MustCompile(`^` + scannerPattern + `$`)
	for range 500 {
		for _, prefix := range []string{keys.PartnerKeyPrefix, keys.CompanyKeyPrefix} {
			if k := keys.NewAPIKey(prefix).Reveal(); !re.MatchString(k) {
				t.Fatalf("%s... does not match %s", keys.Hint(k), scannerPattern)
			}
		}
	}
	k := keys.NewAPIKey(keys.PartnerKeyPrefix).Reveal()
	for _, s := range []string{k[:len(k)-1], k + "a", "rt_" + k[3:]} {
		if re.MatchString(s) {
			t.Errorf("%q matches", s)
		}
	}
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "`"+scannerPattern+"`") {
		t.Errorf("docs/operations.md does not give scanners the pattern %s", scannerPattern)
	}
}

func signHMAC(secret, body string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(body))
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// TestReportersHMAC: the shared secret's signature is checked over the
// exact body; a short secret is refused; no reporter, no report.
func TestReportersHMAC(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	if _, err := keys.NewReporters(nil, keys.Secret(secret[:31])); err == nil {
		t.Error("a 31-byte secret was taken")
	}
	none, err := keys.NewReporters(nil, "")
	if none != nil || err != nil {
		t.Errorf("no reporter: %v, %v; want nil, nil", none, err)
	}
	body := []byte(`[{"token":"pk_x","type":"t","url":"u","source":"s"}]`)
	if _, err := none.Verify(body, keys.Signatures{HMAC: signHMAC(secret, string(body))}); !errors.Is(err, keys.ErrBadSignature) {
		t.Errorf("nil Reporters verified: %v", err)
	}
	r, err := keys.NewReporters(nil, secret)
	if err != nil {
		t.Fatal(err)
	}
	good := signHMAC(secret, string(body))
	if who, err := r.Verify(body, keys.Signatures{HMAC: good}); err != nil || who != keys.ReporterHMAC {
		t.Errorf("Verify = %q, %v", who, err)
	}
	if who, err := r.Verify(body, keys.Signatures{HMAC: "sha256=" + strings.ToUpper(good[7:])}); err != nil || who != keys.ReporterHMAC {
		t.Errorf("upper-case hex: %q, %v", who, err)
	}
	for _, bad := range []string{"", good[7:], "sha256=" + good[8:], good + "00", signHMAC(secret+"!", string(body)), signHMAC(secret, string(body)+" ")} {
		if _, err := r.Verify(body, keys.Signatures{HMAC: bad}); !errors.Is(err, keys.ErrBadSignature) {
			t.Errorf("signature %q: %v", bad, err)
		}
	}
}
