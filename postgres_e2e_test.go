package main_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
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

	jose "github.com/go-jose/go-jose/v4"

	"keygate/postgres/pgtest"
)

// ---------------------------------------------------------------------------
// Several replicas on PostgreSQL (issue 12), with the real binary. Each test
// gets a fresh schema on the test cluster (postgres/pgtest), and skips,
// saying why, when scripts/test.sh has not started one.

// pgPassword is in every test URL: trust authentication ignores it, and no
// log or error may show it.
const pgPassword = "e2e-Pa55word-never-logged"

const pgMasterKey = "e2e-master-key-of-at-least-32-bytes!"

// pgEnv is the environment of keygate on a fresh PostgreSQL schema, rate
// limits off, with extra settings after.
func pgEnv(t *testing.T, extra ...string) (env []string, dbURL string) {
	t.Helper()
	dbURL, _ = pgtest.Schema(t)
	return pgEnvFor(dbURL, extra...), dbURL
}

func pgEnvFor(dbURL string, extra ...string) []string {
	return e2eEnv(append([]string{
		"KEYGATE_DATABASE_DRIVER=postgres",
		"KEYGATE_DATABASE_URL=" + withPassword(dbURL),
		"KEYGATE_TOKENS_MASTER_KEY=" + pgMasterKey,
		"KEYGATE_RATELIMIT_LOGIN_FAILURES_PER_MINUTE=0",
		"KEYGATE_RATELIMIT_LOGIN_PER_KEY_PER_MINUTE=0",
		"KEYGATE_RATELIMIT_REFRESH_PER_FAMILY_PER_MINUTE=0",
		"KEYGATE_RATELIMIT_API_PER_MINUTE=0",
	}, extra...)...)
}

func withPassword(dbURL string) string {
	return strings.Replace(dbURL, "postgres://postgres@", "postgres://postgres:"+pgPassword+"@", 1)
}

func assertNoPassword(t *testing.T, texts map[string]string) {
	t.Helper()
	assertNoSecrets(t, []string{pgPassword, pgMasterKey}, texts)
}

