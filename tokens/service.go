// Package tokens owns what keygate hands out after a login: access tokens
// (JWTs: signing, strict verification, the signing keys and their JWKS,
// sealed under the master key) and refresh-token families (issuing,
// rotation with reuse detection, logout, housekeeping), with the Store they
// need. Files are named for their job: login.go, refresh.go, logout.go,
// authorize.go, housekeeping.go, refreshtoken.go (the token format),
// jwt.go, signing.go, masterkey.go, secrets.go (the refresh-token key,
// sealed in the store), reseal.go (a master-key rotation). It knows
// nothing of HTTP or SQL.
package tokens

import (
	"context"
	"errors"
	"sync"
	"time"

	"keygate/keys"
)

// ErrInvalidRefreshToken covers every reason a refresh token is refused:
// unknown, malformed, expired, revoked, reused, or its principal inactive.
var ErrInvalidRefreshToken = errors.New("invalid refresh token")

// Why a refresh token was refused, for logs and metrics: each comes wrapped
// with ErrInvalidRefreshToken, which is all a client learns.
var (
	// ErrReused: a used token was presented again; its family is revoked.
	ErrReused = errors.New("refresh token reused")
	// ErrExpired: the token's inactivity or absolute lifetime is over.
	ErrExpired = errors.New("refresh token expired")
	// ErrOtherClient: the token belongs to another principal than the
	// client presenting it (OAuth); nothing was changed.
	ErrOtherClient = errors.New("refresh token of another client")
)

// The refusals of an expired token and of another client's.
var (
	errExpired     = errors.Join(ErrInvalidRefreshToken, ErrExpired)
	errOtherClient = errors.Join(ErrInvalidRefreshToken, ErrOtherClient)
)

// Store is everything the tokens package persists.
type Store interface {
	KeyStore
	SecretStore
	FamilyStore
}

// Authenticator resolves API keys, audits logins and re-checks principals;
// keys.Service is one.
type Authenticator interface {
	Authenticate(ctx context.Context, apiKey string) (keys.Principal, error)
	RecordLogin(ctx context.Context, p keys.Principal, hint, addr string, ok bool)
	RecordRefreshFailure(ctx context.Context, addr string)
	ActivePrincipal(ctx context.Context, p keys.Principal) (keys.Principal, error)
}

// RefreshConfig holds the refresh-token lifetimes.
type RefreshConfig struct {
	TTL         time.Duration // inactivity: each token lives this long
	MaxLifetime time.Duration // absolute: no token outlives family start + this
	ReuseGrace  time.Duration // a parent retried within this gets the same successor
	Retention   time.Duration // dead families are kept this long, then deleted
}

// Pair is what a login or refresh returns.
type Pair struct {
	// Principal is who the tokens speak for (no name).
	Principal keys.Principal
	// GraceRetry: the refresh was the retry of a token used within the
	// grace window, answered with the successor already issued.
	GraceRetry             bool
	JWT                    keys.Secret
	ExpiresAt              time.Time
	RefreshToken           keys.Secret
	RefreshTokenExpiration time.Time
}

// Session is a verified access token and the principal it speaks for.
type Session struct {
	Principal keys.Principal
	ExpiresAt time.Time
}

// Service logs principals in, refreshes and revokes their sessions, and
// checks their access tokens.
type Service struct {
	auth  Authenticator
	store FamilyStore
	jwt   *JWT
	cfg   RefreshConfig
	hmacs *sync.Pool // of HMAC states keyed for refresh tokens
	now   func() time.Time
}

// NewService wires a Service; refresh is the refresh tokens' MAC key
// (LoadRefreshKey).
func NewService(auth Authenticator, store FamilyStore, j *JWT, refresh RefreshKey, cfg RefreshConfig, now func() time.Time) *Service {
	return &Service{auth: auth, store: store, jwt: j, cfg: cfg, hmacs: newHMACPool(refresh.mac), now: now}
}
