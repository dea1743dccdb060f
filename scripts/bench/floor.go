package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"keygate/keys"
	"keygate/memstore"
	"keygate/server"
	"keygate/tokens"
)

// floorServer runs keygate's own HTTP stack and token signing over the
// in-memory store: the fastest keygate could be if storage were free. It
// prints "KEY <partner key>" and "ADDR <address>" on stdout.
func floorServer(args []string) error {
	fs := flag.NewFlagSet("floor-server", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	server.KeepHeapGoal() // the collector policy keygate serve runs
	// Info, like keygate's default: the floor pays for the same access log.
	log := slog.New(server.LogHandler(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))

	store := memstore.New()
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	master, err := tokens.NewMasterKey(base64.RawURLEncoding.EncodeToString(secret))
	if err != nil {
		return err
	}
	ring := tokens.NewKeyring(tokens.KeyringConfig{
		Algorithm: tokens.ES256, AccessTTL: 15 * time.Minute, Leeway: 30 * time.Second, ActivationDelay: time.Hour,
	}, master, store, time.Now, log)
	if err := ring.EnsureKey(ctx); err != nil {
		return err
	}
	if err := ring.Load(ctx); err != nil {
		return err
	}
	signer, err := tokens.NewJWT(tokens.JWTConfig{
		Issuer: "keygate", Audience: "r-auth", Algorithm: tokens.ES256, AccessTTL: 15 * time.Minute, Leeway: 30 * time.Second,
	}, ring, time.Now)
	if err != nil {
		return err
	}
	recorder := keys.NewRecorder(store, time.Second, log)
	go recorder.Run(ctx)
	keySvc := keys.NewService(store, recorder, time.Now, log)
	tokenSvc := tokens.NewService(keySvc, store, signer, master, tokens.RefreshConfig{
		TTL: 720 * time.Hour, MaxLifetime: 2160 * time.Hour, ReuseGrace: 10 * time.Second, Retention: 168 * time.Hour,
	}, time.Now)
	srv, err := server.New(server.Config{}, server.Deps{
		Keys: keySvc, Tokens: tokenSvc, JWKS: ring.JWKS, Ready: func(context.Context) error { return nil }, Log: log, Now: time.Now,
	})
	if err != nil {
		return err
	}
	_, key, err := keySvc.CreatePartner(ctx, keys.Operator, "bench")
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 15 * time.Second, IdleTimeout: 60 * time.Second}
	fmt.Printf("KEY %s\nADDR %s\n", key.APIKey.Reveal(), ln.Addr())
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	if err := hs.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}
