package tokens

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"time"

	"keygate/keys"
)

// ErrInvalidRefreshToken covers every reason a refresh token is refused:
// unknown, malformed, expired, revoked, reused, or its principal inactive.
var ErrInvalidRefreshToken = errors.New("invalid refresh token")

// errReused is wrapped in ErrInvalidRefreshToken for the logs.
var errReused = errors.New("refresh token reused")

// A refresh token is rt_ + base62(family id | generation | MAC) + checksum.
// The MAC is an HMAC of family and generation under a key derived from the
// master key, which never enters the database: the database holds only the
// family's state, so nothing in it lets a reader use a token, and the token
// of any generation can be derived again. That is what makes a retry within
// the grace window return the identical successor.
const (
	familyIDLen = 16
	genLen      = 4
	macLen      = 24 // 192-bit secret
	refreshLen  = familyIDLen + genLen + macLen
)

// Family is one login's chain of refresh tokens. Only generation Generation
// is live; its parent, Generation-1, may be retried within the grace window.
type Family struct {
	ID              string
	Principal       keys.Principal // Name is not stored
	CreatedAt       time.Time
	Generation      int64
	RotatedAt       time.Time // when Generation was issued
	ExpiresAt       time.Time // of the live token
	ParentExpiresAt time.Time // of the parent token, zero for generation 1
	RevokedAt       *time.Time
	RevokeReason    string

	// PrincipalActive is read by the store in the same transaction: false if
	// the key was revoked or the company or partner disabled.
	PrincipalActive bool
}

// Change is what UpdateFamily writes after a decision: the family as left
// by the decision (if Write) and audit events, in the same transaction.
type Change struct {
	Write bool
	Audit []keys.AuditEvent
}

// FamilyStore persists refresh-token families.
type FamilyStore interface {
	CreateFamily(ctx context.Context, f Family) error
	// StartFamily resolves an API key digest to its active principal and
	// creates f for it, in one write transaction: the login's only round
	// trip to the store. keys.ErrInvalidKey if the key is unknown, revoked,
	// or its company or partner disabled; f.Principal is filled in.
	StartFamily(ctx context.Context, digest keys.Digest, f Family) (keys.Principal, error)
	// UpdateFamily reads the family inside one write transaction, calls
	// decide, applies its Change only if the family's generation is still
	// the one read (a conditional update), commits, and returns decide's
	// error. keys.ErrNotFound if there is no such family. decide runs inside
	// the store's write transaction (SQLite: on its single writer; memstore:
	// under its lock): it must be quick and must never call the store.
	UpdateFamily(ctx context.Context, id string, decide func(f *Family) (Change, error)) error
	// DeleteFamilies deletes up to limit families that expired or were
	// revoked before the given time, and reports how many it deleted.
	DeleteFamilies(ctx context.Context, before time.Time, limit int) (int, error)
}

// Store is everything the tokens package persists.
type Store interface {
	KeyStore
	FamilyStore
}

// Authenticator audits logins and re-checks principals; keys.Service is one.
type Authenticator interface {
	RecordLogin(ctx context.Context, p keys.Principal, hint, addr string, ok bool)
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
	auth   Authenticator
	store  FamilyStore
	jwt    *JWT
	cfg    RefreshConfig
	macKey []byte
	now    func() time.Time
}

// NewService wires a Service.
func NewService(auth Authenticator, store FamilyStore, j *JWT, master MasterKey, cfg RefreshConfig, now func() time.Time) *Service {
	return &Service{auth: auth, store: store, jwt: j, cfg: cfg, macKey: master.refreshMAC, now: now}
}

