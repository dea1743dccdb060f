// Package gateway assembles keygate from its parts: the typed
// configuration, the service graph over a store, and the HTTP server with
// its background jobs. keygate serve, the tests and the benchmark's floor
// all build keygate through New, so that what is measured and tested is
// what runs.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"keygate/keys"
	"keygate/metrics"
	"keygate/server"
	"keygate/store"
	"keygate/tokens"
)

// Options are what New takes besides the configuration and the store.
type Options struct {
	Log *slog.Logger     // discarded if nil
	Now func() time.Time // time.Now if nil; tests pass a manual clock
	// WrapJWKS, if set, wraps the keyring's JWKS source (tests make it fail).
	WrapJWKS func(func() []byte) func() []byte
	// Metrics are the instruments to record into: those of NewMetrics,
	// whose CommitObserver the store was opened with, so that its commits
	// are recorded too. If nil and admin.addr is set, New makes its own,
	// which see no commit.
	Metrics *metrics.Metrics
}

// NewMetrics makes the metrics cfg calls for: nil without an admin
// listener, where nothing could read them. Make them before opening the
// store, give their CommitObserver to store.Options.OnCommit and them to
// Options.Metrics.
func NewMetrics(cfg Config) *metrics.Metrics {
	if cfg.Admin.Addr == "" {
		return nil
	}
	return metrics.New()
}

// Gateway is keygate wired: its services over one store, and the HTTP
// handler in front of them.
type Gateway struct {
	Keys     *keys.Service
	Tokens   *tokens.Service
	Keyring  *tokens.Keyring
	JWT      *tokens.JWT
	Recorder *keys.Recorder
	Server   *server.Server
	Metrics  *metrics.Metrics // nil without an admin listener

	cfg   Config
	store store.Store
	log   *slog.Logger
}

// New builds the service graph over st. It creates the first signing key
// and the refresh-token key of a fresh database and loads them, so the
// gateway can sign at once; master is the master key they are sealed
// under.
func New(ctx context.Context, cfg Config, st store.Store, master tokens.MasterKey, opts Options) (*Gateway, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	// Before the store: a reporter's file that cannot be used stops keygate
	// with nothing written.
	reporters, err := newReporters(cfg.Leaks, opts.Log)
	if err != nil {
		return nil, err
	}
	t := cfg.Tokens
	// First: opening the stored refresh-token key proves the master key
	// before a first signing key is sealed under it.
	refreshKey, err := tokens.LoadRefreshKey(ctx, st, master, opts.Now)
	if err != nil {
		return nil, fmt.Errorf("loading the refresh-token key: %w", err)
	}
	ring := NewKeyring(cfg.Tokens, master, st, opts.Now, opts.Log)
	if err := ring.EnsureKey(ctx); err != nil {
		return nil, fmt.Errorf("creating signing key: %w", err)
	}
	if err := ring.Load(ctx); err != nil {
		return nil, fmt.Errorf("loading signing keys: %w", err)
	}
	signer, err := tokens.NewJWT(tokens.JWTConfig{
		Issuer: t.Issuer, Audience: t.Audience, Algorithm: t.Algorithm, AccessTTL: t.AccessTTL, Leeway: t.Leeway,
	}, ring, opts.Now)
	if err != nil {
		return nil, err
	}
	recorder := keys.NewRecorder(st, time.Second, opts.Now, opts.Log)
	keySvc := keys.NewService(st, recorder, opts.Now, opts.Log)
	tokenSvc := tokens.NewService(keySvc, st, signer, refreshKey, tokens.RefreshConfig{
		TTL: t.RefreshTTL, MaxLifetime: t.RefreshMaxLifetime, ReuseGrace: t.RefreshReuseGrace, Retention: t.Retention,
	}, opts.Now)
	jwks := ring.JWKS
	if opts.WrapJWKS != nil {
		jwks = opts.WrapJWKS(jwks)
	}
	// Metrics exist where they can be read: on the admin listener.
	m := opts.Metrics
	if m == nil {
		m = NewMetrics(cfg)
	}
	src := metrics.Sources{SigningKeys: ring.States}
	if f, ok := st.(interface{ Failing() bool }); ok {
		src.StoreFailing = f.Failing
	}
	m.Watch(src)
	warnOfIssuer(opts.Log, cfg)
	if delay := t.SigningKeyActivationDelay; delay < server.JWKSMaxAge && t.Algorithm != tokens.HS256 {
		opts.Log.Warn("tokens.signing_key_activation_delay is shorter than the JWKS max-age: after a rotation, verifiers caching the JWKS meet tokens signed by a key they have not seen",
			"signing_key_activation_delay", delay.String(), "jwks_max_age", server.JWKSMaxAge.String())
	}
	rl := cfg.RateLimit
	srv, err := server.New(server.Config{
		TrustedProxies: cfg.Server.TrustedProxies,
		MaxBodyBytes:   cfg.Server.MaxBodyBytes,
		OAuth: server.OAuthConfig{
			PublicURL: cfg.Server.PublicURL, Issuer: t.Issuer,
			ClientCredentialsRefresh: cfg.OAuth.ClientCredentialsRefreshTokens,
		},
		RateLimits: server.RateLimits{
			LoginFailuresPerMinute:    rl.LoginFailuresPerMinute,
			LoginPerKeyPerMinute:      rl.LoginPerKeyPerMinute,
			RefreshPerFamilyPerMinute: rl.RefreshPerFamilyPerMinute,
			APIPerMinute:              rl.APIPerMinute,
			MaxTracked:                rl.MaxTracked,
		},
	}, server.Deps{Keys: keySvc, Tokens: tokenSvc, JWKS: jwks, Ready: st.Ready, Log: opts.Log, Now: opts.Now, Metrics: m, Reporters: reporters})
	if err != nil {
		return nil, err
	}
	return &Gateway{
		Keys: keySvc, Tokens: tokenSvc, Keyring: ring, JWT: signer, Recorder: recorder, Server: srv, Metrics: m,
		cfg: cfg, store: st, log: opts.Log,
	}, nil
}

