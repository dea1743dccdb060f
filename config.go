package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/viper"

	"keygate/keys"
	"keygate/sqlite"
	"keygate/tokens"
)

// Config is keygate's whole configuration, typed and validated.
type Config struct {
	Server    ServerConfig
	Database  DatabaseConfig
	Tokens    TokensConfig
	RateLimit RateLimitConfig
	Log       LogConfig
}

type ServerConfig struct {
	Addr              string
	TrustedProxies    []string
	MaxBodyBytes      int64
	MaxHeaderBytes    int
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	ShutdownTimeout   time.Duration
}

type DatabaseConfig struct {
	Path        string
	Synchronous string
}

type TokensConfig struct {
	Issuer                    string
	Audience                  string
	Algorithm                 string
	HMACSecret                keys.Secret
	AccessTTL                 time.Duration
	RefreshTTL                time.Duration
	RefreshMaxLifetime        time.Duration
	RefreshReuseGrace         time.Duration
	Retention                 time.Duration
	Leeway                    time.Duration
	MasterKey                 keys.Secret
	SigningKeyActivationDelay time.Duration
	KeyReloadInterval         time.Duration
	HousekeepingInterval      time.Duration
}

type RateLimitConfig struct {
	LoginFailuresPerMinute    int
	LoginPerKeyPerMinute      int
	RefreshPerFamilyPerMinute int
	APIPerMinute              int
	MaxTracked                int
}

type LogConfig struct {
	Format string
	Level  string
}

// defaults lists every key with its default; config.yaml documents the same.
var defaults = []struct {
	key string
	def any
}{
	{"server.addr", "127.0.0.1:8080"},
	{"server.trusted_proxies", ""},
	{"server.max_body_bytes", 65536},
	{"server.max_header_bytes", 16384},
	{"server.read_header_timeout", "5s"},
	{"server.read_timeout", "10s"},
	{"server.write_timeout", "15s"},
	{"server.idle_timeout", "60s"},
	{"server.shutdown_timeout", "15s"},
	{"database.path", "data/keygate.db"},
	{"database.synchronous", "FULL"},
	{"tokens.issuer", "keygate"},
	{"tokens.audience", "r-auth"},
	{"tokens.algorithm", "ES256"},
	{"tokens.hmac_secret", ""},
	{"tokens.access_ttl", "15m"},
	{"tokens.refresh_ttl", "720h"},
	{"tokens.refresh_max_lifetime", "2160h"},
	{"tokens.refresh_reuse_grace", "10s"},
	{"tokens.retention", "168h"},
	{"tokens.leeway", "30s"},
	{"tokens.master_key", ""},
	{"tokens.signing_key_activation_delay", "1h"},
	{"tokens.key_reload_interval", "10s"},
	{"tokens.housekeeping_interval", "5m"},
	{"ratelimit.login_failures_per_minute", 20},
	{"ratelimit.login_per_key_per_minute", 60},
	{"ratelimit.refresh_per_family_per_minute", 60},
	{"ratelimit.api_per_minute", 600},
	{"ratelimit.max_tracked", 100000},
	{"log.format", "json"},
	{"log.level", "info"},
}

// loadConfig reads defaults, then the config file (path, else $KEYGATE_CONFIG,
// else ./config.yaml if present), then KEYGATE_* environment variables, and validates the result.
// It fails closed, naming every bad key at once.
func loadConfig(path string) (Config, error) {
	v := viper.New()
	for _, d := range defaults {
		v.SetDefault(d.key, d.def)
	}
	v.SetEnvPrefix("KEYGATE")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()

	if path == "" {
		path = os.Getenv("KEYGATE_CONFIG")
	}
	if path == "" {
		if _, err := os.Stat("config.yaml"); err == nil {
			path = "config.yaml"
		}
	}
	if path != "" {
		v.SetConfigFile(path)
		if err := v.ReadInConfig(); err != nil {
			return Config{}, fmt.Errorf("reading config %s: %w", path, err)
		}
	}

	p := parser{v: v}
	known := make(map[string]bool, len(defaults))
	knownEnv := map[string]bool{"KEYGATE_CONFIG": true}
	for _, d := range defaults {
		known[d.key] = true
		knownEnv["KEYGATE_"+strings.ToUpper(strings.ReplaceAll(d.key, ".", "_"))] = true
	}
	for _, k := range v.AllKeys() {
		if !known[k] {
			p.bad(k, "unknown key")
		}
	}
	// A misspelt variable would otherwise be ignored without a word.
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "KEYGATE_") && !knownEnv[name] {
			p.bad(name, "unknown environment variable")
		}
	}
	var c Config
	c.Server = ServerConfig{
		Addr:              p.str("server.addr"),
		TrustedProxies:    p.list("server.trusted_proxies"),
		MaxBodyBytes:      int64(p.positive("server.max_body_bytes")),
		MaxHeaderBytes:    p.positive("server.max_header_bytes"),
		ReadHeaderTimeout: p.duration("server.read_header_timeout", true),
		ReadTimeout:       p.duration("server.read_timeout", true),
		WriteTimeout:      p.duration("server.write_timeout", true),
		IdleTimeout:       p.duration("server.idle_timeout", true),
		ShutdownTimeout:   p.duration("server.shutdown_timeout", true),
	}
	c.Database = DatabaseConfig{
		Path:        p.str("database.path"),
		Synchronous: strings.ToUpper(p.str("database.synchronous")),
	}
	c.Tokens = TokensConfig{
		Issuer:                    p.str("tokens.issuer"),
		Audience:                  p.str("tokens.audience"),
		Algorithm:                 v.GetString("tokens.algorithm"),
		HMACSecret:                keys.Secret(v.GetString("tokens.hmac_secret")),
		AccessTTL:                 p.duration("tokens.access_ttl", true),
		RefreshTTL:                p.duration("tokens.refresh_ttl", true),
		RefreshMaxLifetime:        p.duration("tokens.refresh_max_lifetime", true),
		RefreshReuseGrace:         p.duration("tokens.refresh_reuse_grace", false),
		Retention:                 p.duration("tokens.retention", false),
		Leeway:                    p.duration("tokens.leeway", false),
		MasterKey:                 keys.Secret(v.GetString("tokens.master_key")),
		SigningKeyActivationDelay: p.duration("tokens.signing_key_activation_delay", false),
		KeyReloadInterval:         p.duration("tokens.key_reload_interval", true),
		HousekeepingInterval:      p.duration("tokens.housekeeping_interval", true),
	}
	c.RateLimit = RateLimitConfig{
		LoginFailuresPerMinute:    p.nonNegative("ratelimit.login_failures_per_minute"),
		LoginPerKeyPerMinute:      p.nonNegative("ratelimit.login_per_key_per_minute"),
		RefreshPerFamilyPerMinute: p.nonNegative("ratelimit.refresh_per_family_per_minute"),
		APIPerMinute:              p.nonNegative("ratelimit.api_per_minute"),
		MaxTracked:                p.positive("ratelimit.max_tracked"),
	}
	c.Log = LogConfig{Format: strings.ToLower(p.str("log.format")), Level: strings.ToLower(p.str("log.level"))}

	c.validate(&p)
	if len(p.errs) > 0 {
		return Config{}, fmt.Errorf("invalid configuration: %s", strings.Join(p.errs, "; "))
	}
	return c, nil
}

