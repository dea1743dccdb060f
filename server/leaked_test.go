package server_test

import (
	"bytes"
	"context"
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
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"keygate/api"
	"keygate/gateway"
	"keygate/keys"
	"keygate/server"
	"keygate/store"
	"keygate/tokens"
)

const leakedPath = "/api/v1/keys/leaked"

// testLeakSecret is leaks.hmac_secret where a test sets it.
const testLeakSecret = "a-leak-reporter-secret-of-32-bytes-or-more"

// withLeakHMAC sets leaks.hmac_secret, which turns the endpoint on.
func withLeakHMAC() option {
	return withConfig(func(c *gateway.Config) { c.Leaks.HMACSecret = testLeakSecret })
}

// withGitHubKeys sets leaks.github_public_keys_file.
func withGitHubKeys(path string) option {
	return withConfig(func(c *gateway.Config) { c.Leaks.GitHubPublicKeysFile = path })
}

// githubKey is a signing key of a stand-in for GitHub's secret scanning.
type githubKey struct {
	id   string
	priv *ecdsa.PrivateKey
}

func newGitHubKey(t testing.TB, curve elliptic.Curve) githubKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	id := sha256.Sum256(der)
	return githubKey{id: hex.EncodeToString(id[:]), priv: priv}
}

// pem is the key's public half as GitHub publishes it.
func (k githubKey) pem(t testing.TB) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&k.priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// sign returns GitHub's two headers for body.
func (k githubKey) sign(t testing.TB, body string) http.Header {
	t.Helper()
	digest := sha256.Sum256([]byte(body))
	sig, err := ecdsa.SignASN1(rand.Reader, k.priv, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return http.Header{"Github-Public-Key-Identifier": {k.id}, "Github-Public-Key-Signature": {base64.StdEncoding.EncodeToString(sig)}}
}

// writeGitHubKeys writes a file in the format of GitHub's
// /meta/public_keys/secret_scanning holding ks, the last one current.
func writeGitHubKeys(t testing.TB, path string, ks ...githubKey) {
	t.Helper()
	type entry struct {
		KeyIdentifier string `json:"key_identifier"`
		Key           string `json:"key"`
		IsCurrent     bool   `json:"is_current"`
	}
	var doc struct {
		PublicKeys []entry `json:"public_keys"`
	}
	for i, k := range ks {
		doc.PublicKeys = append(doc.PublicKeys, entry{k.id, k.pem(t), i == len(ks)-1})
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// hmacSigned is the X-Keygate-Signature header of body under secret.
func hmacSigned(secret, body string) http.Header {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(body))
	return http.Header{"X-Keygate-Signature": {"sha256=" + hex.EncodeToString(mac.Sum(nil))}}
}

// report sends body to the leaked-key endpoint with the given headers.
func (e *env) report(body string, h http.Header) *httptest.ResponseRecorder {
	e.t.Helper()
	return e.do(request{method: http.MethodPost, path: leakedPath, body: body, header: h})
}

// reportBody is a report of the given tokens, each found at its own URL.
func reportBody(tokens ...string) string {
	items := make([]map[string]string, len(tokens))
	for i, tok := range tokens {
		items[i] = map[string]string{
			"token": tok, "type": "keygate_api_key", "source": "content",
			"url": fmt.Sprintf("https://github.com/octocat/leaks/blob/main/secret-%d.txt", i),
		}
	}
	b, _ := json.Marshal(items)
	return string(b)
}

func tokenHash(tok string) string {
	d := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(d[:])
}

// verdicts decodes a 200 answer strictly.
func verdicts(t testing.TB, rec *httptest.ResponseRecorder) []api.LeakVerdict {
	t.Helper()
	wantStatus(t, rec, http.StatusOK)
	return decodeInto[[]api.LeakVerdict](t, rec)
}

// resolveCounter is the store, counting the key lookups the services ask
// of it: proof that a path looked nothing up.
type resolveCounter struct {
	store.Store
	n atomic.Int64
}

func (s *resolveCounter) ResolveKey(ctx context.Context, d keys.Digest) (keys.ResolvedKey, error) {
	s.n.Add(1)
	return s.Store.ResolveKey(ctx, d)
}

func counting(spy *resolveCounter) option {
	return withStore(func(st store.Store) store.Store { spy.Store = st; return spy })
}

// leakedEvents are the key.leaked events of the audit trail.
func (e *env) leakedEvents() []keys.AuditEvent {
	e.t.Helper()
	return slices.DeleteFunc(e.audit(), func(ev keys.AuditEvent) bool { return ev.Action != "key.leaked" })
}

// metric reads one series from the admin listener's /metrics.
func (e *env) metric(series string) string {
	e.t.Helper()
	rec := httptest.NewRecorder()
	e.metrics.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for line := range strings.Lines(rec.Body.String()) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			return v
		}
	}
	return ""
}

