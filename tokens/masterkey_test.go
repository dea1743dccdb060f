package tokens_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"keygate/memstore"
	"keygate/tokens"
)

func TestNewMasterKey(t *testing.T) {
	for _, n := range []int{0, 1, tokens.MinMasterKeyLen - 1} {
		if _, err := tokens.NewMasterKey(strings.Repeat("k", n)); err == nil {
			t.Errorf("a %d-byte master key was accepted", n)
		}
	}
	m, err := tokens.NewMasterKey(strings.Repeat("k", tokens.MinMasterKeyLen))
	if err != nil {
		t.Fatalf("a %d-byte master key: %v", tokens.MinMasterKeyLen, err)
	}
	for _, format := range []string{"%v", "%+v", "%s", "%#v"} {
		if got := fmt.Sprintf(format, m); got != "REDACTED" {
			t.Errorf("Sprintf(%q, master key) = %q, want REDACTED", format, got)
		}
	}
	for name, h := range map[string]func(*bytes.Buffer) slog.Handler{
		"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		"json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		var buf bytes.Buffer
		slog.New(h(&buf)).Info("loaded", "master", m)
		if !strings.Contains(buf.String(), "REDACTED") {
			t.Errorf("%s log line %q does not redact the master key", name, buf.String())
		}
	}
}

func TestLoadOrCreateMasterKeyFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "master.key")
	first, err := tokens.LoadOrCreateMasterKeyFile(path)
	if err != nil {
		t.Fatalf("creating: %v", err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Fatalf("master key file mode %v, want 0600", perm)
	}
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(strings.TrimSpace(string(content))) < tokens.MinMasterKeyLen {
		t.Fatalf("master key file holds %d bytes", len(content))
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only the key file", len(entries))
	}

	second, err := tokens.LoadOrCreateMasterKeyFile(path)
	if err != nil {
		t.Fatalf("reading: %v", err)
	}
	again, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(content) {
		t.Fatal("the second call rewrote the key file")
	}
	assertSameMasterKey(t, first, second)

	third, err := tokens.LoadOrCreateMasterKeyFile(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	if sameMasterKey(t, first, third) {
		t.Fatal("two fresh key files hold the same key")
	}
}

func TestLoadOrCreateMasterKeyFileConcurrently(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	const n = 8
	got := make([]tokens.MasterKey, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			got[i], errs[i] = tokens.LoadOrCreateMasterKeyFile(path)
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
	}
	for i := 1; i < n; i++ {
		assertSameMasterKey(t, got[0], got[i])
	}
}

func TestLoadOrCreateMasterKeyFileShort(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	if err := os.WriteFile(path, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.LoadOrCreateMasterKeyFile(path); err == nil {
		t.Fatal("a short key file was accepted")
	}
}

func assertSameMasterKey(tb testing.TB, a, b tokens.MasterKey) {
	tb.Helper()
	if !sameMasterKey(tb, a, b) {
		tb.Fatal("the two master keys differ")
	}
}

// sameMasterKey tells whether b opens the signing key and the refresh-token
// key that a sealed, and whether Equal says so too: the only ways the key
// is visible.
func sameMasterKey(tb testing.TB, a, b tokens.MasterKey) bool {
	tb.Helper()
	ctx := context.Background()
	e := newEnv(tb, func(c *envConfig) { c.masterKey = strings.Repeat("x", tokens.MinMasterKeyLen) })
	sealer := tokens.NewKeyring(tokens.KeyringConfig{Algorithm: tokens.EdDSA, AccessTTL: testAccessTTL, Leeway: testLeeway}, a, e.db, e.clock.Now, discardLogger())
	if err := sealer.EnsureKey(ctx); err != nil {
		tb.Fatal(err)
	}
	opener := tokens.NewKeyring(tokens.KeyringConfig{Algorithm: tokens.EdDSA, AccessTTL: testAccessTTL, Leeway: testLeeway}, b, e.db, e.clock.Now, discardLogger())
	err := opener.Load(ctx)
	if err != nil && !errors.Is(err, tokens.ErrSealed) {
		tb.Fatal(err)
	}
	opens := err == nil

	db := memstore.New()
	if _, err := tokens.LoadRefreshKey(ctx, db, a, e.clock.Now); err != nil {
		tb.Fatal(err)
	}
	_, err = tokens.LoadRefreshKey(ctx, db, b, e.clock.Now)
	if err != nil && !errors.Is(err, tokens.ErrSealed) {
		tb.Fatal(err)
	}
	if accepts := err == nil; opens != accepts || opens != a.Equal(b) {
		tb.Fatalf("master keys open each other's signing keys: %v, refresh-token keys: %v; Equal: %v", opens, accepts, a.Equal(b))
	}
	return opens
}
