package keys

import (
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
)

// MaxScopes is the most scopes a key (or a partner's allowed set) holds.
const MaxScopes = 32

// maxScopeLen is the longest scope.
const maxScopeLen = 64

// ErrScopeNotAllowed reports a scope asked for that the asker may not
// have: one outside its partner's allowed set when a key is made, or one
// its key does not hold at a login. It comes as a *ScopeError naming it.
var ErrScopeNotAllowed = errors.New("scope not allowed")

// ScopeError names the scope that was not allowed.
type ScopeError struct{ Scope string }

func (e *ScopeError) Error() string { return fmt.Sprintf("scope %q is not allowed", e.Scope) }

// Unwrap makes a ScopeError an ErrScopeNotAllowed.
func (e *ScopeError) Unwrap() error { return ErrScopeNotAllowed }

// Scopes is a set of scopes, sorted and without duplicates: what a partner
// allows, what a key holds, what a token carries (RFC 9068's scope claim,
// space-separated). The empty set is a set like any other: a key without
// scopes may log in, and its tokens carry none. It is kept in its
// space-separated form, so that it is comparable and cheap to copy; sets
// have at most MaxScopes members, so walking it is cheap too.
type Scopes struct{ joined string }

// ParseScopes checks a list of scopes (each matching
// ^[A-Za-z0-9:._-]{1,64}$, at most MaxScopes of them, duplicates allowed
// and dropped) and returns their set; a bad one is a *ValidationError of
// field naming it.
func ParseScopes(field string, list []string) (Scopes, error) {
	out := make([]string, 0, len(list))
	for _, s := range list {
		if !validScope(s) {
			return Scopes{}, &ValidationError{Field: field, Message: fmt.Sprintf("scope %q must be 1 to %d of A-Z a-z 0-9 : . _ -", s, maxScopeLen)}
		}
		out = append(out, s)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > MaxScopes {
		return Scopes{}, &ValidationError{Field: field, Message: fmt.Sprintf("at most %d scopes, got %d", MaxScopes, len(out))}
	}
	return Scopes{joined: strings.Join(out, " ")}, nil
}

// ParseScopeString is ParseScopes of a space-separated list (the CLI's
// --scopes, a login's or an OAuth request's scope).
func ParseScopeString(field, s string) (Scopes, error) {
	return ParseScopes(field, strings.Fields(s))
}

// ParseScopeParam is ParseScopeString of a scope parameter on the wire (a
// login's scope, OAuth's), in RFC 6749 §3.3's syntax: scopes separated by
// single spaces, nothing before or after; "" is the empty set.
func ParseScopeParam(field, s string) (Scopes, error) {
	if s == "" {
		return Scopes{}, nil
	}
	if strings.HasPrefix(s, " ") || strings.HasSuffix(s, " ") || strings.Contains(s, "  ") {
		return Scopes{}, &ValidationError{Field: field, Message: "must be scopes separated by single spaces"}
	}
	return ParseScopes(field, strings.Split(s, " "))
}

// StoredScopes reads a set a store wrote (String), trusting its form.
func StoredScopes(s string) Scopes { return Scopes{joined: s} }

func validScope(s string) bool {
	if len(s) == 0 || len(s) > maxScopeLen {
		return false
	}
	for i := range len(s) {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == ':', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// List is the scopes, sorted.
func (s Scopes) List() []string {
	if s.joined == "" {
		return []string{}
	}
	return strings.Split(s.joined, " ")
}

// Each iterates over the scopes in order, without allocating.
func (s Scopes) Each() iter.Seq[string] {
	return func(yield func(string) bool) {
		rest := s.joined
		for rest != "" {
			v, after, _ := strings.Cut(rest, " ")
			if !yield(v) {
				return
			}
			rest = after
		}
	}
}

// String is the scopes space-separated, sorted: the scope claim's form and
// the stores'.
func (s Scopes) String() string { return s.joined }

// Empty reports whether the set has no scope.
func (s Scopes) Empty() bool { return s.joined == "" }

// Has reports whether the set holds scope.
func (s Scopes) Has(scope string) bool {
	for v := range s.Each() {
		if v == scope {
			return true
		}
	}
	return false
}

// Intersect is the scopes both sets hold.
func (s Scopes) Intersect(o Scopes) Scopes {
	if s == o {
		return s
	}
	var b strings.Builder
	for v := range s.Each() {
		if o.Has(v) {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(v)
		}
	}
	return Scopes{joined: b.String()}
}

// Within checks that every scope of s is in allowed: the first that is
// not comes back as a *ScopeError.
func (s Scopes) Within(allowed Scopes) error {
	for v := range s.Each() {
		if !allowed.Has(v) {
			return &ScopeError{Scope: v}
		}
	}
	return nil
}

// ScopeRequest is what a login asks for: all of its key's scopes (the zero
// ScopeRequest), or only some of them (Only), to obtain a token of least
// privilege. Its refreshes keep asking for the same.
type ScopeRequest struct {
	only   bool
	scopes Scopes
}

// Only asks for the given scopes alone.
func Only(s Scopes) ScopeRequest { return ScopeRequest{only: true, scopes: s} }

// All reports whether the request is for all of the key's scopes.
func (r ScopeRequest) All() bool { return !r.only }

// Scopes are the scopes asked for; meaningful only if !All().
func (r ScopeRequest) Scopes() Scopes { return r.scopes }

// Grant is what the request obtains of the scopes held: all of them, or
// the scopes asked for, each of which must be held (a *ScopeError names
// the first that is not).
func (r ScopeRequest) Grant(held Scopes) (Scopes, error) {
	if !r.only {
		return held, nil
	}
	if err := r.scopes.Within(held); err != nil {
		return Scopes{}, err
	}
	return r.scopes, nil
}

// Narrow is what the request obtains of the scopes held now, without
// failing: the scopes asked for that are still held. A refresh uses it, so
// that narrowing a partner's allowed scopes narrows its sessions' tokens
// from their next refresh on.
func (r ScopeRequest) Narrow(held Scopes) Scopes {
	if !r.only {
		return held
	}
	return r.scopes.Intersect(held)
}