// TestLeakedNotConfigured: without a reporter the endpoint does not exist
// (404 no such route, even signed), and nothing is looked up.
func TestLeakedNotConfigured(t *testing.T) {
	t.Parallel()
	spy := &resolveCounter{}
	e := newEnv(t, counting(spy))
	_, key := e.partner("Acme")
	body := reportBody(key)
	before := spy.n.Load()
	msg := wantError(t, e.report(body, hmacSigned(testLeakSecret, body)), http.StatusNotFound, api.CodeNotFound)
	if msg != "no such route" {
		t.Errorf("message %q", msg)
	}
	if n := spy.n.Load() - before; n != 0 {
		t.Errorf("%d key lookups without a reporter", n)
	}
	e.login(key)
}

// TestLeakedBadSignatures: a report whose signature is missing or does not
// hold is 401, whichever way it was meant to be signed, and looks nothing
// up: the key it names still logs in.
func TestLeakedBadSignatures(t *testing.T) {
	t.Parallel()
	gh, other := newGitHubKey(t, elliptic.P256()), newGitHubKey(t, elliptic.P256())
	file := filepath.Join(t.TempDir(), "github-keys.json")
	writeGitHubKeys(t, file, gh)
	spy := &resolveCounter{}
	e := newEnv(t, counting(spy), withGitHubKeys(file), withLeakHMAC())
	_, key := e.partner("Acme")
	body := reportBody(key)
	otherBody := reportBody(key, key)
	withID := func(h http.Header, id string) http.Header { h.Set("Github-Public-Key-Identifier", id); return h }
	withSig := func(h http.Header, sig string) http.Header { h.Set("Github-Public-Key-Signature", sig); return h }
	for _, tc := range []struct {
		name   string
		header http.Header
	}{
		{"no signature", nil},
		{"GitHub: a key not in the file", other.sign(t, body)},
		{"GitHub: another key under a known identifier", withID(other.sign(t, body), gh.id)},
		{"GitHub: the signature of another body", gh.sign(t, otherBody)},
		{"GitHub: no identifier", withID(gh.sign(t, body), "")},
		{"GitHub: not base64", withSig(gh.sign(t, body), "not base64!")},
		{"GitHub: not ASN.1", withSig(gh.sign(t, body), base64.StdEncoding.EncodeToString([]byte("garbage")))},
		{"GitHub: identifier without signature", http.Header{"Github-Public-Key-Identifier": {gh.id}}},
		{"HMAC: another secret", hmacSigned(testLeakSecret+"x", body)},
		{"HMAC: of another body", hmacSigned(testLeakSecret, otherBody)},
		{"HMAC: no sha256= prefix", http.Header{"X-Keygate-Signature": {strings.TrimPrefix(hmacSigned(testLeakSecret, body).Get("X-Keygate-Signature"), "sha256=")}}},
		{"HMAC: sha1=", http.Header{"X-Keygate-Signature": {strings.Replace(hmacSigned(testLeakSecret, body).Get("X-Keygate-Signature"), "sha256=", "sha1=", 1)}}},
		{"HMAC: not hex", http.Header{"X-Keygate-Signature": {"sha256=" + strings.Repeat("zz", 32)}}},
		{"HMAC: truncated", http.Header{"X-Keygate-Signature": {hmacSigned(testLeakSecret, body).Get("X-Keygate-Signature")[:40]}}},
		{"HMAC: empty", http.Header{"X-Keygate-Signature": {"sha256="}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := spy.n.Load()
			rec := e.report(body, tc.header)
			if msg := wantError(t, rec, http.StatusUnauthorized, api.CodeUnauthorized); msg != "missing or invalid report signature" {
				t.Errorf("message %q", msg)
			}
			if n := spy.n.Load() - before; n != 0 {
				t.Errorf("%d key lookups for a report whose signature failed", n)
			}
		})
	}
	if evs := e.leakedEvents(); len(evs) != 0 {
		t.Errorf("key.leaked events: %+v", evs)
	}
	e.login(key)
	// A bad signature's 401 is worth the same as any other: nothing secret
	// reaches the log.
	if strings.Contains(e.logs.String(), key) {
		t.Error("the log holds the key")
	}
}