// TestPostgresTwoReplicas: two keygate processes on one database behave as
// one gateway.
func TestPostgresTwoReplicas(t *testing.T) {
	t.Parallel()
	env, _ := pgEnv(t,
		"KEYGATE_TOKENS_KEY_RELOAD_INTERVAL=200ms",
		"KEYGATE_TOKENS_SIGNING_KEY_ACTIVATION_DELAY=2s",
		"KEYGATE_TOKENS_REFRESH_REUSE_GRACE=1m")
	dir := t.TempDir()
	p := createPartner(t, dir, env, "Acme")
	a := startServer(t, t.TempDir(), env) // first: it creates the first signing key
	b := startServer(t, t.TempDir(), env)

	t.Run("login on A, refresh on B, reuse on A revokes the family for both", func(t *testing.T) {
		pair := a.mustLogin(t, p.APIKey)
		code, p1, body := b.refresh(t, pair.RefreshToken)
		if code != http.StatusOK {
			t.Fatalf("refresh on B of A's login: %d %s", code, body)
		}
		code, p2, body := b.refresh(t, p1.RefreshToken)
		if code != http.StatusOK {
			t.Fatalf("second refresh on B: %d %s", code, body)
		}
		if code, _, _ := a.refresh(t, pair.RefreshToken); code != http.StatusUnauthorized {
			t.Fatalf("reuse of the login's token on A: %d, want 401", code)
		}
		for name, s := range map[string]*e2eServer{"A": a, "B": b} {
			if code, _, _ := s.refresh(t, p2.RefreshToken); code != http.StatusUnauthorized {
				t.Errorf("the live token of the revoked family on %s: %d, want 401", name, code)
			}
		}
		evs, _ := auditEvents(t, dir, env)
		if !hasEvent(evs, auditEvent{Action: "refresh.reuse_detected", Outcome: "revoked"}) {
			t.Errorf("no refresh.reuse_detected event in the audit trail")
		}
	})

	t.Run("50 concurrent refreshes of one token over A and B get one successor", func(t *testing.T) {
		pair := a.mustLogin(t, p.APIKey)
		const n = 50
		codes := make([]int, n)
		tokens := make([]string, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			s := []*e2eServer{a, b}[i%2]
			wg.Go(func() {
				<-start
				code, _, data, err := s.request(http.MethodPost, "/api/v1/auth/refresh", map[string]string{"refreshToken": pair.RefreshToken})
				if err != nil {
					t.Errorf("refresh %d: %v", i, err)
					return
				}
				codes[i] = code
				var next tokenPair
				if code == http.StatusOK && json.Unmarshal(data, &next) == nil {
					tokens[i] = next.RefreshToken
				}
			})
		}
		close(start)
		wg.Wait()
		for i := range n {
			if codes[i] != http.StatusOK {
				t.Errorf("refresh %d: status %d, want 200 (the retry of one token inside the grace window)", i, codes[i])
			}
			if tokens[i] != tokens[0] {
				t.Errorf("refresh %d got another successor than refresh 0", i)
			}
		}
		// The one successor is live on both.
		code, next, body := a.refresh(t, tokens[0])
		if code != http.StatusOK {
			t.Fatalf("refresh of the successor on A: %d %s", code, body)
		}
		if code, _, body := b.refresh(t, next.RefreshToken); code != http.StatusOK {
			t.Fatalf("refresh of its successor on B: %d %s", code, body)
		}
	})

	t.Run("a key revoked through B's API is refused by A's login at once, by its token checks within 1 s", func(t *testing.T) {
		partnerJWT := b.mustLogin(t, p.APIKey).JWT
		code, _, data := b.do(t, http.MethodPost, "/api/v1/companies", map[string]string{"name": "Globex"}, "R-Auth", partnerJWT)
		if code != http.StatusCreated {
			t.Fatalf("create company on B: %d %s", code, data)
		}
		var co struct{ ID, APIKey, KeyID string }
		if err := json.Unmarshal(data, &co); err != nil {
			t.Fatal(err)
		}
		code, _, data = b.do(t, http.MethodPost, "/api/v1/companies/"+co.ID+"/keys", nil, "R-Auth", partnerJWT)
		if code != http.StatusCreated {
			t.Fatalf("second company key on B: %d %s", code, data)
		}
		var k2 struct{ APIKey, KeyID string }
		if err := json.Unmarshal(data, &k2); err != nil {
			t.Fatal(err)
		}
		loginPair := a.mustLogin(t, co.APIKey) // A now holds both keys in its cache
		k2Pair := a.mustLogin(t, k2.APIKey)
		for _, jwt := range []string{loginPair.JWT, k2Pair.JWT} {
			if code, _ := a.me(t, "R-Auth", jwt); code != http.StatusOK {
				t.Fatalf("/auth/me on A: %d", code)
			}
		}

		// A login that starts after B answered is refused: A's logins wait
		// for a key-epoch read that started after they arrived.
		revoke := func(keyID string) {
			t.Helper()
			if code, _, data := b.do(t, http.MethodDelete, "/api/v1/companies/"+co.ID+"/keys/"+keyID, nil, "R-Auth", partnerJWT); code != http.StatusNoContent {
				t.Fatalf("revoke on B: %d %s", code, data)
			}
		}
		revoke(co.KeyID)
		if code, _, body := a.login(t, co.APIKey); code != http.StatusUnauthorized {
			t.Fatalf("login on A right after B revoked the key: %d %s, want 401", code, body)
		}
		if code, _, _ := a.refresh(t, loginPair.RefreshToken); code != http.StatusUnauthorized {
			t.Errorf("refresh on A of the revoked key's token: %d, want 401", code)
		}

		// A token check compares the epoch at most every 10 ms (and hears
		// B's notification): the contract's bound is 1 s.
		revoke(k2.KeyID)
		if !eventually(t, time.Second, func() bool {
			code, _ := a.me(t, "R-Auth", k2Pair.JWT)
			return code == http.StatusUnauthorized
		}) {
			t.Errorf("/auth/me on A still accepts the revoked key's token 1 s after B revoked it")
		}
		if code, _, _ := a.refresh(t, k2Pair.RefreshToken); code != http.StatusUnauthorized {
			t.Errorf("refresh on A of the second revoked key's token: %d, want 401", code)
		}
	})

	t.Run("a partner disabled with the CLI, a company disabled through B: refused by both", func(t *testing.T) {
		p2 := createPartner(t, dir, env, "Initech")
		partnerJWT := a.mustLogin(t, p2.APIKey).JWT
		code, _, data := a.do(t, http.MethodPost, "/api/v1/companies", map[string]string{"name": "Hooli"}, "R-Auth", partnerJWT)
		if code != http.StatusCreated {
			t.Fatalf("create company on A: %d %s", code, data)
		}
		var co struct{ ID, APIKey string }
		if err := json.Unmarshal(data, &co); err != nil {
			t.Fatal(err)
		}
		replicas := map[string]*e2eServer{"A": a, "B": b}
		companyPairs, partnerPairs := map[string]tokenPair{}, map[string]tokenPair{}
		for name, s := range replicas { // both hold both keys in their caches
			companyPairs[name] = s.mustLogin(t, co.APIKey)
			partnerPairs[name] = s.mustLogin(t, p2.APIKey)
		}
		refused := func(what, apiKey string, pairs map[string]tokenPair) {
			t.Helper()
			for name, s := range replicas {
				if code, _, body := s.login(t, apiKey); code != http.StatusUnauthorized {
					t.Errorf("%s: login on %s: %d %s, want 401", what, name, code, body)
				}
				if code, _, _ := s.refresh(t, pairs[name].RefreshToken); code != http.StatusUnauthorized {
					t.Errorf("%s: refresh on %s: %d, want 401", what, name, code)
				}
				if !eventually(t, time.Second, func() bool {
					code, _ := s.me(t, "R-Auth", pairs[name].JWT)
					return code == http.StatusUnauthorized
				}) {
					t.Errorf("%s: /auth/me on %s still 200 after 1 s", what, name)
				}
			}
		}

		if code, _, data := b.do(t, http.MethodDelete, "/api/v1/companies/"+co.ID, nil, "R-Auth", b.mustLogin(t, p2.APIKey).JWT); code != http.StatusNoContent {
			t.Fatalf("disable company on B: %d %s", code, data)
		}
		refused("company disabled through B", co.APIKey, companyPairs)

		mustKeygate(t, dir, env, "partner", "disable", "--partner", p2.ID)
		refused("partner disabled with the CLI", p2.APIKey, partnerPairs)
	})

	t.Run("signing-key rotate: both publish the new key and verify each other's tokens", func(t *testing.T) {
		out := mustKeygate(t, dir, env, "signing-key", "rotate")
		f := strings.Fields(out)
		if len(f) < 4 || !strings.HasPrefix(f[3], "kid_") {
			t.Fatalf("signing-key rotate printed %q", out)
		}
		kid := f[3]
		// Published within tokens.key_reload_interval (200 ms here),
		// signing after the activation delay (2 s here).
		if !eventually(t, 5*time.Second, func() bool {
			ka, _ := a.jwks(t)
			kb, _ := b.jwks(t)
			return slices.Contains(kids(ka), kid) && slices.Equal(kids(ka), kids(kb))
		}) {
			t.Fatalf("the new key %s is not published by both within 5 s", kid)
		}
		var pa, pb tokenPair
		if !eventually(t, 10*time.Second, func() bool {
			pa, pb = a.mustLogin(t, p.APIKey), b.mustLogin(t, p.APIKey)
			va, errA := joseVerify(pa.JWT, jose.ES256, parseJWKSFrom(t, b), nil, "keygate", "r-auth")
			vb, errB := joseVerify(pb.JWT, jose.ES256, parseJWKSFrom(t, a), nil, "keygate", "r-auth")
			return errA == nil && errB == nil && va.kid == kid && vb.kid == kid
		}) {
			t.Fatalf("A and B do not both sign with %s, verifiable against each other's JWKS", kid)
		}
		for name, s := range map[string]*e2eServer{"A": a, "B": b} {
			for which, jwt := range map[string]string{"A's": pa.JWT, "B's": pb.JWT} {
				if code, _ := s.me(t, "R-Auth", jwt); code != http.StatusOK {
					t.Errorf("%s token on %s: /auth/me %d", which, name, code)
				}
			}
		}
	})

	for name, s := range map[string]*e2eServer{"A": a, "B": b} {
		assertNoPassword(t, map[string]string{"log of " + name: s.Logs()})
	}
}

