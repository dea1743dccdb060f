package gateway

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"keygate/keys"
	"keygate/postgres"
	"keygate/sqlite"
	"keygate/store"
	"keygate/tokens"
)

// Config is keygate's whole configuration, typed and validated.
type Config struct {
	Server    ServerConfig
	Admin     AdminConfig
	OAuth     OAuthConfig
	Database  store.Config
	Tokens    TokensConfig
	RateLimit RateLimitConfig
	Audit     AuditConfig
	Leaks     LeaksConfig
	Log       LogConfig
}

// LeaksConfig is the section on leaked-key reports from secret scanners:
// with neither set, POST /api/v1/keys/leaked does not exist.
type LeaksConfig struct {
	// GitHubPublicKeysFile holds GitHub's secret scanning public keys
	// (https://api.github.com/meta/public_keys/secret_scanning); set, the
	// reports GitHub signs with one of them are taken.
	GitHubPublicKeysFile string
	// HMACSecret, set, takes the reports signed with it
	// (X-Keygate-Signature), for other scanners.
	HMACSecret keys.Secret
}

// AuditConfig is the audit trail's section.
type AuditConfig struct {
	// Retention is how long audit events are kept; housekeeping deletes
	// older ones. 0 keeps everything.
	Retention time.Duration
}

// ServerConfig is the HTTP listener's section.
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
	// PublicURL is keygate's external base URL, e.g.
	// https://auth.example.com; with it keygate serves its OAuth server
	// metadata (RFC 8414). Empty: no metadata document.
	PublicURL string
}

// OAuthConfig is the OAuth 2.0 face's section.
type OAuthConfig struct {
	// ClientCredentialsRefreshTokens issues refresh tokens to the
	// client_credentials grant, which RFC 6749 §4.4.3 advises against.
	ClientCredentialsRefreshTokens bool
}

// AdminConfig is the operators' listener: metrics and profiling, never
// the partner-facing one.
type AdminConfig struct {
	Addr  string // empty: no admin listener
	Pprof bool
}

// TokensConfig is the section on access tokens, refresh tokens and keys.
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

// RateLimitConfig holds the per-minute budgets; 0 turns a limit off.
type RateLimitConfig struct {
	LoginFailuresPerMinute    int
	LoginPerKeyPerMinute      int
	RefreshPerFamilyPerMinute int
	APIPerMinute              int
	MaxTracked                int
}

// LogConfig is the logging section.
type LogConfig struct {
	Format string
	Level  string
}

// Setting is one configuration key and its default.
type Setting struct {
	Key     string
	Default any
}

// Settings lists every configuration key with its default: the one list
// that main gives viper, that DefaultConfig reads, and that config.yaml
// and the README document.
var Settings = []Setting{
	{"server.addr", "127.0.0.1:8080"},
	{"server.trusted_proxies", ""},
	{"server.max_body_bytes", 65536},
	{"server.max_header_bytes", 16384},
	{"server.read_header_timeout", "5s"},
	{"server.read_timeout", "10s"},
	{"server.write_timeout", "15s"},
	{"server.idle_timeout", "60s"},
	{"server.shutdown_timeout", "15s"},
	{"server.public_url", ""},
	{"admin.addr", "127.0.0.1:9091"},
	{"admin.pprof", false},
	{"oauth.client_credentials_refresh_tokens", false},
	{"database.driver", "sqlite"},
	{"database.path", "data/keygate.db"},
	{"database.synchronous", "FULL"},
	{"database.url", ""},
	{"database.max_conns", postgres.DefaultMaxConns},
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
	{"audit.retention", "2160h"},
	{"leaks.github_public_keys_file", ""},
	{"leaks.hmac_secret", ""},
	{"log.format", "json"},
	{"log.level", "info"},
}

// DefaultConfig is the configuration with every key at its default: what
// keygate serve runs on when nothing is configured.
func DefaultConfig() Config {
	defaults := make(map[string]any, len(Settings))
	for _, s := range Settings {
		defaults[s.Key] = s.Default
	}
	c, err := Parse(func(key string) any { return defaults[key] })
	if err != nil {
		panic("gateway: the built-in defaults do not parse: " + err.Error())
	}
	return c
}