// TestLeakedOneWayOnly: a reporter configured one way does not take
// reports signed the other way.
func TestLeakedOneWayOnly(t *testing.T) {
	t.Parallel()
	gh := newGitHubKey(t, elliptic.P256())
	file := filepath.Join(t.TempDir(), "github-keys.json")
	writeGitHubKeys(t, file, gh)
	body := reportBody("pk_junk")

	onlyHMAC := newEnv(t, withLeakHMAC())
	wantError(t, onlyHMAC.report(body, gh.sign(t, body)), http.StatusUnauthorized, api.CodeUnauthorized)
	verdicts(t, onlyHMAC.report(body, hmacSigned(testLeakSecret, body)))

	onlyGitHub := newEnv(t, withGitHubKeys(file))
	wantError(t, onlyGitHub.report(body, hmacSigned(testLeakSecret, body)), http.StatusUnauthorized, api.CodeUnauthorized)
	verdicts(t, onlyGitHub.report(body, gh.sign(t, body)))
}

// TestLeakedBadBodies: a well-signed body that is not a report is 400,
// naming what is wrong, and looks nothing up.
func TestLeakedBadBodies(t *testing.T) {
	t.Parallel()
	spy := &resolveCounter{}
	e := newEnv(t, counting(spy), withLeakHMAC())
	_, key := e.partner("Acme")
	item := func(token, typ, url, source any) map[string]any {
		m := map[string]any{}
		for k, v := range map[string]any{"token": token, "type": typ, "url": url, "source": source} {
			if v != nil {
				m[k] = v
			}
		}
		return m
	}
	js := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	tooMany := make([]string, keys.MaxLeakReports+1)
	for i := range tooMany {
		tooMany[i] = key
	}
	for _, tc := range []struct {
		name, body, field string
	}{
		{"not JSON", `[{"token":`, "body"},
		{"an object", js(item(key, "t", "u", "s")), "body"},
		{"a string", `"` + key + `"`, "body"},
		{"trailing data", reportBody(key) + `[]`, "body"},
		{"invalid UTF-8", `[{"token":"` + key + "\xff" + `","type":"t","url":"u","source":"s"}]`, "body"},
		{"too many items", reportBody(tooMany...), "body"},
		{"an item that is a string", `["` + key + `"]`, "[0]"},
		{"an item that is null", `[null]`, "[0]"},
		{"no token", js([]any{item(key, "t", "u", "s"), item(nil, "t", "u", "s")}), "[1].token"},
		{"no type", js([]any{item(key, nil, "u", "s")}), "[0].type"},
		{"no url", js([]any{item(key, "t", nil, "s")}), "[0].url"},
		{"no source", js([]any{item(key, "t", "u", nil)}), "[0].source"},
		{"a token of another case", `[{"Token":"` + key + `","type":"t","url":"u","source":"s"}]`, "[0].token"},
		{"a number for token", js([]any{item(42, "t", "u", "s")}), "[0].token"},
		{"null for url", `[{"token":"` + key + `","type":"t","url":null,"source":"s"}]`, "[0].url"},
		{"an array for source", js([]any{item(key, "t", "u", []string{"content"})}), "[0].source"},
		{"an empty token", js([]any{item("", "t", "u", "s")}), "[0].token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := spy.n.Load()
			msg := wantError(t, e.report(tc.body, hmacSigned(testLeakSecret, tc.body)), http.StatusBadRequest, api.CodeValidation)
			if !strings.HasPrefix(msg, tc.field+": ") {
				t.Errorf("message %q does not name %s", msg, tc.field)
			}
			if n := spy.n.Load() - before; n != 0 {
				t.Errorf("%d key lookups for a bad body", n)
			}
		})
	}
	e.login(key)

	// The media type is checked once the signature holds: before, a 401
	// says nothing about the body.
	body := reportBody(key)
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "application/jsonx"} {
		before := spy.n.Load()
		signed := e.do(request{method: http.MethodPost, path: leakedPath, body: body, contentType: ct, header: hmacSigned(testLeakSecret, body)})
		wantError(t, signed, http.StatusUnsupportedMediaType, api.CodeUnsupportedMedia)
		wantError(t, e.do(request{method: http.MethodPost, path: leakedPath, body: body, contentType: ct}), http.StatusUnauthorized, api.CodeUnauthorized)
		if n := spy.n.Load() - before; n != 0 {
			t.Errorf("%s: %d key lookups", ct, n)
		}
	}
	noType := httptest.NewRequest(http.MethodPost, leakedPath, strings.NewReader(body))
	noType.Header = hmacSigned(testLeakSecret, body)
	wantError(t, e.serve(noType), http.StatusUnsupportedMediaType, api.CodeUnsupportedMedia)
	e.login(key)

	// An empty report is answered with no verdicts; members keygate does
	// not know are ignored; exactly 1,000 items is a report.
	if v := verdicts(t, e.report(`[]`, hmacSigned(testLeakSecret, `[]`))); len(v) != 0 {
		t.Errorf("empty report: %+v", v)
	}
	extra := `[{"token":"pk_x","type":"t","url":"u","source":"s","found_at":"2026-06-26"}]`
	if v := verdicts(t, e.report(extra, hmacSigned(testLeakSecret, extra))); len(v) != 1 || v[0].Label != api.LabelFalsePositive {
		t.Errorf("unknown member: %+v", v)
	}
	full := reportBody(make([]string, keys.MaxLeakReports)...)
	full = strings.ReplaceAll(full, `"token":""`, `"token":"ghp_junk"`)
	if v := verdicts(t, e.report(full, hmacSigned(testLeakSecret, full))); len(v) != keys.MaxLeakReports {
		t.Errorf("%d verdicts for %d tokens", len(v), keys.MaxLeakReports)
	}
}

