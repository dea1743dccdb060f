package main_test

// End to end, the two examples and a real keygate: keygate wired by
// gateway.New over a SQLite file, on a real listener; the examples built
// and run as the programs a partner and a downstream service would copy.

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"keygate/api"
	"keygate/gateway"
	"keygate/keys"
	"keygate/store"
	"keygate/tokens"
)

const testMasterKey = "test-master-key-0123456789abcdef-0123456789"

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds both examples once per test run.
func binaries(t *testing.T) (partner, downstream string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "keygate-examples-")
		if buildErr != nil {
			return
		}
		for _, name := range []string{"partner", "downstream"} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, name), "keygate/examples/"+name).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("building %s: %v\n%s", name, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "partner"), filepath.Join(binDir, "downstream")
}

var (
	keygateOnce sync.Once
	keygateBin  string
	keygateErr  error
)

// keygateBinary builds keygate itself once per test run, as its own e2e
// tests do.
func keygateBinary(t *testing.T) string {
	t.Helper()
	binaries(t) // makes binDir
	keygateOnce.Do(func() {
		keygateBin = filepath.Join(binDir, "keygate")
		if out, err := exec.Command("go", "build", "-o", keygateBin, "keygate").CombinedOutput(); err != nil {
			keygateErr = fmt.Errorf("building keygate: %v\n%s", err, out)
		}
	})
	if keygateErr != nil {
		t.Fatal(keygateErr)
	}
	return keygateBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// keygate is a real keygate counting its requests by path.
type keygate struct {
	gw      *gateway.Gateway
	url     string
	apiKey  string // the partner's
	partner keys.Principal
	stop    func()

	mu    sync.Mutex
	calls map[string]int
}

func (k *keygate) count(path string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.calls[path]
}

func startKeygate(t *testing.T, accessTTL, activationDelay time.Duration) *keygate {
	t.Helper()
	ctx := context.Background()
	cfg := gateway.DefaultConfig()
	cfg.Database.Path = filepath.Join(t.TempDir(), "keygate.db")
	cfg.Tokens.AccessTTL = accessTTL
	cfg.Tokens.SigningKeyActivationDelay = activationDelay
	db, err := store.Open(ctx, cfg.Database, store.Options{Create: true})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	master, err := tokens.NewMasterKey(testMasterKey)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(ctx, cfg, db, master, gateway.Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	t.Cleanup(func() { gw.Recorder.Flush(ctx) })
	k := &keygate{gw: gw, calls: map[string]int{}}
	h := gw.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.mu.Lock()
		k.calls[r.URL.Path]++
		k.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	k.url, k.stop = srv.URL, srv.Close
	_, pk, err := gw.Keys.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	k.apiKey, k.partner = pk.APIKey.Reveal(), keys.PrincipalOf(pk.ID, pk.Owner, "")
	return k
}

// process is a running example with its output collected.
type process struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stdout strings.Builder
	stderr strings.Builder
	lines  chan string // stderr, line by line
	done   chan struct{}
}

func (p *process) output() (string, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdout.String(), p.stderr.String()
}

// environ is the test's environment without KEYGATE_ variables, which
// keygate refuses when it does not know them (scripts/test.sh exports
// KEYGATE_TEST_POSTGRES_URL).
func environ() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "KEYGATE_") })
}

func start(t *testing.T, bin string, env []string, args ...string) *process {
	t.Helper()
	return startIn(t, "", bin, env, args...)
}

// startIn runs bin in dir (the test's own if empty), with env added to the
// test's environment.
func startIn(t *testing.T, dir, bin string, env []string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, args...), lines: make(chan string, 100), done: make(chan struct{})}
	p.cmd.Dir = dir
	p.cmd.Env = append(environ(), env...)
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			p.mu.Lock()
			p.stdout.WriteString(s.Text() + "\n")
			p.mu.Unlock()
		}
	})
	wg.Go(func() {
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			p.mu.Lock()
			p.stderr.WriteString(s.Text() + "\n")
			p.mu.Unlock()
			select {
			case p.lines <- s.Text():
			default:
			}
		}
	})
	go func() {
		wg.Wait()
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits for the process to end and returns its exit code.
func (p *process) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("%s still running after %v", filepath.Base(p.cmd.Path), within)
		return -1
	}
}

var listening = regexp.MustCompile(`listening addr=(\S+)`)

