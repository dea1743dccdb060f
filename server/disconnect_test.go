package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestClientDisconnectIsNotAServerError: a request whose client went away
// while keygate worked on it is logged at info as 499 with client_closed,
// never as a 500 at ERROR, and its write either happened whole or not at
// all (the family still refreshes exactly once).
func TestClientDisconnectIsNotAServerError(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("Acme")
	for _, tc := range []struct{ path, body string }{
		{"/api/v1/auth/refresh", refreshBody(a.pair.RefreshToken)},
		{"/api/v1/auth/login", loginBody(a.apiKey)},
		{"/api/v1/companies", `{"name":"Globex"}`},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // the client is gone before keygate answers
		req := httptest.NewRequest(http.MethodPost, tc.path, strings.NewReader(tc.body)).WithContext(ctx)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("R-Auth", a.pair.JWT)
		rec := httptest.NewRecorder()
		e.handler.ServeHTTP(rec, req)
		if rec.Code >= 500 && rec.Code != 499 {
			t.Errorf("%s: %d after the client left, want 499 or an answer", tc.path, rec.Code)
		}
	}
	var closed int
	for _, r := range e.logs.records(t) {
		if r["level"] == "ERROR" {
			t.Errorf("an ERROR record for a client that left: %v", r)
		}
		if r["msg"] == "request" && r["status"] == float64(499) {
			closed++
			if r["level"] != "INFO" || r["client_closed"] != true {
				t.Errorf("access line of a closed request: %v", r)
			}
		}
	}
	if closed == 0 {
		t.Fatalf("no request was recorded as 499:\n%s", e.logs)
	}
	// The refresh that was cancelled either rotated or did not: the token
	// or its grace retry still gets one successor, and the family lives.
	next := e.refresh(a.pair.RefreshToken)
	e.refresh(next.RefreshToken)
}
