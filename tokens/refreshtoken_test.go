package tokens_test

import (
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"testing"
	"time"

	"keygate/keys"
	"keygate/tokens"
)

// The two forms of refresh token, as refreshtoken.go describes them. The
// tests build tokens from this description, not through the service, so a
// change of format (which would strand every token in the field) fails here.
const (
	// refreshPayloadLen is a later token's body (generation 1 and up):
	// family id | generation | MAC.
	refreshPayloadLen = 16 + 4 + 24
	// firstPayloadLen is a login's token's body (generation 0):
	// family id | key id | expiry | MAC.
	firstPayloadLen = 16 + 16 + 8 + 24
	// scopedPayloadLen is a down-scoped login's: family id, key id, a
	// 6-byte expiry, the scope bits, MAC.
	scopedPayloadLen = 16 + 16 + 6 + 4 + 24

	laterDomain = "keygate refresh v1" // the MAC domain keygate has always used
	firstDomain = "keygate refresh v1 first"
)

var (
	refreshPattern = regexp.MustCompile(`^rt_[0-9A-Za-z]{66}$`)
	firstPattern   = regexp.MustCompile(`^rt_[0-9A-Za-z]{92}$`)
)

// refreshMACKey is the refresh tokens' MAC key as a master key derives it:
// the key of every test env (newEnv).
func refreshMACKey(tb testing.TB, master string) []byte {
	tb.Helper()
	k, err := hkdf.Key(sha256.New, []byte(master), nil, "keygate refresh-token mac v1", 32)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// macOf is HMAC-SHA256(domain | body), cut to 192 bits.
func macOf(key []byte, domain string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(domain))
	m.Write(body)
	return m.Sum(nil)[:24]
}

// laterToken is the token of generation gen in the form keygate has
// always written, and still writes for generations 1 and up.
func laterToken(tb testing.TB, master string, familyID []byte, gen uint32) keys.Secret {
	tb.Helper()
	body := binary.BigEndian.AppendUint32(bytes.Clone(familyID), gen)
	return keys.Encode(keys.RefreshTokenPrefix, append(body, macOf(refreshMACKey(tb, master), laterDomain, body)...))
}

// firstToken is a generation-0 token; domain is the MAC's, firstDomain
// for a real one.
func firstToken(tb testing.TB, master, domain string, familyID, keyID []byte, expires time.Time) keys.Secret {
	tb.Helper()
	body := append(bytes.Clone(familyID), keyID...)
	body = binary.BigEndian.AppendUint64(body, uint64(expires.UnixMilli()))
	return keys.Encode(keys.RefreshTokenPrefix, append(body, macOf(refreshMACKey(tb, master), domain, body)...))
}

// payloadOf decodes a refresh token of either form.
func payloadOf(tb testing.TB, tok string) []byte {
	tb.Helper()
	if p, err := keys.Decode(tok, keys.RefreshTokenPrefix, refreshPayloadLen); err == nil {
		return p
	}
	if p, err := keys.Decode(tok, keys.RefreshTokenPrefix, firstPayloadLen); err == nil {
		return p
	}
	p, err := keys.Decode(tok, keys.RefreshTokenPrefix, scopedPayloadLen)
	if err != nil {
		tb.Fatalf("decoding a refresh token: %v", err)
	}
	return p
}

// tamper flips one bit of a refresh token's payload and re-encodes it with
// a valid checksum, so the MAC alone must catch it.
func tamper(tb testing.TB, tok string, byteIndex int) string {
	tb.Helper()
	payload := payloadOf(tb, tok)
	payload[byteIndex] ^= 1
	return keys.Encode(keys.RefreshTokenPrefix, payload).Reveal()
}

func mustFamily(tb testing.TB, e *env, tok keys.Secret) string {
	tb.Helper()
	id, ok := familyOf(e.svc, tok.Reveal())
	if !ok {
		tb.Fatalf("FamilyOf refused a token the service issued")
	}
	return id
}

func TestFamilyOf(t *testing.T) {
	e := newEnv(t)
	p := e.newPartner(t, "Acme")
	a, b := e.login(t, p), e.login(t, p)
	if mustFamily(t, e, a.RefreshToken) == mustFamily(t, e, b.RefreshToken) {
		t.Fatal("two logins share a family")
	}
	// A login's token and its successors name one family.
	id, tok := mustFamily(t, e, a.RefreshToken), a.RefreshToken
	for range 3 {
		tok = e.refresh(t, tok).RefreshToken
		if got := mustFamily(t, e, tok); got != id {
			t.Fatalf("a successor names family %s, the login's token %s", got, id)
		}
	}
	other := newEnv(t, func(c *envConfig) { c.masterKey = otherMasterKey })
	otherFirst := other.login(t, other.newPartner(t, "X")).RefreshToken
	otherLater := other.refresh(t, otherFirst).RefreshToken
	for _, bad := range []string{"", "rt_", p.apiKey, a.JWT.Reveal(), otherFirst.Reveal(), otherLater.Reveal(),
		tamper(t, a.RefreshToken.Reveal(), 0), tamper(t, tok.Reveal(), 0)} {
		if id, ok := familyOf(e.svc, bad); ok || id != "" {
			t.Errorf("FamilyOf(%.12q) = %q, %v", bad, id, ok)
		}
	}
}