// startDownstream runs the downstream example against k and returns its URL.
func startDownstream(t *testing.T, k *keygate) (string, *process) {
	t.Helper()
	_, bin := binaries(t)
	p := start(t, bin, []string{"KEYGATE_URL=" + k.url, "ADDR=127.0.0.1:0"})
	deadline := time.After(10 * time.Second)
	for {
		select {
		case line := <-p.lines:
			if m := listening.FindStringSubmatch(line); m != nil {
				return "http://" + m[1], p
			}
		case <-p.done:
			_, stderr := p.output()
			t.Fatalf("downstream exited: %s", stderr)
		case <-deadline:
			t.Fatal("downstream did not say where it listens")
		}
	}
}

func get(t *testing.T, url, token string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("R-Auth", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

// TestBuildsNeitherGinNorADatabase: a downstream service built on verify,
// and a backend built on client, build none of keygate's server side.
func TestBuildsNeitherGinNorADatabase(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "keygate/verify", "keygate/client", "keygate/examples/downstream", "keygate/examples/partner").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for dep := range strings.Lines(string(out)) {
		dep = strings.TrimSpace(dep)
		for _, banned := range []string{
			"github.com/gin-gonic/", "github.com/mattn/go-sqlite3", "github.com/jackc/pgx", "github.com/prometheus/",
			"github.com/spf13/viper", "github.com/spf13/cobra", "github.com/go-jose/", "github.com/getkin/",
			"keygate/server", "keygate/sqlite", "keygate/postgres", "keygate/metrics", "keygate/store", "keygate/memstore",
			"keygate/tokens", "keygate/keys", "keygate/gateway",
		} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("the examples build %s", dep)
			}
		}
	}
}

// TestDownstreamExample: whoami for a partner and a company; keygate's 401
// for everything else.
func TestDownstreamExample(t *testing.T) {
	k := startKeygate(t, 15*time.Minute, time.Hour)
	url, _ := startDownstream(t, k)
	ctx := context.Background()
	pair, err := k.gw.Tokens.Login(ctx, k.apiKey, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	_, ck, err := k.gw.Keys.CreateCompany(ctx, keys.ActorFor(k.partner, "192.0.2.1"), k.partner.ID, keys.CompanyInput{Name: "Globex"})
	if err != nil {
		t.Fatal(err)
	}
	cpair, err := k.gw.Tokens.Login(ctx, ck.APIKey.Reveal(), "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		token string
		want  string
	}{
		{pair.JWT.Reveal(), fmt.Sprintf(`{"kind":"partner","sub":%q,"partnerId":%q}`, k.partner.ID, k.partner.ID)},
		{cpair.JWT.Reveal(), fmt.Sprintf(`{"kind":"company","sub":%q,"partnerId":%q,"companyId":%q}`, ck.Owner.CompanyID(), k.partner.ID, ck.Owner.CompanyID())},
	} {
		code, _, body := get(t, url+"/whoami", tc.token)
		if code != http.StatusOK || strings.TrimSpace(body) != tc.want {
			t.Errorf("whoami: %d %s, want 200 %s", code, body, tc.want)
		}
	}

	// With a valid token, what the service does not have is answered in
	// keygate's error shape too.
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{http.MethodGet, "/other", http.StatusNotFound, api.CodeNotFound},
		{http.MethodPost, "/whoami", http.StatusMethodNotAllowed, api.CodeMethodNotAllowed},
	} {
		req, err := http.NewRequest(tc.method, url+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("R-Auth", pair.JWT.Reveal())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e api.Error
		err = json.NewDecoder(resp.Body).Decode(&e)
		_ = resp.Body.Close()
		if resp.StatusCode != tc.status || err != nil || e.Error != tc.code || e.Message == "" ||
			resp.Header.Get("Content-Type") != "application/json; charset=utf-8" {
			t.Errorf("%s %s: %d %+v (%v)", tc.method, tc.path, resp.StatusCode, e, err)
		}
		if tc.status == http.StatusMethodNotAllowed && resp.Header.Get("Allow") == "" {
			t.Errorf("%s %s: no Allow header", tc.method, tc.path)
		}
	}

	jwt := pair.JWT.Reveal()
	for name, req := range map[string][2]string{
		"no token":           {"/whoami", ""},
		"garbage":            {"/whoami", "garbage"},
		"tampered":           {"/whoami", jwt[:len(jwt)-3] + "AAA"},
		"a refresh token":    {"/whoami", pair.RefreshToken.Reveal()},
		"another path":       {"/other", ""},
		"the API key":        {"/whoami", k.apiKey},
		"a truncated token":  {"/whoami", jwt[:len(jwt)/2]},
		"a token of another": {"/whoami", otherKeygateToken(t)},
	} {
		code, h, body := get(t, url+req[0], req[1])
		var e api.Error
		if code != http.StatusUnauthorized || json.Unmarshal([]byte(body), &e) != nil || e.Error != api.CodeUnauthorized || e.Message != api.UnauthorizedMessage ||
			h.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
			t.Errorf("%s: %d %v %s", name, code, h, body)
		}
	}
}