// TestPostgresFirstStartTogether: two keygate serve started at the same
// moment on a database without signing keys create one between them, and
// publish the same JWKS from their first answer. To make them meet for
// sure, the test holds a lock that lets both read signing_keys but stops
// any insert into it, until both wait on a lock, then lets them go.
func TestPostgresFirstStartTogether(t *testing.T) {
	t.Parallel()
	dbURL, schema := pgtest.Schema(t)
	app := "kg-first-" + schema
	// The servers' own lock_timeout would give up on the test's lock.
	env := pgEnvFor(dbURL + "&lock_timeout=60s&application_name=" + app)
	mustKeygate(t, t.TempDir(), env, "migrate") // so that both go straight to their first key
	release := pgtest.Hold(t, dbURL, `LOCK TABLE signing_keys IN SHARE MODE`)
	servers := startTogether(t, env, 2, func() {
		if !eventually(t, 20*time.Second, func() bool {
			return pgtest.QueryInt(t, dbURL, `SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`, app) == 2
		}) {
			t.Errorf("the two servers did not both come to wait on a lock")
		}
		release()
	})
	var sets [][]string
	for _, s := range servers {
		set, _ := s.jwks(t)
		sets = append(sets, kids(set))
	}
	if len(sets[0]) != 1 || !slices.Equal(sets[0], sets[1]) {
		t.Errorf("replicas started together publish %v and %v, want the same one key", sets[0], sets[1])
	}
	if n := pgtest.QueryInt(t, dbURL, `SELECT COUNT(*) FROM signing_keys`); n != 1 {
		t.Errorf("replicas started together stored %d signing keys, want 1", n)
	}
}

