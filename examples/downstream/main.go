// Command downstream is a service that accepts R-Auth tokens: what a
// service downstream of keygate needs, with package verify and the
// standard library only.
//
//	KEYGATE_URL=http://127.0.0.1:8080 ADDR=127.0.0.1:8081 go run ./examples/downstream
//
// GET /whoami with a valid R-Auth token answers 200 and who the token
// speaks for, {"kind","sub","partnerId","companyId"} (companyId for
// companies only). Any request without a valid token gets keygate's 401:
// {"error":"unauthorized","message":...}. With a valid token, other paths
// get 404 and other methods on /whoami 405 (with Allow), in the same
// shape: {"error":"not_found",...}, {"error":"method_not_allowed",...}. It
// logs to stderr, first the address it listens on.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"keygate/api"
	"keygate/verify"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, env("KEYGATE_URL", "http://127.0.0.1:8080"), env("ADDR", "127.0.0.1:8081")); err != nil {
		slog.Error("downstream", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, keygateURL, addr string) error {
	// One Verifier for the service's life: it fetches keygate's keys,
	// keeps them fresh, and keeps using them if keygate goes away.
	v, err := verify.New(ctx, verify.Config{JWKSURL: keygateURL + "/.well-known/jwks.json"})
	if err != nil {
		return err
	}
	defer func() { _ = v.Close() }()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /whoami", whoami)
	mux.HandleFunc("/whoami", methodNotAllowed("GET, HEAD"))
	mux.HandleFunc("/", notFound)

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	slog.Info("listening", "addr", ln.Addr().String())
	srv := &http.Server{
		Handler:           v.Middleware(mux), // every route needs a valid token
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// whoami says who the verified token speaks for.
func whoami(w http.ResponseWriter, r *http.Request) {
	c, _ := verify.FromContext(r.Context()) // always there behind the middleware
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(struct {
		Kind      string `json:"kind"`
		Sub       string `json:"sub"`
		PartnerID string `json:"partnerId"`
		CompanyID string `json:"companyId,omitempty"`
	}{c.Kind, c.Subject, c.PartnerID, c.CompanyID})
}

// notFound answers a path the service does not have in keygate's error
// shape, rather than the standard library's text.
func notFound(w http.ResponseWriter, _ *http.Request) {
	writeError(w, http.StatusNotFound, api.CodeNotFound, "no such route")
}

// methodNotAllowed answers another method on a route, saying which it
// allows.
func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, api.CodeMethodNotAllowed, "method not allowed on this route (see Allow)")
	}
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(api.Error{Error: code, Message: message})
}

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