// TestLeakedBodyCap: a report may be larger than server.max_body_bytes, up
// to 1 MiB; above that it is 413, declared or not.
func TestLeakedBodyCap(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withLeakHMAC())
	junk := func(size int) string {
		body := `[{"token":"pk_junk","type":"t","source":"s","url":"https://example.com/` + strings.Repeat("a", size) + `"}]`
		return body[:0] + body
	}
	big := junk(200 << 10) // over the default 64 KiB server.max_body_bytes
	verdicts(t, e.report(big, hmacSigned(testLeakSecret, big)))

	huge := junk(server.LeakedMaxBodyBytes)
	wantError(t, e.report(huge, hmacSigned(testLeakSecret, huge)), http.StatusRequestEntityTooLarge, api.CodePayloadTooLarge)
	// Without a Content-Length (chunked), the cap cuts it off while it is read.
	req := httptest.NewRequest(http.MethodPost, leakedPath, strings.NewReader(huge))
	req.ContentLength = -1
	req.Header = hmacSigned(testLeakSecret, huge)
	req.Header.Set("Content-Type", "application/json")
	wantError(t, e.serve(req), http.StatusRequestEntityTooLarge, api.CodePayloadTooLarge)
	// Other routes keep server.max_body_bytes.
	wantError(t, e.post("/api/v1/auth/login", `{"apiKey":"`+strings.Repeat("a", 100<<10)+`"}`, ""), http.StatusRequestEntityTooLarge, api.CodePayloadTooLarge)
}

