package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"keygate/api"
	"keygate/keys"
)

// strictMembers is the fuzz oracle, written independently of decodeStrict:
// it reports whether body is exactly one JSON object whose top-level member
// names are all allowed and distinct.
func strictMembers(body []byte, allowed ...string) bool {
	if !utf8.Valid(body) || !json.Valid(body) {
		return false
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return false // not an object (or null)
	}
	for name := range top {
		if !contains(allowed, name) {
			return false
		}
	}
	// json.Unmarshal keeps the last of duplicate members: count them.
	dec := json.NewDecoder(bytes.NewReader(body))
	depth, members, expectKey := 0, 0, false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return false
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
			// Entering the top object, or back in it after a nested value:
			// a member name comes next.
			expectKey = depth == 1
			continue
		}
		if depth == 1 {
			if expectKey {
				members++
			}
			expectKey = !expectKey
		}
	}
	return members == len(top)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// checkDecodeStrict runs decodeStrict on body for one request type and
// checks its verdict and error against the oracle.
func checkDecodeStrict[T any](t *testing.T, body []byte, allowed ...string) {
	t.Helper()
	var dst T
	err := decodeStrict(body, &dst)
	want := strictMembers(body, allowed...)
	if err != nil {
		var ve *keys.ValidationError
		if !errors.As(err, &ve) {
			t.Fatalf("decodeStrict(%q) = %v (%T), want a *keys.ValidationError", body, err, err)
		}
		if msg := err.Error(); len(msg) > 160 || !utf8.ValidString(msg) {
			t.Fatalf("decodeStrict(%q): error message %q is too long or not UTF-8", body, msg)
		}
		// Type errors (a number for a string) are refused too, so a
		// refusal of an oracle-approved body must name an allowed member.
		if want && !contains(allowed, ve.Field) {
			t.Fatalf("decodeStrict(%q) = %v, but the body has exactly the allowed members", body, err)
		}
		return
	}
	if !want {
		t.Fatalf("decodeStrict(%q) accepted a body that is not one object of distinct allowed members %v", body, allowed)
	}
	// What it accepted decodes the same with encoding/json.
	var ref T
	if err := json.Unmarshal(body, &ref); err != nil {
		t.Fatalf("decodeStrict accepted %q, encoding/json refuses it: %v", body, err)
	}
	a, _ := json.Marshal(dst)
	b, _ := json.Marshal(ref)
	if !bytes.Equal(a, b) {
		t.Fatalf("decodeStrict(%q) decoded %s, encoding/json %s", body, a, b)
	}
}

func FuzzDecodeStrict(f *testing.F) {
	for _, seed := range []string{
		`{"apiKey":"pk_x"}`,
		`{"name":"Globex","externalId":"g-1"}`,
		`{"refreshToken":"rt_x"}`,
		`{"apiKey":"a","apiKey":"b"}`,
		`{"APIKEY":"a"}`,
		`{"api\u004bey":"a","apiKey":"b"}`,
		`[{"apiKey":"a"}]`,
		`{"apiKey":{"apiKey":{"apiKey":[1,2,{"x":null}]}}}`,
		`{"apiKey":null}`,
		"{\"apiKey\":\"\xff\"}",
		`{"apiKey":"a"} {}`,
		`{"` + strings.Repeat("é", 40) + `":1}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkDecodeStrict[api.LoginRequest](t, body, "apiKey")
		checkDecodeStrict[api.RefreshRequest](t, body, "refreshToken")
		checkDecodeStrict[api.CreateCompanyRequest](t, body, "name", "externalId")
	})
}

// TestDecodeStrict pins decodeStrict's verdicts on the cases the hardening
// issue names and on the fuzzer's findings.
func TestDecodeStrict(t *testing.T) {
	cases := []struct {
		name, body string
		accept     bool
		field      string
	}{
		{"one member", `{"name":"a"}`, true, ""},
		{"both members", `{"externalId":"e","name":"a"}`, true, ""},
		{"escaped name", `{"n\u0061me":"a"}`, true, ""},
		{"whitespace around", " \t\r\n{ \"name\" : \"a\" }\n", true, ""},
		{"null member", `{"name":null}`, true, ""},
		{"empty object", `{}`, true, ""},
		{"unknown member", `{"name":"a","partnerId":"p"}`, false, "partnerId"},
		{"case variant", `{"NAME":"a"}`, false, "NAME"},
		{"duplicate", `{"name":"a","name":"b"}`, false, "name"},
		{"escaped duplicate", `{"name":"a","n\u0061me":"b"}`, false, "name"},
		{"wrong type", `{"name":1}`, false, "name"},
		{"array", `[]`, false, "body"},
		{"null", `null`, false, "body"},
		{"string", `"name"`, false, "body"},
		{"two objects", `{}{}`, false, "body"},
		{"trailing comma", `{"name":"a",}`, false, "body"},
		{"invalid UTF-8", "{\"name\":\"\xc3\"}", false, "body"},
		{"deep nesting", `{"name":` + strings.Repeat("[", 20_000) + strings.Repeat("]", 20_000) + `}`, false, "body"},
		{"empty", ``, false, "body"},
		// A long unknown name is cut to 64 bytes in the message; the cut
		// must not split a character and leave invalid UTF-8 behind.
		{"long multibyte name", `{"` + strings.Repeat("é", 40) + `":1}`, false, strings.Repeat("é", 32) + "..."},
		{"long name, odd cut", `{"x` + strings.Repeat("é", 40) + `":1}`, false, "x" + strings.Repeat("é", 31) + "..."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var dst api.CreateCompanyRequest
			err := decodeStrict([]byte(tc.body), &dst)
			if tc.accept {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ve *keys.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want a validation error", err)
			}
			if ve.Field != tc.field {
				t.Errorf("field = %q, want %q", ve.Field, tc.field)
			}
			if !utf8.ValidString(err.Error()) {
				t.Errorf("message %q is not valid UTF-8", err.Error())
			}
		})
	}
}
