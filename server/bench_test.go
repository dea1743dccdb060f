package server_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The benchmarks drive the whole stack through the handler, without a
// network and with rate limits off, as serve wires it (audit batched).

func BenchmarkLogin(b *testing.B) {
	e := newEnv(b)
	_, apiKey := e.partner("Bench")
	body := loginBody(apiKey)
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/auth/login", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if rec := e.serve(req); rec.Code != http.StatusOK {
			b.Fatalf("login: %d %s", rec.Code, rec.Body)
		}
	}
}

func BenchmarkMe(b *testing.B) {
	e := newEnv(b)
	_, apiKey := e.partner("Bench")
	jwt := e.login(apiKey).JWT
	for b.Loop() {
		req := httptest.NewRequest(http.MethodGet, "/api/v1/auth/me", nil)
		req.Header.Set("R-Auth", jwt)
		if rec := e.serve(req); rec.Code != http.StatusOK {
			b.Fatalf("me: %d %s", rec.Code, rec.Body)
		}
	}
}