// TestFirstTokenForm pins a login's token to its form, from the outside:
// family id (the login's millisecond, then random bits) | key id | expiry |
// MAC under its own domain, so that it can never pass for a later token.
func TestFirstTokenForm(t *testing.T) {
	e := newEnv(t)
	login := t0.Add(1234567890) // not on a millisecond
	e.clock.Set(login)
	p := e.newPartner(t, "Acme")
	pair := e.login(t, p)
	payload, err := keys.Decode(pair.RefreshToken.Reveal(), keys.RefreshTokenPrefix, firstPayloadLen)
	if err != nil {
		t.Fatalf("a login's refresh token is not in the first form: %v", err)
	}
	familyID, keyID, expiry := payload[:16], payload[16:32], payload[32:40]
	if got := mustFamily(t, e, pair.RefreshToken); got != hex.EncodeToString(familyID) {
		t.Fatalf("FamilyOf %s, the token carries %x", got, familyID)
	}
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(login.UnixMilli()))
	if !bytes.Equal(familyID[:6], ms[2:]) {
		t.Errorf("family id starts %x, want the login's millisecond %x", familyID[:6], ms[2:])
	}
	if want, ok := keys.IDBytes("key_", p.KeyID); !ok || !bytes.Equal(keyID, want) {
		t.Errorf("key id %x, want %x (%s)", keyID, want, p.KeyID)
	}
	if got := time.UnixMilli(int64(binary.BigEndian.Uint64(expiry))); !got.Equal(pair.RefreshTokenExpiration) {
		t.Errorf("expiry %v, RefreshTokenExpiration %v", got, pair.RefreshTokenExpiration)
	}
	exp := pair.RefreshTokenExpiration
	if rebuilt := firstToken(t, testMasterKey, firstDomain, familyID, keyID, exp); rebuilt != pair.RefreshToken {
		t.Fatal("the login's token is not family id | key id | expiry | MAC(first domain)")
	}

	// The same body under the other domain, and a generation 0 in the later
	// form, are refused, as is anything from another master key; none of
	// it counts as a use of the family, which lives on.
	next := e.refresh(t, pair.RefreshToken)
	if want := laterToken(t, testMasterKey, familyID, 1); next.RefreshToken != want {
		t.Fatal("the successor is not family id | generation | MAC(later domain)")
	}
	e.clock.Advance(e.cfg.refresh.ReuseGrace + time.Second) // a replay of the parent now is reuse
	for name, bad := range map[string]keys.Secret{
		"first form, later domain":   firstToken(t, testMasterKey, laterDomain, familyID, keyID, exp),
		"generation 0, later form":   laterToken(t, testMasterKey, familyID, 0),
		"first form, other master":   firstToken(t, otherMasterKey, firstDomain, familyID, keyID, exp),
		"later form, other master":   laterToken(t, otherMasterKey, familyID, 1),
		"first form, later expiry":   withBody(payload, 32, binary.BigEndian.AppendUint64(nil, uint64(exp.Add(time.Hour).UnixMilli()))),
		"first form, key id changed": withBody(payload, 16, make([]byte, 16)),
		"first form, no MAC":         withBody(payload, 40, make([]byte, 24)),
		"later form, MAC of first":   keys.Encode(keys.RefreshTokenPrefix, append(binary.BigEndian.AppendUint32(bytes.Clone(familyID), 0), payload[40:]...)),
	} {
		if id, ok := familyOf(e.svc, bad.Reveal()); ok {
			t.Errorf("%s: FamilyOf accepted it as family %s", name, id)
		}
		t.Run(name, func(t *testing.T) { e.refreshFails(t, bad) })
	}
	if n := len(reuseEvents(t, e)); n != 0 {
		t.Fatalf("%d reuse events from forged tokens, want 0", n)
	}
	e.refresh(t, next.RefreshToken)
}

// withBody is payload with the bytes at offset replaced, its MAC kept.
func withBody(payload []byte, offset int, b []byte) keys.Secret {
	p := bytes.Clone(payload)
	copy(p[offset:], b)
	return keys.Encode(keys.RefreshTokenPrefix, p)
}

