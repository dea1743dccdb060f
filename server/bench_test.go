package server_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"

	"keygate/gateway"
)

// The benchmarks drive the whole stack through the handler, without a
// network and with rate limits off, as serve wires it (audit batched: they
// call the handler itself, not the harness's serve, which flushes).

// cpuPerOp reports the process's CPU time per operation (every goroutine:
// the store's writer and the collector included) beside the wall time,
// which a shared machine makes noisy: call it before the loop, and the
// function it returns after.
func cpuPerOp(b *testing.B) func() {
	b.ReportAllocs()
	var before syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	return func() {
		var after syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
		cpu := after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano()
		b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
	}
}

func serveBench(b *testing.B, e *env, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, req)
	return rec
}

// metricsModes are the two settings BenchmarkLogin and BenchmarkRefresh
// compare: keygate with its metrics (the default admin listener) and
// without (admin.addr empty: no instruments at all). Compare with
// benchstat: go test -run '^$' -bench 'Login|Refresh$' -count 10 ./server.
var metricsModes = []struct {
	name string
	opt  option
}{
	{"metrics=on", withConfig(func(c *gateway.Config) { c.Admin.Addr = "127.0.0.1:9091" })},
	{"metrics=off", withConfig(func(c *gateway.Config) { c.Admin.Addr = "" })},
}

func BenchmarkLogin(b *testing.B) {
	for _, mode := range metricsModes {
		b.Run(mode.name, func(b *testing.B) {
			e := newEnv(b, mode.opt)
			if on := e.metrics != nil; on != (mode.name == "metrics=on") {
				b.Fatalf("%s: metrics present %v", mode.name, on)
			}
			_, apiKey := e.partner("Bench")
			body := loginBody(apiKey)
			done := cpuPerOp(b)
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/api/v1/auth/login", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				if rec := serveBench(b, e, req); rec.Code != http.StatusOK {
					b.Fatalf("login: %d %s", rec.Code, rec.Body)
				}
			}
			done()
		})
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
	for _, mode := range metricsModes {
		b.Run(mode.name, func(b *testing.B) {
			e := newEnv(b, mode.opt)
			_, apiKey := e.partner("Bench")
			rt := e.login(apiKey).RefreshToken
			done := cpuPerOp(b)
			for b.Loop() {
				rt = refreshBench(b, e, rt)
			}
			done()
		})
	}
}

// refreshBench refreshes rt through the handler and returns its successor.
func refreshBench(b *testing.B, e *env, rt string) string {
	req := httptest.NewRequest(http.MethodPost, "/api/v1/auth/refresh", strings.NewReader(refreshBody(rt)))
	req.Header.Set("Content-Type", "application/json")
	rec := serveBench(b, e, req)
	if rec.Code != http.StatusOK {
		b.Fatalf("refresh: %d %s", rec.Code, rec.Body)
	}
	return decodeInto[tokenPair](b, rec).RefreshToken
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
			rt = refreshBench(b, e, rt)
		}
	})
}
