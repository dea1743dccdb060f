package main_test

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// ---------------------------------------------------------------------------
// 3. Configuration

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