// startTogether starts n keygate serve processes on env back to back,
// before any has come up, calls meanwhile, and returns once each logged its
// address. t.Cleanup stops them.
func startTogether(t *testing.T, env []string, n int, meanwhile func()) []*e2eServer {
	t.Helper()
	servers := make([]*e2eServer, n)
	addrs := make([]chan string, n)
	scan := make([]func(), n) // reads a server's log until it exits
	for i := range n {
		cmd := exec.Command(e2eBinary, "serve")
		cmd.Dir = t.TempDir()
		cmd.Env = append([]string{"KEYGATE_SERVER_ADDR=127.0.0.1:0"}, env...)
		s := &e2eServer{cmd: cmd, exited: make(chan struct{}), client: &http.Client{Timeout: 10 * time.Second}}
		cmd.Stdout = logWriter{s}
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		servers[i], addrs[i] = s, make(chan string, 1)
		t.Cleanup(func() { s.terminate(t) })
		scan[i] = func() {
			sc := bufio.NewScanner(stderr)
			sc.Buffer(make([]byte, 64<<10), 4<<20)
			for sc.Scan() {
				line := sc.Text()
				s.mu.Lock()
				s.logs.WriteString(line + "\n")
				s.mu.Unlock()
				var rec struct{ Msg, Addr string }
				if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "keygate listening" {
					select {
					case addrs[i] <- rec.Addr:
					default:
					}
				}
			}
			_, _ = io.Copy(io.Discard, stderr)
			s.waitErr = cmd.Wait()
			close(s.exited)
		}
	}
	for i, s := range servers {
		if err := s.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go scan[i]()
	}
	meanwhile()
	for i, s := range servers {
		select {
		case addr := <-addrs[i]:
			s.url = "http://" + addr
		case <-s.exited:
			t.Fatalf("keygate serve %d exited before listening: %v\n%s", i, s.waitErr, s.Logs())
		case <-time.After(20 * time.Second):
			t.Fatalf("keygate serve %d did not log its address in time\n%s", i, s.Logs())
		}
	}
	return servers
}

func parseJWKSFrom(t *testing.T, s *e2eServer) jose.JSONWebKeySet {
	t.Helper()
	set, _ := s.jwks(t)
	return set
}

