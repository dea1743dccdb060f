package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"keygate/gateway"
	"keygate/keys"
	"keygate/memstore"
	"keygate/store"
	"keygate/tokens"
)

// These benchmarks run the reference's and the floor's handlers in one
// process, without a network or a load generator: what each costs per
// request, measured back to back. The floor is keygate's own handler over
// memstore, wired by gateway.New with the defaults (access log on, at
// info, into a discarding LogWriter; rate limits off as in bench.sh).

type handlers struct {
	ref, floor       http.Handler
	refKey, floorKey string
	refJWT, floorJWT string
	refRT, floorRT   string
}

func newHandlers(b *testing.B) *handlers {
	b.Helper()
	ref, err := newReference()
	if err != nil {
		b.Fatal(err)
	}
	h := &handlers{ref: ref.engine(), refKey: ref.mint("ck_", refPrincipal{Kind: "company", ID: "com_1", PartnerID: "par_1", CompanyID: "com_1"})}

	cfg := gateway.DefaultConfig()
	cfg.RateLimit = gateway.RateLimitConfig{MaxTracked: cfg.RateLimit.MaxTracked}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	master, err := tokens.NewMasterKey(base64.RawURLEncoding.EncodeToString(secret))
	if err != nil {
		b.Fatal(err)
	}
	lw := gateway.NewLogWriter(io.Discard)
	b.Cleanup(func() { lw.Close() })
	log := gateway.NewLogger(cfg.Log, lw)
	gw, err := gateway.New(context.Background(), cfg, memstore.New(), master, gateway.Options{Log: log, Now: time.Now})
	if err != nil {
		b.Fatal(err)
	}
	p, _, err := gw.Keys.CreatePartner(context.Background(), keys.Operator, keys.PartnerInput{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	_, co, err := gw.Keys.CreateCompany(context.Background(), keys.Operator, p.ID, keys.CompanyInput{Name: "co"})
	if err != nil {
		b.Fatal(err)
	}
	h.floor, h.floorKey = gw.Handler(), co.APIKey.Reveal()
	h.refJWT, h.refRT = h.login(b, h.ref, h.refKey)
	h.floorJWT, h.floorRT = h.login(b, h.floor, h.floorKey)
	return h
}

func serveJSON(h http.Handler, method, path, body, jwt string) *httptest.ResponseRecorder {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	req.RemoteAddr = "192.0.2.1:1234"
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if jwt != "" {
		req.Header.Set("R-Auth", jwt)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func (h *handlers) login(b *testing.B, hd http.Handler, key string) (string, string) {
	rec := serveJSON(hd, http.MethodPost, "/api/v1/auth/login", `{"apiKey":"`+key+`"}`, "")
	if rec.Code != http.StatusOK {
		b.Fatalf("login: %d %s", rec.Code, rec.Body)
	}
	var pair struct{ JWT, RefreshToken string }
	_ = json.Unmarshal(rec.Body.Bytes(), &pair)
	return pair.JWT, pair.RefreshToken
}

func BenchmarkHandlers(b *testing.B) {
	h := newHandlers(b)
	for _, side := range []struct {
		name     string
		h        http.Handler
		key, jwt string
		rt       *string
	}{
		{"reference", h.ref, h.refKey, h.refJWT, &h.refRT},
		{"floor", h.floor, h.floorKey, h.floorJWT, &h.floorRT},
	} {
		b.Run("login/"+side.name, func(b *testing.B) {
			body := `{"apiKey":"` + side.key + `"}`
			for b.Loop() {
				if rec := serveJSON(side.h, http.MethodPost, "/api/v1/auth/login", body, ""); rec.Code != http.StatusOK {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
			}
		})
		b.Run("refresh/"+side.name, func(b *testing.B) {
			for b.Loop() {
				rec := serveJSON(side.h, http.MethodPost, "/api/v1/auth/refresh", `{"refreshToken":"`+*side.rt+`"}`, "")
				if rec.Code != http.StatusOK {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
				var pair struct{ RefreshToken string }
				_ = json.Unmarshal(rec.Body.Bytes(), &pair)
				*side.rt = pair.RefreshToken
			}
		})
		b.Run("me/"+side.name, func(b *testing.B) {
			for b.Loop() {
				if rec := serveJSON(side.h, http.MethodGet, "/api/v1/auth/me", "", side.jwt); rec.Code != http.StatusOK {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}

// BenchmarkRefreshParallel refreshes 32 families at once through the
// floor's handler and through keygate's over a real SQLite file (FULL), as
// the bench's refresh phase does, without the network: what the store adds
// to a refresh, in CPU per request.
func BenchmarkRefreshParallel(b *testing.B) {
	for _, backend := range []string{"memory", "sqlite"} {
		b.Run(backend, func(b *testing.B) {
			cfg := gateway.DefaultConfig()
			cfg.RateLimit = gateway.RateLimitConfig{MaxTracked: cfg.RateLimit.MaxTracked}
			cfg.Database.Path = filepath.Join(b.TempDir(), "k.db")
			var st store.Store = memstore.New()
			if backend == "sqlite" {
				var err error
				if st, err = store.Open(b.Context(), cfg.Database, store.Options{Create: true}); err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { st.Close() })
			}
			secret := make([]byte, 32)
			_, _ = rand.Read(secret)
			master, _ := tokens.NewMasterKey(base64.RawURLEncoding.EncodeToString(secret))
			lw := gateway.NewLogWriter(io.Discard)
			b.Cleanup(func() { lw.Close() })
			gw, err := gateway.New(b.Context(), cfg, st, master, gateway.Options{Log: gateway.NewLogger(cfg.Log, lw), Now: time.Now})
			if err != nil {
				b.Fatal(err)
			}
			_, k, err := gw.Keys.CreatePartner(b.Context(), keys.Operator, keys.PartnerInput{Name: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			h := &handlers{}
			rts := make(chan string, 32)
			for range 32 {
				_, rt := h.login(b, gw.Handler(), k.APIKey.Reveal())
				rts <- rt
			}
			b.SetParallelism(16)
			var ru0 syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				rt := <-rts
				for pb.Next() {
					rec := serveJSON(gw.Handler(), http.MethodPost, "/api/v1/auth/refresh", `{"refreshToken":"`+rt+`"}`, "")
					if rec.Code != http.StatusOK {
						b.Errorf("%d %s", rec.Code, rec.Body)
						return
					}
					var pair struct{ RefreshToken string }
					_ = json.Unmarshal(rec.Body.Bytes(), &pair)
					rt = pair.RefreshToken
				}
			})
			b.StopTimer()
			var ru1 syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			cpu := ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano()
			b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}