// Parse builds the typed configuration from get, which returns the value
// in force for a key (main passes viper's), and validates it. It fails
// closed, naming every bad key at once.
func Parse(get func(key string) any) (Config, error) {
	p := &Problems{get: get}
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
		PublicURL:         p.publicURL("server.public_url"),
	}
	c.OAuth = OAuthConfig{ClientCredentialsRefreshTokens: p.boolean("oauth.client_credentials_refresh_tokens")}
	c.Admin = AdminConfig{
		Addr:  strings.TrimSpace(p.raw("admin.addr")),
		Pprof: p.boolean("admin.pprof"),
	}
	c.Database = store.Config{
		Driver:      strings.ToLower(p.str("database.driver")),
		Path:        p.str("database.path"),
		Synchronous: strings.ToUpper(p.str("database.synchronous")),
		URL:         store.URL(strings.TrimSpace(p.raw("database.url"))),
		MaxConns:    p.positive("database.max_conns"),
	}
	c.Tokens = TokensConfig{
		Issuer:                    p.str("tokens.issuer"),
		Audience:                  p.str("tokens.audience"),
		Algorithm:                 p.raw("tokens.algorithm"),
		HMACSecret:                keys.Secret(p.raw("tokens.hmac_secret")),
		AccessTTL:                 p.duration("tokens.access_ttl", true),
		RefreshTTL:                p.duration("tokens.refresh_ttl", true),
		RefreshMaxLifetime:        p.duration("tokens.refresh_max_lifetime", true),
		RefreshReuseGrace:         p.duration("tokens.refresh_reuse_grace", false),
		Retention:                 p.duration("tokens.retention", false),
		Leeway:                    p.duration("tokens.leeway", false),
		MasterKey:                 keys.Secret(p.raw("tokens.master_key")),
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
	c.Audit = AuditConfig{Retention: p.duration("audit.retention", false)}
	c.Leaks = LeaksConfig{
		GitHubPublicKeysFile: strings.TrimSpace(p.raw("leaks.github_public_keys_file")),
		HMACSecret:           keys.Secret(p.raw("leaks.hmac_secret")),
	}
	c.Log = LogConfig{Format: strings.ToLower(p.str("log.format")), Level: strings.ToLower(p.str("log.level"))}
	c.validate(p)
	return c, p.Err()
}

// validate checks what single keys cannot: allowed values and relations.
func (c *Config) validate(p *Problems) {
	if !slices.Contains(tokens.Algorithms, c.Tokens.Algorithm) {
		p.Add("tokens.algorithm", fmt.Sprintf("must be one of %s, got %q", strings.Join(tokens.Algorithms, ", "), c.Tokens.Algorithm))
	}
	if c.Tokens.Algorithm == tokens.HS256 && len(c.Tokens.HMACSecret) < tokens.MinHMACSecretLen {
		p.Add("tokens.hmac_secret", fmt.Sprintf("must be at least %d bytes with HS256, got %d", tokens.MinHMACSecretLen, len(c.Tokens.HMACSecret)))
	}
	if n := len(c.Tokens.MasterKey); n > 0 && n < tokens.MinMasterKeyLen {
		p.Add("tokens.master_key", fmt.Sprintf("must be at least %d bytes, got %d", tokens.MinMasterKeyLen, n))
	}
	if n := len(c.Leaks.HMACSecret); n > 0 && n < keys.MinReporterSecretLen {
		p.Add("leaks.hmac_secret", fmt.Sprintf("must be at least %d bytes, got %d", keys.MinReporterSecretLen, n))
	}
	if !slices.Contains(sqlite.SynchronousModes, c.Database.Synchronous) {
		p.Add("database.synchronous", fmt.Sprintf("must be one of %s", strings.Join(sqlite.SynchronousModes, ", ")))
	}
	c.validateDatabase(p)
	if c.Tokens.RefreshMaxLifetime > 0 && c.Tokens.RefreshTTL > c.Tokens.RefreshMaxLifetime {
		p.Add("tokens.refresh_ttl", "must not exceed tokens.refresh_max_lifetime")
	}
	if c.Tokens.RefreshReuseGrace > time.Minute {
		p.Add("tokens.refresh_reuse_grace", "must be at most 1m: a longer grace window weakens reuse detection")
	}
	if !slices.Contains([]string{"json", "text"}, c.Log.Format) {
		p.Add("log.format", "must be json or text")
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		p.Add("log.level", "must be debug, info, warn or error")
	}
}

