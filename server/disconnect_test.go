package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"keygate/store"
	"keygate/tokens"
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

// cancellingStore cancels a request's context from inside the store's
// write transaction, after the write was handed to it: the client leaving
// mid-flight.
type cancellingStore struct {
	store.Store
	cancel atomic.Pointer[context.CancelFunc]
}

func (s *cancellingStore) UpdateFamily(ctx context.Context, id string, seed *tokens.Family, decide func(f *tokens.Family) (tokens.Change, error)) error {
	return s.Store.UpdateFamily(ctx, id, seed, func(f *tokens.Family) (tokens.Change, error) {
		if c := s.cancel.Swap(nil); c != nil {
			(*c)() // the client hangs up while its rotation is being decided
		}
		return decide(f)
	})
}

// TestClientLeavesMidWrite: a refresh whose client hangs up while the
// store is deciding its rotation completes it whole: the family moved one
// generation, and the successor keygate computed is the live token (its
// grace retry hands out the same one). The request is not a 5xx.
func TestClientLeavesMidWrite(t *testing.T) {
	t.Parallel()
	var cs cancellingStore
	e := newEnv(t, withStore(func(db store.Store) store.Store { cs.Store = db; return &cs }))
	a := e.tenant("Acme")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs.cancel.Store(&cancel)
	req := httptest.NewRequest(http.MethodPost, "/api/v1/auth/refresh", strings.NewReader(refreshBody(a.pair.RefreshToken))).WithContext(ctx)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, req)
	if ctx.Err() == nil {
		t.Fatal("the store never saw the rotation: the client did not leave mid-write")
	}
	if rec.Code >= 500 && rec.Code != 499 {
		t.Errorf("refresh after the client left mid-write: %d", rec.Code)
	}
	// The rotation committed: the old token is now the parent, whose retry
	// within the grace window gets generation 1's token, and that refreshes.
	retry := e.refresh(a.pair.RefreshToken)
	if rec.Code == http.StatusOK {
		if got := decodeInto[tokenPair](t, rec); got.RefreshToken != retry.RefreshToken {
			t.Errorf("the answer lost to the client was %.12s..., the grace retry %.12s...: two successors", got.RefreshToken, retry.RefreshToken)
		}
	}
	e.refresh(retry.RefreshToken) // the family lives on, one generation further
	for _, r := range e.logs.records(t) {
		if r["level"] == "ERROR" {
			t.Errorf("an ERROR record for a client that left mid-write: %v", r)
		}
	}
}
