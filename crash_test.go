package main_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

// ---------------------------------------------------------------------------
// 5. Storage under faults

func TestShutdownOnSignal(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			env := e2eEnv()
			p := createPartner(t, dir, env, "Acme")
			srv := startServer(t, dir, env)
			pair := srv.mustLogin(t, p.APIKey)

			// The login's audit event is still batched: shutdown must flush it.
			if code := srv.signal(t, sig); code != 0 {
				t.Fatalf("exit code %d after %v, want 0\n%s", code, sig, srv.Logs())
			}
			logs := srv.Logs()
			lines := slices.Collect(strings.Lines(strings.TrimSpace(logs)))
			if !strings.Contains(logs, "shutting down") || !strings.Contains(lines[len(lines)-1], `"msg":"stopped cleanly"`) {
				t.Errorf("log does not end with stopped cleanly:\n%s", logs)
			}
			evs, _ := auditEvents(t, dir, env)
			if !hasEvent(evs, auditEvent{Action: "login", ActorID: p.ID, Target: p.KeyID, Outcome: "success"}) {
				t.Errorf("the login's audit event was lost on shutdown: %+v", evs)
			}
			var keys []listedKey
			decodeStrictJSON(t, mustKeygate(t, dir, env, "partner", "key", "list", "--partner", p.ID, "--json"), &keys)
			if len(keys) != 1 || keys[0].LastUsedAt == nil {
				t.Errorf("lastUsedAt not recorded on shutdown: %+v", keys)
			}
			assertIntegrity(t, filepath.Join(dir, "data", "keygate.db"))
			assertNoSecrets(t, []string{p.APIKey, pair.JWT, pair.RefreshToken}, map[string]string{"server log": logs})
		})
	}
}

// assertIntegrity opens a database file with the sqlite3 driver and runs
// PRAGMA integrity_check and foreign_key_check.
func assertIntegrity(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var verdict string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&verdict); err != nil || verdict != "ok" {
		t.Errorf("integrity_check of %s: %q, %v", path, verdict, err)
	}
	rows, err := db.Query(`PRAGMA foreign_key_check`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if rows.Next() {
		t.Errorf("foreign_key_check of %s finds violations", path)
	}
}

// family is one login's refresh-token chain as a client sees it.
type family struct {
	mu       sync.Mutex
	token    string // the last refresh token received with a 200
	inFlight bool   // a refresh was under way when the server died
}

