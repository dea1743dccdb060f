package main_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"keygate/postgres/pgtest"
)

// TestPostgresFaults: PostgreSQL stopped, then frozen, under a running
// keygate. The subtests run one after the other on a cluster of their own
// (scripts/test.sh starts it), so that stopping it disturbs no other test.
func TestPostgresFaults(t *testing.T) {
	t.Parallel()
	t.Run("restart", testPostgresRestart)
	t.Run("frozen", testPostgresFrozen)
}

// testPostgresRestart: PostgreSQL stopped and started again under refresh
// load. While it is down, requests that need it get 503
// service_unavailable in the error shape and /ready is 503; no token is
// handed out whose rotation did not commit; keygate recovers by itself.
func testPostgresRestart(t *testing.T) {
	cluster := pgtest.FaultCluster(t)
	env := pgEnvFor(cluster.URL, "KEYGATE_TOKENS_REFRESH_REUSE_GRACE=1m")
	dir := t.TempDir()
	p := createPartner(t, dir, env, "Acme")
	srv := startServer(t, t.TempDir(), append(env, "KEYGATE_ADMIN_ADDR=127.0.0.1:0"))
	admin := adminAddr(t, srv)
	metric := func(line string) bool {
		t.Helper()
		_, body := adminGet(t, admin, "/metrics")
		return strings.Contains(body, "\n"+line+"\n")
	}

	const workers = 6
	last := make([]string, workers) // the last refresh token answered with 200
	for i := range last {
		last[i] = srv.mustLogin(t, p.APIKey).RefreshToken
	}
	var ok, unavailable atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, _, data, err := srv.request(http.MethodPost, "/api/v1/auth/refresh", map[string]string{"refreshToken": last[w]})
				if err != nil {
					t.Errorf("worker %d: %v", w, err)
					return
				}
				switch code {
				case http.StatusOK:
					var next tokenPair
					if err := json.Unmarshal(data, &next); err != nil {
						t.Errorf("worker %d: %v", w, err)
						return
					}
					last[w] = next.RefreshToken
					ok.Add(1)
				case http.StatusServiceUnavailable:
					var e errorBody
					if err := json.Unmarshal(data, &e); err != nil || e.Error != "service_unavailable" || e.Message == "" {
						t.Errorf("worker %d: 503 body %s", w, data)
						return
					}
					unavailable.Add(1)
					time.Sleep(20 * time.Millisecond)
				default:
					t.Errorf("worker %d: refresh answered %d %s", w, code, data)
					return
				}
			}
		})
	}

	time.Sleep(500 * time.Millisecond)
	cluster.Stop(t)
	stoppedAt := ok.Load()
	if code, _, data := srv.do(t, http.MethodGet, "/ready", nil); code != http.StatusServiceUnavailable {
		t.Errorf("/ready with PostgreSQL stopped: %d %s, want 503", code, data)
	}
	p2 := createPartnerErr(t, dir, env)
	if !eventually(t, 10*time.Second, func() bool { return metric("keygate_store_failing 1") }) {
		t.Errorf("keygate_store_failing is not 1 while PostgreSQL is stopped")
	}
	time.Sleep(500 * time.Millisecond)
	if got := ok.Load() - stoppedAt; got > workers {
		// Each worker may have had one refresh committed just before the
		// stop; none can commit after it.
		t.Errorf("%d refreshes answered 200 while PostgreSQL was stopped", got)
	}
	cluster.Start(t)
	if !eventually(t, 30*time.Second, func() bool {
		code, _, _ := srv.do(t, http.MethodGet, "/ready", nil)
		return code == http.StatusOK
	}) {
		t.Fatalf("/ready not 200 within 30 s of PostgreSQL's restart\n%s", srv.Logs())
	}
	resumed := ok.Load()
	if !eventually(t, 10*time.Second, func() bool { return ok.Load() > resumed+workers }) {
		t.Errorf("refreshes did not resume after the restart")
	}
	if !metric("keygate_store_failing 0") {
		t.Errorf("keygate_store_failing is not 0 once writes work again")
	}
	if _, body := adminGet(t, admin, "/metrics"); !strings.Contains(body, "keygate_store_commit_duration_seconds_count") || strings.Contains(body, "keygate_store_commit_duration_seconds_count 0\n") {
		t.Errorf("no store commits recorded on PostgreSQL")
	}
	close(stop)
	wg.Wait()
	if unavailable.Load() == 0 {
		t.Errorf("no refresh got 503 while PostgreSQL was stopped")
	}
	for w := range workers {
		if code, _, body := srv.refresh(t, last[w]); code != http.StatusOK {
			t.Errorf("worker %d: the last token answered with 200 does not refresh: %d %s", w, code, body)
		}
	}
	if p2.code == 0 {
		t.Errorf("partner create succeeded with PostgreSQL stopped")
	}
	assertNoPassword(t, map[string]string{"server log": srv.Logs(), "CLI stderr while stopped": p2.stderr})
	t.Logf("refreshes: %d answered 200, %d answered 503", ok.Load(), unavailable.Load())
}

