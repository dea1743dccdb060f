package tokens_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"keygate/memstore"
	"keygate/sqlite"
	"keygate/store"
	"keygate/tokens"
)

// freshStores are empty stores of both backends, as a first start finds.
func freshStores(t *testing.T) map[string]store.Store {
	t.Helper()
	db, err := sqlite.Open(t.Context(), sqlite.Options{Path: filepath.Join(t.TempDir(), "fresh.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return map[string]store.Store{"sqlite": db, "memstore": memstore.New()}
}

func mustMasterKey(tb testing.TB, secret string) tokens.MasterKey {
	tb.Helper()
	m, err := tokens.NewMasterKey(secret)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

func mustRefreshKey(tb testing.TB, st tokens.SealedStore, master tokens.MasterKey, e *env) tokens.RefreshKey {
	tb.Helper()
	k, err := tokens.LoadRefreshKey(context.Background(), st, master, e.clock.Now)
	if err != nil {
		tb.Fatalf("LoadRefreshKey: %v", err)
	}
	return k
}

// sameRefreshKey tells whether a refresh token MACed under a is accepted
// under b: the only way a refresh key shows.
func sameRefreshKey(tb testing.TB, e *env, a, b tokens.RefreshKey) bool {
	tb.Helper()
	ctx := context.Background()
	pair, err := tokens.NewService(e.keys, e.db, e.jwt, a, e.cfg.refresh, e.clock.Now).Login(ctx, e.newPartner(tb, "Acme").apiKey, testAddr)
	if err != nil {
		tb.Fatal(err)
	}
	_, err = tokens.NewService(e.keys, e.db, e.jwt, b, e.cfg.refresh, e.clock.Now).Refresh(ctx, pair.RefreshToken.Reveal(), testAddr)
	if err != nil && !errors.Is(err, tokens.ErrInvalidRefreshToken) {
		tb.Fatal(err)
	}
	return err == nil
}

func refreshSecret(tb testing.TB, st tokens.SecretStore) tokens.SealedSecret {
	tb.Helper()
	all, err := st.ListSealedSecrets(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	i := slices.IndexFunc(all, func(s tokens.SealedSecret) bool { return s.Name == tokens.RefreshMACSecret })
	if i < 0 || len(all) != 1 {
		tb.Fatalf("sealed secrets %v, want the refresh-token key alone", all)
	}
	return all[i]
}

// TestRefreshKeyFresh: a fresh database gets a random key, stored sealed,
// which every later load opens: not the key the master key derives, and
// not another fresh database's under the same master key.
func TestRefreshKeyFresh(t *testing.T) {
	e := newEnv(t) // its key is the derived one
	master := mustMasterKey(t, testMasterKey)
	var keys []tokens.RefreshKey
	for name, st := range freshStores(t) {
		t.Run(name, func(t *testing.T) {
			key := mustRefreshKey(t, st, master, e)
			if s := refreshSecret(t, st); s.Placeholder() || bytes.Contains(s.Sealed, []byte(testMasterKey)) {
				t.Fatalf("stored refresh-token key: placeholder %v", s.Placeholder())
			}
			if again := mustRefreshKey(t, st, master, e); !sameRefreshKey(t, e, key, again) {
				t.Fatal("a second load opened another key")
			}
			if sameRefreshKey(t, e, key, e.refreshKey) {
				t.Fatal("a fresh database's key is the one the master key derives")
			}
			keys = append(keys, key)
		})
	}
	if len(keys) == 2 && sameRefreshKey(t, e, keys[0], keys[1]) {
		t.Fatal("two fresh databases share a refresh-token key")
	}
}

// TestRefreshKeyPlaceholder: a database used before keygate stored the key
// (a placeholder) gets the key the master key derives, so that tokens
// issued before keep working; it is stored sealed, once.
func TestRefreshKeyPlaceholder(t *testing.T) {
	e := newEnv(t)
	master := mustMasterKey(t, testMasterKey)
	for name, st := range freshStores(t) {
		t.Run(name, func(t *testing.T) {
			if _, err := st.AddSealedSecret(t.Context(), tokens.SealedSecret{Name: tokens.RefreshMACSecret, CreatedAt: t0}); err != nil {
				t.Fatal(err)
			}
			key := mustRefreshKey(t, st, master, e)
			if !sameRefreshKey(t, e, key, e.refreshKey) || !sameRefreshKey(t, e, e.refreshKey, key) {
				t.Fatal("the placeholder's key is not the one the master key derives")
			}
			if refreshSecret(t, st).Placeholder() {
				t.Fatal("the derived key was not stored")
			}
			// Under another master key now, the stored key is still it.
			rotated := mustMasterKey(t, otherMasterKey)
			if _, err := tokens.RotateMasterKey(t.Context(), st, master, rotated); err != nil {
				t.Fatal(err)
			}
			if !sameRefreshKey(t, e, mustRefreshKey(t, st, rotated, e), e.refreshKey) {
				t.Fatal("after a rotation, the stored key is not the derived one")
			}
		})
	}
}

// TestRefreshKeyPlaceholderWrongMaster: a wrong master key must not store
// the key it derives for good: it is proved on the signing keys first.
func TestRefreshKeyPlaceholderWrongMaster(t *testing.T) {
	e := newEnv(t)
	for name, st := range freshStores(t) {
		t.Run(name, func(t *testing.T) {
			ring := tokens.NewKeyring(tokens.KeyringConfig{Algorithm: tokens.ES256, AccessTTL: testAccessTTL, Leeway: testLeeway}, e.master, st, e.clock.Now, discardLogger())
			if err := ring.EnsureKey(t.Context()); err != nil {
				t.Fatal(err)
			}
			if _, err := st.AddSealedSecret(t.Context(), tokens.SealedSecret{Name: tokens.RefreshMACSecret, CreatedAt: t0}); err != nil {
				t.Fatal(err)
			}
			_, err := tokens.LoadRefreshKey(t.Context(), st, mustMasterKey(t, otherMasterKey), e.clock.Now)
			if !errors.Is(err, tokens.ErrSealed) {
				t.Fatalf("LoadRefreshKey with a wrong master key = %v, want ErrSealed", err)
			}
			if !refreshSecret(t, st).Placeholder() {
				t.Fatal("a wrong master key filled the placeholder")
			}
			if !sameRefreshKey(t, e, mustRefreshKey(t, st, e.master, e), e.refreshKey) {
				t.Fatal("the right master key, after a wrong one, does not get the derived key")
			}
		})
	}
}

// TestRefreshKeyWrongMaster: a stored key opens only with its master key.
func TestRefreshKeyWrongMaster(t *testing.T) {
	e := newEnv(t)
	_, err := tokens.LoadRefreshKey(t.Context(), e.db, mustMasterKey(t, otherMasterKey), e.clock.Now)
	if !errors.Is(err, tokens.ErrSealed) {
		t.Fatalf("LoadRefreshKey with another master key = %v, want ErrSealed", err)
	}
}

// TestRefreshKeyConcurrentFirstStart: processes starting together on a
// fresh database end with one key between them.
func TestRefreshKeyConcurrentFirstStart(t *testing.T) {
	e := newEnv(t)
	master := mustMasterKey(t, testMasterKey)
	for name, st := range freshStores(t) {
		t.Run(name, func(t *testing.T) {
			const n = 8
			got := make([]tokens.RefreshKey, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					<-start
					var err error
					if got[i], err = tokens.LoadRefreshKey(context.Background(), st, master, e.clock.Now); err != nil {
						t.Errorf("LoadRefreshKey %d: %v", i, err)
					}
				})
			}
			close(start)
			wg.Wait()
			refreshSecret(t, st)
			for i := 1; i < n; i++ {
				if !sameRefreshKey(t, e, got[0], got[i]) {
					t.Fatalf("processes 0 and %d started with different refresh-token keys", i)
				}
			}
		})
	}
}

func TestRefreshKeyRedacted(t *testing.T) {
	k := newEnv(t).refreshKey
	for _, format := range []string{"%v", "%+v", "%s", "%#v"} {
		if got := fmt.Sprintf(format, k); got != "REDACTED" {
			t.Errorf("Sprintf(%q, refresh key) = %q, want REDACTED", format, got)
		}
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("loaded", "key", k)
	if !strings.Contains(buf.String(), `"key":"REDACTED"`) {
		t.Errorf("log line %q does not redact the refresh key", buf.String())
	}
}

// sealedRows is every stored seal, for "nothing changed".
func sealedRows(tb testing.TB, st tokens.SealedStore) string {
	tb.Helper()
	recs, err := st.ListSigningKeys(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	secrets, err := st.ListSealedSecrets(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "%s %x\n", r.KID, r.Sealed)
	}
	for _, s := range secrets {
		fmt.Fprintf(&b, "%s %x\n", s.Name, s.Sealed)
	}
	return b.String()
}

// TestRotateMasterKey: every signing key (of any algorithm) and the
// refresh-token key are re-sealed under the new master key; the keys stay
// the same, the old master key opens nothing any more, and running the
// rotation again changes nothing.
func TestRotateMasterKey(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend func(*envConfig)) {
		e := newEnv(t, backend)
		ctx := t.Context()
		if _, err := e.ring.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
		if err := e.ring.Load(ctx); err != nil {
			t.Fatal(err)
		}
		other := tokens.NewKeyring(tokens.KeyringConfig{Algorithm: tokens.EdDSA, AccessTTL: testAccessTTL, Leeway: testLeeway}, e.master, e.db, e.clock.Now, discardLogger())
		if err := other.EnsureKey(ctx); err != nil {
			t.Fatal(err)
		}
		if err := other.Load(ctx); err != nil {
			t.Fatal(err)
		}
		p := e.newPartner(t, "Acme")
		pair := e.login(t, p)
		later := e.refresh(t, e.login(t, p).RefreshToken)
		before := sealedRows(t, e.db)
		next := mustMasterKey(t, strings.Repeat("n", 40))

		if _, err := tokens.RotateMasterKey(ctx, e.db, e.master, e.master); !errors.Is(err, tokens.ErrSameMasterKey) {
			t.Fatalf("RotateMasterKey to the same key = %v, want ErrSameMasterKey", err)
		}
		wrong := mustMasterKey(t, otherMasterKey)
		if _, err := tokens.RotateMasterKey(ctx, e.db, wrong, next); !errors.Is(err, tokens.ErrSealed) {
			t.Fatalf("RotateMasterKey from a wrong key = %v, want ErrSealed", err)
		}
		if after := sealedRows(t, e.db); after != before {
			t.Fatal("refused rotations changed sealed rows")
		}

		rot, err := tokens.RotateMasterKey(ctx, e.db, e.master, next)
		if err != nil || rot != (tokens.Rotation{SigningKeys: 3, Secrets: 1}) {
			t.Fatalf("RotateMasterKey = %+v, %v; want 3 signing keys and 1 secret re-sealed", rot, err)
		}
		if _, err := tokens.LoadRefreshKey(ctx, e.db, e.master, e.clock.Now); !errors.Is(err, tokens.ErrSealed) {
			t.Fatalf("LoadRefreshKey with the old master key after rotating = %v, want ErrSealed", err)
		}
		if err := e.newKeyring(e.master).Load(ctx); !errors.Is(err, tokens.ErrSealed) {
			t.Fatalf("a new keyring with the old master key: %v, want ErrSealed", err)
		}

		// A restart with the new key: the same keys.
		restarted := e.newKeyring(next)
		if err := restarted.Load(ctx); err != nil {
			t.Fatalf("Load with the new master key: %v", err)
		}
		if !bytes.Equal(restarted.JWKS(), e.ring.JWKS()) {
			t.Fatalf("JWKS after rotation %s, before %s", restarted.JWKS(), e.ring.JWKS())
		}
		newOther := tokens.NewKeyring(tokens.KeyringConfig{Algorithm: tokens.EdDSA, AccessTTL: testAccessTTL, Leeway: testLeeway}, next, e.db, e.clock.Now, discardLogger())
		if err := newOther.Load(ctx); err != nil || !bytes.Equal(newOther.JWKS(), other.JWKS()) {
			t.Fatalf("the other algorithm's key after rotation: %v", err)
		}
		svc := tokens.NewService(e.keys, e.db, e.jwt, mustRefreshKey(t, e.db, next, e), e.cfg.refresh, e.clock.Now)
		for name, tok := range map[string]string{"a login's token": pair.RefreshToken.Reveal(), "a later token": later.RefreshToken.Reveal()} {
			if _, err := svc.Refresh(ctx, tok, testAddr); err != nil {
				t.Errorf("%s after the rotation: %v", name, err)
			}
		}

		// Run again (as after an interruption): nothing to do.
		rotated := sealedRows(t, e.db)
		rot, err = tokens.RotateMasterKey(ctx, e.db, e.master, next)
		if err != nil || rot != (tokens.Rotation{Already: 4}) {
			t.Fatalf("RotateMasterKey again = %+v, %v; want all 4 rows found re-sealed", rot, err)
		}
		if sealedRows(t, e.db) != rotated {
			t.Fatal("running the rotation again changed sealed rows")
		}
	})
}

// meddlingStore adds a signing key sealed under the old master key the
// first time a rotation is about to write: another process's signing-key
// rotate at the same moment.
type meddlingStore struct {
	store.Store
	add  func() error
	once sync.Once
}

func (s *meddlingStore) Reseal(ctx context.Context, plan tokens.ResealPlan) error {
	var err error
	s.once.Do(func() { err = s.add() })
	if err != nil {
		return err
	}
	return s.Store.Reseal(ctx, plan)
}

// TestRotateMasterKeyRowsChanged: a signing key added between reading and
// writing makes the store refuse the plan; the rotation plans again and
// re-seals that key too.
func TestRotateMasterKeyRowsChanged(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend func(*envConfig)) {
		e := newEnv(t, backend)
		st := &meddlingStore{Store: e.db, add: func() error {
			_, err := e.ring.Rotate(context.Background())
			return err
		}}
		next := mustMasterKey(t, strings.Repeat("n", 40))
		rot, err := tokens.RotateMasterKey(t.Context(), st, e.master, next)
		if err != nil || rot != (tokens.Rotation{SigningKeys: 2, Secrets: 1}) {
			t.Fatalf("RotateMasterKey = %+v, %v; want both signing keys and the secret re-sealed", rot, err)
		}
		if err := e.newKeyring(next).Load(t.Context()); err != nil {
			t.Fatalf("Load with the new master key: %v", err)
		}
	})
}