// TestLeakedJunkAndUnknownTokens: tokens that fail a keygate key's format
// or checksum are false positives without a lookup; a well-formed key that
// is none of this keygate's is a false positive after one.
func TestLeakedJunkAndUnknownTokens(t *testing.T) {
	t.Parallel()
	spy := &resolveCounter{}
	e := newEnv(t, counting(spy), withLeakHMAC())
	_, key := e.partner("Acme")
	junk := []string{
		"pk_nope",
		flip(key, len(key)-1), // checksum broken
		flip(key, 5),          // body changed, checksum no longer matches
		key[:len(key)-1],      // truncated
		"rt_" + key[3:],       // another prefix
		"ghp_16C7e42F292c6912E7710c838347Ae178B4a", // someone else's token
		strings.ToUpper(key[:3]) + key[3:],
	}
	before := spy.n.Load()
	body := reportBody(junk...)
	got := verdicts(t, e.report(body, hmacSigned(testLeakSecret, body)))
	if n := spy.n.Load() - before; n != 0 {
		t.Errorf("%d key lookups for junk", n)
	}
	if len(got) != len(junk) {
		t.Fatalf("%d verdicts for %d tokens", len(got), len(junk))
	}
	for i, v := range got {
		want := api.LeakVerdict{TokenHash: tokenHash(junk[i]), TokenType: "keygate_api_key", Label: api.LabelFalsePositive}
		if v != want {
			t.Errorf("token %d: %+v, want %+v", i, v, want)
		}
	}

	unknown := keys.NewAPIKey(keys.CompanyKeyPrefix).Reveal()
	body = reportBody(unknown)
	before = spy.n.Load()
	got = verdicts(t, e.report(body, hmacSigned(testLeakSecret, body)))
	if n := spy.n.Load() - before; n != 1 {
		t.Errorf("%d key lookups for one well-formed key, want 1", n)
	}
	if want := (api.LeakVerdict{TokenHash: tokenHash(unknown), TokenType: "keygate_api_key", Label: api.LabelFalsePositive}); len(got) != 1 || got[0] != want {
		t.Errorf("unknown key: %+v, want %+v", got, want)
	}
	if evs := e.leakedEvents(); len(evs) != 0 {
		t.Errorf("key.leaked events for no key: %+v", evs)
	}
	e.login(key)
	if got := e.metric(`keygate_leaked_keys_total{label="false_positive"}`); got != fmt.Sprint(len(junk)+1) {
		t.Errorf("false positives counted: %s, want %d", got, len(junk)+1)
	}
	if got := e.metric(`keygate_leaked_keys_total{label="true_positive"}`); got != "0" {
		t.Errorf("true positives counted: %s, want 0", got)
	}
}