func TestKill9LosesNothingAcknowledged(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// No rate limits, and a one-minute grace window: a refresh committed
	// just before the kill whose response never arrived is retried after
	// the restart and must get the same successor, not trip reuse detection.
	env := e2eEnv("KEYGATE_RATELIMIT_LOGIN_PER_KEY_PER_MINUTE=0", "KEYGATE_RATELIMIT_REFRESH_PER_FAMILY_PER_MINUTE=0",
		"KEYGATE_RATELIMIT_API_PER_MINUTE=0", "KEYGATE_TOKENS_REFRESH_REUSE_GRACE=1m")
	partner := createPartner(t, dir, env, "Acme")
	srv := startServer(t, dir, env)

	var (
		mu        sync.Mutex
		families  []*family
		companies = map[string]string{} // id -> API key, every 201 received
		partners  = []string{partner.ID}
		secrets   = []string{partner.APIKey}
		ops       atomic.Int64
		stopLoad  = make(chan struct{})
		load      sync.WaitGroup
	)
	post := func(path string, body any, jwt string) (int, []byte, error) {
		var hdr []string
		if jwt != "" {
			hdr = []string{"R-Auth", jwt}
		}
		code, _, data, err := srv.request(http.MethodPost, path, body, hdr...)
		return code, data, err
	}
	stopped := func() bool {
		select {
		case <-stopLoad:
			return true
		default:
			return false
		}
	}
	for w := range 4 {
		load.Go(func() {
			var fam *family
			var jwt string
			for i := 0; !stopped(); i++ {
				switch {
				case fam == nil || i%6 == 0: // a new login, a new family
					code, data, err := post("/api/v1/auth/login", map[string]string{"apiKey": partner.APIKey}, "")
					if err != nil || code != http.StatusOK {
						continue
					}
					var pair tokenPair
					if json.Unmarshal(data, &pair) != nil {
						continue
					}
					fam = &family{token: pair.RefreshToken}
					jwt = pair.JWT
					mu.Lock()
					families = append(families, fam)
					secrets = append(secrets, pair.JWT, pair.RefreshToken)
					mu.Unlock()
				case i%4 == 3: // a company, with its own key
					code, data, err := post("/api/v1/companies", map[string]string{"name": fmt.Sprintf("co-%d-%d", w, i)}, jwt)
					if err != nil || code != http.StatusCreated {
						continue
					}
					var co struct{ ID, APIKey string }
					if json.Unmarshal(data, &co) == nil {
						mu.Lock()
						companies[co.ID] = co.APIKey
						secrets = append(secrets, co.APIKey)
						mu.Unlock()
					}
				default: // rotate the family's refresh token
					fam.mu.Lock()
					fam.inFlight = true
					rt := fam.token
					fam.mu.Unlock()
					code, data, err := post("/api/v1/auth/refresh", map[string]string{"refreshToken": rt}, "")
					var pair tokenPair
					if err == nil && code == http.StatusOK && json.Unmarshal(data, &pair) == nil {
						fam.mu.Lock()
						fam.token, fam.inFlight = pair.RefreshToken, false
						fam.mu.Unlock()
						jwt = pair.JWT
						mu.Lock()
						secrets = append(secrets, pair.JWT, pair.RefreshToken)
						mu.Unlock()
					}
				}
				ops.Add(1)
			}
		})
	}
	// Operators create partners with the CLI while the server is under load.
	load.Go(func() {
		for i := 0; !stopped() && i < 20; i++ {
			cmd := exec.Command(e2eBinary, "partner", "create", "--name", fmt.Sprintf("cli-%d", i), "--json")
			cmd.Dir, cmd.Env = dir, env
			out, err := cmd.Output()
			var p createdPartner
			if err == nil && json.Unmarshal(out, &p) == nil {
				mu.Lock()
				partners = append(partners, p.ID)
				secrets = append(secrets, p.APIKey)
				mu.Unlock()
			}
		}
	})

	// kill -9 in the middle of the load.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for ops.Load() < 150 {
		select {
		case <-ctx.Done():
			t.Fatalf("only %d operations in 30s\n%s", ops.Load(), srv.Logs())
		case <-poll.C:
		}
	}
	if code := srv.signal(t, syscall.SIGKILL); code != -1 {
		t.Errorf("exit code after SIGKILL: %d", code)
	}
	close(stopLoad)
	load.Wait()
	srv.client.CloseIdleConnections()

	// The files as the crash left them pass the integrity check (on a copy,
	// so that the restart, not the check, recovers the WAL).
	crashCopy := t.TempDir()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if b, err := os.ReadFile(filepath.Join(dir, "data", "keygate.db"+suffix)); err == nil {
			if err := os.WriteFile(filepath.Join(crashCopy, "keygate.db"+suffix), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	assertIntegrity(t, filepath.Join(crashCopy, "keygate.db"))

	srv2 := startServer(t, dir, env)
	if len(families) < 4 || len(companies) == 0 {
		t.Fatalf("load too thin: %d families, %d companies", len(families), len(companies))
	}
	uncertain := 0
	for i, f := range families {
		if f.inFlight {
			uncertain++
		}
		code, pair, body := srv2.refresh(t, f.token)
		if code != http.StatusOK {
			t.Errorf("family %d (in flight at the kill: %v): refresh after restart: %d %s", i, f.inFlight, code, body)
			continue
		}
		secrets = append(secrets, pair.JWT, pair.RefreshToken)
	}
	t.Logf("%d operations, %d families (%d with a refresh in flight at the kill), %d companies, %d partners",
		ops.Load(), len(families), uncertain, len(companies), len(partners))

	listed := listPartners(t, dir, env)
	for _, id := range partners {
		if !slices.ContainsFunc(listed, func(p listedPartner) bool { return p.ID == id }) {
			t.Errorf("partner %s lost", id)
		}
	}
	pair := srv2.mustLogin(t, partner.APIKey)
	secrets = append(secrets, pair.JWT, pair.RefreshToken)
	seen := map[string]bool{}
	for cursor := ""; ; {
		code, _, data := srv2.do(t, http.MethodGet, "/api/v1/companies?limit=200"+cursor, nil, "R-Auth", pair.JWT)
		if code != http.StatusOK {
			t.Fatalf("list companies: %d %s", code, data)
		}
		var page struct {
			Companies  []struct{ ID string }
			NextCursor *string
		}
		if err := json.Unmarshal(data, &page); err != nil {
			t.Fatal(err)
		}
		for _, c := range page.Companies {
			seen[c.ID] = true
		}
		if page.NextCursor == nil {
			break
		}
		cursor = "&cursor=" + *page.NextCursor
	}
	for id, key := range companies {
		if !seen[id] {
			t.Errorf("company %s lost", id)
		}
		if code, _, body := srv2.login(t, key); code != http.StatusOK {
			t.Errorf("company %s's key after restart: %d %s", id, code, body)
		}
	}

	srv2.stop(t)
	assertIntegrity(t, filepath.Join(dir, "data", "keygate.db"))
	assertNoSecrets(t, secrets, map[string]string{"killed server log": srv.Logs(), "restarted server log": srv2.Logs()})
}

// TestKill9RightAfterLogin: a login writes nothing, so a kill -9 the moment
// it has answered loses nothing of what it handed out: after the restart
// its access token still verifies and its refresh token still refreshes.
func TestKill9RightAfterLogin(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := e2eEnv()
	partner := createPartner(t, dir, env, "Acme")
	srv := startServer(t, dir, env)
	pair := srv.mustLogin(t, partner.APIKey)
	if code := srv.signal(t, syscall.SIGKILL); code != -1 {
		t.Errorf("exit code after SIGKILL: %d", code)
	}

	srv2 := startServer(t, dir, env)
	if code, me := srv2.me(t, "R-Auth", pair.JWT); code != http.StatusOK || me.ID != partner.ID {
		t.Fatalf("the login's access token after kill -9 and restart: %d %+v", code, me)
	}
	code, next, body := srv2.refresh(t, pair.RefreshToken)
	if code != http.StatusOK {
		t.Fatalf("the login's refresh token after kill -9 and restart: %d %s", code, body)
	}
	if code, _, body := srv2.refresh(t, next.RefreshToken); code != http.StatusOK {
		t.Fatalf("its successor: %d %s", code, body)
	}
	srv2.stop(t)
	assertIntegrity(t, filepath.Join(dir, "data", "keygate.db"))
}