// Login exchanges an API key for an access token and a new token family.
// The family row is committed before the pair is returned.
func (s *Service) Login(ctx context.Context, apiKey, addr string) (Pair, error) {
	if _, err := keys.ParseAPIKey(apiKey); err != nil {
		s.auth.RecordLogin(ctx, keys.Principal{}, keys.HintMalformed, addr, false)
		return Pair{}, keys.ErrInvalidKey
	}
	hint := keys.Hint(apiKey)
	now := s.now()
	idBytes := newFamilyID(now)
	f := Family{
		ID:              hex.EncodeToString(idBytes),
		CreatedAt:       now,
		Generation:      1,
		RotatedAt:       now,
		PrincipalActive: true,
	}
	f.ExpiresAt = s.expiry(f, now)
	// One store round trip looks the key up and starts the family; the
	// token is signed only once that row has committed.
	p, err := s.store.StartFamily(ctx, keys.DigestOf(apiKey), f)
	if err != nil {
		if errors.Is(err, keys.ErrInvalidKey) {
			s.auth.RecordLogin(ctx, keys.Principal{}, hint, addr, false)
		}
		return Pair{}, err
	}
	s.auth.RecordLogin(ctx, p, hint, addr, true)
	jwt, exp, err := s.jwt.Sign(p, now)
	if err != nil {
		return Pair{}, err
	}
	return Pair{JWT: keys.Secret(jwt), ExpiresAt: exp, RefreshToken: s.token(idBytes, 1), RefreshTokenExpiration: f.ExpiresAt}, nil
}

// Refresh uses up a refresh token and returns its successor with a fresh
// access token. The database decides, in one transaction, whether this
// token is the live one (rotate), its parent retried within the grace
// window (same successor again), or an older one (reuse: the family dies).
func (s *Service) Refresh(ctx context.Context, raw, addr string) (Pair, error) {
	idBytes, gen, ok := s.parse(raw)
	if !ok {
		return Pair{}, ErrInvalidRefreshToken
	}
	var out Family
	err := s.store.UpdateFamily(ctx, hex.EncodeToString(idBytes), func(f *Family) (Change, error) {
		now := s.now()
		switch {
		case f.RevokedAt != nil:
			return Change{}, ErrInvalidRefreshToken
		case !f.PrincipalActive:
			f.RevokedAt, f.RevokeReason = &now, "principal_inactive"
			return Change{Write: true}, ErrInvalidRefreshToken
		case gen == f.Generation:
			if !now.Before(f.ExpiresAt) {
				return Change{}, ErrInvalidRefreshToken
			}
			f.ParentExpiresAt = f.ExpiresAt
			f.Generation++
			f.RotatedAt = now
			f.ExpiresAt = s.expiry(*f, now)
			out = *f
			return Change{Write: true}, nil
		case gen == f.Generation-1 && s.cfg.ReuseGrace > 0 && now.Sub(f.RotatedAt) <= s.cfg.ReuseGrace:
			if !now.Before(f.ParentExpiresAt) || !now.Before(f.ExpiresAt) {
				return Change{}, ErrInvalidRefreshToken // expired, grace or not
			}
			out = *f
			return Change{}, nil
		case gen < f.Generation:
			f.RevokedAt, f.RevokeReason = &now, "reuse"
			ev := keys.AuditEvent{
				At: now, ActorType: string(f.Principal.Kind), ActorID: f.Principal.ID,
				Action: "refresh.reuse_detected", TargetType: "token_family", Target: f.ID,
				Addr: addr, Outcome: OutcomeRevoked, Detail: "key=" + f.Principal.KeyID,
			}
			return Change{Write: true, Audit: []keys.AuditEvent{ev}}, errReused
		default: // a generation from the future: a forged token with a valid MAC cannot exist
			return Change{}, ErrInvalidRefreshToken
		}
	})
	if err != nil {
		if errors.Is(err, keys.ErrNotFound) || errors.Is(err, errReused) {
			return Pair{}, errors.Join(ErrInvalidRefreshToken, err)
		}
		return Pair{}, err
	}
	jwt, exp, err := s.jwt.Sign(out.Principal, s.now())
	if err != nil {
		return Pair{}, err
	}
	return Pair{JWT: keys.Secret(jwt), ExpiresAt: exp, RefreshToken: s.token(idBytes, out.Generation), RefreshTokenExpiration: out.ExpiresAt}, nil
}

// OutcomeRevoked is the audit outcome of a family killed on reuse.
const OutcomeRevoked = "revoked"

