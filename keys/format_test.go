package keys_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"regexp"
	"strings"
	"testing"

	"keygate/keys"
)

var keyPattern = regexp.MustCompile(`^(pk|ck)_[0-9A-Za-z]{49}$`)

func TestNewAPIKeyFormat(t *testing.T) {
	seen := make(map[string]bool)
	for _, prefix := range []string{keys.PartnerKeyPrefix, keys.CompanyKeyPrefix} {
		for range 200 {
			k := keys.NewAPIKey(prefix).Reveal()
			if !keyPattern.MatchString(k) || !strings.HasPrefix(k, prefix) {
				t.Fatalf("key %q does not match %s", k, keyPattern)
			}
			if seen[k] {
				t.Fatalf("duplicate key %q", k)
			}
			seen[k] = true
			kind, err := keys.ParseAPIKey(k)
			if err != nil {
				t.Fatalf("ParseAPIKey(%q): %v", k, err)
			}
			if want := map[string]keys.Kind{"pk_": keys.KindPartner, "ck_": keys.KindCompany}[prefix]; kind != want {
				t.Fatalf("kind = %q, want %q", kind, want)
			}
		}
	}
}

func TestParseAPIKeyRejects(t *testing.T) {
	good := keys.NewAPIKey(keys.PartnerKeyPrefix).Reveal()
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	refresh := keys.Encode(keys.RefreshTokenPrefix, make([]byte, 32)).Reveal()
	cases := map[string]string{
		"empty":              "",
		"prefix only":        "pk_",
		"truncated":          good[:len(good)-1],
		"one char longer":    good + "a",
		"body typo":          flip(good, 10),
		"checksum typo":      flip(good, len(good)-1),
		"wrong prefix":       "xk_" + good[3:],
		"prefix swapped":     "ck_" + good[3:],
		"refresh token":      refresh,
		"non-base62":         good[:10] + "-" + good[11:],
		"whitespace":         " " + good[1:],
		"unicode":            good[:10] + "é" + good[12:],
		"jwt-like":           "eyJhbGciOiJub25lIn0.e30.",
		"leading plus sign":  good[:3] + "+" + good[4:],
		"all zeros checksum": good[:len(good)-6] + "000000",
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := keys.ParseAPIKey(in); !errors.Is(err, keys.ErrMalformed) {
				t.Fatalf("ParseAPIKey(%q) = %v, want ErrMalformed", in, err)
			}
		})
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, n := range []int{1, 16, 32, 44} {
		payload := make([]byte, n)
		for i := range payload {
			payload[i] = byte(255 - i)
		}
		s := keys.Encode("rt_", payload).Reveal()
		got, err := keys.Decode(s, "rt_", n)
		if err != nil {
			t.Fatalf("Decode(Encode(%d bytes)): %v", n, err)
		}
		if !bytes.Equal(got, payload) {
			t.Fatalf("round trip of %d bytes: got %x, want %x", n, got, payload)
		}
		if _, err := keys.Decode(s, "rt_", n+1); err == nil {
			t.Fatalf("Decode accepted a %d-byte token as %d bytes", n, n+1)
		}
	}
	// Leading zero bytes must survive the fixed-width encoding.
	zero := make([]byte, 32)
	got, err := keys.Decode(keys.Encode("pk_", zero).Reveal(), "pk_", 32)
	if err != nil || !bytes.Equal(got, zero) {
		t.Fatalf("zero payload: %x, %v", got, err)
	}
}

// FuzzIDFromBytes holds IDFromBytes to what math/big makes of the bytes,
// and IDBytes to undoing it.
func FuzzIDFromBytes(f *testing.F) {
	f.Add(bytes.Repeat([]byte{0}, 16))
	f.Add(bytes.Repeat([]byte{0xff}, 16))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0x0b, 0xa5, 0xe8, 0x1c, 0x4b, 0x5a, 0x2f, 0x40, 0x00}) // 62^10*k-ish
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) != 16 {
			return
		}
		want := "key_" + fmt.Sprintf("%022s", new(big.Int).SetBytes(b).Text(62))
		got := keys.IDFromBytes("key_", b)
		if got != want {
			t.Fatalf("IDFromBytes(%x) = %q, want %q", b, got, want)
		}
		back, ok := keys.IDBytes("key_", got)
		if !ok || !bytes.Equal(back, b) {
			t.Fatalf("IDBytes(%q) = %x, %v; want %x", got, back, ok, b)
		}
	})
}

func BenchmarkIDFromBytes(b *testing.B) {
	raw, _ := keys.IDBytes("key_", keys.NewID("key_"))
	b.ReportAllocs()
	for b.Loop() {
		_ = keys.IDFromBytes("key_", raw)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := keys.NewAPIKey(keys.PartnerKeyPrefix)
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("minted", "key", s)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("minted", "key", s)
	outputs := []string{
		buf.String(),
		fmt.Sprint(s), fmt.Sprintf("%v %s %+v %#v %q", s, s, s, s, s),
		fmt.Errorf("bad key %s", s).Error(),
	}
	for _, out := range outputs {
		if strings.Contains(out, s.Reveal()) {
			t.Fatalf("secret leaked into %q", out)
		}
	}
}

func TestHint(t *testing.T) {
	k := keys.NewAPIKey(keys.CompanyKeyPrefix).Reveal()
	if h := keys.Hint(k); h != k[:7] || !strings.HasPrefix(h, "ck_") {
		t.Fatalf("Hint = %q", h)
	}
	if keys.DigestOf(k) == keys.DigestOf(k[:len(k)-1]) {
		t.Fatal("digests of different keys collide")
	}
}

func FuzzParseAPIKey(f *testing.F) {
	f.Add(keys.NewAPIKey(keys.PartnerKeyPrefix).Reveal())
	f.Add(keys.NewAPIKey(keys.CompanyKeyPrefix).Reveal())
	f.Add("pk_")
	f.Add("rt_0000")
	f.Fuzz(func(t *testing.T, s string) {
		kind, err := keys.ParseAPIKey(s)
		if err != nil {
			return
		}
		// Whatever parses must be a well-formed key that encodes back to itself.
		if !keyPattern.MatchString(s) {
			t.Fatalf("accepted %q", s)
		}
		payload, err := keys.Decode(s, s[:3], 32)
		if err != nil {
			t.Fatalf("parsed but does not decode: %v", err)
		}
		if again := keys.Encode(s[:3], payload).Reveal(); again != s {
			t.Fatalf("re-encoding %q gave %q", s, again)
		}
		if kind != keys.KindPartner && kind != keys.KindCompany {
			t.Fatalf("kind %q", kind)
		}
	})
}

func BenchmarkParseAndDigest(b *testing.B) {
	k := keys.NewAPIKey(keys.PartnerKeyPrefix).Reveal()
	for b.Loop() {
		if _, err := keys.ParseAPIKey(k); err != nil {
			b.Fatal(err)
		}
		_ = keys.DigestOf(k)
	}
}
