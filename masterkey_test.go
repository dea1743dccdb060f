package main_test

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"keygate/keys"
)

// ---------------------------------------------------------------------------
// keygate master-key rotate: everything sealed under the master key is
// re-sealed under a new one, and every token issued before keeps working.

// newMasterKeyFile writes a fresh random master key to a file of its own
// and returns the file and the key.
func newMasterKeyFile(t *testing.T) (path, key string) {
	t.Helper()
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	key = base64.RawURLEncoding.EncodeToString(b)
	path = filepath.Join(t.TempDir(), "new-master.key")
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, key
}

func readMasterKey(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "data", "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// sealedRows is every seal the SQLite database at dir holds, for "nothing
// changed".
func sealedRows(t *testing.T, dir string) string {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "data", "keygate.db")+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT kid, hex(sealed) FROM signing_keys UNION ALL SELECT name, hex(sealed) FROM sealed_secrets ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out strings.Builder
	for rows.Next() {
		var name, sealed string
		if err := rows.Scan(&name, &sealed); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "%s %s\n", name, sealed)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// rotationWarnings counts the server's warnings that its reload met keys
// sealed under another master key, and fails on any error its reloads
// logged or a secret in them.
func rotationWarnings(t *testing.T, s *e2eServer, secrets ...string) int {
	t.Helper()
	n := 0
	for line := range strings.Lines(s.Logs()) {
		var rec struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		if strings.Contains(rec.Msg, "signing keys") && rec.Level != "WARN" {
			t.Errorf("a reload logged at %s: %s", rec.Level, line)
		}
		if rec.Level == "WARN" && strings.Contains(rec.Msg, "master key") {
			n++
			assertNoSecrets(t, secrets, map[string]string{"reload warning": line})
		}
	}
	return n
}

// waitForWarnings waits until s has warned of the rotated master key n
// times: n reloads.
func waitForWarnings(t *testing.T, s *e2eServer, n int, secrets ...string) {
	t.Helper()
	if !eventually(t, 20*time.Second, func() bool { return rotationWarnings(t, s, secrets...) >= n }) {
		t.Fatalf("the server warned %d times of the rotated master key, want %d\n%s", rotationWarnings(t, s, secrets...), n, s.Logs())
	}
}

// mustRefresh refreshes rt and returns the pair.
func (s *e2eServer) mustRefresh(t *testing.T, what, rt string) tokenPair {
	t.Helper()
	code, pair, body := s.refresh(t, rt)
	if code != http.StatusOK {
		t.Fatalf("refresh %s: %d %s", what, code, body)
	}
	return pair
}

// serveFails runs keygate serve, which must refuse to start with one line.
func serveFails(t *testing.T, dir string, env []string, want ...string) {
	t.Helper()
	assertOneLineError(t, runKeygate(t, dir, append(env, "KEYGATE_SERVER_ADDR=127.0.0.1:0"), "serve"), want...)
}

// TestMasterKeyRotate: with the master key in data/master.key, a partner's
// login and refresh tokens of both forms, two signing keys; the rotation
// re-seals them all, replaces the key file, and leaves a running server
// serving (warning at each reload) until it is restarted with the new key,
// which serves everything issued before. The old key then starts nothing.
func TestMasterKeyRotate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := e2eEnv("KEYGATE_TOKENS_KEY_RELOAD_INTERVAL=200ms", "KEYGATE_RATELIMIT_LOGIN_FAILURES_PER_MINUTE=0")
	p := createPartner(t, dir, env, "Acme")
	srv := startServer(t, dir, env)
	oldKey := readMasterKey(t, dir)

	first := srv.mustLogin(t, p.APIKey)
	later := srv.mustRefresh(t, "a login's token", first.RefreshToken)                       // generation 1
	unused := srv.mustLogin(t, p.APIKey)                                                     // generation 0, for after the restart
	forOld := srv.mustRefresh(t, "a login's token", srv.mustLogin(t, p.APIKey).RefreshToken) // for the old server
	out := mustKeygate(t, dir, env, "signing-key", "rotate")
	if !strings.Contains(out, "new signing key") {
		t.Fatalf("signing-key rotate: %q", out)
	}
	if !eventually(t, 20*time.Second, func() bool { set, _ := srv.jwks(t); return len(set.Keys) == 2 }) {
		t.Fatal("the server did not load the second signing key")
	}
	jwksBefore, _ := srv.jwks(t)
	before := sealedRows(t, dir)
	if strings.Count(before, "\n") != 3 {
		t.Fatalf("sealed rows before the rotation:\n%s, want two signing keys and the refresh-token key", before)
	}

	newFile, newKey := newMasterKeyFile(t)
	out = mustKeygate(t, dir, env, "master-key", "rotate", "--new-key-file", newFile)
	for _, want := range []string{"re-sealed 2 signing keys and 1 sealed secrets", filepath.Join("data", "master.key") + " now holds the new master key", "Restart every keygate server"} {
		if !strings.Contains(out, want) {
			t.Errorf("master-key rotate output lacks %q:\n%s", want, out)
		}
	}
	secrets := []string{oldKey, newKey, p.APIKey, first.RefreshToken, later.RefreshToken, unused.RefreshToken}
	assertNoSecrets(t, secrets, map[string]string{"master-key rotate output": out})
	if got := readMasterKey(t, dir); got != newKey {
		t.Fatal("data/master.key does not hold the new key")
	}
	if info, err := os.Stat(filepath.Join(dir, "data", "master.key")); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("data/master.key after the rotation: %v, %v; want mode 0600", info.Mode(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "data", ".keygate-key-*")); len(left) != 0 {
		t.Errorf("the rotation left %v behind", left)
	}
	after := sealedRows(t, dir)
	if after == before || strings.Count(after, "\n") != 3 {
		t.Fatalf("sealed rows after the rotation:\n%s\nbefore:\n%s", after, before)
	}

	// The running server, still with the old key, warns at each reload
	// and keeps serving what it loaded.
	waitForWarnings(t, srv, 2, oldKey, newKey)
	pair := srv.mustLogin(t, p.APIKey)
	mustJoseVerify(t, pair.JWT, jose.ES256, jwksBefore, nil, "keygate", "r-auth")
	srv.mustRefresh(t, "a token on the old server", forOld.RefreshToken)
	if set, _ := srv.jwks(t); len(set.Keys) != 2 {
		t.Fatalf("the old server publishes %d keys after the rotation, want 2", len(set.Keys))
	}
	srv.stop(t)
	assertNoSecrets(t, secrets, map[string]string{"old server's log": srv.Logs()})

	// Restarted with the new key: everything issued before works.
	srv = startServer(t, dir, env)
	set, _ := srv.jwks(t)
	if fmt.Sprint(kids(set)) != fmt.Sprint(kids(jwksBefore)) {
		t.Fatalf("JWKS after the restart %v, before %v", kids(set), kids(jwksBefore))
	}
	mustJoseVerify(t, first.JWT, jose.ES256, set, nil, "keygate", "r-auth")
	srv.mustRefresh(t, "a later token issued before the rotation", later.RefreshToken)
	srv.mustRefresh(t, "a login's token issued before the rotation", unused.RefreshToken)
	pair = srv.mustLogin(t, p.APIKey)
	mustJoseVerify(t, pair.JWT, jose.ES256, set, nil, "keygate", "r-auth")
	if code, _ := srv.me(t, "R-Auth", pair.JWT); code != http.StatusOK {
		t.Fatalf("me with a new JWT: %d", code)
	}
	srv.stop(t)
	if rotationWarnings(t, srv) != 0 {
		t.Errorf("the restarted server warned of the master key:\n%s", srv.Logs())
	}

	// The old key starts nothing any more, from the file or the environment.
	if err := os.WriteFile(filepath.Join(dir, "data", "master.key"), []byte(oldKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	serveFails(t, dir, env, "wrong master key")
	serveFails(t, dir, append(env, "KEYGATE_TOKENS_MASTER_KEY="+oldKey), "wrong master key")

	// Run again with the old key in place (as after an interruption between
	// the commit and the file's replacement): it only replaces the file.
	out = mustKeygate(t, dir, env, "master-key", "rotate", "--new-key-file", newFile)
	if !strings.Contains(out, "sealed under the new master key already") || readMasterKey(t, dir) != newKey {
		t.Fatalf("master-key rotate after an interruption:\n%s", out)
	}
	if sealedRows(t, dir) != after {
		t.Fatal("running the rotation again changed sealed rows")
	}
	srv = startServer(t, dir, env)
	srv.mustLogin(t, p.APIKey)
}

// TestMasterKeyRotateFromEnvironment: with the master key in
// KEYGATE_TOKENS_MASTER_KEY, the rotation says to set it there, touches no
// key file, and the servers restarted with the new key serve what was
// issued before.
func TestMasterKeyRotateFromEnvironment(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	oldKey := strings.Repeat("o", 40)
	env := e2eEnv("KEYGATE_TOKENS_MASTER_KEY=" + oldKey)
	p := createPartner(t, dir, env, "Acme")
	srv := startServer(t, dir, env)
	first := srv.mustLogin(t, p.APIKey)
	later := srv.mustRefresh(t, "a login's token", srv.mustLogin(t, p.APIKey).RefreshToken)
	jwks, _ := srv.jwks(t)
	srv.stop(t)

	newFile, newKey := newMasterKeyFile(t)
	out := mustKeygate(t, dir, env, "master-key", "rotate", "--new-key-file", newFile)
	for _, want := range []string{"re-sealed 1 signing keys and 1 sealed secrets", "tokens.master_key is set", "KEYGATE_TOKENS_MASTER_KEY", newFile} {
		if !strings.Contains(out, want) {
			t.Errorf("master-key rotate output lacks %q:\n%s", want, out)
		}
	}
	assertNoSecrets(t, []string{oldKey, newKey}, map[string]string{"master-key rotate output": out})
	if exists(filepath.Join(dir, "data", "master.key")) {
		t.Error("a rotation of an environment's master key wrote data/master.key")
	}

	serveFails(t, dir, env, "wrong master key")
	srv = startServer(t, dir, e2eEnv("KEYGATE_TOKENS_MASTER_KEY="+newKey))
	set, _ := srv.jwks(t)
	if fmt.Sprint(kids(set)) != fmt.Sprint(kids(jwks)) {
		t.Fatalf("JWKS after the rotation %v, before %v", kids(set), kids(jwks))
	}
	mustJoseVerify(t, first.JWT, jose.ES256, set, nil, "keygate", "r-auth")
	srv.mustRefresh(t, "a login's token", first.RefreshToken)
	srv.mustRefresh(t, "a later token", later.RefreshToken)
	srv.mustLogin(t, p.APIKey)
}

// TestMasterKeyRotateBadInputs: each refusal is one line and a non-zero
// exit, and changes nothing: neither the sealed rows nor the key file, nor
// leaves a file behind; for a master key from data/master.key and from
// the environment alike.
func TestMasterKeyRotateBadInputs(t *testing.T) {
	t.Parallel()
	for _, source := range []string{"file", "environment"} {
		t.Run(source, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			var env, wrongEnv []string
			current := strings.Repeat("c", 40)
			if source == "file" {
				env = e2eEnv()
			} else {
				env = e2eEnv("KEYGATE_TOKENS_MASTER_KEY=" + current)
			}
			p := createPartner(t, dir, env, "Acme")
			srv := startServer(t, dir, env)
			pair := srv.mustLogin(t, p.APIKey)
			srv.stop(t)
			if source == "file" {
				current = readMasterKey(t, dir)
				wrongEnv = e2eEnv() // with a wrong key in data/master.key, below
			} else {
				wrongEnv = e2eEnv("KEYGATE_TOKENS_MASTER_KEY=" + strings.Repeat("w", 40))
			}
			newFile, _ := newMasterKeyFile(t)
			files := t.TempDir()
			write := func(name, content string) string {
				path := filepath.Join(files, name)
				if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
				return path
			}
			short := write("short.key", "  "+strings.Repeat("s", 31)+"\n\n")
			same := write("same.key", current+"\n")
			unreadable := filepath.Join(files, "a-directory")
			if err := os.Mkdir(unreadable, 0o700); err != nil {
				t.Fatal(err)
			}
			before, snap := sealedRows(t, dir), dirSnapshot(t, filepath.Join(dir, "data"))

			for _, tc := range []struct {
				name string
				env  []string
				args []string
				want []string
			}{
				{"no flag", env, nil, []string{"new-key-file"}},
				{"missing file", env, []string{"--new-key-file", filepath.Join(files, "missing.key")}, []string{"missing.key", "no such file", "nothing was changed"}},
				{"short key", env, []string{"--new-key-file", short}, []string{"short.key", "at least 32 bytes, got 31", "nothing was changed"}},
				{"unreadable file", env, []string{"--new-key-file", unreadable}, []string{"a-directory", "nothing was changed"}},
				{"the current key", env, []string{"--new-key-file", same}, []string{"holds the current master key", "nothing was changed"}},
				{"wrong current key", wrongEnv, []string{"--new-key-file", newFile}, []string{"is not the one the database is sealed under", "wrong master key", "nothing was changed"}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					if tc.name == "wrong current key" && source == "file" {
						keyFile := filepath.Join(dir, "data", "master.key")
						if err := os.WriteFile(keyFile, []byte(strings.Repeat("w", 40)+"\n"), 0o600); err != nil {
							t.Fatal(err)
						}
						defer func() {
							if err := os.WriteFile(keyFile, []byte(current+"\n"), 0o600); err != nil {
								t.Fatal(err)
							}
						}()
					}
					res := runKeygate(t, dir, tc.env, append([]string{"master-key", "rotate"}, tc.args...)...)
					assertOneLineError(t, res, tc.want...)
					assertNoSecrets(t, []string{current, strings.Repeat("s", 31)}, map[string]string{"stderr": res.stderr})
					if sealedRows(t, dir) != before {
						t.Fatal("a refused rotation changed sealed rows")
					}
				})
			}
			if after := dirSnapshot(t, filepath.Join(dir, "data")); fmt.Sprint(after["master.key"]) != fmt.Sprint(snap["master.key"]) || len(after) != len(snap) {
				t.Fatalf("refused rotations changed data/: %v, before %v", keysOf(after), keysOf(snap))
			}
			srv = startServer(t, dir, env)
			srv.mustRefresh(t, "a token issued before the refused rotations", pair.RefreshToken)
		})
	}
}