// Logout revokes the whole family of a refresh token. Unknown, malformed or
// already revoked tokens are no error: logout is no oracle.
func (s *Service) Logout(ctx context.Context, raw string) error {
	idBytes, _, ok := s.parse(raw)
	if !ok {
		return nil
	}
	err := s.store.UpdateFamily(ctx, hex.EncodeToString(idBytes), func(f *Family) (Change, error) {
		if f.RevokedAt != nil {
			return Change{}, nil
		}
		now := s.now()
		f.RevokedAt, f.RevokeReason = &now, "logout"
		return Change{Write: true}, nil
	})
	if errors.Is(err, keys.ErrNotFound) {
		return nil
	}
	return err
}

// FamilyOf returns the family id of a well-formed refresh token with a valid
// MAC, for per-family rate limits; ok is false otherwise.
func (s *Service) FamilyOf(raw string) (string, bool) {
	idBytes, _, ok := s.parse(raw)
	if !ok {
		return "", false
	}
	return hex.EncodeToString(idBytes), true
}

// Authorize verifies an access token and checks that its principal may
// still act: keygate's own endpoints honour revocation (at once for changes
// made through this process, within the store's cache lifetime for others),
// while downstream services rely on the token's short lifetime.
func (s *Service) Authorize(ctx context.Context, raw string) (Session, error) {
	claims, err := s.jwt.Verify(raw)
	if err != nil {
		return Session{}, err
	}
	p, err := s.auth.ActivePrincipal(ctx, claims.Principal())
	if err != nil {
		if errors.Is(err, keys.ErrInactive) {
			return Session{}, errors.Join(ErrInvalidToken, err)
		}
		return Session{}, err
	}
	return Session{Principal: p, ExpiresAt: claims.ExpiresAt.Time}, nil
}

// Housekeep deletes dead families in small batches, each its own short
// transaction, so logins queued behind it wait for one batch at most.
func (s *Service) Housekeep(ctx context.Context) (int, error) {
	const batch = 500
	before := s.now().Add(-s.cfg.Retention)
	total := 0
	for {
		n, err := s.store.DeleteFamilies(ctx, before, batch)
		total += n
		if err != nil || n < batch {
			return total, err
		}
	}
}

// newFamilyID lays out 48 bits of milliseconds then 80 random bits, as
// UUIDv7 does: new families sort last, so the store appends to its index
// instead of touching a random page per login. The id is no secret (the
// token's MAC is); 80 random bits keep ids of one millisecond apart.
func newFamilyID(now time.Time) []byte {
	id := make([]byte, familyIDLen)
	ms := uint64(now.UnixMilli())
	for i := 5; i >= 0; i-- {
		id[i] = byte(ms)
		ms >>= 8
	}
	_, _ = rand.Read(id[6:])
	return id
}

// expiry is the earlier of the inactivity and the absolute limit.
func (s *Service) expiry(f Family, now time.Time) time.Time {
	inactivity := now.Add(s.cfg.TTL)
	absolute := f.CreatedAt.Add(s.cfg.MaxLifetime)
	if absolute.Before(inactivity) {
		return absolute
	}
	return inactivity
}

func (s *Service) token(familyID []byte, gen int64) keys.Secret {
	payload := make([]byte, 0, refreshLen)
	payload = append(payload, familyID...)
	payload = binary.BigEndian.AppendUint32(payload, uint32(gen))
	payload = append(payload, s.mac(familyID, uint32(gen))...)
	return keys.Encode(keys.RefreshTokenPrefix, payload)
}

func (s *Service) parse(raw string) (familyID []byte, gen int64, ok bool) {
	payload, err := keys.Decode(raw, keys.RefreshTokenPrefix, refreshLen)
	if err != nil {
		return nil, 0, false
	}
	familyID = payload[:familyIDLen]
	g := binary.BigEndian.Uint32(payload[familyIDLen : familyIDLen+genLen])
	if !hmac.Equal(payload[familyIDLen+genLen:], s.mac(familyID, g)) {
		return nil, 0, false
	}
	return familyID, int64(g), true
}

func (s *Service) mac(familyID []byte, gen uint32) []byte {
	m := hmac.New(sha256.New, s.macKey)
	m.Write([]byte("keygate refresh v1"))
	m.Write(familyID)
	_ = binary.Write(m, binary.BigEndian, gen)
	return m.Sum(nil)[:macLen]
}
