package main

// End-to-end tests of the real binary. A main package's own directory cannot
// hold an external _test package, so this file is package main, but it
// touches nothing of the package: TestMain builds ./keygate once and every
// test drives that binary, each in its own t.TempDir() as working directory
// (so data/keygate.db and data/master.key land there) with a clean
// environment (PATH, HOME and the KEYGATE_* variables a test sets).

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	_ "github.com/mattn/go-sqlite3"
)

// e2eBinary is the keygate binary TestMain builds.
var e2eBinary string

func TestMain(m *testing.M) { os.Exit(e2eMain(m)) }

func e2eMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "keygate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	e2eBinary = filepath.Join(dir, "keygate")
	build := exec.Command("go", "build", "-o", e2eBinary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building keygate:", err)
		return 1
	}
	return m.Run()
}

// e2eEnv is a clean environment: PATH, HOME and the given KEY=value pairs.
func e2eEnv(extra ...string) []string {
	return append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, extra...)
}

// e2eTimestamp is the CLI's and the API's time format.
var e2eTimestamp = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+00:00$`)

func parseStamp(t *testing.T, s string) time.Time {
	t.Helper()
	if !e2eTimestamp.MatchString(s) {
		t.Fatalf("timestamp %q is not RFC 3339 UTC with milliseconds and +00:00", s)
	}
	at, err := time.Parse("2006-01-02T15:04:05.000-07:00", s)
	if err != nil {
		t.Fatal(err)
	}
	return at
}

// ---------------------------------------------------------------------------
// Running the CLI

type cliResult struct {
	stdout, stderr string
	code           int
}

func runCommand(t *testing.T, dir string, env []string, name string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %q: timed out\nstderr: %s", name, args, stderr.String())
	}
	res := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("%s %q: %v", name, args, err)
	}
	return res
}

func runKeygate(t *testing.T, dir string, env []string, args ...string) cliResult {
	t.Helper()
	return runCommand(t, dir, env, e2eBinary, args...)
}

// mustKeygate runs a command that must succeed quietly and returns its stdout.
func mustKeygate(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	res := runKeygate(t, dir, env, args...)
	if res.code != 0 || res.stderr != "" {
		t.Fatalf("keygate %q: exit %d\nstdout: %s\nstderr: %s", args, res.code, res.stdout, res.stderr)
	}
	return res.stdout
}

// assertOneLineError checks the CLI's failure contract: a non-zero exit,
// nothing on stdout, exactly one line on stderr, containing every want.
func assertOneLineError(t *testing.T, res cliResult, want ...string) {
	t.Helper()
	if res.code == 0 {
		t.Errorf("exit code 0, want non-zero\nstdout: %s\nstderr: %s", res.stdout, res.stderr)
	}
	if res.stdout != "" {
		t.Errorf("stdout not empty: %q", res.stdout)
	}
	if !strings.HasPrefix(res.stderr, "keygate: ") || !strings.HasSuffix(res.stderr, "\n") || strings.Count(res.stderr, "\n") != 1 {
		t.Errorf("stderr is not one line starting with \"keygate: \": %q", res.stderr)
	}
	for _, w := range want {
		if !strings.Contains(res.stderr, w) {
			t.Errorf("stderr %q does not mention %q", res.stderr, w)
		}
	}
}

func decodeStrictJSON(t *testing.T, data string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decoding %T from %q: %v", v, data, err)
	}
}

// textField returns the value after label on the first line starting with it.
func textField(t *testing.T, out, label string) string {
	t.Helper()
	for line := range strings.Lines(out) {
		if v, ok := strings.CutPrefix(line, label); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %q line in:\n%s", label, out)
	return ""
}

type createdPartner struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	KeyID     string `json:"keyId"`
	APIKey    string `json:"apiKey"`
	CreatedAt string `json:"createdAt"`
}

func createPartner(t *testing.T, dir string, env []string, name string) createdPartner {
	t.Helper()
	out := mustKeygate(t, dir, env, "partner", "create", "--name", name, "--json")
	var p createdPartner
	decodeStrictJSON(t, out, &p)
	return p
}

type createdKey struct {
	PartnerID string `json:"partnerId"`
	KeyID     string `json:"keyId"`
	APIKey    string `json:"apiKey"`
	CreatedAt string `json:"createdAt"`
}

type listedPartner struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	CreatedAt string `json:"createdAt"`
}

func listPartners(t *testing.T, dir string, env []string) []listedPartner {
	t.Helper()
	var ps []listedPartner
	decodeStrictJSON(t, mustKeygate(t, dir, env, "partner", "list", "--json"), &ps)
	return ps
}

type listedKey struct {
	KeyID      string  `json:"keyId"`
	Hint       string  `json:"hint"`
	CreatedAt  string  `json:"createdAt"`
	LastUsedAt *string `json:"lastUsedAt"`
	RevokedAt  *string `json:"revokedAt"`
}

type auditEvent struct {
	At         string `json:"at"`
	ActorType  string `json:"actorType"`
	ActorID    string `json:"actorId"`
	Action     string `json:"action"`
	TargetType string `json:"targetType"`
	Target     string `json:"target"`
	ClientAddr string `json:"clientAddr"`
	Outcome    string `json:"outcome"`
	Detail     string `json:"detail"`
}

func auditEvents(t *testing.T, dir string, env []string, args ...string) ([]auditEvent, string) {
	t.Helper()
	out := mustKeygate(t, dir, env, append([]string{"audit", "--json"}, args...)...)
	var evs []auditEvent
	decodeStrictJSON(t, out, &evs)
	return evs, out
}

// hasEvent reports whether evs holds an event matching every non-empty field of want.
func hasEvent(evs []auditEvent, want auditEvent) bool {
	return slices.ContainsFunc(evs, func(e auditEvent) bool {
		match := func(got, want string) bool { return want == "" || got == want }
		return match(e.ActorType, want.ActorType) && match(e.ActorID, want.ActorID) && match(e.Action, want.Action) &&
			match(e.TargetType, want.TargetType) && match(e.Target, want.Target) && match(e.Outcome, want.Outcome)
	})
}

// signingKeyRow is one row of `keygate signing-key list`.
type signingKeyRow struct {
	kid, alg                    string
	created, activates, retired string
}

func listSigningKeys(t *testing.T, dir string, env []string) []signingKeyRow {
	t.Helper()
	out := mustKeygate(t, dir, env, "signing-key", "list")
	lines := slices.Collect(strings.Lines(out))
	if len(lines) == 0 || strings.Join(strings.Fields(lines[0]), " ") != "KID ALGORITHM CREATED ACTIVATES RETIRED" {
		t.Fatalf("signing-key list header: %q", out)
	}
	var rows []signingKeyRow
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) != 5 {
			t.Fatalf("signing-key list row %q: want 5 columns", line)
		}
		rows = append(rows, signingKeyRow{kid: f[0], alg: f[1], created: f[2], activates: f[3], retired: f[4]})
	}
	return rows
}

// ---------------------------------------------------------------------------
// Running the server

type e2eServer struct {
	cmd    *exec.Cmd
	url    string
	client *http.Client

	mu   sync.Mutex
	logs strings.Builder // stderr and stdout, line by line

	exited  chan struct{}
	waitErr error // set before exited closes
}

// startServer runs `keygate [args] serve` on 127.0.0.1:0 in dir and returns
// once it logged its listening address. t.Cleanup stops it.
func startServer(t *testing.T, dir string, env []string, args ...string) *e2eServer {
	t.Helper()
	cmd := exec.Command(e2eBinary, append(slices.Clone(args), "serve")...)
	cmd.Dir = dir
	// Later duplicates win, so a test's own KEYGATE_SERVER_ADDR would override.
	cmd.Env = append([]string{"KEYGATE_SERVER_ADDR=127.0.0.1:0"}, env...)
	s := &e2eServer{cmd: cmd, exited: make(chan struct{}), client: &http.Client{Timeout: 10 * time.Second}}
	cmd.Stdout = logWriter{s}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrs := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.logs.WriteString(line + "\n")
			s.mu.Unlock()
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "keygate listening" {
				select {
				case addrs <- rec.Addr:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr) // if the scanner gave up, keep draining
	}()
	go func() {
		<-scanned // Wait only after every read from the pipe is done
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-s.exited:
			return
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-s.exited
			t.Errorf("keygate serve did not stop on SIGTERM within 20s")
		}
	})

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	select {
	case addr := <-addrs:
		s.url = "http://" + addr
	case <-s.exited:
		t.Fatalf("keygate serve exited before listening: %v\n%s", s.waitErr, s.Logs())
	case <-ctx.Done():
		t.Fatalf("keygate serve did not log its address in time\n%s", s.Logs())
	}
	return s
}

type logWriter struct{ s *e2eServer }

func (w logWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.logs.Write(p)
}

// Logs returns everything the server wrote so far.
func (s *e2eServer) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

// signal sends sig and returns the exit code once the process is gone.
func (s *e2eServer) signal(t *testing.T, sig os.Signal) int {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		t.Fatalf("keygate serve still running 20s after %v\n%s", sig, s.Logs())
	}
	return s.cmd.ProcessState.ExitCode()
}

// stop sends SIGTERM and requires a clean exit.
func (s *e2eServer) stop(t *testing.T) {
	t.Helper()
	if code := s.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("keygate serve exited %d after SIGTERM, want 0\n%s", code, s.Logs())
	}
	s.client.CloseIdleConnections()
}

// request sends a request without a testing.T, for use from goroutines.
func (s *e2eServer) request(method, path string, body any, header ...string) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, data, err
}

func (s *e2eServer) do(t *testing.T, method, path string, body any, header ...string) (int, http.Header, []byte) {
	t.Helper()
	code, h, data, err := s.request(method, path, body, header...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return code, h, data
}

type tokenPair struct {
	JWT                    string `json:"jwt"`
	ExpirationDate         string `json:"expirationDate"`
	RefreshToken           string `json:"refreshToken"`
	RefreshTokenExpiration string `json:"refreshTokenExpiration"`
}

type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// tokenCall posts to the login or refresh endpoint; on 200 it decodes the
// pair strictly, otherwise it checks the error shape.
func (s *e2eServer) tokenCall(t *testing.T, path string, body any) (int, tokenPair, []byte) {
	t.Helper()
	code, h, data := s.do(t, http.MethodPost, path, body)
	var pair tokenPair
	if code == http.StatusOK {
		decodeStrictJSON(t, string(data), &pair)
		if cc := h.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("%s: Cache-Control %q, want no-store", path, cc)
		}
	} else {
		var e errorBody
		decodeStrictJSON(t, string(data), &e)
	}
	return code, pair, data
}

func (s *e2eServer) login(t *testing.T, apiKey string) (int, tokenPair, []byte) {
	t.Helper()
	return s.tokenCall(t, "/api/v1/auth/login", map[string]string{"apiKey": apiKey})
}

func (s *e2eServer) mustLogin(t *testing.T, apiKey string) tokenPair {
	t.Helper()
	code, pair, body := s.login(t, apiKey)
	if code != http.StatusOK {
		t.Fatalf("login: %d %s", code, body)
	}
	return pair
}

func (s *e2eServer) refresh(t *testing.T, rt string) (int, tokenPair, []byte) {
	t.Helper()
	return s.tokenCall(t, "/api/v1/auth/refresh", map[string]string{"refreshToken": rt})
}

type meBody struct {
	Type           string `json:"type"`
	ID             string `json:"id"`
	Name           string `json:"name"`
	PartnerID      string `json:"partnerId"`
	KeyID          string `json:"keyId"`
	ExpirationDate string `json:"expirationDate"`
}

func (s *e2eServer) me(t *testing.T, header, value string) (int, meBody) {
	t.Helper()
	code, _, data := s.do(t, http.MethodGet, "/api/v1/auth/me", nil, header, value)
	var me meBody
	if code == http.StatusOK {
		decodeStrictJSON(t, string(data), &me)
	}
	return code, me
}

func (s *e2eServer) jwks(t *testing.T) (jose.JSONWebKeySet, []byte) {
	t.Helper()
	code, h, data := s.do(t, http.MethodGet, "/.well-known/jwks.json", nil)
	if code != http.StatusOK {
		t.Fatalf("jwks: %d %s", code, data)
	}
	if cc := h.Get("Cache-Control"); cc != "public, max-age=300" {
		t.Errorf("jwks Cache-Control %q, want public, max-age=300", cc)
	}
	return parseJWKS(t, data), data
}

func parseJWKS(t *testing.T, data []byte) jose.JSONWebKeySet {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		t.Fatalf("jwks %s: %v", data, err)
	}
	for _, k := range set.Keys {
		if !k.IsPublic() || k.KeyID == "" || k.Algorithm == "" || k.Use != "sig" {
			t.Errorf("jwks key %q: public %v, alg %q, use %q", k.KeyID, k.IsPublic(), k.Algorithm, k.Use)
		}
	}
	// A private part would show up as "d" (EC, OKP, RSA) or "p", "q".
	var raw struct{ Keys []map[string]any }
	_ = json.Unmarshal(data, &raw)
	for _, k := range raw.Keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := k[private]; ok {
				t.Errorf("jwks key %v publishes private member %q", k["kid"], private)
			}
		}
	}
	return set
}

func kids(set jose.JSONWebKeySet) []string {
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.KeyID)
	}
	slices.Sort(out)
	return out
}

// ---------------------------------------------------------------------------
// Verifying JWTs with an independent JOSE library (go-jose)

type accessClaims struct {
	ClientID  string `json:"client_id"`
	Kind      string `json:"kind"`
	PartnerID string `json:"partner_id"`
	CompanyID string `json:"company_id"`
	KeyID     string `json:"key_id"`
}

type verified struct {
	kid    string
	std    josejwt.Claims
	custom accessClaims
}

// joseVerify checks raw's signature with the key its kid names in set (or
// with hmacKey), its typ, and its iss, aud, exp, nbf and iat.
func joseVerify(raw string, alg jose.SignatureAlgorithm, set jose.JSONWebKeySet, hmacKey []byte, issuer, audience string) (verified, error) {
	tok, err := josejwt.ParseSigned(raw, []jose.SignatureAlgorithm{alg})
	if err != nil {
		return verified{}, err
	}
	if len(tok.Headers) != 1 {
		return verified{}, fmt.Errorf("%d signatures", len(tok.Headers))
	}
	h := tok.Headers[0]
	if typ := h.ExtraHeaders[jose.HeaderType]; typ != "at+jwt" {
		return verified{}, fmt.Errorf("typ %v, want at+jwt", typ)
	}
	if h.KeyID == "" {
		return verified{}, errors.New("no kid")
	}
	var key any = hmacKey
	if hmacKey == nil {
		ks := set.Key(h.KeyID)
		if len(ks) != 1 {
			return verified{}, fmt.Errorf("kid %s: %d keys in the JWKS %v", h.KeyID, len(ks), kids(set))
		}
		if ks[0].Algorithm != string(alg) {
			return verified{}, fmt.Errorf("kid %s: JWKS alg %s", h.KeyID, ks[0].Algorithm)
		}
		key = ks[0]
	}
	v := verified{kid: h.KeyID}
	if err := tok.Claims(key, &v.std, &v.custom); err != nil {
		return verified{}, err
	}
	err = v.std.ValidateWithLeeway(josejwt.Expected{Issuer: issuer, AnyAudience: josejwt.Audience{audience}, Time: time.Now()}, 5*time.Second)
	if err != nil {
		return verified{}, err
	}
	if v.std.IssuedAt == nil || v.std.NotBefore == nil || v.std.Expiry == nil || v.std.ID == "" {
		return verified{}, errors.New("missing iat, nbf, exp or jti")
	}
	return v, nil
}

func mustJoseVerify(t *testing.T, raw string, alg jose.SignatureAlgorithm, set jose.JSONWebKeySet, hmacKey []byte, issuer, audience string) verified {
	t.Helper()
	v, err := joseVerify(raw, alg, set, hmacKey, issuer, audience)
	if err != nil {
		t.Fatalf("go-jose verification: %v", err)
	}
	return v
}

// checkPartnerClaims checks the claims of a partner's access token.
func checkPartnerClaims(t *testing.T, v verified, partnerID, keyID string, ttl time.Duration) {
	t.Helper()
	c := v.custom
	if v.std.Subject != partnerID || c.ClientID != partnerID || c.PartnerID != partnerID || c.Kind != "partner" || c.KeyID != keyID || c.CompanyID != "" {
		t.Errorf("claims: sub %q %+v, want partner %s key %s", v.std.Subject, c, partnerID, keyID)
	}
	if got := v.std.Expiry.Time().Sub(v.std.IssuedAt.Time()); got != ttl {
		t.Errorf("exp - iat = %v, want %v", got, ttl)
	}
	if !v.std.NotBefore.Time().Equal(v.std.IssuedAt.Time()) {
		t.Errorf("nbf %v != iat %v", v.std.NotBefore.Time(), v.std.IssuedAt.Time())
	}
}

// eventually polls cond every 50ms until it holds or within has passed.
func eventually(t *testing.T, within time.Duration, cond func() bool) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
	return true
}

// assertNoSecrets fails if any secret appears in any of the texts.
func assertNoSecrets(t *testing.T, secrets []string, texts map[string]string) {
	t.Helper()
	for name, text := range texts {
		for _, s := range secrets {
			if s != "" && strings.Contains(text, s) {
				t.Errorf("%s contains a secret (%.10s...)", name, s)
			}
		}
	}
}

// dirSnapshot maps every path under dir to its mode and content.
func dirSnapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		info, err := d.Info()
		if err != nil {
			return err
		}
		entry := info.Mode().String()
		if d.Type().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			entry += " " + string(b)
		}
		snap[rel] = entry
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// ---------------------------------------------------------------------------
// 1. The admin CLI: partners, keys, audit

func TestCLIPartnersKeysAndAudit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := e2eEnv()
	var secrets []string

	// partner create --json prints exactly the five documented fields.
	out := mustKeygate(t, dir, env, "partner", "create", "--name", "Acme", "--json")
	var fields map[string]any
	decodeStrictJSON(t, out, &fields)
	if got := slices.Sorted(maps.Keys(fields)); !slices.Equal(got, []string{"apiKey", "createdAt", "id", "keyId", "name"}) {
		t.Fatalf("partner create --json fields %v", got)
	}
	var acme createdPartner
	decodeStrictJSON(t, out, &acme)
	secrets = append(secrets, acme.APIKey)
	if !strings.HasPrefix(acme.APIKey, "pk_") || len(acme.APIKey) < 46 || acme.Name != "Acme" ||
		!strings.HasPrefix(acme.ID, "par_") || !strings.HasPrefix(acme.KeyID, "key_") {
		t.Fatalf("partner create --json: %+v", acme)
	}
	if created := parseStamp(t, acme.CreatedAt); time.Since(created).Abs() > time.Minute {
		t.Errorf("createdAt %s is not now", acme.CreatedAt)
	}

	// Without --json the key is printed once, with a warning.
	out = mustKeygate(t, dir, env, "partner", "create", "--name", "Beta Ltd")
	beta := createdPartner{ID: textField(t, out, "partner"), Name: textField(t, out, "name"), KeyID: textField(t, out, "key id"), APIKey: textField(t, out, "api key")}
	secrets = append(secrets, beta.APIKey)
	if !strings.HasPrefix(beta.APIKey, "pk_") || beta.Name != "Beta Ltd" || strings.Count(out, beta.APIKey) != 1 || !strings.Contains(out, "shown this once") {
		t.Fatalf("partner create output:\n%s", out)
	}

	// partner list, as a table and as JSON.
	out = mustKeygate(t, dir, env, "partner", "list")
	if lines := slices.Collect(strings.Lines(out)); len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "ID NAME STATUS CREATED" ||
		!strings.Contains(lines[1], acme.ID) || !strings.Contains(lines[2], beta.ID) || !strings.Contains(out, "Beta Ltd") {
		t.Fatalf("partner list:\n%s", out)
	}
	ps := listPartners(t, dir, env)
	if len(ps) != 2 || ps[0].ID != acme.ID || ps[0].Name != "Acme" || ps[0].Status != "active" || ps[0].CreatedAt != acme.CreatedAt ||
		ps[1].ID != beta.ID || ps[1].Status != "active" {
		t.Fatalf("partner list --json: %+v", ps)
	}

	// A second key for each partner, with and without --json.
	var acme2 createdKey
	decodeStrictJSON(t, mustKeygate(t, dir, env, "partner", "key", "create", "--partner", acme.ID, "--json"), &acme2)
	secrets = append(secrets, acme2.APIKey)
	if acme2.PartnerID != acme.ID || !strings.HasPrefix(acme2.APIKey, "pk_") || acme2.APIKey == acme.APIKey || acme2.KeyID == acme.KeyID {
		t.Fatalf("partner key create --json: %+v", acme2)
	}
	parseStamp(t, acme2.CreatedAt)
	out = mustKeygate(t, dir, env, "partner", "key", "create", "--partner", beta.ID)
	beta2 := createdKey{PartnerID: textField(t, out, "partner"), KeyID: textField(t, out, "key id"), APIKey: textField(t, out, "api key")}
	secrets = append(secrets, beta2.APIKey)
	if beta2.PartnerID != beta.ID || !strings.HasPrefix(beta2.APIKey, "pk_") || strings.Count(out, beta2.APIKey) != 1 {
		t.Fatalf("partner key create:\n%s", out)
	}

	srv := startServer(t, dir, env)

	// Both keys of a partner work side by side.
	acmeLogin := srv.mustLogin(t, acme.APIKey)
	acme2Login := srv.mustLogin(t, acme2.APIKey)
	betaLogin := srv.mustLogin(t, beta.APIKey)
	beta2Login := srv.mustLogin(t, beta2.APIKey)
	for _, p := range []tokenPair{acmeLogin, acme2Login, betaLogin, beta2Login} {
		secrets = append(secrets, p.JWT, p.RefreshToken)
	}
	if code, me := srv.me(t, "R-Auth", acme2Login.JWT); code != http.StatusOK || me.Type != "partner" || me.ID != acme.ID || me.Name != "Acme" || me.KeyID != acme2.KeyID {
		t.Fatalf("me with the second key: %d %+v", code, me)
	}
	if code, me := srv.me(t, "R-Auth", acmeLogin.JWT); code != http.StatusOK || me.KeyID != acme.KeyID {
		t.Fatalf("me with the first key: %d %+v", code, me)
	}

	// Revoking the first key: it no longer logs in, its refresh token dies,
	// the second key keeps working.
	out = mustKeygate(t, dir, env, "partner", "key", "revoke", "--partner", acme.ID, "--key", acme.KeyID)
	if !strings.Contains(out, acme.KeyID) {
		t.Errorf("partner key revoke output: %q", out)
	}
	code, _, revokedBody := srv.login(t, acme.APIKey)
	if code != http.StatusUnauthorized {
		t.Fatalf("login with a revoked key: %d %s", code, revokedBody)
	}
	if code, _, body := srv.refresh(t, acmeLogin.RefreshToken); code != http.StatusUnauthorized {
		t.Errorf("refresh with a revoked key's token: %d %s", code, body)
	}
	if code, _, body := srv.login(t, acme2.APIKey); code != http.StatusOK {
		t.Fatalf("login with the second key after revoking the first: %d %s", code, body)
	}
	var acmeKeys []listedKey
	decodeStrictJSON(t, mustKeygate(t, dir, env, "partner", "key", "list", "--partner", acme.ID, "--json"), &acmeKeys)
	if len(acmeKeys) != 2 || acmeKeys[0].KeyID != acme.KeyID || acmeKeys[0].RevokedAt == nil || acmeKeys[1].KeyID != acme2.KeyID || acmeKeys[1].RevokedAt != nil ||
		!strings.HasPrefix(acme.APIKey, acmeKeys[0].Hint) || len(acmeKeys[0].Hint) >= len(acme.APIKey)/2 {
		t.Fatalf("partner key list --json after revoke: %+v", acmeKeys)
	}

	// Disabling a partner stops every one of its keys, and its tokens on /me.
	mustKeygate(t, dir, env, "partner", "disable", "--partner", beta.ID)
	for _, key := range []string{beta.APIKey, beta2.APIKey} {
		code, _, body := srv.login(t, key)
		if code != http.StatusUnauthorized {
			t.Errorf("login with a disabled partner's key: %d %s", code, body)
		}
		if !bytes.Equal(body, revokedBody) {
			t.Errorf("disabled and revoked keys get different bodies: %s vs %s", body, revokedBody)
		}
	}
	// /auth/me caches a principal's status for up to a second (sqlite's
	// principalTTL), so the CLI's change reaches it shortly, not at once.
	if !eventually(t, 5*time.Second, func() bool { code, _ := srv.me(t, "R-Auth", betaLogin.JWT); return code == http.StatusUnauthorized }) {
		t.Errorf("me with a disabled partner's JWT still succeeds after 5s")
	}
	if code, _, body := srv.login(t, acme2.APIKey); code != http.StatusOK {
		t.Fatalf("disabling Beta affected Acme: %d %s", code, body)
	}
	mustKeygate(t, dir, env, "partner", "disable", "--partner", acme.ID)
	if code, _, body := srv.login(t, acme2.APIKey); code != http.StatusUnauthorized {
		t.Errorf("login after disabling its partner: %d %s", code, body)
	}
	if !eventually(t, 5*time.Second, func() bool {
		code, _ := srv.me(t, "Authorization", "Bearer "+acme2Login.JWT)
		return code == http.StatusUnauthorized
	}) {
		t.Errorf("me after disabling the partner still succeeds after 5s")
	}
	ps = listPartners(t, dir, env)
	if len(ps) != 2 || ps[0].Status != "disabled" || ps[1].Status != "disabled" {
		t.Errorf("partner list after disabling: %+v", ps)
	}
	if code, _, body := srv.login(t, "pk_not-a-key"); code != http.StatusUnauthorized || !bytes.Equal(body, revokedBody) {
		t.Errorf("login with garbage: %d %s", code, body)
	}

	srv.stop(t) // flushes the batched login audit events

	evs, auditJSON := auditEvents(t, dir, env)
	auditText := mustKeygate(t, dir, env, "audit", "--since", "1h")
	op := func(action, targetType, target string) auditEvent {
		return auditEvent{ActorType: "operator", Action: action, TargetType: targetType, Target: target, Outcome: "success"}
	}
	for _, want := range []auditEvent{
		op("partner.created", "partner", acme.ID),
		op("partner.created", "partner", beta.ID),
		op("key.created", "key", acme.KeyID),
		op("key.created", "key", acme2.KeyID),
		op("key.created", "key", beta.KeyID),
		op("key.created", "key", beta2.KeyID),
		op("key.revoked", "key", acme.KeyID),
		op("partner.disabled", "partner", beta.ID),
		op("partner.disabled", "partner", acme.ID),
		{ActorType: "partner", ActorID: acme.ID, Action: "login", Target: acme.KeyID, Outcome: "success"},
		{ActorType: "partner", ActorID: beta.ID, Action: "login", Target: beta2.KeyID, Outcome: "success"},
		{Action: "login", Target: acme.APIKey[:7], Outcome: "failure"},
	} {
		if !hasEvent(evs, want) {
			t.Errorf("audit --json lacks %+v", want)
		}
		if !strings.Contains(auditText, want.Action) || !strings.Contains(auditText, want.Target) {
			t.Errorf("audit --since 1h lacks %s %s", want.Action, want.Target)
		}
	}
	for _, e := range evs {
		parseStamp(t, e.At)
	}
	if lines := slices.Collect(strings.Lines(auditText)); len(lines) != len(evs)+1 ||
		strings.Join(strings.Fields(lines[0]), " ") != "TIME ACTOR ACTION TARGET CLIENT OUTCOME DETAIL" {
		t.Errorf("audit table has %d lines for %d events:\n%s", len(lines), len(evs), auditText)
	}
	// --since filters: nothing happened in the last nanosecond.
	if recent, _ := auditEvents(t, dir, env, "--since", "1ns"); len(recent) != 0 {
		t.Errorf("audit --since 1ns: %d events", len(recent))
	}

	assertNoSecrets(t, secrets, map[string]string{"audit --json": auditJSON, "audit table": auditText, "server log": srv.Logs()})
}

func TestCLISigningKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := e2eEnv()

	// Before the first start there is no database, and listing creates none.
	assertOneLineError(t, runKeygate(t, dir, env, "signing-key", "list"), "no database")
	if _, err := os.Stat(filepath.Join(dir, "data")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("signing-key list on a fresh directory created data/: %v", err)
	}
	// The first start creates a key that signs at once.
	srv := startServer(t, dir, env)
	set, _ := srv.jwks(t)
	srv.stop(t)
	rows := listSigningKeys(t, dir, env)
	if len(rows) != 1 || rows[0].alg != "ES256" || rows[0].created != rows[0].activates || rows[0].retired != "-" || !slices.Equal(kids(set), []string{rows[0].kid}) {
		t.Fatalf("after first start: %+v, jwks %v", rows, kids(set))
	}

	// rotate adds a key that activates an hour later by default and retires the old one then.
	before := time.Now()
	out := mustKeygate(t, dir, env, "signing-key", "rotate")
	rows = listSigningKeys(t, dir, env)
	if len(rows) != 2 {
		t.Fatalf("after rotate: %+v", rows)
	}
	old, next := rows[0], rows[1]
	if !strings.Contains(out, next.kid) || !strings.Contains(out, next.activates) || next.kid == old.kid || next.alg != "ES256" {
		t.Errorf("rotate printed %q; list %+v", out, rows)
	}
	if delay := parseStamp(t, next.activates).Sub(parseStamp(t, next.created)); delay != time.Hour {
		t.Errorf("new key activates %v after creation, want 1h", delay)
	}
	if at := parseStamp(t, next.activates); at.Before(before.Add(time.Hour-time.Minute)) || at.After(time.Now().Add(time.Hour+time.Minute)) {
		t.Errorf("new key activates at %s, want about an hour from now", next.activates)
	}
	if old.retired != next.activates || next.retired != "-" {
		t.Errorf("retired column: old %q, new %q; want %q and -", old.retired, next.retired, next.activates)
	}

	// The delay comes from tokens.signing_key_activation_delay.
	mustKeygate(t, dir, e2eEnv("KEYGATE_TOKENS_SIGNING_KEY_ACTIVATION_DELAY=10m"), "signing-key", "rotate")
	rows = listSigningKeys(t, dir, env)
	if len(rows) != 3 {
		t.Fatalf("after second rotate: %+v", rows)
	}
	// Sorted by activation: the 10m key comes before the 1h key.
	if d := parseStamp(t, rows[1].activates).Sub(parseStamp(t, rows[1].created)); d != 10*time.Minute {
		t.Errorf("key rotated with a 10m delay activates after %v: %+v", d, rows)
	}

	info, err := os.Stat(filepath.Join(dir, "data", "master.key"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("data/master.key: %v, %v; want mode 0600", info, err)
	}
}

// ---------------------------------------------------------------------------
// 2. Bad input: one line on stderr, non-zero exit, nothing written

func TestCLIBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := e2eEnv()
	p := createPartner(t, dir, env, "Acme")
	other := createPartner(t, dir, env, "Other")
	gone := createPartner(t, dir, env, "Gone")
	mustKeygate(t, dir, env, "partner", "disable", "--partner", gone.ID)

	// Every change the CLI can make writes an audit event, so the partner
	// list and the audit trail together show whether anything was written.
	state := func() string {
		_, audit := auditEvents(t, dir, env)
		return mustKeygate(t, dir, env, "partner", "list", "--json") + audit
	}
	initial := state()

	tests := []struct {
		name  string
		args  []string
		want  []string
		usage bool // needs no database: must not create one either
	}{
		{"create without name", []string{"partner", "create"}, []string{`"name"`}, true},
		{"create with dangling flag", []string{"partner", "create", "--name"}, []string{"--name"}, true},
		{"create with empty name", []string{"partner", "create", "--name", ""}, []string{"name"}, false},
		{"unknown flag", []string{"partner", "list", "--verbose"}, []string{"--verbose"}, true},
		{"stray argument", []string{"partner", "list", "extra"}, []string{"extra"}, true},
		{"unknown command", []string{"partners"}, []string{"partners"}, true},
		{"unknown subcommand", []string{"partner", "remove"}, []string{"remove"}, true},
		{"unknown key subcommand", []string{"partner", "key", "rotate"}, []string{"rotate"}, true},
		{"unknown signing-key subcommand", []string{"signing-key", "delete"}, []string{"delete"}, true},
		{"key create without partner", []string{"partner", "key", "create"}, []string{`"partner"`}, true},
		{"key list without partner", []string{"partner", "key", "list"}, []string{`"partner"`}, true},
		{"revoke without key", []string{"partner", "key", "revoke", "--partner", p.ID}, []string{`"key"`}, true},
		{"revoke without partner", []string{"partner", "key", "revoke", "--key", p.KeyID}, []string{`"partner"`}, true},
		{"disable without partner", []string{"partner", "disable"}, []string{`"partner"`}, true},
		{"audit with bad duration", []string{"audit", "--since", "yesterday"}, []string{"yesterday"}, true},
		{"key create for unknown partner", []string{"partner", "key", "create", "--partner", "par_unknown"}, []string{"not found"}, false},
		{"key list for unknown partner", []string{"partner", "key", "list", "--partner", "par_unknown"}, []string{"not found"}, false},
		{"disable unknown partner", []string{"partner", "disable", "--partner", "par_unknown"}, []string{"not found"}, false},
		{"revoke for unknown partner", []string{"partner", "key", "revoke", "--partner", "par_unknown", "--key", p.KeyID}, []string{"not found"}, false},
		{"revoke unknown key", []string{"partner", "key", "revoke", "--partner", p.ID, "--key", "key_unknown"}, []string{"not found"}, false},
		{"revoke another partner's key", []string{"partner", "key", "revoke", "--partner", other.ID, "--key", p.KeyID}, []string{"not found"}, false},
		{"key create for disabled partner", []string{"partner", "key", "create", "--partner", gone.ID}, []string{"disabled"}, false},
	}
	t.Run("cases", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				assertOneLineError(t, runKeygate(t, dir, env, tt.args...), tt.want...)
				if !tt.usage {
					return
				}
				empty := t.TempDir()
				assertOneLineError(t, runKeygate(t, empty, env, tt.args...), tt.want...)
				if snap := dirSnapshot(t, empty); len(snap) != 1 {
					t.Errorf("a usage error wrote files: %v", slices.Sorted(maps.Keys(snap)))
				}
			})
		}
	})
	if got := state(); got != initial {
		t.Errorf("a refused command changed the database:\nbefore %s\nafter  %s", initial, got)
	}
}

func TestCLIUnreadableDatabase(t *testing.T) {
	t.Parallel()
	commands := [][]string{
		{"partner", "list"},
		{"partner", "create", "--name", "Acme"},
		{"partner", "key", "create", "--partner", "par_x"},
		{"partner", "disable", "--partner", "par_x"},
		{"audit"},
		{"signing-key", "list"},
		{"signing-key", "rotate"},
		{"serve"},
	}
	setups := []struct {
		name  string
		path  string
		setup func(t *testing.T, dir string)
	}{
		{"parent is a file", "blocker/keygate.db", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "blocker"), []byte("not a directory\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"not sqlite", "data/keygate.db", func(t *testing.T, dir string) {
			if err := os.Mkdir(filepath.Join(dir, "data"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "data", "keygate.db"), bytes.Repeat([]byte("this is not an SQLite database\n"), 200), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"a directory", "data/keygate.db", func(t *testing.T, dir string) {
			if err := os.MkdirAll(filepath.Join(dir, "data", "keygate.db"), 0o700); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, s := range setups {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s.setup(t, dir)
			env := e2eEnv("KEYGATE_DATABASE_PATH="+s.path, "KEYGATE_SERVER_ADDR=127.0.0.1:0")
			before := dirSnapshot(t, dir)
			for _, args := range commands {
				res := runKeygate(t, dir, env, args...)
				assertOneLineError(t, res, "database")
				if after := dirSnapshot(t, dir); !maps.Equal(before, after) {
					t.Errorf("keygate %q changed the directory:\nbefore %v\nafter  %v", args, before, after)
				}
			}
		})
	}
}

// ---------------------------------------------------------------------------
// 3. Configuration

func testdataPath(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", "config", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := e2eEnv() // no config file, no KEYGATE_* (startServer only picks a free port)
	srv := startServer(t, dir, env)

	code, _, body := srv.do(t, http.MethodGet, "/health", nil)
	if code != http.StatusOK || string(body) != `{"status":"ok"}` {
		t.Fatalf("/health: %d %s", code, body)
	}
	if code, _, body := srv.do(t, http.MethodGet, "/ready", nil); code != http.StatusOK {
		t.Errorf("/ready: %d %s", code, body)
	}
	if !strings.Contains(srv.Logs(), `"database":"data/keygate.db"`) || !strings.Contains(srv.Logs(), `"algorithm":"ES256"`) {
		t.Errorf("listening line does not show the defaults:\n%s", srv.Logs())
	}
	set, _ := srv.jwks(t)
	if len(set.Keys) != 1 || set.Keys[0].Algorithm != "ES256" {
		t.Fatalf("default JWKS: %+v", set)
	}
	for _, f := range []string{"data/keygate.db", "data/master.key"} {
		if !exists(filepath.Join(dir, f)) {
			t.Errorf("%s missing", f)
		}
	}
	if info, err := os.Stat(filepath.Join(dir, "data", "master.key")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("master.key: %v %v, want mode 0600", info, err)
	}

	// The defaults in the tokens: keygate / r-auth, 15m access, 720h refresh.
	p := createPartner(t, dir, env, "Acme")
	pair := srv.mustLogin(t, p.APIKey)
	v := mustJoseVerify(t, pair.JWT, jose.ES256, set, nil, "keygate", "r-auth")
	checkPartnerClaims(t, v, p.ID, p.KeyID, 15*time.Minute)
	if exp := parseStamp(t, pair.ExpirationDate); !exp.Equal(v.std.Expiry.Time()) {
		t.Errorf("expirationDate %s != exp %v", pair.ExpirationDate, v.std.Expiry.Time())
	}
	if rexp := parseStamp(t, pair.RefreshTokenExpiration); time.Until(rexp) < 719*time.Hour || time.Until(rexp) > 721*time.Hour {
		t.Errorf("refreshTokenExpiration %s, want 720h from now", pair.RefreshTokenExpiration)
	}
	if !strings.HasPrefix(pair.RefreshToken, "rt_") {
		t.Errorf("refresh token %.5s...", pair.RefreshToken)
	}
}

func TestConfigSources(t *testing.T) {
	t.Parallel()
	custom := testdataPath(t, "custom.yaml")
	invalid := testdataPath(t, "invalid.yaml")

	tests := []struct {
		name     string
		args     []string // before the command
		env      []string
		dirFile  string // copied to ./config.yaml
		db       string
		alg      jose.SignatureAlgorithm
		iss, aud string
		ttl      time.Duration
	}{
		{name: "env overrides defaults", db: "state/kg.db", alg: jose.RS256, iss: "env-issuer", aud: "env-audience", ttl: 5 * time.Minute,
			env: []string{"KEYGATE_DATABASE_PATH=state/kg.db", "KEYGATE_TOKENS_ALGORITHM=RS256", "KEYGATE_TOKENS_ISSUER=env-issuer",
				"KEYGATE_TOKENS_AUDIENCE=env-audience", "KEYGATE_TOKENS_ACCESS_TTL=5m"}},
		{name: "./config.yaml is read", dirFile: custom, db: "custom/keygate.db", alg: jose.EdDSA, iss: "file-issuer", aud: "file-audience", ttl: 10 * time.Minute},
		{name: "env overrides ./config.yaml", dirFile: custom, db: "custom/keygate.db", alg: jose.ES256, iss: "env-issuer", aud: "file-audience", ttl: 10 * time.Minute,
			env: []string{"KEYGATE_TOKENS_ALGORITHM=ES256", "KEYGATE_TOKENS_ISSUER=env-issuer"}},
		{name: "--config picks another file", args: []string{"--config", custom}, dirFile: invalid, db: "custom/keygate.db", alg: jose.EdDSA, iss: "file-issuer", aud: "file-audience", ttl: 10 * time.Minute},
		{name: "KEYGATE_CONFIG picks another file", env: []string{"KEYGATE_CONFIG=" + custom}, dirFile: invalid, db: "custom/keygate.db", alg: jose.EdDSA, iss: "file-issuer", aud: "file-audience", ttl: 10 * time.Minute},
		{name: "--config beats KEYGATE_CONFIG", args: []string{"--config", custom}, env: []string{"KEYGATE_CONFIG=" + invalid}, db: "custom/keygate.db", alg: jose.EdDSA, iss: "file-issuer", aud: "file-audience", ttl: 10 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if tt.dirFile != "" {
				copyFile(t, tt.dirFile, filepath.Join(dir, "config.yaml"))
			}
			env := e2eEnv(tt.env...)
			out := mustKeygate(t, dir, env, append(slices.Clone(tt.args), "partner", "create", "--name", "Acme", "--json")...)
			var p createdPartner
			decodeStrictJSON(t, out, &p)

			srv := startServer(t, dir, env, tt.args...)
			dbDir := filepath.Dir(filepath.Join(dir, tt.db))
			if !exists(filepath.Join(dir, tt.db)) || !exists(filepath.Join(dbDir, "master.key")) {
				t.Errorf("no database and master key at %s", tt.db)
			}
			if tt.db != "data/keygate.db" && exists(filepath.Join(dir, "data")) {
				t.Errorf("data/ created although database.path is %s", tt.db)
			}
			pair := srv.mustLogin(t, p.APIKey)
			set, _ := srv.jwks(t)
			v := mustJoseVerify(t, pair.JWT, tt.alg, set, nil, tt.iss, tt.aud)
			checkPartnerClaims(t, v, p.ID, p.KeyID, tt.ttl)
			if code, me := srv.me(t, "R-Auth", pair.JWT); code != http.StatusOK || me.ID != p.ID {
				t.Errorf("me: %d %+v", code, me)
			}
		})
	}
}

func TestConfigInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		args     []string
		env      []string
		wantKeys []string
	}{
		{"file with several problems", []string{"--config", testdataPath(t, "invalid.yaml")}, nil,
			[]string{"server.adress", "tokens.hmac_secret", "tokens.access_ttl", "tokens.acess_ttl"}},
		{"unknown algorithm", []string{"--config", testdataPath(t, "invalid-algorithm.yaml")}, nil,
			[]string{"tokens.algorithm", "tokens.leeway", "log.level"}},
		{"KEYGATE_CONFIG with several problems", nil, []string{"KEYGATE_CONFIG=" + testdataPath(t, "invalid.yaml")},
			[]string{"server.adress", "tokens.hmac_secret", "tokens.access_ttl", "tokens.acess_ttl"}},
		{"env", nil, []string{"KEYGATE_TOKENS_ALGORITHM=none", "KEYGATE_TOKENS_REFRESH_TTL=1y", "KEYGATE_TOKENS_KEY_RELOAD_INTERVAL=0s"},
			[]string{"tokens.algorithm", "tokens.refresh_ttl", "tokens.key_reload_interval"}},
		{"short HMAC secret from env", nil, []string{"KEYGATE_TOKENS_ALGORITHM=HS256", "KEYGATE_TOKENS_HMAC_SECRET=0123456789abcdef0123456789abcde"},
			[]string{"tokens.hmac_secret"}},
		{"HS256 without a secret", nil, []string{"KEYGATE_TOKENS_ALGORITHM=HS256"}, []string{"tokens.hmac_secret"}},
		{"missing config file", []string{"--config", "nowhere.yaml"}, nil, []string{"nowhere.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			res := runKeygate(t, dir, e2eEnv(append(tt.env, "KEYGATE_SERVER_ADDR=127.0.0.1:0")...), append(slices.Clone(tt.args), "serve")...)
			assertOneLineError(t, res, tt.wantKeys...)
			if strings.Contains(res.stderr, "listening") {
				t.Errorf("serve started: %s", res.stderr)
			}
			if snap := dirSnapshot(t, dir); len(snap) != 1 {
				t.Errorf("an invalid configuration wrote files: %v", snap)
			}
			if strings.Contains(res.stderr, "0123456789abcdef") {
				t.Errorf("the error message shows the secret: %s", res.stderr)
			}
		})
	}
}

func TestConfigHS256(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secret := "e2e-hmac-secret-0123456789-abcdefghij" // 37 bytes
	env := e2eEnv("KEYGATE_TOKENS_ALGORITHM=HS256", "KEYGATE_TOKENS_HMAC_SECRET="+secret)
	p := createPartner(t, dir, env, "Acme")
	srv := startServer(t, dir, env)

	pair := srv.mustLogin(t, p.APIKey)
	set, raw := srv.jwks(t)
	if len(set.Keys) != 0 {
		t.Errorf("HS256 JWKS publishes keys: %s", raw)
	}
	v := mustJoseVerify(t, pair.JWT, jose.HS256, set, []byte(secret), "keygate", "r-auth")
	checkPartnerClaims(t, v, p.ID, p.KeyID, 15*time.Minute)
	if _, err := joseVerify(pair.JWT, jose.HS256, set, []byte(secret+"x"), "keygate", "r-auth"); err == nil {
		t.Error("go-jose accepted the token under another secret")
	}
	if code, me := srv.me(t, "R-Auth", pair.JWT); code != http.StatusOK || me.ID != p.ID {
		t.Errorf("me: %d %+v", code, me)
	}
	code, next, body := srv.refresh(t, pair.RefreshToken)
	if code != http.StatusOK {
		t.Fatalf("refresh: %d %s", code, body)
	}
	mustJoseVerify(t, next.JWT, jose.HS256, set, []byte(secret), "keygate", "r-auth")

	assertOneLineError(t, runKeygate(t, dir, env, "signing-key", "rotate"), "HS256")
	srv.stop(t)
	if strings.Contains(srv.Logs(), secret) {
		t.Error("the server log shows the HMAC secret")
	}
}

// ---------------------------------------------------------------------------
// 4. Issue 2's "Done when", end to end

func TestDoneWhenMintLoginVerifyRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := e2eEnv()
	script, err := filepath.Abs(filepath.Join("scripts", "mint-partner-key.sh"))
	if err != nil {
		t.Fatal(err)
	}
	// The script must find the built binary on PATH rather than go run.
	scriptEnv := e2eEnv()
	scriptEnv[0] = "PATH=" + filepath.Dir(e2eBinary) + string(os.PathListSeparator) + os.Getenv("PATH")
	res := runCommand(t, dir, scriptEnv, script, "Acme Corp")
	if res.code != 0 {
		t.Fatalf("mint-partner-key.sh: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	apiKey := strings.TrimSuffix(res.stdout, "\n")
	if !strings.HasPrefix(apiKey, "pk_") || strings.ContainsAny(apiKey, " \n\"") || !strings.Contains(res.stderr, "par_") {
		t.Fatalf("mint-partner-key.sh printed %q, stderr %q", res.stdout, res.stderr)
	}
	if strings.Contains(res.stderr, apiKey) {
		t.Error("mint-partner-key.sh printed the key on stderr too")
	}
	ps := listPartners(t, dir, env)
	if len(ps) != 1 || ps[0].Name != "Acme Corp" || !strings.Contains(res.stderr, ps[0].ID) {
		t.Fatalf("after minting: %+v (stderr %q)", ps, res.stderr)
	}
	partnerID := ps[0].ID
	if usage := runCommand(t, dir, scriptEnv, script); usage.code == 0 || usage.stdout != "" {
		t.Errorf("mint-partner-key.sh without a name: exit %d, stdout %q", usage.code, usage.stdout)
	}

	srv := startServer(t, dir, env)
	pair := srv.mustLogin(t, apiKey)
	code, me := srv.me(t, "R-Auth", pair.JWT)
	if code != http.StatusOK || me.Type != "partner" || me.ID != partnerID || me.Name != "Acme Corp" || !strings.HasPrefix(me.KeyID, "key_") {
		t.Fatalf("me: %d %+v", code, me)
	}
	if exp := parseStamp(t, me.ExpirationDate); exp.Format(time.RFC3339) != parseStamp(t, pair.ExpirationDate).Format(time.RFC3339) {
		t.Errorf("me expirationDate %s, login said %s", me.ExpirationDate, pair.ExpirationDate)
	}
	if code, me2 := srv.me(t, "Authorization", "Bearer "+pair.JWT); code != http.StatusOK || me2 != me {
		t.Errorf("me with Authorization: Bearer: %d %+v", code, me2)
	}

	// go-jose, knowing nothing of keygate, verifies the token with the JWKS.
	set, _ := srv.jwks(t)
	v := mustJoseVerify(t, pair.JWT, jose.ES256, set, nil, "keygate", "r-auth")
	checkPartnerClaims(t, v, partnerID, me.KeyID, 15*time.Minute)
	// ...and it really checks the signature.
	parts := strings.Split(pair.JWT, ".")
	sig := []byte(parts[2])
	if sig[len(sig)/2] == 'A' {
		sig[len(sig)/2] = 'B'
	} else {
		sig[len(sig)/2] = 'A'
	}
	if _, err := joseVerify(parts[0]+"."+parts[1]+"."+string(sig), jose.ES256, set, nil, "keygate", "r-auth"); err == nil {
		t.Error("go-jose accepted a tampered signature")
	}
	if code, _ := srv.me(t, "R-Auth", parts[0]+"."+parts[1]+"."+string(sig)); code != http.StatusUnauthorized {
		t.Errorf("me with a tampered token: %d", code)
	}

	// A restart keeps keys, refresh tokens and signing keys.
	srv.stop(t)
	if info, err := os.Stat(filepath.Join(dir, "data", "master.key")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("data/master.key: %v %v, want mode 0600", info, err)
	}
	srv2 := startServer(t, dir, env)
	set2, _ := srv2.jwks(t)
	if !slices.Equal(kids(set), kids(set2)) || len(set2.Keys) != 1 {
		t.Fatalf("JWKS kids before restart %v, after %v", kids(set), kids(set2))
	}
	mustJoseVerify(t, pair.JWT, jose.ES256, set2, nil, "keygate", "r-auth")
	if code, _ := srv2.me(t, "R-Auth", pair.JWT); code != http.StatusOK {
		t.Errorf("me after restart with the old JWT: %d", code)
	}
	if code, _, body := srv2.login(t, apiKey); code != http.StatusOK {
		t.Errorf("login after restart: %d %s", code, body)
	}
	code, next, body := srv2.refresh(t, pair.RefreshToken)
	if code != http.StatusOK || next.RefreshToken == pair.RefreshToken {
		t.Fatalf("refresh after restart: %d %s", code, body)
	}
	v = mustJoseVerify(t, next.JWT, jose.ES256, set2, nil, "keygate", "r-auth")
	if v.kid != kids(set)[0] {
		t.Errorf("after restart tokens are signed with %s, want %s", v.kid, kids(set)[0])
	}
	srv2.stop(t)

	assertNoSecrets(t, []string{apiKey, pair.JWT, pair.RefreshToken, next.JWT, next.RefreshToken},
		map[string]string{"first server log": srv.Logs(), "second server log": srv2.Logs()})
}

func TestMintScriptWithoutKeygateOnPath(t *testing.T) {
	t.Parallel()
	if path, err := exec.LookPath("keygate"); err == nil {
		t.Skipf("keygate is installed at %s: the script would use it", path)
	}
	dir := t.TempDir()
	// The operator's own config.yaml names the database; the checkout's
	// config.yaml must not be read instead.
	copyFile(t, testdataPath(t, "custom.yaml"), filepath.Join(dir, "config.yaml"))
	script, err := filepath.Abs(filepath.Join("scripts", "mint-partner-key.sh"))
	if err != nil {
		t.Fatal(err)
	}
	res := runCommand(t, dir, e2eEnv(), script, "Built Corp")
	if res.code != 0 {
		t.Fatalf("mint-partner-key.sh: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	apiKey := strings.TrimSuffix(res.stdout, "\n")
	if !strings.HasPrefix(apiKey, "pk_") {
		t.Fatalf("mint-partner-key.sh printed %q", res.stdout)
	}
	if !exists(filepath.Join(dir, "custom", "keygate.db")) {
		t.Fatal("the key was not minted into ./config.yaml's database")
	}
	ps := listPartners(t, dir, e2eEnv())
	if len(ps) != 1 || ps[0].Name != "Built Corp" {
		t.Fatalf("partners in ./config.yaml's database: %+v", ps)
	}
}

func TestSigningKeyRotationWhileServing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := e2eEnv("KEYGATE_TOKENS_KEY_RELOAD_INTERVAL=200ms", "KEYGATE_TOKENS_SIGNING_KEY_ACTIVATION_DELAY=2s",
		"KEYGATE_RATELIMIT_LOGIN_PER_KEY_PER_MINUTE=0")
	p := createPartner(t, dir, env, "Acme")
	srv := startServer(t, dir, env)

	first := srv.mustLogin(t, p.APIKey)
	set, _ := srv.jwks(t)
	oldKID := mustJoseVerify(t, first.JWT, jose.ES256, set, nil, "keygate", "r-auth").kid

	out := mustKeygate(t, dir, env, "signing-key", "rotate")
	rows := listSigningKeys(t, dir, env)
	if len(rows) != 2 || rows[0].kid != oldKID || !strings.Contains(out, rows[1].kid) {
		t.Fatalf("after rotate: %q %+v", out, rows)
	}
	newKID := rows[1].kid
	activates := parseStamp(t, rows[1].activates)

	// A verifier that refreshes its JWKS just before each token arrives must
	// never meet an unknown kid: the new key is published before it signs.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	publishedEarly := false
	var switched tokenPair
	for switched.JWT == "" {
		select {
		case <-ctx.Done():
			t.Fatalf("no token signed with %s by %v (activation %v)", newKID, time.Now(), activates)
		case <-tick.C:
		}
		cached, _ := srv.jwks(t)
		pair := srv.mustLogin(t, p.APIKey)
		v, err := joseVerify(pair.JWT, jose.ES256, cached, nil, "keygate", "r-auth")
		if err != nil {
			t.Fatalf("a token issued during rotation does not verify against the JWKS fetched just before: %v", err)
		}
		switch v.kid {
		case oldKID:
			if slices.Contains(kids(cached), newKID) {
				publishedEarly = true
			}
		case newKID:
			if v.std.IssuedAt.Time().Before(activates.Truncate(time.Second)) {
				t.Errorf("signed with %s at %v, before its activation %v", newKID, v.std.IssuedAt.Time(), activates)
			}
			switched = pair
		default:
			t.Fatalf("token signed with unknown kid %s", v.kid)
		}
	}
	if !publishedEarly {
		t.Errorf("%s was never seen in the JWKS while %s still signed", newKID, oldKID)
	}

	// After the switch both keys are published: tokens of the old kid verify,
	// with go-jose and with keygate itself.
	set, _ = srv.jwks(t)
	if !slices.Equal(kids(set), slices.Sorted(slices.Values([]string{oldKID, newKID}))) {
		t.Errorf("JWKS after the switch: %v", kids(set))
	}
	mustJoseVerify(t, first.JWT, jose.ES256, set, nil, "keygate", "r-auth")
	mustJoseVerify(t, switched.JWT, jose.ES256, set, nil, "keygate", "r-auth")
	for _, tok := range []string{first.JWT, switched.JWT} {
		if code, _ := srv.me(t, "R-Auth", tok); code != http.StatusOK {
			t.Errorf("me after the switch: %d", code)
		}
	}
	code, next, body := srv.refresh(t, first.RefreshToken)
	if code != http.StatusOK {
		t.Fatalf("refresh after the switch: %d %s", code, body)
	}
	if v := mustJoseVerify(t, next.JWT, jose.ES256, set, nil, "keygate", "r-auth"); v.kid != newKID {
		t.Errorf("refresh after the switch signed with %s, want %s", v.kid, newKID)
	}
	if rows := listSigningKeys(t, dir, env); rows[0].retired != rows[1].activates {
		t.Errorf("old key not retired at the new key's activation: %+v", rows)
	}
}

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

// TestServerLimitsOnTheWire checks what only the real http.Server does:
// oversized headers get 431, and a client that sends half a request header
// is cut off after server.read_header_timeout.
func TestServerLimitsOnTheWire(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, e2eEnv("KEYGATE_SERVER_READ_HEADER_TIMEOUT=300ms", "KEYGATE_SERVER_MAX_HEADER_BYTES=4096"))

	status, _, _, err := s.request("GET", "/health", nil, "X-Padding", strings.Repeat("a", 64<<10))
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("64 KiB header: status %d, want 431", status)
	}
	// Go's server lets 4 KiB more through than it is told; keygate
	// accounts for that, so 6000 bytes of headers exceed a 4096 cap.
	status, _, _, err = s.request("GET", "/health", nil, "X-Padding", strings.Repeat("a", 6000))
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("6000-byte header with server.max_header_bytes=4096: status %d, want 431", status)
	}

	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /health HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	// The server must close the connection by itself; the deadline only
	// bounds the test if it does not.
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	_, err = io.ReadAll(conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("half-sent request still open after %s", time.Since(start))
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("half-sent request cut off after %s, want about 300ms", waited)
	}
}

// TestMasterKeyNeverReplacedSilently: once the database holds signing keys,
// a command that cannot find the master key refuses instead of making a
// new one, and a wrong master key cannot seal a new signing key.
func TestMasterKeyNeverReplacedSilently(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := e2eEnv()
	srv := startServer(t, dir, env)
	srv.stop(t)
	keyFile := filepath.Join(dir, "data", "master.key")
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	assertOneLineError(t, runKeygate(t, dir, env, "signing-key", "rotate"), "no master key")
	if _, err := os.Stat(keyFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("rotate without the master key created %s", keyFile)
	}
	wrong := e2eEnv("KEYGATE_TOKENS_MASTER_KEY=" + strings.Repeat("w", 40))
	assertOneLineError(t, runKeygate(t, dir, wrong, "signing-key", "rotate"), "refusing to add a signing key")
	if rows := listSigningKeys(t, dir, wrong); len(rows) != 1 {
		t.Errorf("signing keys after refused rotations: %d, want 1", len(rows))
	}
}

// TestServeHeapGoal: keygate serve starts a garbage collection at a 32 MiB
// heap at the least (server.KeepHeapGoal) instead of Go's 4 MiB, unless
// GOGC in its environment says otherwise. The runtime's own trace
// (GODEBUG=gctrace=1) reports each cycle's goal.
func TestServeHeapGoal(t *testing.T) {
	t.Parallel()
	goalRE := regexp.MustCompile(`(\d+) MB goal`)
	for _, tc := range []struct {
		name     string
		env      []string
		min, max int // MiB, every goal once serving
	}{
		{"default", nil, 31, 34}, // 32 MiB, give or take rounding
		{"GOGC set", []string{"GOGC=100"}, 4, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := e2eEnv(append([]string{"GODEBUG=gctrace=1",
				"KEYGATE_RATELIMIT_LOGIN_FAILURES_PER_MINUTE=0", "KEYGATE_RATELIMIT_LOGIN_PER_KEY_PER_MINUTE=0"}, tc.env...)...)
			srv := startServer(t, t.TempDir(), env)
			// Each of these requests makes the server read and decode a
			// 60 KiB body before refusing the key: garbage, fast.
			body := map[string]string{"apiKey": strings.Repeat("x", 60<<10)}
			var goals []int
			for sent := 0; len(goals) < 3; sent++ {
				if sent == 20_000 {
					t.Fatalf("only %d collections after %d requests\n%s", len(goals), sent, srv.Logs())
				}
				if code, _, _, err := srv.request("POST", "/api/v1/auth/login", body); err != nil || code != http.StatusUnauthorized {
					t.Fatalf("login with a junk key: %d %v", code, err)
				}
				if sent%50 == 0 {
					_, serving, _ := strings.Cut(srv.Logs(), "keygate listening")
					goals = goals[:0]
					for _, m := range goalRE.FindAllStringSubmatch(serving, -1) {
						g, _ := strconv.Atoi(m[1])
						goals = append(goals, g)
					}
				}
			}
			for _, g := range goals {
				if g < tc.min || g > tc.max {
					t.Fatalf("heap goals %v MiB while serving, want each within %d-%d", goals, tc.min, tc.max)
				}
			}
		})
	}
}
