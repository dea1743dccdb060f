package main_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// leakVerdict is one item of the leaked-key endpoint's answer.
type leakVerdict struct {
	TokenHash string `json:"token_hash"`
	TokenType string `json:"token_type"`
	Label     string `json:"label"`
}

// reportLeaked posts body, already signed in header, to the leaked-key
// endpoint as a scanner would: the exact bytes that were signed.
func (s *e2eServer) reportLeaked(t *testing.T, body []byte, header http.Header) (int, []leakVerdict) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.url+"/api/v1/keys/leaked", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header.Clone()
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out []leakVerdict
	if resp.StatusCode == http.StatusOK {
		decodeStrictJSON(t, string(data), &out)
	} else {
		var e errorBody
		decodeStrictJSON(t, string(data), &e)
	}
	return resp.StatusCode, out
}

func leakReport(t *testing.T, tokens ...string) []byte {
	t.Helper()
	items := make([]map[string]string, len(tokens))
	for i, tok := range tokens {
		items[i] = map[string]string{"token": tok, "type": "keygate_partner_api_key", "url": "https://github.com/octocat/app/blob/main/.env", "source": "content"}
	}
	b, err := json.Marshal(items)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sha256Hex(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}

// TestLeakedKeyReportedEndToEnd: with both reporters configured through
// the environment, a partner minted with the CLI and logged in is
// reported leaked, signed with the shared secret, and another signed as
// GitHub signs: each is a true positive, can no longer log in, its refresh
// and access tokens are refused, and keygate audit shows key.leaked. A bad
// signature is 401 and revokes nothing; no token reaches the log.
func TestLeakedKeyReportedEndToEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const secret = "e2e-leak-reporter-secret-0123456789abcdef"
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	keyID := sha256Hex(string(der))
	keysFile, err := json.Marshal(map[string]any{"public_keys": []map[string]any{{
		"key_identifier": keyID, "key": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), "is_current": true,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	keysPath := filepath.Join(dir, "github-keys.json")
	if err := os.WriteFile(keysPath, keysFile, 0o644); err != nil {
		t.Fatal(err)
	}
	env := e2eEnv("KEYGATE_LEAKS_HMAC_SECRET="+secret, "KEYGATE_LEAKS_GITHUB_PUBLIC_KEYS_FILE="+keysPath)
	acme := createPartner(t, dir, env, "Acme")
	bolt := createPartner(t, dir, env, "Bolt")
	calm := createPartner(t, dir, env, "Calm")
	srv := startServer(t, dir, env)
	acmeSession := srv.mustLogin(t, acme.APIKey)
	boltSession := srv.mustLogin(t, bolt.APIKey)
	calmSession := srv.mustLogin(t, calm.APIKey)

	signHMAC := func(body []byte, key string) http.Header {
		mac := hmac.New(sha256.New, []byte(key))
		mac.Write(body)
		return http.Header{"X-Keygate-Signature": {"sha256=" + hex.EncodeToString(mac.Sum(nil))}}
	}
	signGitHub := func(body []byte) http.Header {
		d := sha256.Sum256(body)
		sig, err := ecdsa.SignASN1(rand.Reader, priv, d[:])
		if err != nil {
			t.Fatal(err)
		}
		return http.Header{"Github-Public-Key-Identifier": {keyID}, "Github-Public-Key-Signature": {base64.StdEncoding.EncodeToString(sig)}}
	}

	// A report that is not signed right revokes nothing.
	calmReport := leakReport(t, calm.APIKey)
	if code, _ := srv.reportLeaked(t, calmReport, signHMAC(calmReport, secret+"!")); code != http.StatusUnauthorized {
		t.Errorf("wrongly signed report: %d, want 401", code)
	}
	srv.mustLogin(t, calm.APIKey)

	body := leakReport(t, acme.APIKey, "pk_junk")
	code, got := srv.reportLeaked(t, body, signHMAC(body, secret))
	want := []leakVerdict{
		{TokenHash: sha256Hex(acme.APIKey), TokenType: "keygate_partner_api_key", Label: "true_positive"},
		{TokenHash: sha256Hex("pk_junk"), TokenType: "keygate_partner_api_key", Label: "false_positive"},
	}
	if code != http.StatusOK || len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("HMAC-signed report: %d %+v, want %+v", code, got, want)
	}
	gh := leakReport(t, bolt.APIKey)
	if code, got := srv.reportLeaked(t, gh, signGitHub(gh)); code != http.StatusOK || len(got) != 1 || got[0].Label != "true_positive" {
		t.Fatalf("GitHub-signed report: %d %+v", code, got)
	}
	// Again: the same answer.
	if code, again := srv.reportLeaked(t, body, signHMAC(body, secret)); code != http.StatusOK || len(again) != 2 || again[0] != want[0] {
		t.Errorf("the report again: %d %+v", code, again)
	}

	for _, p := range []struct {
		name    string
		apiKey  string
		session tokenPair
	}{{"Acme", acme.APIKey, acmeSession}, {"Bolt", bolt.APIKey, boltSession}} {
		if code, _, _ := srv.login(t, p.apiKey); code != http.StatusUnauthorized {
			t.Errorf("%s: login with the leaked key: %d, want 401", p.name, code)
		}
		if code, _, _ := srv.refresh(t, p.session.RefreshToken); code != http.StatusUnauthorized {
			t.Errorf("%s: refresh token obtained before the report: %d, want 401", p.name, code)
		}
		if code, _ := srv.me(t, "R-Auth", p.session.JWT); code != http.StatusUnauthorized {
			t.Errorf("%s: access token obtained before the report: %d, want 401", p.name, code)
		}
	}
	if code, _ := srv.me(t, "R-Auth", calmSession.JWT); code != http.StatusOK {
		t.Errorf("an unreported partner's token: %d", code)
	}

	evs, out := auditEvents(t, dir, env)
	for _, w := range []struct{ reporter, keyID string }{{"hmac", acme.KeyID}, {"github", bolt.KeyID}} {
		if !hasEvent(evs, auditEvent{ActorType: "reporter", ActorID: w.reporter, Action: "key.leaked", TargetType: "key", Target: w.keyID, Outcome: "success"}) {
			t.Errorf("keygate audit --json has no key.leaked of %s by %s:\n%s", w.keyID, w.reporter, out)
		}
	}
	var leaked int
	for _, e := range evs {
		if e.Action == "key.leaked" {
			leaked++
			if e.Detail != "source=content url=https://github.com/octocat/app/blob/main/.env" {
				t.Errorf("key.leaked detail %q", e.Detail)
			}
		}
	}
	if leaked != 2 {
		t.Errorf("%d key.leaked events, want 2 (the report sent twice counts once)", leaked)
	}

	srv.stop(t)
	assertNoSecrets(t, []string{acme.APIKey, bolt.APIKey, calm.APIKey, secret, acmeSession.RefreshToken},
		map[string]string{"server log": srv.Logs(), "audit": out})
}

// TestLeakedReporterConfigRefused: keygate does not start with a reporter
// it cannot use, saying so in one line naming the setting.
func TestLeakedReporterConfigRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	junk := filepath.Join(dir, "keys.json")
	if err := os.WriteFile(junk, []byte(`{"public_keys":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  string
		want []string
	}{
		{"KEYGATE_LEAKS_GITHUB_PUBLIC_KEYS_FILE=" + filepath.Join(dir, "missing.json"), []string{"leaks.github_public_keys_file", "missing.json"}},
		{"KEYGATE_LEAKS_GITHUB_PUBLIC_KEYS_FILE=" + junk, []string{"leaks.github_public_keys_file", "no ECDSA P-256 public key"}},
		{"KEYGATE_LEAKS_HMAC_SECRET=short", []string{"leaks.hmac_secret", "at least 32 bytes"}},
	} {
		res := runKeygate(t, dir, e2eEnv(tc.env, "KEYGATE_SERVER_ADDR=127.0.0.1:0"), "serve")
		assertOneLineError(t, res, tc.want...)
	}
}
