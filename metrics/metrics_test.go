package metrics_test

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"keygate/metrics"
)

// exposition returns m's series as "name{labels}" -> value.
func exposition(t *testing.T, m *metrics.Metrics) map[string]string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	out := map[string]string{}
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		out[line[:i]] = line[i+1:]
	}
	return out
}

// TestCountersStartAtZero: every known label combination is exposed from
// the start, at 0, so that increase() sees the first event after a
// restart (a series that appears at 1 has no increase).
func TestCountersStartAtZero(t *testing.T) {
	got := exposition(t, metrics.New())
	var want []string
	for _, kind := range []string{"partner", "company", "unknown"} {
		for _, outcome := range []string{"ok", "invalid_key", "rate_limited", "error"} {
			want = append(want, `keygate_logins_total{kind="`+kind+`",outcome="`+outcome+`"}`)
		}
	}
	for _, outcome := range []string{"ok", "grace_retry", "reuse_detected", "expired", "invalid", "rate_limited", "error"} {
		want = append(want, `keygate_refreshes_total{outcome="`+outcome+`"}`)
	}
	for _, limit := range []string{"login_failures", "login_per_key", "refresh_per_family", "api"} {
		want = append(want, `keygate_rate_limited_total{limit="`+limit+`"}`)
	}
	for _, label := range []string{"true_positive", "false_positive"} {
		want = append(want, `keygate_leaked_keys_total{label="`+label+`"}`)
	}
	for _, series := range want {
		if v, ok := got[series]; v != "0" {
			t.Errorf("%s = %q (present %v), want 0 from the start", series, v, ok)
		}
	}
	for _, series := range []string{"keygate_store_commit_duration_seconds_count", "keygate_store_batch_size_count"} {
		if got[series] != "0" {
			t.Errorf("%s = %q, want 0", series, got[series])
		}
	}
}

// TestCommitObserver: the store's commits land in the histograms; nil
// metrics give the store no observer at all.
func TestCommitObserver(t *testing.T) {
	var off *metrics.Metrics
	if off.CommitObserver() != nil {
		t.Error("nil metrics hand the store an observer")
	}
	m := metrics.New()
	observe := m.CommitObserver()
	observe(3, 2*time.Millisecond, nil)
	observe(5, time.Millisecond, nil)
	got := exposition(t, m)
	for series, want := range map[string]string{
		"keygate_store_commit_duration_seconds_count": "2",
		"keygate_store_batch_size_count":              "2",
		"keygate_store_batch_size_sum":                "8",
		`keygate_store_batch_size_bucket{le="4"}`:     "1",
	} {
		if got[series] != want {
			t.Errorf("%s = %q, want %s", series, got[series], want)
		}
	}
}