// createPartnerErr runs partner create expecting it to fail.
func createPartnerErr(t *testing.T, dir string, env []string) cliResult {
	t.Helper()
	res := runKeygate(t, dir, env, "partner", "create", "--name", "While down")
	assertOneLineError(t, res, "unavailable")
	return res
}

// testPostgresFrozen: every PostgreSQL process stopped with SIGSTOP, so
// that its connections stay open and nothing answers (a hung host, a
// partition). /ready, a refresh, a login and a token check each get 503
// service_unavailable in the error shape, within keygate's own deadlines
// (well inside the test client's 10 s timeout, which would fail them);
// after SIGCONT keygate recovers by itself, and the refresh token whose
// rotation got 503 still refreshes: nothing was handed out uncommitted.
func testPostgresFrozen(t *testing.T) {
	cluster := pgtest.FaultCluster(t)
	env := pgEnvFor(cluster.URL)
	dir := t.TempDir()
	p := createPartner(t, dir, env, "Acme")
	srv := startServer(t, t.TempDir(), env)
	pair := srv.mustLogin(t, p.APIKey)
	code, pair, body := srv.refresh(t, pair.RefreshToken) // a family with a row
	if code != http.StatusOK {
		t.Fatalf("refresh: %d %s", code, body)
	}

	cluster.Freeze(t)
	requests := []struct {
		name         string
		method, path string
		body         any
		header       []string
	}{
		{"/ready", http.MethodGet, "/ready", nil, nil},
		{"refresh", http.MethodPost, "/api/v1/auth/refresh", map[string]string{"refreshToken": pair.RefreshToken}, nil},
		{"login", http.MethodPost, "/api/v1/auth/login", map[string]string{"apiKey": p.APIKey}, nil},
		{"/auth/me", http.MethodGet, "/api/v1/auth/me", nil, []string{"R-Auth", pair.JWT}},
	}
	var wg sync.WaitGroup
	for _, r := range requests {
		wg.Go(func() {
			code, _, data, err := srv.request(r.method, r.path, r.body, r.header...)
			if err != nil {
				t.Errorf("%s with PostgreSQL frozen: %v (no answer within the client's timeout)", r.name, err)
				return
			}
			if code != http.StatusServiceUnavailable {
				t.Errorf("%s with PostgreSQL frozen: %d %s, want 503", r.name, code, data)
				return
			}
			if r.path == "/ready" {
				return
			}
			var e errorBody
			if err := json.Unmarshal(data, &e); err != nil || e.Error != "service_unavailable" || e.Message == "" {
				t.Errorf("%s with PostgreSQL frozen: 503 body %s", r.name, data)
			}
		})
	}
	wg.Wait()
	cluster.Thaw(t)

	if !eventually(t, 30*time.Second, func() bool {
		code, _, _ := srv.do(t, http.MethodGet, "/ready", nil)
		return code == http.StatusOK
	}) {
		t.Fatalf("/ready not 200 within 30 s of SIGCONT\n%s", srv.Logs())
	}
	if code, _, body := srv.refresh(t, pair.RefreshToken); code != http.StatusOK {
		t.Errorf("the token whose refresh got 503 while frozen, after SIGCONT: %d %s, want 200", code, body)
	}
	if code, _, body := srv.login(t, p.APIKey); code != http.StatusOK {
		t.Errorf("login after SIGCONT: %d %s", code, body)
	}
	assertNoPassword(t, map[string]string{"server log": srv.Logs()})
}
