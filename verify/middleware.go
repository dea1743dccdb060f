package verify

// The net/http middleware: who may call, and what a refused caller sees.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"keygate/api"
)

// unauthorizedMessage is the one message of every refused token, whatever
// the reason: keygate's own.
const unauthorizedMessage = api.UnauthorizedMessage

type claimsKey struct{}

// Middleware lets through requests whose token verifies, with its claims
// in the request's context (FromContext). Any other request gets a 401 in
// keygate's error shape with WWW-Authenticate: Bearer error="invalid_token";
// the reason is logged at debug level, never sent.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, err := v.authenticate(r)
		if err != nil {
			v.log.DebugContext(r.Context(), "verify: token refused", "method", r.Method, "path", r.URL.Path, "err", err)
			writeError(w, http.StatusUnauthorized, api.CodeUnauthorized, unauthorizedMessage)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), claimsKey{}, claims)))
	})
}

func (v *Verifier) authenticate(r *http.Request) (*Claims, error) {
	tok, err := v.tokenOf(r)
	if err != nil {
		return nil, err
	}
	return v.Verify(r.Context(), tok)
}

// FromContext returns the claims of the token Middleware verified.
func FromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*Claims)
	return c, ok && c != nil
}

// RequireKind lets through only requests whose verified token is of kind,
// api.KindPartner ("partner") or api.KindCompany ("company"); others get a
// 403 in keygate's error shape. Use it inside Middleware: a request it has
// not verified gets the 401.
//
// It panics if kind is neither, as regexp.MustCompile does on a bad
// pattern: a misspelt kind would otherwise refuse every caller, found only
// in production.
func RequireKind(kind string) func(http.Handler) http.Handler {
	if kind != api.KindPartner && kind != api.KindCompany {
		panic(fmt.Sprintf("verify.RequireKind(%q): the kind is %q or %q", kind, api.KindPartner, api.KindCompany))
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, ok := FromContext(r.Context())
			switch {
			case !ok:
				writeError(w, http.StatusUnauthorized, api.CodeUnauthorized, unauthorizedMessage)
			case c.Kind != kind:
				writeError(w, http.StatusForbidden, api.CodeForbidden, "this endpoint needs a "+kind+" token")
			default:
				next.ServeHTTP(w, r)
			}
		})
	}
}

// RequireScope is middleware, inside Middleware, that lets through only
// tokens carrying every one of the scopes; a verified token lacking one
// gets 403 forbidden with WWW-Authenticate: Bearer error="insufficient_scope"
// (RFC 6750 §3.1) naming the scopes required, and a request not verified
// gets the 401.
//
// It panics if a scope is not one keygate could issue
// (^[A-Za-z0-9:._-]{1,64}$) or none is given: a misspelt scope would
// otherwise refuse every caller.
func RequireScope(scopes ...string) func(http.Handler) http.Handler {
	if len(scopes) == 0 {
		panic("verify.RequireScope: no scope given")
	}
	for _, s := range scopes {
		if !scopePattern.MatchString(s) {
			panic(fmt.Sprintf("verify.RequireScope(%q): a scope matches %s", s, scopePattern))
		}
	}
	challenge := fmt.Sprintf(`Bearer error="insufficient_scope", scope="%s"`, strings.Join(scopes, " "))
	message := "this endpoint needs a token with the scope " + strings.Join(scopes, " and ")
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, ok := FromContext(r.Context())
			if !ok {
				writeError(w, http.StatusUnauthorized, api.CodeUnauthorized, unauthorizedMessage)
				return
			}
			for _, s := range scopes {
				if !c.HasScope(s) {
					w.Header().Set("WWW-Authenticate", challenge)
					writeError(w, http.StatusForbidden, api.CodeForbidden, message)
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// scopePattern is the form of keygate's scopes.
var scopePattern = regexp.MustCompile(`^[A-Za-z0-9:._-]{1,64}$`)

// writeError writes keygate's error body, uncacheable.
func writeError(w http.ResponseWriter, status int, code, message string) {
	body, _ := json.Marshal(api.Error{Error: code, Message: message}) // cannot fail: two strings
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