// TestPostgresKillReplica: kill -9 of one replica under refresh load; the
// other keeps serving, and the last token each client was answered with
// still refreshes: no acknowledged rotation is lost.
func TestPostgresKillReplica(t *testing.T) {
	t.Parallel()
	env, _ := pgEnv(t, "KEYGATE_TOKENS_REFRESH_REUSE_GRACE=1m")
	dir := t.TempDir()
	p := createPartner(t, dir, env, "Acme")
	a := startServer(t, t.TempDir(), env)
	b := startServer(t, t.TempDir(), env)

	const workers = 8
	last := make([]string, workers) // the last refresh token answered with 200
	for i := range last {
		last[i] = a.mustLogin(t, p.APIKey).RefreshToken
	}
	var acked, bServed [workers]atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				s := []*e2eServer{a, b}[i%2]
				code, _, data, err := s.request(http.MethodPost, "/api/v1/auth/refresh", map[string]string{"refreshToken": last[w]})
				if err != nil {
					continue // A is gone: its connection broke
				}
				var next tokenPair
				if code == http.StatusOK && json.Unmarshal(data, &next) == nil {
					last[w] = next.RefreshToken
					acked[w].Add(1)
					if s == b {
						bServed[w].Add(1)
					}
				} else if code != http.StatusOK {
					t.Errorf("worker %d: refresh on %s: %d %s", w, map[bool]string{true: "B", false: "A"}[s == b], code, data)
					return
				}
			}
		})
	}
	time.Sleep(700 * time.Millisecond)
	a.signal(t, syscall.SIGKILL)
	var killedAt [workers]int64
	for w := range workers {
		killedAt[w] = bServed[w].Load()
	}
	time.Sleep(700 * time.Millisecond)
	close(stop)
	wg.Wait()
	for w := range workers {
		if bServed[w].Load() <= killedAt[w] {
			t.Errorf("worker %d: B served no refresh after A was killed", w)
		}
		code, _, body := b.refresh(t, last[w])
		if code != http.StatusOK {
			t.Errorf("worker %d: the last token answered with 200 (of %d) does not refresh on B: %d %s", w, acked[w].Load(), code, body)
		}
	}
}

