package metrics_test

import (
	"bytes"
	"os"
	"regexp"
	"testing"
	"time"

	"keygate/metrics"
	"net/http"
	"net/http/httptest"
)

// TestAlertRulesNameRealMetrics: every metric docs/prometheus-rules.yaml
// uses is one keygate serves, so the example rules cannot rot silently.
func TestAlertRulesNameRealMetrics(t *testing.T) {
	rules, err := os.ReadFile("../docs/prometheus-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	m.Watch(metrics.Sources{
		SigningKeys:  func() (int, int, int) { return 1, 0, 0 },
		StoreFailing: func() bool { return false },
	})
	// The request histogram needs a sample to show up in the exposition.
	m.Request("/health", "GET", 200, time.Millisecond)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	exposition := rec.Body.Bytes()
	for _, name := range regexp.MustCompile(`\b(keygate_[a-z_]+|http_server_[a-z_]+)`).FindAll(rules, -1) {
		if !bytes.Contains(exposition, append([]byte("\n"), name...)) {
			t.Errorf("docs/prometheus-rules.yaml uses %s, which keygate does not serve", name)
		}
	}
}
