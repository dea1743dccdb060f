package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"keygate/api/apitest"
)

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
	// Every exchange through client is held to the OpenAPI document.
	s := &e2eServer{cmd: cmd, exited: make(chan struct{}), client: &http.Client{Timeout: 10 * time.Second, Transport: apitest.Transport(t, nil)}}
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
	t.Cleanup(func() { s.terminate(t) })

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

// terminate stops a server still running when its test ends: SIGTERM,
// then a kill (and a test error) if it has not exited 20 s later.
func (s *e2eServer) terminate(t *testing.T) {
	if s.cmd.Process == nil { // never started
		return
	}
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		t.Errorf("keygate serve did not stop on SIGTERM within 20s")
	}
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
	Type           string   `json:"type"`
	ID             string   `json:"id"`
	Name           string   `json:"name"`
	PartnerID      string   `json:"partnerId"`
	KeyID          string   `json:"keyId"`
	Scopes         []string `json:"scopes"`
	ExpirationDate string   `json:"expirationDate"`
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
