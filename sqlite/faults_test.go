package sqlite_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
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
	return callAs(t, h, "", method, path, body)
}

// callAs is call with an access token, if jwt is not empty.
func callAs(t *testing.T, h http.Handler, jwt, method, path, body string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if jwt != "" {
		req.Header.Set("Authorization", "Bearer "+jwt)
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
// disk or a read-only file, every request that must write gets 503 in the
// error shape and hands out no token or key for a row that did not commit:
// a login's first refresh (which inserts its family's row), a later
// refresh, a logout, a company's creation. A login writes nothing, so it
// still succeeds, and its refresh token works once the fault clears. /ready
// says 503 throughout; once the fault clears, service resumes by itself.
func TestFailingCommitsAnswer503AndRecover(t *testing.T) {
	for _, code := range []sqlite3.ErrNo{sqlite3.ErrFull, sqlite3.ErrReadonly, sqlite3.ErrIoErr} {
		t.Run(code.Error(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "k.db")
			db := open(t, path)
			h, keySvc := gatewayOver(t, db)
			_, key, err := keySvc.CreatePartner(t.Context(), keys.Operator, keys.PartnerInput{Name: "Acme"})
			if err != nil {
				t.Fatal(err)
			}
			login := fmt.Sprintf(`{"apiKey":%q}`, key.APIKey.Reveal())
			refresh := func(tok any) string { return fmt.Sprintf(`{"refreshToken":%q}`, tok) }
			post := func(what, path, body string, want int) map[string]any {
				t.Helper()
				status, out := call(t, h, "POST", path, body)
				if status != want {
					t.Fatalf("%s: %d %v, want %d", what, status, out, want)
				}
				return out
			}
			first := post("login before the fault", "/api/v1/auth/login", login, 200)
			rotated := post("first refresh before the fault", "/api/v1/auth/refresh",
				refresh(post("login before the fault", "/api/v1/auth/login", login, 200)["refreshToken"]), 200)
			loggedOut := refresh(post("login before the fault", "/api/v1/auth/login", login, 200)["refreshToken"])
			post("logout before the fault", "/api/v1/auth/logout", loggedOut, http.StatusNoContent)
			toLogOut := refresh(post("login before the fault", "/api/v1/auth/login", login, 200)["refreshToken"])
			jwt, _ := first["jwt"].(string)
			before := countFamilies(t, path)

			db.FailCommits(code)
			// A login writes nothing: it works, and hands out tokens.
			status, during := call(t, h, "POST", "/api/v1/auth/login", login)
			if status != 200 || during["jwt"] == nil || during["refreshToken"] == nil {
				t.Errorf("login during the fault: %d %v, want 200 with tokens", status, during)
			}
			for _, tc := range []struct{ what, path, body string }{
				{"first refresh", "/api/v1/auth/refresh", refresh(first["refreshToken"])},
				{"refresh", "/api/v1/auth/refresh", refresh(rotated["refreshToken"])},
				{"logout", "/api/v1/auth/logout", toLogOut},
				{"company creation", "/api/v1/companies", `{"name":"Widgets"}`},
			} {
				status, body := callAs(t, h, jwt, "POST", tc.path, tc.body)
				if status != http.StatusServiceUnavailable || body["error"] != "service_unavailable" || body["message"] == "" {
					t.Errorf("%s during the fault: %d %v, want 503 service_unavailable", tc.what, status, body)
				}
				for _, secret := range []string{"jwt", "refreshToken", "apiKey"} {
					if _, ok := body[secret]; ok {
						t.Errorf("%s handed out a %s during the fault", tc.what, secret)
					}
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
			if cs, err := keySvc.ListCompanies(t.Context(), key.Owner.PartnerID(), keys.Page{Limit: 10}); err != nil || len(cs.Companies) != 0 {
				t.Errorf("companies after the failed creation: %+v, %v; want none", cs.Companies, err)
			}

			if fi, err := os.Stat(path + "-wal"); err != nil || fi.Size() == 0 {
				t.Fatalf("WAL during the fault: %v, %v; want a WAL with pages in it", fi, err)
			}
			db.FailCommits(0)
			if status, _ := call(t, h, "GET", "/ready", ""); status != 200 {
				t.Errorf("/ready after the fault: %d, want 200", status)
			}
			// Recovery checkpoints the WAL to nothing, so that on a nearly
			// full disk it cannot grow back into the space just freed.
			if fi, err := os.Stat(path + "-wal"); err != nil || fi.Size() != 0 {
				t.Errorf("WAL after recovery: %v, %v; want it truncated to 0 bytes", fi, err)
			}
			// Every token whose use failed is still the live one, and the
			// login made during the fault refreshes like any other.
			for _, tc := range []struct{ what, tok string }{
				{"first refresh", refresh(first["refreshToken"])},
				{"refresh", refresh(rotated["refreshToken"])},
				{"first refresh of the login made during the fault", refresh(during["refreshToken"])},
			} {
				if status, _ := call(t, h, "POST", "/api/v1/auth/refresh", tc.tok); status != 200 {
					t.Errorf("%s after the fault: %d, want 200", tc.what, status)
				}
			}
			if status, _ := call(t, h, "POST", "/api/v1/auth/logout", toLogOut); status != http.StatusNoContent {
				t.Errorf("logout after the fault: %d, want 204", status)
			}
			if status, _ := call(t, h, "POST", "/api/v1/auth/refresh", toLogOut); status != http.StatusUnauthorized {
				t.Errorf("refresh after the logout: %d, want 401", status)
			}
			if status, body := callAs(t, h, jwt, "POST", "/api/v1/companies", `{"name":"Widgets"}`); status != http.StatusCreated || body["apiKey"] == nil {
				t.Errorf("company creation after the fault: %d %v, want 201 with a key", status, body)
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
		if _, _, err := svc.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: fmt.Sprintf("partner %d %s", i, strings.Repeat("x", 180))}); err != nil {
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
	if _, _, err := svc.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "after"}); err != nil {
		t.Errorf("after making room: %v", err)
	}
	if err := db.IntegrityCheck(ctx); err != nil {
		t.Error(err)
	}
}