func keysOf(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// forgeLoginToken is the refresh token a login with keyID makes under the
// MAC key master derives: what keygate handed out before it stored the key,
// as tokens/refreshtoken.go lays the first form out.
func forgeLoginToken(t *testing.T, master, keyID string, now time.Time) string {
	t.Helper()
	mac, err := hkdf.Key(sha256.New, []byte(master), nil, "keygate refresh-token mac v1", 32)
	if err != nil {
		t.Fatal(err)
	}
	id, ok := keys.IDBytes("key_", keyID)
	if !ok {
		t.Fatalf("key id %s", keyID)
	}
	family := make([]byte, 16)
	ms := uint64(now.UnixMilli())
	for i := 5; i >= 0; i-- {
		family[i] = byte(ms)
		ms >>= 8
	}
	_, _ = rand.Read(family[6:])
	body := append(family, id...)
	body = binary.BigEndian.AppendUint64(body, uint64(now.Add(time.Hour).UnixMilli()))
	m := hmac.New(sha256.New, mac)
	m.Write([]byte("keygate refresh v1 first"))
	m.Write(body)
	return keys.Encode(keys.RefreshTokenPrefix, append(body, m.Sum(nil)[:24]...)).Reveal()
}

// TestMasterKeyUpgradeKeepsRefreshTokens: a database made before keygate
// stored the refresh-token key (its MAC key was derived from the master
// key) keeps every refresh token issued then: the upgrade stores the
// derived key, and a master-key rotation keeps it. A fresh database's key
// is not the derived one.
func TestMasterKeyUpgradeKeepsRefreshTokens(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := e2eEnv()
	p := createPartner(t, dir, env, "Acme")
	srv := startServer(t, dir, env) // the master key file, a signing key
	srv.stop(t)
	master := readMasterKey(t, dir)

	// The database as keygate before the upgrade left it: no sealed
	// secrets (and so none of the tokens the server above issued), nor
	// what the migrations after 0004 added.
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "data", "keygate.db")+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DROP TABLE sealed_secrets;
		DROP TRIGGER api_keys_epoch_update; DROP TRIGGER api_keys_epoch_delete;
		DROP TRIGGER partners_epoch_update; DROP TRIGGER partners_epoch_delete;
		DROP TRIGGER companies_epoch_update; DROP TRIGGER companies_epoch_delete;
		DELETE FROM schema_migrations WHERE version >= 4`); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	issuedBefore := forgeLoginToken(t, master, p.KeyID, time.Now())
	alsoBefore := forgeLoginToken(t, master, p.KeyID, time.Now())

	srv = startServer(t, dir, env)
	later := srv.mustRefresh(t, "a token issued before the upgrade", issuedBefore)
	login := srv.mustLogin(t, p.APIKey)
	srv.stop(t)
	if rows := sealedRows(t, dir); !strings.Contains(rows, "refresh-token-mac ") || strings.Contains(rows, "refresh-token-mac \n") {
		t.Fatalf("after the upgrade's first start the database holds:\n%s, want the refresh-token key sealed", rows)
	}

	srv = startServer(t, dir, env)
	srv.mustRefresh(t, "a later token, after a restart", later.RefreshToken)
	srv.stop(t)

	newFile, _ := newMasterKeyFile(t)
	mustKeygate(t, dir, env, "master-key", "rotate", "--new-key-file", newFile)
	srv = startServer(t, dir, env)
	srv.mustRefresh(t, "a token issued before the upgrade, after a rotation", alsoBefore)
	srv.mustRefresh(t, "a login's token, after a rotation", login.RefreshToken)

	// A fresh database: a token under the derived key is refused.
	fresh := t.TempDir()
	q := createPartner(t, fresh, env, "Fresh")
	srv = startServer(t, fresh, env)
	if code, _, _ := srv.refresh(t, forgeLoginToken(t, readMasterKey(t, fresh), q.KeyID, time.Now())); code != http.StatusUnauthorized {
		t.Fatalf("a fresh database accepted a token under the derived key: %d", code)
	}
	srv.mustLogin(t, q.APIKey)
}

// TestMasterKeyRotatePostgres: two replicas on one PostgreSQL database,
// the key in KEYGATE_TOKENS_MASTER_KEY: rotate once; both keep serving,
// warning at each reload, until restarted with the new key, which serves
// every token issued before.
func TestMasterKeyRotatePostgres(t *testing.T) {
	t.Parallel()
	env, dbURL := pgEnv(t, "KEYGATE_TOKENS_KEY_RELOAD_INTERVAL=200ms")
	dir := t.TempDir()
	p := createPartner(t, dir, env, "Acme")
	a := startServer(t, t.TempDir(), env)
	b := startServer(t, t.TempDir(), env)
	first := a.mustLogin(t, p.APIKey)
	later := b.mustRefresh(t, "a login's token", a.mustLogin(t, p.APIKey).RefreshToken)
	mustKeygate(t, dir, env, "signing-key", "rotate")
	for _, s := range []*e2eServer{a, b} {
		if !eventually(t, 20*time.Second, func() bool { set, _ := s.jwks(t); return len(set.Keys) == 2 }) {
			t.Fatal("a replica did not load the second signing key")
		}
	}
	jwks, _ := a.jwks(t)

	newFile, newKey := newMasterKeyFile(t)
	out := mustKeygate(t, dir, env, "master-key", "rotate", "--new-key-file", newFile)
	if !strings.Contains(out, "re-sealed 2 signing keys and 1 sealed secrets") || !strings.Contains(out, "tokens.master_key is set") {
		t.Fatalf("master-key rotate on PostgreSQL:\n%s", out)
	}
	assertNoPassword(t, map[string]string{"master-key rotate output": out})
	for _, s := range []*e2eServer{a, b} {
		waitForWarnings(t, s, 2, pgMasterKey, newKey, pgPassword)
		s.mustLogin(t, p.APIKey)
	}
	a.mustRefresh(t, "a token on an old replica", b.mustLogin(t, p.APIKey).RefreshToken)
	a.stop(t)
	b.stop(t)

	serveFails(t, t.TempDir(), env, "wrong master key")
	c := startServer(t, t.TempDir(), pgEnvFor(dbURL, "KEYGATE_TOKENS_MASTER_KEY="+newKey))
	set, _ := c.jwks(t)
	if fmt.Sprint(kids(set)) != fmt.Sprint(kids(jwks)) {
		t.Fatalf("JWKS after the rotation %v, before %v", kids(set), kids(jwks))
	}
	mustJoseVerify(t, first.JWT, jose.ES256, set, nil, "keygate", "r-auth")
	c.mustRefresh(t, "a login's token", first.RefreshToken)
	c.mustRefresh(t, "a later token", later.RefreshToken)
	c.mustLogin(t, p.APIKey)
}
