package server_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The benchmarks drive the whole stack through the handler, without a
// network and with rate limits off, as serve wires it (audit batched: they
// call the handler itself, not the harness's serve, which flushes).

func serveBench(b *testing.B, e *env, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, req)
	return rec
}

func BenchmarkLogin(b *testing.B) {
	e := newEnv(b)
	_, apiKey := e.partner("Bench")
	body := loginBody(apiKey)
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/auth/login", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if rec := serveBench(b, e, req); rec.Code != http.StatusOK {
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
		if rec := serveBench(b, e, req); rec.Code != http.StatusOK {
			b.Fatalf("me: %d %s", rec.Code, rec.Body)
		}
	}
}

func BenchmarkRefresh(b *testing.B) {
	e := newEnv(b)
	_, apiKey := e.partner("Bench")
	rt := e.login(apiKey).RefreshToken
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/auth/refresh", strings.NewReader(refreshBody(rt)))
		req.Header.Set("Content-Type", "application/json")
		rec := serveBench(b, e, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("refresh: %d %s", rec.Code, rec.Body)
		}
		rt = decodeInto[tokenPair](b, rec).RefreshToken
	}
}

// BenchmarkRefreshParallel refreshes from many goroutines at once, each its
// own family, so that the store's group commit batches them as under load.
func BenchmarkRefreshParallel(b *testing.B) {
	e := newEnv(b)
	_, apiKey := e.partner("Bench")
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		rt := e.login(apiKey).RefreshToken
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/api/v1/auth/refresh", strings.NewReader(refreshBody(rt)))
			req.Header.Set("Content-Type", "application/json")
			rec := serveBench(b, e, req)
			if rec.Code != http.StatusOK {
				b.Fatalf("refresh: %d %s", rec.Code, rec.Body)
			}
			rt = decodeInto[tokenPair](b, rec).RefreshToken
		}
	})
}