// validateDatabase checks the database section against its driver. Nothing
// it reports quotes database.url's password.
func (c *Config) validateDatabase(p *Problems) {
	db := c.Database
	switch db.Driver {
	case "sqlite":
		// A URL given for a replica but no driver would leave it on a
		// SQLite file of its own, beside the others' database.
		if db.URL != "" {
			p.Add("database.url", "is set but database.driver is sqlite: set database.driver to postgres, or unset database.url")
		}
	case "postgres":
		if db.URL == "" {
			p.Add("database.url", "must be set with database.driver postgres (postgres://user:password@host:port/database)")
		} else if err := postgres.CheckURL(db.URL.Reveal()); err != nil {
			p.Add("database.url", strings.TrimPrefix(err.Error(), "database.url: "))
		}
		if c.Tokens.MasterKey == "" {
			p.Add("tokens.master_key", "must be set with database.driver postgres: there is no directory beside the database for master.key; give every replica the same key (KEYGATE_TOKENS_MASTER_KEY)")
		}
	default:
		p.Add("database.driver", fmt.Sprintf("must be one of %s, got %q", strings.Join(store.Drivers, ", "), db.Driver))
	}
}

// Problems reads typed values through get and collects every problem, so
// that one message can name them all.
type Problems struct {
	get  func(key string) any
	errs []string
}

// Add records a problem with key.
func (p *Problems) Add(key, msg string) { p.errs = append(p.errs, key+": "+msg) }

// Err is nil without problems, else a *ConfigError naming each.
func (p *Problems) Err() error {
	if len(p.errs) == 0 {
		return nil
	}
	return &ConfigError{Problems: p.errs}
}

// ConfigError names every problem of a configuration, "key: what is wrong".
type ConfigError struct{ Problems []string }

func (e *ConfigError) Error() string {
	return "invalid configuration: " + strings.Join(e.Problems, "; ")
}

// raw is a key's value as text, untrimmed.
func (p *Problems) raw(key string) string {
	switch v := p.get(key).(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		return fmt.Sprint(v)
	}
}

func (p *Problems) str(key string) string {
	s := strings.TrimSpace(p.raw(key))
	if s == "" {
		p.Add(key, "must not be empty")
	}
	return s
}

func (p *Problems) duration(key string, positive bool) time.Duration {
	raw := strings.TrimSpace(p.raw(key))
	d, err := time.ParseDuration(raw)
	switch {
	case err != nil:
		p.Add(key, fmt.Sprintf("not a duration: %q (use e.g. 30s, 15m, 720h)", raw))
	case d < 0 || positive && d == 0:
		p.Add(key, fmt.Sprintf("must be positive, got %s", raw))
	}
	return d
}

// publicURL accepts an empty value or an absolute http(s) URL without a
// query or fragment, and drops a trailing slash.
func (p *Problems) publicURL(key string) string {
	raw := strings.TrimSpace(p.raw(key))
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		p.Add(key, fmt.Sprintf("must be an absolute http(s) URL without query, fragment or user, like https://auth.example.com, got %q", raw))
		return ""
	}
	return strings.TrimSuffix(raw, "/")
}

func (p *Problems) boolean(key string) bool {
	raw := strings.TrimSpace(p.raw(key))
	b, err := strconv.ParseBool(raw)
	if err != nil {
		p.Add(key, fmt.Sprintf("not true or false: %q", raw))
	}
	return b
}

func (p *Problems) integer(key string) (int, bool) {
	raw := strings.TrimSpace(p.raw(key))
	n, err := strconv.Atoi(raw)
	if err != nil {
		p.Add(key, fmt.Sprintf("not an integer: %q", raw))
		return 0, false
	}
	return n, true
}

func (p *Problems) positive(key string) int {
	n, ok := p.integer(key)
	if ok && n <= 0 {
		p.Add(key, "must be positive")
	}
	return n
}

func (p *Problems) nonNegative(key string) int {
	n, ok := p.integer(key)
	if ok && n < 0 {
		p.Add(key, "must not be negative (0 turns the limit off)")
	}
	return n
}

// list accepts a YAML list or a comma-separated string (for env vars).
func (p *Problems) list(key string) []string {
	var items []string
	switch raw := p.get(key).(type) {
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
		p.Add(key, "must be a list of addresses or CIDRs")
	}
	var out []string
	for _, it := range items {
		if it = strings.TrimSpace(it); it != "" {
			out = append(out, it)
		}
	}
	return out
}