// newReporters loads the secret scanners' means of signing leaked-key
// reports: GitHub's public keys from their file (refusing to start on one
// that cannot be read or holds no usable key), and the shared secret.
func newReporters(cfg LeaksConfig, log *slog.Logger) (*keys.Reporters, error) {
	var github *keys.GitHubKeys
	if cfg.GitHubPublicKeysFile != "" {
		var err error
		if github, err = keys.LoadGitHubKeys(cfg.GitHubPublicKeysFile, log); err != nil {
			return nil, fmt.Errorf("leaks.github_public_keys_file: %w", err)
		}
		log.Info("taking leaked-key reports signed by GitHub", "path", cfg.GitHubPublicKeysFile, "keys", github.Len())
	}
	reporters, err := keys.NewReporters(github, cfg.HMACSecret)
	if err != nil {
		return nil, fmt.Errorf("leaks.hmac_secret: %w", err)
	}
	if cfg.HMACSecret != "" {
		log.Info("taking leaked-key reports signed with leaks.hmac_secret")
	}
	return reporters, nil
}

// warnOfIssuer warns once when the OAuth server metadata is served with
// an issuer that RFC 8414 clients refuse: it must be the https URL the
// metadata's address is made from (§2, §3.3), that is server.public_url.
func warnOfIssuer(log *slog.Logger, cfg Config) {
	public, issuer := cfg.Server.PublicURL, cfg.Tokens.Issuer
	if public == "" || issuer == public && strings.HasPrefix(issuer, "https://") {
		return
	}
	log.Warn("tokens.issuer is not server.public_url as an https URL: OAuth clients that check the server metadata's issuer (RFC 8414 §3.3) refuse it; see docs/operations.md before changing the issuer",
		"issuer", issuer, "public_url", public)
}

// NewKeyring makes the keyring the configuration describes; the CLI's
// signing-key commands use it without the rest of the gateway.
func NewKeyring(t TokensConfig, master tokens.MasterKey, st tokens.KeyStore, now func() time.Time, log *slog.Logger) *tokens.Keyring {
	return tokens.NewKeyring(tokens.KeyringConfig{
		Algorithm:       t.Algorithm,
		HMACSecret:      t.HMACSecret.Reveal(),
		AccessTTL:       t.AccessTTL,
		Leeway:          t.Leeway,
		ActivationDelay: t.SigningKeyActivationDelay,
	}, master, st, now, log)
}

