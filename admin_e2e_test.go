package main_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// adminAddr is the admin listener's address from the server's log, ""
// when it logged none.
func adminAddr(t *testing.T, s *e2eServer) string {
	t.Helper()
	for line := range strings.Lines(s.Logs()) {
		var rec struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "admin listening" {
			return rec.Addr
		}
	}
	return ""
}

// adminGet is a GET on the admin listener, which the OpenAPI document does
// not describe (plain client).
func adminGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s on the admin listener: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// TestAdminListener runs keygate serve three ways: KEYGATE_ADMIN_ADDR=""
// (no admin listener), an admin listener with the default admin.pprof
// (metrics, no profiles), and with admin.pprof on. The main listener never
// serves /metrics or profiles.
func TestAdminListener(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		env   []string
		admin bool
		pprof bool
	}{
		{"off", []string{"KEYGATE_ADMIN_ADDR="}, false, false},
		{"pprof off by default", []string{"KEYGATE_ADMIN_ADDR=127.0.0.1:0"}, true, false},
		{"pprof on", []string{"KEYGATE_ADMIN_ADDR=127.0.0.1:0", "KEYGATE_ADMIN_PPROF=true"}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, t.TempDir(), e2eEnv(tc.env...))
			for _, path := range []string{"/metrics", "/debug/pprof/"} {
				if code, _, _ := s.do(t, http.MethodGet, path, nil); code != http.StatusNotFound {
					t.Errorf("GET %s on the main listener: %d, want 404", path, code)
				}
			}
			addr := adminAddr(t, s)
			if !tc.admin {
				if addr != "" {
					t.Fatalf("KEYGATE_ADMIN_ADDR= still started an admin listener on %s", addr)
				}
				return
			}
			if addr == "" {
				t.Fatalf("no admin listener logged:\n%s", s.Logs())
			}
			code, body := adminGet(t, addr, "/metrics")
			if code != http.StatusOK || !strings.Contains(body, "\nkeygate_build_info{") || !strings.Contains(body, `keygate_refreshes_total{outcome="reuse_detected"} 0`) {
				t.Errorf("GET /metrics: %d\n%.600s", code, body)
			}
			want := http.StatusNotFound
			if tc.pprof {
				want = http.StatusOK
			}
			for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/cmdline"} {
				if code, _ := adminGet(t, addr, path); code != want {
					t.Errorf("GET %s on the admin listener: %d, want %d", path, code, want)
				}
			}
		})
	}
}
