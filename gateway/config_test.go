package gateway_test

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"keygate/gateway"
	"keygate/store"
)

// TestDefaultConfig pins every documented default (config.yaml, README):
// what keygate serve runs on when nothing is configured.
func TestDefaultConfig(t *testing.T) {
	want := gateway.Config{
		Server: gateway.ServerConfig{
			Addr: "127.0.0.1:8080", MaxBodyBytes: 65536, MaxHeaderBytes: 16384,
			ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 15 * time.Second,
			IdleTimeout: 60 * time.Second, ShutdownTimeout: 15 * time.Second,
		},
		Admin:    gateway.AdminConfig{Addr: "127.0.0.1:9091"},
		Database: store.Config{Driver: "sqlite", Path: "data/keygate.db", Synchronous: "FULL", MaxConns: 16},
		Tokens: gateway.TokensConfig{
			Issuer: "keygate", Audience: "r-auth", Algorithm: "ES256",
			AccessTTL: 15 * time.Minute, RefreshTTL: 720 * time.Hour, RefreshMaxLifetime: 2160 * time.Hour,
			RefreshReuseGrace: 10 * time.Second, Retention: 168 * time.Hour, Leeway: 30 * time.Second,
			SigningKeyActivationDelay: time.Hour, KeyReloadInterval: 10 * time.Second, HousekeepingInterval: 5 * time.Minute,
		},
		RateLimit: gateway.RateLimitConfig{
			LoginFailuresPerMinute: 20, LoginPerKeyPerMinute: 60, RefreshPerFamilyPerMinute: 60, APIPerMinute: 600, MaxTracked: 100000,
		},
		Audit: gateway.AuditConfig{Retention: 2160 * time.Hour},
		Log:   gateway.LogConfig{Format: "json", Level: "info"},
	}
	if got := gateway.DefaultConfig(); !reflect.DeepEqual(got, want) {
		t.Errorf("DefaultConfig() =\n%+v\nwant\n%+v", got, want)
	}
}

// TestParseNamesEveryProblem: one error names each bad key.
func TestParseNamesEveryProblem(t *testing.T) {
	values := map[string]any{}
	for _, s := range gateway.Settings {
		values[s.Key] = s.Default
	}
	values["tokens.algorithm"] = "PS512"
	values["tokens.leeway"] = "a little"
	values["server.max_body_bytes"] = 0
	values["ratelimit.api_per_minute"] = -1
	values["database.synchronous"] = "sometimes"
	values["tokens.refresh_ttl"] = "9999h"
	_, err := gateway.Parse(func(key string) any { return values[key] })
	var ce *gateway.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("Parse = %v, want a *ConfigError", err)
	}
	for _, key := range []string{"tokens.algorithm", "tokens.leeway", "server.max_body_bytes", "ratelimit.api_per_minute", "database.synchronous", "tokens.refresh_ttl"} {
		if !strings.Contains(err.Error(), key+":") {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
	if len(ce.Problems) != 6 {
		t.Errorf("%d problems, want 6: %v", len(ce.Problems), ce.Problems)
	}
}

// TestEverySettingIsDocumented: config.yaml shows every key of Settings
// with its default and nothing else, and the README's tables name every
// key, so that a new setting cannot go undocumented.
func TestEverySettingIsDocumented(t *testing.T) {
	yaml, err := os.ReadFile("../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	// config.yaml is two levels deep: "section:" and "  key: value # ...".
	inFile := map[string]string{}
	var section string
	for line := range strings.Lines(string(yaml)) {
		line = strings.TrimRight(line, "\n")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if name, ok := strings.CutSuffix(line, ":"); ok && !strings.HasPrefix(line, " ") {
			section = name
			continue
		}
		key, value, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(line, "  ") {
			t.Fatalf("config.yaml: cannot read %q", line)
		}
		inFile[section+"."+key] = strings.Trim(strings.TrimSpace(value), `"`)
	}
	for _, s := range gateway.Settings {
		v, ok := inFile[s.Key]
		switch {
		case !ok:
			t.Errorf("config.yaml does not show %s", s.Key)
		case v != fmt.Sprint(s.Default):
			t.Errorf("config.yaml shows %s: %q, its default is %q", s.Key, v, fmt.Sprint(s.Default))
		}
		delete(inFile, s.Key)
		_, row, ok := strings.Cut(string(readme), "| `"+s.Key+"` | ")
		if !ok {
			t.Errorf("README.md has no table row for %s", s.Key)
			continue
		}
		// The row's default: the value in backticks, or words for none.
		cell, _, _ := strings.Cut(row, " |")
		switch want := fmt.Sprint(s.Default); {
		case strings.HasPrefix(cell, "`"):
			if got := strings.Trim(cell, "`"); got != want {
				t.Errorf("README.md documents %s's default as %q, it is %q", s.Key, got, want)
			}
		case want != "":
			t.Errorf("README.md documents %s's default as %q, it is %q", s.Key, cell, want)
		}
	}
	for key := range inFile {
		t.Errorf("config.yaml shows %s, which is no setting", key)
	}
}