// TestFirstTokenExpiry: the RefreshTokenExpiration a login reports is the
// instant its token stops working, to the nanosecond, whichever limit sets
// it and whatever the login's sub-millisecond time.
func TestFirstTokenExpiry(t *testing.T) {
	for _, tc := range []struct {
		name             string
		ttl, maxLifetime time.Duration
	}{
		{"inactivity limit", time.Hour, 10 * time.Hour},
		{"absolute limit", 10 * time.Hour, time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eachBackend(t, func(t *testing.T, backend func(*envConfig)) {
				e := newEnv(t, backend, func(c *envConfig) { c.refresh.TTL, c.refresh.MaxLifetime = tc.ttl, tc.maxLifetime })
				p := e.newPartner(t, "Acme")
				login := t0.Add(1234567890) // the token keeps milliseconds
				e.clock.Set(login)
				before, after := e.login(t, p), e.login(t, p)
				exp := before.RefreshTokenExpiration
				if want := login.Truncate(time.Millisecond).Add(time.Hour); !exp.Equal(want) {
					t.Fatalf("RefreshTokenExpiration %v, want %v", exp, want)
				}
				if !after.RefreshTokenExpiration.Equal(exp) {
					t.Fatalf("two logins at one instant expire at %v and %v", exp, after.RefreshTokenExpiration)
				}
				e.clock.Set(exp.Add(-time.Nanosecond))
				e.refresh(t, before.RefreshToken)
				e.clock.Set(exp)
				e.refreshFails(t, after.RefreshToken)
				if _, ok := e.family(t, after.RefreshToken); ok {
					t.Fatal("an expired first token wrote its family's row")
				}
			})
		})
	}
}

// TestOldFormTokens: tokens issued before logins wrote nothing (a family
// row written at login at generation 1, no first expiry) keep working,
// their successors keep the old form, and tokens of either kind survive a
// new Service on the same store and master key, as after a restart.
func TestOldFormTokens(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend func(*envConfig)) {
		e := newEnv(t, backend)
		ctx := t.Context()
		p := e.newPartner(t, "Acme")

		// The row an old login wrote, as migration 0002 kept it.
		familyID := make([]byte, 16)
		binary.BigEndian.PutUint64(familyID[:8], uint64(t0.UnixMilli())<<16)
		_, _ = rand.Read(familyID[6:])
		id := hex.EncodeToString(familyID)
		old := tokens.Family{
			ID: id, Principal: keys.Principal{KeyID: p.KeyID}, CreatedAt: t0, Generation: 1,
			RotatedAt: t0, ExpiresAt: t0.Add(e.cfg.refresh.TTL),
		}
		err := e.db.UpdateFamily(ctx, id, &old, func(*tokens.Family) (tokens.Change, error) {
			return tokens.Change{Write: true}, nil
		})
		if err != nil {
			t.Fatalf("writing an old family row: %v", err)
		}
		tok := laterToken(t, testMasterKey, familyID, 1)
		if got := mustFamily(t, e, tok); got != id {
			t.Fatalf("FamilyOf an old token = %s, want %s", got, id)
		}
		e.clock.Advance(time.Minute)
		next := e.refresh(t, tok)
		if want := laterToken(t, testMasterKey, familyID, 2); next.RefreshToken != want {
			t.Fatal("an old token's successor is not in the old form")
		}
		if retry := e.refresh(t, tok); retry.RefreshToken != next.RefreshToken {
			t.Fatal("an old token retried within grace got another successor")
		}
		if c := mustVerify(t, e.jwt, next.JWT.Reveal()); c.Principal() != p.Principal {
			t.Fatalf("an old family's JWT speaks for %+v, want %+v", c.Principal(), p.Principal)
		}

		// A new Service on the same store and master key takes over both an
		// old family and a new one in the middle of their lives.
		first := e.login(t, p)
		second := e.refresh(t, first.RefreshToken)
		master, err := tokens.NewMasterKey(testMasterKey)
		if err != nil {
			t.Fatal(err)
		}
		refresh, err := tokens.LoadRefreshKey(ctx, e.db, master, e.clock.Now)
		if err != nil {
			t.Fatal(err)
		}
		restarted := tokens.NewService(e.keys, e.db, e.jwt, refresh, e.cfg.refresh, e.clock.Now)
		e.clock.Advance(time.Minute)
		for name, tok := range map[string]keys.Secret{"old family": next.RefreshToken, "new family": second.RefreshToken} {
			pair, err := restarted.Refresh(ctx, tok.Reveal(), testAddr)
			if err != nil {
				t.Fatalf("%s: the new Service refused a live token: %v", name, err)
			}
			e.refresh(t, pair.RefreshToken) // and the old Service its successor
		}
		if n := len(reuseEvents(t, e)); n != 0 {
			t.Fatalf("%d reuse events, want 0", n)
		}

		// Housekeeping deletes a dead old family: no first token holds it.
		if err := e.svc.Logout(ctx, tok.Reveal()); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(e.cfg.refresh.Retention + time.Millisecond)
		if n, err := e.svc.Housekeep(ctx); err != nil || n != 1 {
			t.Fatalf("Housekeep = %d, %v; want the old family deleted", n, err)
		}
		if _, ok := e.family(t, tok); ok {
			t.Fatal("the old family's row survived housekeeping")
		}
		e.refreshFails(t, tok)
	})
}

