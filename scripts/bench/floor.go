package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"keygate/gateway"
	"keygate/keys"
	"keygate/memstore"
	"keygate/tokens"
)

// floorServer runs keygate itself — the same wiring, HTTP stack, signing,
// services and serving loop as keygate serve, with its default settings —
// over the in-memory store: the fastest keygate could be if storage were
// free. It prints "KEY <partner key>" and "ADDR <address>" on stdout.
// With -metrics=false it keeps no metrics, as keygate with admin.addr
// empty.
func floorServer(args []string) error {
	fs := flag.NewFlagSet("floor-server", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	withMetrics := fs.Bool("metrics", true, "keep keygate's metrics, as its default admin listener does (they are recorded, not served)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cfg := gateway.DefaultConfig()
	// keygate's default logging: the floor pays for the same access log.
	lw := gateway.NewLogWriter(os.Stderr)
	defer lw.Close()
	log := gateway.NewLogger(cfg.Log, lw)
	cfg.RateLimit = gateway.RateLimitConfig{MaxTracked: cfg.RateLimit.MaxTracked} // lifted, as for keygate
	if !*withMetrics {
		cfg.Admin.Addr = ""
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	master, err := tokens.NewMasterKey(base64.RawURLEncoding.EncodeToString(secret))
	if err != nil {
		return err
	}
	gw, err := gateway.New(ctx, cfg, memstore.New(), master, gateway.Options{Log: log, Now: time.Now})
	if err != nil {
		return err
	}
	_, key, err := gw.Keys.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "bench"})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Printf("KEY %s\nADDR %s\n", key.APIKey.Reveal(), ln.Addr())
	return gw.Serve(ctx, ln, nil)
}
