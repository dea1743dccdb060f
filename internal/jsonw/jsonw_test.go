package jsonw_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"keygate/internal/jsonw"
)

func FuzzString(f *testing.F) {
	for _, s := range []string{"", "plain", `quote " and \ backslash`, "<script>&", "\x00\x1f\n\r\t\b\f", "é ü 日本", "\xff\xfe bad", "\u2028\u2029", "a\u2028b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := jsonw.String(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("String(%q) = %s, encoding/json writes %s", s, got, want)
		}
	})
}

func TestKey(t *testing.T) {
	b := []byte{'{'}
	b = jsonw.Key(b, "a")
	b = jsonw.Int(b, -3)
	b = jsonw.Key(b, "b<")
	b = jsonw.String(b, "x")
	b = append(b, '}')
	if got, want := string(b), `{"a":-3,"b\u003c":"x"}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