// TestLeakedKeysAreRevoked: a live partner key and a live company key
// reported by GitHub are true positives and revoked at once: they no
// longer log in, their refresh tokens are refused, and so are their access
// tokens; each revocation is one key.leaked event with where it was found.
// The same report again answers the same and changes nothing.
func TestLeakedKeysAreRevoked(t *testing.T) {
	t.Parallel()
	gh := newGitHubKey(t, elliptic.P256())
	file := filepath.Join(t.TempDir(), "github-keys.json")
	writeGitHubKeys(t, file, newGitHubKey(t, elliptic.P256()), gh)
	spy := &resolveCounter{}
	e := newEnv(t, counting(spy), withGitHubKeys(file))
	a := e.tenant("Acme")
	bystander := e.tenant("Bolt")
	co := e.createCompany(a.pair.JWT, `{"name":"Globex"}`)
	coPair := e.login(co.APIKey)
	partnerKeyID := partnerKeyID(t, e, a.partner.ID)
	// Another session of the partner's key, refreshed once: its family's
	// live token is the successor.
	rotated := e.refresh(e.login(a.apiKey).RefreshToken)

	body := reportBody(a.apiKey, "pk_junk", co.APIKey, a.apiKey)
	// No time passes: what follows must see the revocation at once, not
	// after the cache's next look at the key epoch.
	at := e.clock.Now()
	first := e.report(body, gh.sign(t, body))
	got := verdicts(t, first)
	want := []api.LeakVerdict{
		{TokenHash: tokenHash(a.apiKey), TokenType: "keygate_api_key", Label: api.LabelTruePositive},
		{TokenHash: tokenHash("pk_junk"), TokenType: "keygate_api_key", Label: api.LabelFalsePositive},
		{TokenHash: tokenHash(co.APIKey), TokenType: "keygate_api_key", Label: api.LabelTruePositive},
		{TokenHash: tokenHash(a.apiKey), TokenType: "keygate_api_key", Label: api.LabelTruePositive},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("verdicts %+v, want %+v", got, want)
	}

	for _, k := range []string{a.apiKey, co.APIKey} {
		wantError(t, e.post("/api/v1/auth/login", loginBody(k), ""), http.StatusUnauthorized, api.CodeUnauthorized)
	}
	for _, rt := range []string{a.pair.RefreshToken, coPair.RefreshToken, rotated.RefreshToken} {
		wantError(t, e.post("/api/v1/auth/refresh", refreshBody(rt), ""), http.StatusUnauthorized, api.CodeUnauthorized)
	}
	for _, jwt := range []string{a.pair.JWT, coPair.JWT, rotated.JWT} {
		wantError(t, e.get("/api/v1/auth/me", jwt), http.StatusUnauthorized, api.CodeUnauthorized)
	}
	wantStatus(t, e.get("/api/v1/auth/me", bystander.pair.JWT), http.StatusOK)
	e.refresh(bystander.pair.RefreshToken)

	evs := e.leakedEvents()
	if len(evs) != 2 {
		t.Fatalf("key.leaked events: %+v, want one per key", evs)
	}
	for _, ev := range evs {
		wantEv := keys.AuditEvent{
			ID: ev.ID, At: at, ActorType: keys.ActorReporter, ActorID: keys.ReporterGitHub, Action: "key.leaked",
			TargetType: "key", Target: ev.Target, Addr: "192.0.2.10", Outcome: keys.OutcomeSuccess,
		}
		switch ev.Target {
		case partnerKeyID:
			wantEv.Detail = "source=content url=https://github.com/octocat/leaks/blob/main/secret-0.txt"
		case co.KeyID:
			wantEv.Detail = "source=content url=https://github.com/octocat/leaks/blob/main/secret-2.txt"
		}
		if !ev.At.Equal(wantEv.At) {
			t.Errorf("event at %s, want %s", ev.At, wantEv.At)
		}
		ev.At = wantEv.At
		if ev != wantEv {
			t.Errorf("event %+v, want %+v", ev, wantEv)
		}
	}
	for _, k := range []keys.Owner{keys.PartnerOwner(a.partner.ID), keys.CompanyOwner(a.partner.ID, co.ID)} {
		ks, err := e.keys.ListKeys(t.Context(), k)
		if err != nil || len(ks) != 1 || ks[0].RevokedAt == nil || !ks[0].RevokedAt.Equal(at) {
			t.Errorf("keys of %+v: %+v %v, want revoked at the report", k, ks, err)
		}
	}
	if got := e.metric(`keygate_leaked_keys_total{label="true_positive"}`); got != "3" {
		t.Errorf("true positives counted: %s, want 3", got)
	}

	// Again, later: the same answer, no second event, the first revocation
	// time kept.
	e.clock.Advance(time.Hour)
	trail := len(e.audit())
	again := e.report(body, gh.sign(t, body))
	wantStatus(t, again, http.StatusOK)
	if again.Body.String() != first.Body.String() {
		t.Errorf("second answer %s, first %s", again.Body, first.Body)
	}
	if n := len(e.audit()); n != trail {
		t.Errorf("the second report added %d audit events", n-trail)
	}
	ks, err := e.keys.ListKeys(t.Context(), keys.PartnerOwner(a.partner.ID))
	if err != nil || !ks[0].RevokedAt.Equal(at) {
		t.Errorf("after the second report: %+v %v", ks, err)
	}

	// Neither the tokens nor a key reach the log; the key ids do.
	logs := e.logs.String()
	for _, secret := range []string{a.apiKey, co.APIKey} {
		if strings.Contains(logs, secret) {
			t.Error("the log holds a reported key")
		}
	}
	if !strings.Contains(logs, `"msg":"leaked key reported"`) || !strings.Contains(logs, partnerKeyID) {
		t.Errorf("no log line names the leaked key %s", partnerKeyID)
	}
}