func otherKeygateToken(t *testing.T) string {
	t.Helper()
	other := startKeygate(t, 15*time.Minute, time.Hour)
	pair, err := other.gw.Tokens.Login(context.Background(), other.apiKey, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	return pair.JWT.Reveal()
}

// runPartner runs the partner example against k and downstream.
func runPartner(t *testing.T, k *keygate, downstream, apiKey string, args ...string) *process {
	t.Helper()
	bin, _ := binaries(t)
	return start(t, bin, []string{"KEYGATE_URL=" + k.url, "KEYGATE_API_KEY=" + apiKey, "DOWNSTREAM_URL=" + downstream}, args...)
}

// checkAllOK checks the partner's output: n lines "<i> 200" and exit 0.
func checkAllOK(t *testing.T, p *process, code, n int) {
	t.Helper()
	stdout, stderr := p.output()
	var want strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&want, "%d 200\n", i)
	}
	if code != 0 || stdout != want.String() {
		t.Fatalf("partner: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}

// TestPartnerExampleRefreshesByItself: with tokens living 2 s, 50 calls
// 200 ms apart (10 s, five lifetimes) all succeed.
func TestPartnerExampleRefreshesByItself(t *testing.T) {
	k := startKeygate(t, 2*time.Second, time.Hour)
	url, down := startDownstream(t, k)
	p := runPartner(t, k, url, k.apiKey, "-n", "50", "-interval", "200ms")
	checkAllOK(t, p, p.wait(t, 60*time.Second), 50)
	if logins, refreshes := k.count("/api/v1/auth/login"), k.count("/api/v1/auth/refresh"); logins != 1 || refreshes < 5 {
		t.Errorf("%d logins, %d refreshes; want 1 login, and a refresh every 1.6 s", logins, refreshes)
	}
	// One logout, or two when it overtook a background refresh (the
	// client then revokes the refresh's family as well).
	if n := k.count("/api/v1/auth/logout"); n < 1 || n > 2 {
		t.Errorf("%d logouts, want the example's one (two if it overtook a refresh)", n)
	}
	_, pOut := p.output()
	_, dOut := down.output()
	if strings.Contains(pOut+dOut, k.apiKey) {
		t.Error("an example printed the API key")
	}
}

// TestPartnerExampleAcrossRotation: a signing-key rotation (active 1 s
// after it is published) in the middle of the calls fails none of them,
// and the downstream learns the new key.
func TestPartnerExampleAcrossRotation(t *testing.T) {
	k := startKeygate(t, 2*time.Second, time.Second)
	url, _ := startDownstream(t, k)
	p := runPartner(t, k, url, k.apiKey, "-n", "30", "-interval", "200ms")
	deadline := time.Now().Add(30 * time.Second)
	for {
		stdout, _ := p.output()
		if strings.Count(stdout, "\n") >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the partner did not get going: %q", stdout)
		}
		time.Sleep(10 * time.Millisecond) // polling for a condition, with a deadline
	}
	info, err := k.gw.Keyring.Rotate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := k.gw.Keyring.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkAllOK(t, p, p.wait(t, 60*time.Second), 30)
	// The tokens of the last seconds were the new key's, and the
	// downstream fetched the keys once more to verify them.
	pair, err := k.gw.Tokens.Login(context.Background(), k.apiKey, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if kid := headerKID(t, pair.JWT.Reveal()); kid != info.KID {
		t.Fatalf("keygate signs with %s, want the new key %s", kid, info.KID)
	}
	if n := k.count("/.well-known/jwks.json"); n != 2 {
		t.Errorf("the downstream fetched the JWK Set %d times, want 2", n)
	}
}

// TestVerifierOutlivesKeygate: with keygate stopped, the downstream keeps
// accepting tokens of keys it knows.
func TestVerifierOutlivesKeygate(t *testing.T) {
	k := startKeygate(t, 15*time.Minute, time.Hour)
	url, _ := startDownstream(t, k)
	pair, err := k.gw.Tokens.Login(context.Background(), k.apiKey, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if code, _, body := get(t, url+"/whoami", pair.JWT.Reveal()); code != http.StatusOK {
		t.Fatalf("with keygate up: %d %s", code, body)
	}
	k.stop()
	for range 3 {
		if code, _, body := get(t, url+"/whoami", pair.JWT.Reveal()); code != http.StatusOK {
			t.Fatalf("with keygate stopped: %d %s", code, body)
		}
	}
}

func headerKID(t *testing.T, tok string) string {
	t.Helper()
	seg, _, _ := strings.Cut(tok, ".")
	var h struct {
		KID string `json:"kid"`
	}
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil || json.Unmarshal(raw, &h) != nil {
		t.Fatalf("token header: %v", err)
	}
	return h.KID
}

// TestRotationWithTheRealKeygate: the keygate binary serving (tokens living
// 2 s, its signing keys reread every 200 ms), the two examples, and
// `keygate signing-key rotate` run in the middle of the partner's calls,
// the new key signing 1 s after it is published. Not one verification
// fails, and the calls of the last seconds carry the new key's tokens.
func TestRotationWithTheRealKeygate(t *testing.T) {
	bin := keygateBinary(t)
	dir := t.TempDir()
	env := []string{
		"KEYGATE_ADMIN_ADDR=", "KEYGATE_SERVER_ADDR=127.0.0.1:0", "KEYGATE_TOKENS_ACCESS_TTL=2s",
		"KEYGATE_TOKENS_SIGNING_KEY_ACTIVATION_DELAY=1s", "KEYGATE_TOKENS_KEY_RELOAD_INTERVAL=200ms",
	}
	keygateCmd := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir, cmd.Env = dir, append(environ(), env...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("keygate %q: %v", args, err)
		}
		return string(out)
	}
	var partner struct {
		APIKey string `json:"apiKey"`
	}
	if err := json.Unmarshal([]byte(keygateCmd("partner", "create", "--name", "Acme", "--json")), &partner); err != nil || partner.APIKey == "" {
		t.Fatalf("partner create: %v", err)
	}
	k := &keygate{url: serveKeygate(t, startIn(t, dir, bin, env, "serve"))}
	down, _ := startDownstream(t, k)
	p := runPartner(t, k, down, partner.APIKey, "-n", "40", "-interval", "200ms")

	deadline := time.Now().Add(30 * time.Second)
	for {
		stdout, _ := p.output()
		if strings.Count(stdout, "\n") >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the partner did not get going: %q", stdout)
		}
		time.Sleep(10 * time.Millisecond) // polling for a condition, with a deadline
	}
	m := regexp.MustCompile(`new signing key (\S+) `).FindStringSubmatch(keygateCmd("signing-key", "rotate"))
	if m == nil {
		t.Fatal("signing-key rotate did not name the new key")
	}
	newKID := m[1]
	checkAllOK(t, p, p.wait(t, 60*time.Second), 40)

	// keygate signs with the new key now, and the downstream verifies it.
	resp, err := http.Post(k.url+"/api/v1/auth/login", "application/json", strings.NewReader(`{"apiKey":"`+partner.APIKey+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	var pair api.TokenResponse
	err = json.NewDecoder(resp.Body).Decode(&pair)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %d %v", resp.StatusCode, err)
	}
	if kid := headerKID(t, pair.JWT); kid != newKID {
		t.Fatalf("keygate signs with %s after the rotation, want %s", kid, newKID)
	}
	if code, _, body := get(t, down+"/whoami", pair.JWT); code != http.StatusOK {
		t.Errorf("the downstream refused a token of the new key: %d %s", code, body)
	}
}

// serveKeygate waits for `keygate serve` to say where it listens.
func serveKeygate(t *testing.T, p *process) string {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case line := <-p.lines:
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "keygate listening" {
				return "http://" + rec.Addr
			}
		case <-p.done:
			_, stderr := p.output()
			t.Fatalf("keygate serve exited: %s", stderr)
		case <-deadline:
			t.Fatal("keygate serve did not say where it listens")
		}
	}
}
