package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBackupAndRestoreDrill: keygate backup copies the live database while
// the server runs, checks it and says what it holds, refuses to overwrite
// a file, and never copies the master key; the restore drill of
// docs/operations.md (the copy at a new path, keygate started on it with
// the master key) then serves the same keys and refresh tokens.
func TestBackupAndRestoreDrill(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := e2eEnv()
	acme := createPartner(t, dir, env, "Acme")
	srv := startServer(t, dir, env)
	pair := srv.mustLogin(t, acme.APIKey)
	code, _, body := srv.do(t, http.MethodPost, "/api/v1/companies", map[string]string{"name": "Globex"}, "R-Auth", pair.JWT)
	if code != http.StatusCreated {
		t.Fatalf("creating a company: %d %s", code, body)
	}
	var company struct{ ID, APIKey string }
	if err := json.Unmarshal(body, &company); err != nil {
		t.Fatal(err)
	}

	backup := filepath.Join(t.TempDir(), "keygate-backup.db")
	out := mustKeygate(t, dir, env, "backup", backup)
	for _, want := range []string{"integrity check: ok", "1  partners", "1  companies", "2  API keys", "1  signing keys", "master key"} {
		if !strings.Contains(out, want) {
			t.Errorf("backup output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(backup + ".partial"); !os.IsNotExist(err) {
		t.Errorf("backup left its partial file behind: %v", err)
	}
	before, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	again := runKeygate(t, dir, env, "backup", backup)
	assertOneLineError(t, again, "exists")
	if after, _ := os.ReadFile(backup); !bytes.Equal(after, before) {
		t.Error("a refused backup changed the existing file")
	}
	assertOneLineError(t, runKeygate(t, dir, env, "backup"), "arg")
	master, err := os.ReadFile(filepath.Join(dir, "data", "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	if m := bytes.TrimSpace(master); len(m) < 32 || bytes.Contains(before, m) {
		t.Errorf("the backup holds the master key (or the key file is odd: %d bytes)", len(m))
	}
	srv.stop(t)

	// The drill: restore to a new path, start keygate on it with the
	// master key, verify a login and a refresh.
	restored := t.TempDir()
	if err := os.MkdirAll(filepath.Join(restored, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	copyFile(t, backup, filepath.Join(restored, "data", "keygate.db"))
	if err := os.WriteFile(filepath.Join(restored, "data", "master.key"), master, 0o600); err != nil {
		t.Fatal(err)
	}
	srv2 := startServer(t, restored, env)
	srv2.mustLogin(t, acme.APIKey)
	srv2.mustLogin(t, company.APIKey)
	if code, _, body := srv2.refresh(t, pair.RefreshToken); code != http.StatusOK {
		t.Errorf("refresh of a token issued before the backup, on the restored copy: %d %s", code, body)
	}
}

// TestAuditExport: keygate audit export streams the trail as JSON lines,
// oldest first, from --since (a duration or a timestamp) on.
func TestAuditExport(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := e2eEnv()
	acme := createPartner(t, dir, env, "Acme")
	mustKeygate(t, dir, env, "partner", "key", "create", "--partner", acme.ID)
	mustKeygate(t, dir, env, "partner", "disable", "--partner", acme.ID)

	lines := func(args ...string) []auditEvent {
		t.Helper()
		out := mustKeygate(t, dir, env, append([]string{"audit", "export"}, args...)...)
		var evs []auditEvent
		sc := bufio.NewScanner(strings.NewReader(out))
		for sc.Scan() {
			var e auditEvent
			decodeStrictJSON(t, sc.Text(), &e)
			evs = append(evs, e)
		}
		return evs
	}
	all := lines("--json")
	if len(all) != 4 {
		t.Fatalf("audit export: %d events, want 4 (partner.created, two key.created, partner.disabled): %+v", len(all), all)
	}
	for i, e := range all {
		parseStamp(t, e.At)
		if e.ID == 0 || i > 0 && (e.At < all[i-1].At || e.At == all[i-1].At && e.ID <= all[i-1].ID) {
			t.Errorf("event %d (%s id %d) is out of order", i, e.At, e.ID)
		}
	}
	if got := all[len(all)-1]; got.Action != "partner.disabled" || got.Target != acme.ID {
		t.Errorf("last event %+v, want partner.disabled of %s", got, acme.ID)
	}
	if got := lines("--since", "1h", "--json"); len(got) != 4 {
		t.Errorf("--since 1h: %d events, want 4", len(got))
	}
	if got := lines("--since", all[3].At); len(got) != 1 || got[0].Action != "partner.disabled" {
		t.Errorf("--since the last event's time: %+v, want that event alone", got)
	}
	if got := lines("--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)); len(got) != 0 {
		t.Errorf("--since an hour from now: %d events", len(got))
	}
	assertOneLineError(t, runKeygate(t, dir, env, "audit", "export", "--since", "yesterday"), "--since")
	assertOneLineError(t, runKeygate(t, dir, env, "audit", "export", "--json=false"), "JSON lines")
}

// TestDiskFullRecovery: keygate on a small volume that fills up answers
// writes with 503, and once space is freed it recovers by itself (no one
// polls /ready here) and truncates its WAL, so that the WAL does not grow
// back into the space just freed. It needs a tmpfs mount, so root.
func TestDiskFullRecovery(t *testing.T) {
	t.Parallel()
	vol := t.TempDir()
	if err := mountTmpfs(vol, "8m"); err != nil {
		t.Skipf("skipping: this test mounts a small tmpfs and could not: %v", err)
	}
	t.Cleanup(func() { _ = unmount(vol) })
	dir := t.TempDir()
	env := e2eEnv("KEYGATE_DATABASE_PATH=" + filepath.Join(vol, "keygate.db"))
	acme := createPartner(t, dir, env, "Acme")
	srv := startServer(t, dir, env)
	pair := srv.mustLogin(t, acme.APIKey)
	createCompany := func(i int) int {
		code, _, _ := srv.do(t, http.MethodPost, "/api/v1/companies", map[string]string{"name": fmt.Sprintf("company %d %s", i, strings.Repeat("x", 150))}, "R-Auth", pair.JWT)
		return code
	}
	if code := createCompany(0); code != http.StatusCreated {
		t.Fatalf("creating a company: %d", code)
	}

	// Fill the volume, then write until SQLite finds no room.
	filler := filepath.Join(vol, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()
	full := false
	for i := 1; i < 5000 && !full; i++ {
		switch code := createCompany(i); code {
		case http.StatusCreated:
		case http.StatusServiceUnavailable:
			full = true
		default:
			t.Fatalf("creating a company on a full volume: %d, want 201 or 503", code)
		}
	}
	if !full {
		t.Fatal("the volume never filled up")
	}
	if code, _, _ := srv.do(t, http.MethodGet, "/ready", nil); code != http.StatusServiceUnavailable {
		t.Errorf("/ready on a full volume: %d, want 503", code)
	}
	srv.mustLogin(t, acme.APIKey) // a login writes nothing

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	wal := filepath.Join(vol, "keygate.db-wal")
	if !eventually(t, 20*time.Second, func() bool {
		fi, err := os.Stat(wal)
		return err == nil && fi.Size() == 0
	}) {
		fi, err := os.Stat(wal)
		t.Fatalf("WAL not truncated after space was freed: %v %v\n%s", fi, err, srv.Logs())
	}
	if code, _, _ := srv.do(t, http.MethodGet, "/ready", nil); code != http.StatusOK {
		t.Errorf("/ready after space was freed: %d, want 200", code)
	}
	if code := createCompany(9999); code != http.StatusCreated {
		t.Errorf("creating a company after space was freed: %d, want 201", code)
	}
	if !strings.Contains(srv.Logs(), "database writes working again") {
		t.Errorf("no recovery in the log:\n%s", srv.Logs())
	}
}

// TestFailureSprayAndLockedOutAddress: failed logins sprayed from many
// client addresses add at most one audit event per address (and minute),
// not one per attempt; and an address that has spent its failure budget,
// as anyone behind the same NAT as an attacker would, still logs in with a
// valid key keygate knows, while junk and unknown keys from it get 429.
func TestFailureSprayAndLockedOutAddress(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := e2eEnv()
	acme := createPartner(t, dir, env, "Acme")
	srv := startServer(t, dir, env)
	srv.mustLogin(t, acme.APIKey) // from 127.0.0.1: keygate now knows the key

	const addrs = 1500
	for i := range addrs {
		c := clientFrom(fmt.Sprintf("127.1.%d.%d", i/250, i%250+1))
		for range 3 {
			code := postLogin(t, c, srv.url, fmt.Sprintf("pk_sprayed-junk-%d", i))
			if code != http.StatusUnauthorized {
				t.Fatalf("sprayed login %d: %d, want 401", i, code)
			}
		}
		c.CloseIdleConnections()
	}

	nat := clientFrom("127.2.0.1")
	refused := 0
	for range 40 {
		if code := postLogin(t, nat, srv.url, "pk_junk-from-the-nat"); code == http.StatusTooManyRequests {
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("40 failed logins from one address were never limited")
	}
	if code := postLogin(t, nat, srv.url, acme.APIKey); code != http.StatusOK {
		t.Errorf("a valid, known partner key from a locked-out address: %d, want 200", code)
	}
	other := createPartner(t, dir, env, "Never logged in")
	if code := postLogin(t, nat, srv.url, other.APIKey); code != http.StatusTooManyRequests {
		t.Errorf("a key keygate has not seen, from a locked-out address: %d, want 429", code)
	}
	if code := postLogin(t, nat, srv.url, "pk_junk-from-the-nat"); code != http.StatusTooManyRequests {
		t.Errorf("junk from a locked-out address after a valid login: %d, want 429", code)
	}
	srv.stop(t) // writes the failure counts of the current minute

	evs, _ := auditEvents(t, dir, env, "--since", "1h")
	perAddr := map[string]int{}
	failures := 0
	for _, e := range evs {
		if e.Action == "login" && e.Outcome == "failure" {
			failures++
			perAddr[e.ClientAddr]++
		}
	}
	// A minute may end during the spray: then an address has two events.
	if failures > 2*(addrs+1) || failures < addrs+1 {
		t.Errorf("%d failed-login events for %d attempts from %d addresses, want about one per address", failures, 3*addrs+40, addrs+1)
	}
	for addr, n := range perAddr {
		if n > 2 {
			t.Errorf("address %s has %d failure events, want at most one per minute", addr, n)
		}
	}
}

// clientFrom is an HTTP client whose connections come from a loopback
// address of its own (Linux routes all of 127.0.0.0/8 to lo).
func clientFrom(addr string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(addr)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
}

func postLogin(t *testing.T, c *http.Client, base, apiKey string) int {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"apiKey": apiKey})
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, base+"/api/v1/auth/login", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestAuditRetentionUnderLoad: with a short audit.retention, housekeeping
// keeps deleting what is older while logins keep adding events, so the
// trail stays bounded by what retention (plus a housekeeping interval)
// holds; events younger than retention stay.
func TestAuditRetentionUnderLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := e2eEnv("KEYGATE_AUDIT_RETENTION=2s", "KEYGATE_TOKENS_HOUSEKEEPING_INTERVAL=500ms", "KEYGATE_RATELIMIT_LOGIN_PER_KEY_PER_MINUTE=0")
	acme := createPartner(t, dir, env, "Acme")
	srv := startServer(t, dir, env)
	start := time.Now()
	logins := 0
	for time.Since(start) < 6*time.Second {
		srv.mustLogin(t, acme.APIKey)
		logins++
	}
	// A login's event reaches the table within a second (the batch), and
	// lives at most retention plus one housekeeping interval: about 3.5 s
	// of logins at most, of the 6 s sent.
	perSecond := float64(logins) / time.Since(start).Seconds()
	evs, _ := auditEvents(t, dir, env, "--since", "1h")
	if n := float64(len(evs)); n > 4*perSecond || n == 0 {
		t.Errorf("%d audit events after %d logins in 6 s with a 2 s retention, want at most about %.0f", len(evs), logins, 4*perSecond)
	}
	for _, e := range evs {
		if e.Action == "partner.created" {
			t.Errorf("the partner's creation, older than retention, is still in the trail")
		}
	}
	if !strings.Contains(srv.Logs(), "housekeeping deleted audit events") {
		t.Errorf("no housekeeping of the audit trail in the log")
	}
}
