package server

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"keygate/keys"
	"keygate/tokens"
)

// lookup is fail's search, without rendering: the first entry that err
// matches, and its index; -1 for none.
func lookup(err error) int {
	for i, e := range errorTable {
		if errors.Is(err, e.err) {
			return i
		}
	}
	return -1
}

// TestErrorTableOrder pins that the table matches first to last.
func TestErrorTableOrder(t *testing.T) {
	// Every entry is reachable: no earlier entry swallows it.
	for i, e := range errorTable {
		if got := lookup(e.err); got != i {
			t.Errorf("%v maps to entry %d (%v), not its own %d", e.err, got, errorTable[got].err, i)
		}
		if wrapped := lookup(fmt.Errorf("context: %w", e.err)); wrapped != i {
			t.Errorf("a wrapped %v maps to entry %d, not %d", e.err, wrapped, i)
		}
	}
	// Credential failures come before everything else, so an error that
	// carries one of them and something more (a refresh of an unknown
	// family is ErrInvalidRefreshToken joined with keys.ErrNotFound) is
	// always the one 401.
	firstOther := -1
	for i, e := range errorTable {
		if e.status != http.StatusUnauthorized {
			if firstOther < 0 {
				firstOther = i
			}
			continue
		}
		if firstOther >= 0 {
			t.Errorf("401 entry %v comes after %v", e.err, errorTable[firstOther].err)
		}
	}
	for _, tc := range []struct {
		name   string
		err    error
		status int
	}{
		{"unknown family", errors.Join(tokens.ErrInvalidRefreshToken, keys.ErrNotFound), http.StatusUnauthorized},
		{"inactive principal", errors.Join(tokens.ErrInvalidToken, keys.ErrInactive), http.StatusUnauthorized},
		{"invalid key on a failing store", errors.Join(keys.ErrInvalidKey, keys.ErrUnavailable), http.StatusUnauthorized},
		{"disabled owner", fmt.Errorf("creating key: %w", keys.ErrDisabled), http.StatusConflict},
		{"unlisted", errors.New("boom"), 0},
	} {
		i := lookup(tc.err)
		status := 0
		if i >= 0 {
			status = errorTable[i].status
		}
		if status != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, status, tc.status)
		}
	}
}