// TestPostgresStoreCopy: keygate store copy moves a SQLite database into
// PostgreSQL; after it, with the same master key, every API key and every
// live refresh token works there, and dead ones stay dead.
func TestPostgresStoreCopy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := e2eEnv("KEYGATE_RATELIMIT_LOGIN_FAILURES_PER_MINUTE=0")
	p := createPartner(t, dir, env, "Acme")
	old := createPartner(t, dir, env, "Old")
	mustKeygate(t, dir, env, "partner", "disable", "--partner", old.ID)
	srv := startServer(t, dir, env)

	partnerPair := srv.mustLogin(t, p.APIKey)
	code, _, data := srv.do(t, http.MethodPost, "/api/v1/companies", map[string]string{"name": "Globex", "externalId": "crm-1"}, "R-Auth", partnerPair.JWT)
	if code != http.StatusCreated {
		t.Fatalf("create company: %d %s", code, data)
	}
	var co struct{ ID, APIKey, KeyID string }
	if err := json.Unmarshal(data, &co); err != nil {
		t.Fatal(err)
	}
	code, _, data = srv.do(t, http.MethodPost, "/api/v1/companies/"+co.ID+"/keys", nil, "R-Auth", partnerPair.JWT)
	if code != http.StatusCreated {
		t.Fatalf("second company key: %d %s", code, data)
	}
	var k2 struct{ APIKey, KeyID string }
	if err := json.Unmarshal(data, &k2); err != nil {
		t.Fatal(err)
	}
	if code, _, data := srv.do(t, http.MethodDelete, "/api/v1/companies/"+co.ID+"/keys/"+k2.KeyID, nil, "R-Auth", partnerPair.JWT); code != http.StatusNoContent {
		t.Fatalf("revoke company key: %d %s", code, data)
	}
	neverUsed := srv.mustLogin(t, co.APIKey) // a login token whose family has no row
	rotated := srv.mustLogin(t, co.APIKey)   // a family with a row
	for range 3 {
		code, next, body := srv.refresh(t, rotated.RefreshToken)
		if code != http.StatusOK {
			t.Fatalf("refresh: %d %s", code, body)
		}
		rotated = next
	}
	loggedOut := srv.mustLogin(t, p.APIKey)
	if code, _, body := srv.do(t, http.MethodPost, "/api/v1/auth/logout", map[string]string{"refreshToken": loggedOut.RefreshToken}); code/100 != 2 {
		t.Fatalf("logout: %d %s", code, body)
	}
	srv.stop(t)
	evsBefore, _ := auditEvents(t, dir, env)

	dbURL, _ := pgtest.Schema(t)
	res := runKeygate(t, dir, env, "store", "copy", "--to-url", withPassword(dbURL))
	if res.code != 0 {
		t.Fatalf("store copy: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	for _, want := range []string{"2  partners", "1  companies", "4  API keys", "1  signing keys", "2  refresh-token families", "row counts verified", "data/master.key"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("store copy output lacks %q:\n%s", want, res.stdout)
		}
	}
	assertNoPassword(t, map[string]string{"store copy stdout": res.stdout, "store copy stderr": res.stderr})

	again := runKeygate(t, dir, env, "store", "copy", "--to-url", withPassword(dbURL))
	assertOneLineError(t, again, "not empty")
	assertNoPassword(t, map[string]string{"second copy's error": again.stderr})

	master, err := os.ReadFile(filepath.Join(dir, "data", "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	pgEnv := pgEnvFor(dbURL, "KEYGATE_TOKENS_MASTER_KEY="+strings.TrimSpace(string(master)))
	pg := startServer(t, t.TempDir(), pgEnv)

	for name, key := range map[string]string{"partner": p.APIKey, "company": co.APIKey} {
		if code, _, body := pg.login(t, key); code != http.StatusOK {
			t.Errorf("%s key on PostgreSQL: %d %s", name, code, body)
		}
	}
	for name, key := range map[string]string{"revoked company key": k2.APIKey, "disabled partner's key": old.APIKey} {
		if code, _, _ := pg.login(t, key); code != http.StatusUnauthorized {
			t.Errorf("%s on PostgreSQL: %d, want 401", name, code)
		}
	}
	if code, _ := pg.me(t, "R-Auth", partnerPair.JWT); code != http.StatusOK {
		t.Errorf("an access token SQLite's keygate signed, on PostgreSQL: /auth/me %d", code)
	}
	for name, rt := range map[string]string{"a login's token never used": neverUsed.RefreshToken, "a rotated family's live token": rotated.RefreshToken} {
		if code, _, body := pg.refresh(t, rt); code != http.StatusOK {
			t.Errorf("%s on PostgreSQL: %d %s", name, code, body)
		}
	}
	if code, _, _ := pg.refresh(t, loggedOut.RefreshToken); code != http.StatusUnauthorized {
		t.Errorf("a logged-out login token on PostgreSQL: %d, want 401", code)
	}
	pg.stop(t)
	evsAfter, _ := auditEvents(t, dir, pgEnv)
	for _, e := range evsBefore {
		if !hasEvent(evsAfter, e) {
			t.Errorf("audit event %s %s lost in the copy", e.Action, e.Target)
		}
	}
}

// TestPostgresConfigErrors: starting on PostgreSQL without a master key, or
// on a URL that is invalid or unreachable, fails with one line that never
// shows the password.
func TestPostgresConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	base := []string{"KEYGATE_DATABASE_DRIVER=postgres"}
	for _, tc := range []struct {
		name string
		env  []string
		want []string
	}{
		{"no master key", []string{"KEYGATE_DATABASE_URL=postgres://kg:" + pgPassword + "@127.0.0.1:1/kg"}, []string{"tokens.master_key", "database.driver postgres"}},
		{"no URL", []string{"KEYGATE_TOKENS_MASTER_KEY=" + pgMasterKey}, []string{"database.url"}},
		{"unparseable URL", []string{"KEYGATE_TOKENS_MASTER_KEY=" + pgMasterKey, "KEYGATE_DATABASE_URL=postgres://kg:" + pgPassword + "@127.0.0.1:port/kg"}, []string{"database.url"}},
		{"unreachable", []string{"KEYGATE_TOKENS_MASTER_KEY=" + pgMasterKey, "KEYGATE_DATABASE_URL=postgres://kg:" + pgPassword + "@127.0.0.1:1/kg?connect_timeout=2"}, []string{"opening database", "storage unavailable"}},
		{"URL without the driver", []string{"KEYGATE_DATABASE_DRIVER=sqlite", "KEYGATE_DATABASE_URL=postgres://kg:" + pgPassword + "@127.0.0.1:1/kg"}, []string{"database.url", "database.driver"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := e2eEnv(append(slices.Clone(base), tc.env...)...)
			for _, args := range [][]string{{"serve"}, {"migrate"}} {
				res := runKeygate(t, dir, env, args...)
				assertOneLineError(t, res, tc.want...)
				assertNoPassword(t, map[string]string{fmt.Sprint(args, " stderr"): res.stderr})
			}
		})
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a failed PostgreSQL start left files behind: %v", entries)
	}
}