// recordingHandler keeps every record and reports each on records.
type recordingHandler struct {
	records chan slog.Record
}

func (h recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.records <- r.Clone()
	return nil
}
func (h recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordingHandler) WithGroup(string) slog.Handler      { return h }

// TestKeyringAfterMasterKeyRotation: a process still running with the old
// master key keeps signing and verifying with the keys it loaded, and
// each reload warns once, naming the cause; a key added under the new
// master key is left out. The keyring then refuses to add a signing key.
func TestKeyringAfterMasterKeyRotation(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	p := e.newPartner(t, "Acme")
	before := e.sign(t, p.Principal)
	jwks := e.ring.JWKS()
	h := recordingHandler{records: make(chan slog.Record, 64)}
	running := tokens.NewKeyring(tokens.KeyringConfig{Algorithm: tokens.ES256, AccessTTL: testAccessTTL, Leeway: testLeeway}, e.master, e.db, e.clock.Now, slog.New(h))
	if err := running.Load(ctx); err != nil {
		t.Fatal(err)
	}

	next := mustMasterKey(t, strings.Repeat("n", 40))
	if _, err := tokens.RotateMasterKey(ctx, e.db, e.master, next); err != nil {
		t.Fatal(err)
	}
	// Its keys re-sealed; then another process, with the new key, adds a
	// signing key.
	if err := e.ring.Load(ctx); !errors.Is(err, tokens.ErrMasterKeyRotated) {
		t.Fatalf("reload after the rotation = %v, want ErrMasterKeyRotated", err)
	}
	if _, err := e.newKeyring(next).Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := e.ring.Load(ctx); !errors.Is(err, tokens.ErrMasterKeyRotated) {
			t.Fatalf("reload after a key was added under the new master key = %v, want ErrMasterKeyRotated", err)
		}
	}
	if !bytes.Equal(e.ring.JWKS(), jwks) {
		t.Fatalf("JWKS after the rotation %s, want the one loaded before %s", e.ring.JWKS(), jwks)
	}
	mustVerify(t, e.jwt, before)
	mustVerify(t, e.jwt, e.sign(t, p.Principal))
	e.refresh(t, e.login(t, p).RefreshToken) // its refresh-token key is in memory
	if _, err := e.ring.Rotate(ctx); err == nil {
		t.Fatal("a keyring with the old master key added a signing key")
	}

	// Run: one warning per reload, never an error, no secret.
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		running.Run(runCtx, 100*time.Millisecond)
	}()
	var got []slog.Record
	for len(got) < 3 {
		got = append(got, <-h.records)
	}
	stop()
	<-done
	for _, r := range got {
		var line strings.Builder
		r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&line, " %s=%v", a.Key, a.Value); return true })
		if r.Level != slog.LevelWarn || !strings.Contains(r.Message, "master key") || !strings.Contains(r.Message, "restart") {
			t.Errorf("reload logged %s %q%s, want a warning naming the rotated master key", r.Level, r.Message, line.String())
		}
		if strings.Contains(line.String(), testMasterKey) || strings.Contains(line.String(), strings.Repeat("n", 40)) {
			t.Errorf("reload warning holds a master key: %s", line.String())
		}
	}
	if !bytes.Equal(running.JWKS(), jwks) {
		t.Fatalf("the running keyring's JWKS changed: %s", running.JWKS())
	}
}