// TestLeakedAlreadyRevoked: a key revoked before it was reported is a true
// positive, and the report adds no event: the trail keeps the revocation
// that counted.
func TestLeakedAlreadyRevoked(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withLeakHMAC())
	p, key := e.partner("Acme")
	if err := e.keys.RevokeKey(t.Context(), keys.Operator, keys.PartnerOwner(p.ID), partnerKeyID(t, e, p.ID)); err != nil {
		t.Fatal(err)
	}
	trail := len(e.audit())
	body := reportBody(key)
	got := verdicts(t, e.report(body, hmacSigned(testLeakSecret, body)))
	if len(got) != 1 || got[0].Label != api.LabelTruePositive {
		t.Errorf("verdicts %+v, want one true_positive", got)
	}
	if n := len(e.audit()); n != trail {
		t.Errorf("the report of a revoked key added %d audit events", n-trail)
	}
}

// TestLeakedDisabledOwner: the key of a disabled partner is a true
// positive and revoked as well, so that enabling the owner again (by
// hand) would not bring it back.
func TestLeakedDisabledOwner(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withLeakHMAC())
	p, key := e.partner("Acme")
	if err := e.keys.DisablePartner(t.Context(), keys.Operator, p.ID); err != nil {
		t.Fatal(err)
	}
	body := reportBody(key)
	if got := verdicts(t, e.report(body, hmacSigned(testLeakSecret, body))); got[0].Label != api.LabelTruePositive {
		t.Errorf("verdicts %+v", got)
	}
	ks, err := e.keys.ListKeys(t.Context(), keys.PartnerOwner(p.ID))
	if err != nil || ks[0].RevokedAt == nil {
		t.Errorf("key of the disabled partner: %+v %v, want revoked", ks, err)
	}
	if evs := e.leakedEvents(); len(evs) != 1 || evs[0].ActorID != keys.ReporterHMAC {
		t.Errorf("key.leaked events %+v, want one by the HMAC reporter", evs)
	}
}

// TestLeakedReportDetailIsSanitized: what a reporter says about where it
// found a key reaches the audit trail bounded and without control
// characters.
func TestLeakedReportDetailIsSanitized(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withLeakHMAC())
	_, key := e.partner("Acme")
	items := []map[string]string{{
		"token": key, "type": "t",
		"source": "content\n2026-06-26 forged line\x00",
		"url":    "https://example.com/a b\r\n\x1b[31m" + strings.Repeat("x", 2000),
	}}
	b, _ := json.Marshal(items)
	verdicts(t, e.report(string(b), hmacSigned(testLeakSecret, string(b))))
	evs := e.leakedEvents()
	if len(evs) != 1 {
		t.Fatalf("events %+v", evs)
	}
	d := evs[0].Detail
	if strings.ContainsFunc(d, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		t.Errorf("detail holds control characters: %q", d)
	}
	if n := len([]rune(d)); n > 600 {
		t.Errorf("detail is %d characters: %q", n, d)
	}
	if !regexp.MustCompile(`^source=content\S+ url=https://example\.com/a\S+\.\.\.$`).MatchString(d) {
		t.Errorf("detail %q", d)
	}
}