// validate checks what single keys cannot: allowed values and relations.
func (c *Config) validate(p *parser) {
	if !slices.Contains(tokens.Algorithms, c.Tokens.Algorithm) {
		p.bad("tokens.algorithm", fmt.Sprintf("must be one of %s, got %q", strings.Join(tokens.Algorithms, ", "), c.Tokens.Algorithm))
	}
	if c.Tokens.Algorithm == tokens.HS256 && len(c.Tokens.HMACSecret) < tokens.MinHMACSecretLen {
		p.bad("tokens.hmac_secret", fmt.Sprintf("must be at least %d bytes with HS256, got %d", tokens.MinHMACSecretLen, len(c.Tokens.HMACSecret)))
	}
	if n := len(c.Tokens.MasterKey); n > 0 && n < tokens.MinMasterKeyLen {
		p.bad("tokens.master_key", fmt.Sprintf("must be at least %d bytes, got %d", tokens.MinMasterKeyLen, n))
	}
	if !slices.Contains(sqlite.SynchronousModes, c.Database.Synchronous) {
		p.bad("database.synchronous", fmt.Sprintf("must be one of %s", strings.Join(sqlite.SynchronousModes, ", ")))
	}
	if c.Tokens.RefreshMaxLifetime > 0 && c.Tokens.RefreshTTL > c.Tokens.RefreshMaxLifetime {
		p.bad("tokens.refresh_ttl", "must not exceed tokens.refresh_max_lifetime")
	}
	if c.Tokens.RefreshReuseGrace > time.Minute {
		p.bad("tokens.refresh_reuse_grace", "must be at most 1m: a longer grace window weakens reuse detection")
	}
	if !slices.Contains([]string{"json", "text"}, c.Log.Format) {
		p.bad("log.format", "must be json or text")
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		p.bad("log.level", "must be debug, info, warn or error")
	}
}

// parser reads typed values and collects every problem.
type parser struct {
	v    *viper.Viper
	errs []string
}

func (p *parser) bad(key, msg string) { p.errs = append(p.errs, key+": "+msg) }

func (p *parser) str(key string) string {
	s := strings.TrimSpace(p.v.GetString(key))
	if s == "" {
		p.bad(key, "must not be empty")
	}
	return s
}

func (p *parser) duration(key string, positive bool) time.Duration {
	raw := strings.TrimSpace(p.v.GetString(key))
	d, err := time.ParseDuration(raw)
	switch {
	case err != nil:
		p.bad(key, fmt.Sprintf("not a duration: %q (use e.g. 30s, 15m, 720h)", raw))
	case d < 0 || positive && d == 0:
		p.bad(key, fmt.Sprintf("must be positive, got %s", raw))
	}
	return d
}

func (p *parser) integer(key string) (int, bool) {
	raw := strings.TrimSpace(p.v.GetString(key))
	n, err := strconv.Atoi(raw)
	if err != nil {
		p.bad(key, fmt.Sprintf("not an integer: %q", raw))
		return 0, false
	}
	return n, true
}

func (p *parser) positive(key string) int {
	n, ok := p.integer(key)
	if ok && n <= 0 {
		p.bad(key, "must be positive")
	}
	return n
}

func (p *parser) nonNegative(key string) int {
	n, ok := p.integer(key)
	if ok && n < 0 {
		p.bad(key, "must not be negative (0 turns the limit off)")
	}
	return n
}

// list accepts a YAML list or a comma-separated string (for env vars).
func (p *parser) list(key string) []string {
	var items []string
	switch raw := p.v.Get(key).(type) {
	case string:
		items = strings.Split(raw, ",")
	case []any:
		for _, it := range raw {
			items = append(items, fmt.Sprint(it))
		}
	case []string:
		items = raw
	case nil:
	default:
		p.bad(key, "must be a list of addresses or CIDRs")
	}
	var out []string
	for _, it := range items {
		if it = strings.TrimSpace(it); it != "" {
			out = append(out, it)
		}
	}
	return out
}