// Handler is the HTTP API.
func (g *Gateway) Handler() http.Handler { return g.Server.Handler() }

// Run runs the background jobs until ctx ends: reloading the signing keys
// (so that a rotation made with the CLI reaches this process), flushing the
// batched login audit, following the key changes the store announces, and
// deleting dead refresh-token families. On its way out it flushes the last
// audit batch.
func (g *Gateway) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { g.Keyring.Run(ctx, g.cfg.Tokens.KeyReloadInterval) })
	wg.Go(func() { g.Recorder.Run(ctx) })
	wg.Go(func() { g.Keys.WatchChanges(ctx) })
	wg.Go(func() { g.housekeep(ctx) })
	wg.Wait()
}

func (g *Gateway) housekeep(ctx context.Context) {
	t := time.NewTicker(g.cfg.Tokens.HousekeepingInterval)
	defer t.Stop()
	for {
		n, err := g.Tokens.Housekeep(ctx)
		if err != nil && ctx.Err() == nil {
			g.log.ErrorContext(ctx, "housekeeping", "err", err)
		} else if n > 0 {
			g.log.InfoContext(ctx, "housekeeping deleted refresh-token families", "count", n)
		}
		n, err = g.Keys.ExpireAudit(ctx, g.cfg.Audit.Retention)
		if err != nil && ctx.Err() == nil {
			g.log.ErrorContext(ctx, "housekeeping the audit trail", "err", err)
		} else if n > 0 {
			g.log.InfoContext(ctx, "housekeeping deleted audit events past audit.retention", "count", n, "retention", g.cfg.Audit.Retention.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

var heapGoalOnce sync.Once

// Serve answers the API on ln, and the admin endpoints on admin unless it
// is nil, and runs the background jobs until ctx ends. Then it drains both
// listeners' requests within server.shutdown_timeout and stops the jobs
// (flushing the audit batch). The store stays open: the caller closes it
// after Serve returns.
func (g *Gateway) Serve(ctx context.Context, ln, admin net.Listener) error {
	heapGoalOnce.Do(keepHeapGoal)
	servers := []*http.Server{g.httpServer(g.Handler())}
	listeners := []net.Listener{ln}
	if admin != nil {
		var metricsHandler http.Handler
		if g.Metrics != nil {
			metricsHandler = g.Metrics.Handler()
		}
		servers = append(servers, g.httpServer(g.Server.Admin(server.AdminConfig{Pprof: g.cfg.Admin.Pprof, Metrics: metricsHandler})))
		listeners = append(listeners, admin)
	}
	bgCtx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	background := make(chan struct{})
	go func() {
		defer close(background)
		g.Run(bgCtx)
	}()

	serveErr := make(chan error, len(servers))
	for i, srv := range servers {
		go func() { serveErr <- srv.Serve(listeners[i]) }()
	}
	var failed error
	select {
	case failed = <-serveErr: // a listener failed
	case <-ctx.Done():
		g.log.Info("shutting down: draining requests", "timeout", g.cfg.Server.ShutdownTimeout.String())
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.Server.ShutdownTimeout)
	defer cancel()
	var drainErr error
	for _, srv := range servers {
		drainErr = errors.Join(drainErr, srv.Shutdown(shutdownCtx))
	}
	stopBackground()
	<-background // the recorder flushes its last batch here
	if failed != nil {
		return failed
	}
	if drainErr != nil {
		return fmt.Errorf("draining requests: %w", drainErr)
	}
	return nil
}

// httpServer is an http.Server with the configured timeouts and limits.
func (g *Gateway) httpServer(h http.Handler) *http.Server {
	sc := g.cfg.Server
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: sc.ReadHeaderTimeout,
		ReadTimeout:       sc.ReadTimeout,
		WriteTimeout:      sc.WriteTimeout,
		IdleTimeout:       sc.IdleTimeout,
		MaxHeaderBytes:    headerLimit(sc.MaxHeaderBytes),
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
}

// headerLimit turns server.max_header_bytes into http.Server's setting,
// which lets 4096 bytes more through than it says.
func headerLimit(n int) int {
	const slop = 4096
	if n-slop < 1024 {
		return 1024
	}
	return n - slop
}
