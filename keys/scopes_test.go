package keys_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"keygate/keys"
)

func TestParseScopes(t *testing.T) {
	many := make([]string, 33)
	for i := range many {
		many[i] = fmt.Sprintf("s%02d", i)
	}
	for _, tc := range []struct {
		name string
		in   []string
		want string // the set, or the start of the error message
		bad  bool
	}{
		{"empty", nil, "", false},
		{"sorted and deduplicated", []string{"orders:write", "orders:read", "orders:write"}, "orders:read orders:write", false},
		{"every allowed character", []string{"Az09:._-"}, "Az09:._-", false},
		{"64 characters", []string{strings.Repeat("a", 64)}, strings.Repeat("a", 64), false},
		{"32 scopes", many[:32], strings.Join(many[:32], " "), false},
		{"33 distinct scopes", many, "at most 32 scopes", true},
		{"33 with a duplicate", append(many[:32:32], many[0]), strings.Join(many[:32], " "), false},
		{"65 characters", []string{strings.Repeat("a", 65)}, `scope "aaaa`, true},
		{"empty scope", []string{""}, `scope ""`, true},
		{"a space", []string{"orders read"}, `scope "orders read"`, true},
		{"a slash", []string{"orders/read"}, `scope "orders/read"`, true},
		{"non-ASCII", []string{"bestellungen:lesen\u00e4"}, "scope", true},
		{"a quote", []string{`a"b`}, "scope", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := keys.ParseScopes("scopes", tc.in)
			if tc.bad {
				var ve *keys.ValidationError
				if !errors.As(err, &ve) || ve.Field != "scopes" || !strings.HasPrefix(ve.Message, tc.want) {
					t.Fatalf("ParseScopes(%q) = %v, %v; want a validation error of scopes starting %q", tc.in, got, err, tc.want)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Fatalf("ParseScopes(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
			if again, _ := keys.ParseScopeString("scope", got.String()); again != got {
				t.Errorf("ParseScopeString(String()) = %q, want %q", again, got)
			}
		})
	}
}

func TestScopeSets(t *testing.T) {
	set := func(s string) keys.Scopes {
		t.Helper()
		v, err := keys.ParseScopeString("scope", s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	rw, r, w, none := set("orders:read orders:write"), set("orders:read"), set("orders:write"), keys.Scopes{}
	if got := rw.Intersect(set("orders:read users:read")); got != r {
		t.Errorf("Intersect = %q, want %q", got, r)
	}
	if got := r.Intersect(w); !got.Empty() || got != none {
		t.Errorf("disjoint Intersect = %q, want the empty set", got)
	}
	if !rw.Has("orders:write") || rw.Has("orders") || none.Has("") {
		t.Error("Has answers wrongly")
	}
	if err := r.Within(rw); err != nil {
		t.Errorf("subset Within: %v", err)
	}
	var se *keys.ScopeError
	if err := set("orders:read users:read").Within(rw); !errors.As(err, &se) || se.Scope != "users:read" || !errors.Is(err, keys.ErrScopeNotAllowed) {
		t.Errorf("Within = %v, want a ScopeError naming users:read", err)
	}
	if got := rw.List(); len(got) != 2 || got[0] != "orders:read" {
		t.Errorf("List = %q", got)
	}
	if got := none.List(); got == nil || len(got) != 0 {
		t.Errorf("List of the empty set = %#v, want an empty slice", got)
	}

	// A login asks for all (the zero request) or only some scopes.
	all := keys.ScopeRequest{}
	if got, err := all.Grant(rw); err != nil || got != rw || !all.All() {
		t.Errorf("all.Grant = %q, %v", got, err)
	}
	only := keys.Only(r)
	if got, err := only.Grant(rw); err != nil || got != r {
		t.Errorf("Only(read).Grant(read write) = %q, %v", got, err)
	}
	if _, err := keys.Only(rw).Grant(r); !errors.As(err, &se) || se.Scope != "orders:write" {
		t.Errorf("Only(read write).Grant(read) = %v, want a ScopeError naming orders:write", err)
	}
	// Refreshes narrow, never fail: what is still held of what was asked.
	if got := keys.Only(rw).Narrow(r); got != r {
		t.Errorf("Narrow = %q, want %q", got, r)
	}
	if got := all.Narrow(w); got != w {
		t.Errorf("all.Narrow = %q, want %q", got, w)
	}
}