func TestRefreshRejectsTampered(t *testing.T) {
	for _, form := range []struct {
		name string
		// tokens returns a live token and another family's token of the
		// same form.
		tokens func(t *testing.T, e *env, p principal) (live, other string)
	}{
		{"first form", func(t *testing.T, e *env, p principal) (string, string) {
			return e.login(t, p).RefreshToken.Reveal(), e.login(t, p).RefreshToken.Reveal()
		}},
		{"later form", func(t *testing.T, e *env, p principal) (string, string) {
			live := e.refresh(t, e.login(t, p).RefreshToken).RefreshToken.Reveal()
			return live, e.refresh(t, e.login(t, p).RefreshToken).RefreshToken.Reveal()
		}},
		{"scoped first form", func(t *testing.T, e *env, _ principal) (string, string) {
			_, ac := scopedPartner(t, e)
			login := func() string {
				pair, err := e.svc.LoginWith(context.Background(), ac.apiKey, testAddr, tokens.LoginOptions{Scope: keys.Only(mustScopes(t, "c"))})
				if err != nil {
					t.Fatal(err)
				}
				if n := len(pair.RefreshToken.Reveal()); n > 100 {
					t.Errorf("a down-scoped login's refresh token has %d characters, more than the 100 the API promises", n)
				}
				return pair.RefreshToken.Reveal()
			}
			return login(), login()
		}},
	} {
		t.Run(form.name, func(t *testing.T) {
			e := newEnv(t)
			p := e.newPartner(t, "Acme")
			pair := e.login(t, p)
			live, otherFamily := form.tokens(t, e, p)
			testRejectsTampered(t, e, p, pair, live, otherFamily)
		})
	}
}

func testRejectsTampered(t *testing.T, e *env, p principal, pair tokens.Pair, live, otherFamily string) {
	cases := map[string]string{
		"empty":        "",
		"prefix only":  "rt_",
		"API key":      p.apiKey,
		"JWT":          pair.JWT.Reveal(),
		"truncated":    live[:len(live)-1],
		"extended":     live + "0",
		"wrong prefix": "pk_" + live[3:],
		"upper prefix": "RT_" + live[3:],
		"whitespace":   " " + live,
	}
	for i := len(keys.RefreshTokenPrefix); i < len(live); i++ {
		b := []byte(live)
		b[i] = "ab"[boolIndex(b[i] == 'a')] // one base62 character for another
		cases[fmt.Sprintf("character %d changed", i)] = string(b)
	}
	a, b := payloadOf(t, live), payloadOf(t, otherFamily)
	for i := range a {
		cases[fmt.Sprintf("payload byte %d changed", i)] = tamper(t, live, i)
		// One token's start with another family's end, such as its MAC.
		// Family ids may share a prefix (a timestamp), and two MACs may end
		// in the same bytes: a splice that gives back either token whole
		// is no forgery.
		if splice := append(append([]byte{}, a[:i]...), b[i:]...); !bytes.Equal(splice, b) && !bytes.Equal(splice, a) {
			cases[fmt.Sprintf("spliced at byte %d", i)] = keys.Encode(keys.RefreshTokenPrefix, splice).Reveal()
		}
	}
	other := newEnv(t, func(c *envConfig) { c.masterKey = otherMasterKey })
	otherPair := other.login(t, other.newPartner(t, "X"))
	cases["first form from a gateway with another master key"] = otherPair.RefreshToken.Reveal()
	cases["later form from a gateway with another master key"] = other.refresh(t, otherPair.RefreshToken).RefreshToken.Reveal()

	for name, bad := range cases {
		t.Run(name, func(t *testing.T) { e.refreshFails(t, keys.Secret(bad)) })
	}

	// The same database read with another refresh-token key (another
	// master key's) accepts none of its tokens.
	svc := tokens.NewService(e.keys, e.db, e.jwt, other.refreshKey, e.cfg.refresh, e.clock.Now)
	if _, err := svc.Refresh(context.Background(), live, testAddr); !errors.Is(err, tokens.ErrInvalidRefreshToken) {
		t.Fatalf("a service with another master key: %v, want ErrInvalidRefreshToken", err)
	}

	// None of it was taken for reuse or wrote a row: the family still lives.
	if len(reuseEvents(t, e)) != 0 {
		t.Fatal("a tampered token was taken for reuse")
	}
	e.refresh(t, keys.Secret(live))
}
