package sqlite_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mattn/go-sqlite3"

	"keygate/gateway"
	"keygate/keys"
	"keygate/sqlite"
	"keygate/tokens"
)

// gatewayOver wires keygate over db with gateway.New, as keygate serve
// does. Its audit recorder is not running, as it would be in serve; what
// it queued is flushed before the database closes.
func gatewayOver(t *testing.T, db *sqlite.DB) (http.Handler, *keys.Service) {
	t.Helper()
	master, err := tokens.NewMasterKey(strings.Repeat("m", 32))
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(t.Context(), gateway.DefaultConfig(), db, master, gateway.Options{})
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	t.Cleanup(func() { gw.Recorder.Flush(context.Background()) }) // runs before open's Close
	return gw.Handler(), gw.Keys
}

func call(t *testing.T, h http.Handler, method, path, body string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, out
}

func countFamilies(t *testing.T, path string) int {
	t.Helper()
	var n int
	if err := raw(t, path).QueryRow(`SELECT COUNT(*) FROM refresh_families`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestFailingCommitsAnswer503AndRecover: while commits fail as on a full
// disk or a read-only file, logins and refreshes get 503 in the error shape,
// no token is handed out for a row that did not commit, /ready says 503;
// once the fault clears, service resumes by itself.
func TestFailingCommitsAnswer503AndRecover(t *testing.T) {
	for _, code := range []sqlite3.ErrNo{sqlite3.ErrFull, sqlite3.ErrReadonly, sqlite3.ErrIoErr} {
		t.Run(code.Error(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "k.db")
			db := open(t, path)
			h, keySvc := gatewayOver(t, db)
			_, key, err := keySvc.CreatePartner(t.Context(), keys.Operator, "Acme")
			if err != nil {
				t.Fatal(err)
			}
			login := fmt.Sprintf(`{"apiKey":%q}`, key.APIKey.Reveal())
			status, pair := call(t, h, "POST", "/api/v1/auth/login", login)
			if status != 200 {
				t.Fatalf("login before the fault: %d", status)
			}
			_, other := call(t, h, "POST", "/api/v1/auth/login", login)
			loggedOut := fmt.Sprintf(`{"refreshToken":%q}`, other["refreshToken"])
			if status, _ := call(t, h, "POST", "/api/v1/auth/logout", loggedOut); status != http.StatusNoContent {
				t.Fatalf("logout before the fault: %d", status)
			}
			before := countFamilies(t, path)

			db.FailCommits(code)
			for _, tc := range []struct{ path, body string }{
				{"/api/v1/auth/login", login},
				{"/api/v1/auth/refresh", fmt.Sprintf(`{"refreshToken":%q}`, pair["refreshToken"])},
			} {
				status, body := call(t, h, "POST", tc.path, tc.body)
				if status != http.StatusServiceUnavailable || body["error"] != "service_unavailable" || body["message"] == "" {
					t.Errorf("%s during the fault: %d %v, want 503 service_unavailable", tc.path, status, body)
				}
				if _, ok := body["jwt"]; ok {
					t.Errorf("%s handed out a token during the fault", tc.path)
				}
			}
			// A batch that writes nothing (logging out a family already
			// logged out) commits even on a full disk; it must not make
			// /ready report healthy.
			if status, _ := call(t, h, "POST", "/api/v1/auth/logout", loggedOut); status != http.StatusNoContent {
				t.Errorf("repeated logout during the fault: %d, want 204", status)
			}
			if status, _ := call(t, h, "GET", "/ready", ""); status != http.StatusServiceUnavailable {
				t.Errorf("/ready during the fault: %d, want 503", status)
			}
			if status, _ := call(t, h, "GET", "/health", ""); status != 200 {
				t.Errorf("/health during the fault: %d, want 200", status)
			}
			if after := countFamilies(t, path); after != before {
				t.Errorf("families: %d before the fault, %d after: a failed write left a row", before, after)
			}

			db.FailCommits(0)
			if status, _ := call(t, h, "GET", "/ready", ""); status != 200 {
				t.Errorf("/ready after the fault: %d, want 200", status)
			}
			// The refresh token whose rotation failed is still the live one.
			status, _ = call(t, h, "POST", "/api/v1/auth/refresh", fmt.Sprintf(`{"refreshToken":%q}`, pair["refreshToken"]))
			if status != 200 {
				t.Errorf("refresh after the fault: %d, want 200", status)
			}
			if status, _ := call(t, h, "POST", "/api/v1/auth/login", login); status != 200 {
				t.Errorf("login after the fault: %d, want 200", status)
			}
			if err := db.IntegrityCheck(t.Context()); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestRealFullDatabase fills the file to a page cap, so SQLite itself
// reports SQLITE_FULL: the write fails as unavailable, leaves nothing
// half-written, and works again once there is room.
func TestRealFullDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.db")
	db := open(t, path)
	ctx := t.Context()
	var pages int
	if err := raw(t, path).QueryRow(`PRAGMA page_count`).Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if err := db.SetMaxPageCount(ctx, pages+2); err != nil {
		t.Fatal(err)
	}
	svc := keys.NewService(db, nil, time.Now, slog.New(slog.DiscardHandler))
	var full error
	created := 0
	for i := range 1000 {
		if _, _, err := svc.CreatePartner(ctx, keys.Operator, fmt.Sprintf("partner %d %s", i, strings.Repeat("x", 180))); err != nil {
			full = err
			break
		}
		created++
	}
	if !errors.Is(full, keys.ErrUnavailable) {
		t.Fatalf("filling the database: err = %v after %d partners, want ErrUnavailable", full, created)
	}
	ps, err := svc.ListPartners(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != created {
		t.Errorf("%d partners listed, %d created: the failed one was half-written", len(ps), created)
	}
	if err := db.SetMaxPageCount(ctx, 1<<30); err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.CreatePartner(ctx, keys.Operator, "after"); err != nil {
		t.Errorf("after making room: %v", err)
	}
	if err := db.IntegrityCheck(ctx); err != nil {
		t.Error(err)
	}
}
