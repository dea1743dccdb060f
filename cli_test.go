package main_test

import (
	"bytes"
	"errors"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

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

type createdKey struct {
	PartnerID string   `json:"partnerId"`
	KeyID     string   `json:"keyId"`
	APIKey    string   `json:"apiKey"`
	CreatedAt string   `json:"createdAt"`
	Name      *string  `json:"name"`
	Scopes    []string `json:"scopes"`
	ExpiresAt *string  `json:"expiresAt"`
}

// ---------------------------------------------------------------------------
// 1. The admin CLI: partners, keys, audit

func TestCLIPartnersKeysAndAudit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := e2eEnv()
	var secrets []string

	// partner create --json prints exactly the documented fields.
	out := mustKeygate(t, dir, env, "partner", "create", "--name", "Acme", "--json")
	var fields map[string]any
	decodeStrictJSON(t, out, &fields)
	if got := slices.Sorted(maps.Keys(fields)); !slices.Equal(got, []string{"apiKey", "createdAt", "id", "keyExpiresAt", "keyId", "keyName", "keyScopes", "name", "scopes"}) {
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
	if lines := slices.Collect(strings.Lines(out)); len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "ID NAME STATUS CREATED SCOPES" ||
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
	// Logins and /auth/me share the server's cache of resolved keys, which
	// learns of another process's change within keys.keyCheckInterval
	// (10 ms): the CLI takes longer than that to run, so its change is
	// seen by the next request; the check below allows for a slow machine.
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

// TestVersion: keygate version needs no configuration or database.
func TestVersion(t *testing.T) {
	t.Parallel()
	res := runKeygate(t, t.TempDir(), e2eEnv("KEYGATE_LOG_LEVEL=nonsense"), "version")
	if res.code != 0 || !regexp.MustCompile(`^keygate \S+ go1\.\d+`).MatchString(res.stdout) || res.stderr != "" {
		t.Fatalf("keygate version: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
}
