package apitest_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"keygate/api/apitest"
)

// recordingTB keeps the errors reported to it instead of failing.
type recordingTB struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestTransport: the validating transport passes a response the document
// describes, reports one it does not, and hands the caller the whole body
// either way.
func TestTransport(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Request-ID", "5f0c2a9e1b7d4c3a8e6f1029")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Type", "application/json; charset=utf-8")
		if r.URL.Path == "/health" && r.URL.Query().Get("brew") != "" {
			w.WriteHeader(http.StatusTeapot)
		}
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	}))
	t.Cleanup(ts.Close)
	rec := &recordingTB{TB: t}
	client := &http.Client{Transport: apitest.Transport(rec, nil)}
	for _, path := range []string{"/health", "/health?brew=1"} {
		resp, err := client.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != `{"status":"ok"}` {
			t.Errorf("%s: the caller got %q", path, body)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], "GET /health answered 418") {
		t.Errorf("reported %q, want only the 418", rec.errs)
	}
}
