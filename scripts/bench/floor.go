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
	gw, err := gateway.New(ctx, cfg, trailFree{memstore.New()}, master, gateway.Options{Log: log, Now: time.Now})
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

// trailFree is memstore without the login audit trail. An in-memory store
// keeps every login's event: after the login phase, a few hundred thousand
// of them are tens of MiB of live heap that the collector marks in every
// later phase (the floor's RSS grew from 69 to 104 MiB, and its refreshes
// took 15–20% more CPU than in a run of refreshes alone), a cost keygate,
// whose trail is on disk, does not have. Storage that is free includes the
// trail's, so the floor drops the events the recorder batches (logins',
// and the counted failures) and keeps the last-use times.
type trailFree struct{ *memstore.Store }

func (s trailFree) RecordUsage(ctx context.Context, lastUsed map[string]time.Time, _ []keys.AuditEvent) error {
	return s.Store.RecordUsage(ctx, lastUsed, nil)
}