// TestLeakedGitHubKeysReread: a change to the public-keys file takes
// effect without a restart; one that does not parse keeps the keys read
// before and says so in the log.
func TestLeakedGitHubKeysReread(t *testing.T) {
	t.Parallel()
	a, b := newGitHubKey(t, elliptic.P256()), newGitHubKey(t, elliptic.P256())
	file := filepath.Join(t.TempDir(), "github-keys.json")
	writeGitHubKeys(t, file, a)
	e := newEnv(t, withGitHubKeys(file))
	body := reportBody("pk_junk")
	verdicts(t, e.report(body, a.sign(t, body)))
	wantError(t, e.report(body, b.sign(t, body)), http.StatusUnauthorized, api.CodeUnauthorized)

	writeGitHubKeys(t, file, a, b) // GitHub rotates: b is current, a still listed
	verdicts(t, e.report(body, b.sign(t, body)))
	verdicts(t, e.report(body, a.sign(t, body)))

	writeGitHubKeys(t, file, b) // a is withdrawn
	wantError(t, e.report(body, a.sign(t, body)), http.StatusUnauthorized, api.CodeUnauthorized)

	if err := os.WriteFile(file, []byte(`{"public_keys":[`), 0o644); err != nil {
		t.Fatal(err)
	}
	verdicts(t, e.report(body, b.sign(t, body)))
	verdicts(t, e.report(body, b.sign(t, body)))
	if n := strings.Count(e.logs.String(), "cannot be read: keeping the keys read before"); n != 1 {
		t.Errorf("%d warnings of the unreadable file, want 1", n)
	}
}

// TestLeakedGitHubKeysFileRefused: keygate does not start on a public-keys
// file it cannot use, and says which setting is wrong.
func TestLeakedGitHubKeysFileRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, data string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	p384 := filepath.Join(dir, "p384.json")
	writeGitHubKeys(t, p384, newGitHubKey(t, elliptic.P384()))
	for _, tc := range []struct{ name, path, want string }{
		{"missing", filepath.Join(dir, "none.json"), "no such file"},
		{"not JSON", write("junk.json", "-----BEGIN PUBLIC KEY-----"), "is not GitHub's public-keys JSON"},
		{"no keys", write("empty.json", `{"public_keys":[]}`), "holds no ECDSA P-256 public key"},
		{"not PEM", write("raw.json", `{"public_keys":[{"key_identifier":"x","key":"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE","is_current":true}]}`), "holds no ECDSA P-256 public key"},
		{"P-384 only", p384, "holds no ECDSA P-256 public key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := gateway.DefaultConfig()
			cfg.Leaks.GitHubPublicKeysFile = tc.path
			_, err := keys.LoadGitHubKeys(tc.path, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadGitHubKeys: %v, want %q", err, tc.want)
			}
			_, err = gateway.New(t.Context(), cfg, nil, tokens.MasterKey{}, gateway.Options{})
			if err == nil || !strings.HasPrefix(err.Error(), "leaks.github_public_keys_file: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("gateway.New: %v", err)
			}
		})
	}
}

// TestGoldenLeaked pins the exact JSON of the leaked-key report's answers,
// as TestGoldenResponses does the rest of the API's.
func TestGoldenLeaked(t *testing.T) {
	e := newEnv(t, withLeakHMAC())
	var z normalizer
	_, key := e.partner("Acme")
	body := reportBody(key, "pk_junk")
	rec := e.report(body, hmacSigned(testLeakSecret, body))
	// The live key's hash changes with the key; the junk's does not.
	rec.Body = bytes.NewBufferString(strings.Replace(rec.Body.String(), tokenHash(key), "<sha256 of the key>", 1))
	golden(t, &z, "leaked_report", rec)
	golden(t, &z, "error_leaked_signature", e.report(body, nil))
	golden(t, &z, "error_leaked_validation", e.report(`[{}]`, hmacSigned(testLeakSecret, `[{}]`)))
}

// signReport signs a generated report as the fuzzing gateway's HMAC
// reporter does, or now and then with another secret or not at all.
func (r *fuzzRun) signReport(h http.Header, body []byte) {
	switch r.in.intn(8) {
	case 6:
		h.Del("X-Keygate-Signature")
	case 7:
		h.Set("X-Keygate-Signature", hmacSigned(testLeakSecret+"!", string(body)).Get("X-Keygate-Signature"))
	default:
		h.Set("X-Keygate-Signature", hmacSigned(testLeakSecret, string(body)).Get("X-Keygate-Signature"))
	}
}
