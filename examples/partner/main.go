// Command partner is a partner's backend calling a downstream service with
// R-Auth: what a backend needs, with package client. It logs in with its
// API key and refreshes its token on its own.
//
//	KEYGATE_URL=http://127.0.0.1:8080 KEYGATE_API_KEY=pk_... \
//	DOWNSTREAM_URL=http://127.0.0.1:8081 go run ./examples/partner -n 10 -interval 1s
//
// It calls DOWNSTREAM_URL/whoami N times, D apart, printing one line per
// call, "<i> <status>" (i from 1; "error" for a call that got no
// response), and exits 1 if any call was not 200, 2 if it cannot start.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"keygate/client"
)

func main() {
	n := flag.Int("n", 10, "number of calls")
	interval := flag.Duration("interval", time.Second, "time between calls")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, *n, *interval))
}

func run(ctx context.Context, n int, interval time.Duration) int {
	kg, err := client.New(client.Config{
		BaseURL: env("KEYGATE_URL", "http://127.0.0.1:8080"),
		APIKey:  os.Getenv("KEYGATE_API_KEY"),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "partner:", err)
		return 2
	}
	// Revoke the refresh token on the way out; the access token expires
	// on its own.
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := kg.Logout(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "partner: logout:", err)
		}
	}()

	hc := kg.HTTPClient(nil) // puts R-Auth on every request
	hc.Timeout = 10 * time.Second
	url := env("DOWNSTREAM_URL", "http://127.0.0.1:8081") + "/whoami"
	tick := time.NewTicker(interval)
	defer tick.Stop()
	failed := false
	for i := 1; i <= n; i++ {
		if i > 1 {
			select {
			case <-tick.C:
			case <-ctx.Done():
				return 1
			}
		}
		status, err := call(ctx, hc, url)
		if err != nil {
			fmt.Fprintln(os.Stderr, "partner:", err)
			fmt.Println(i, "error")
			failed = true
			continue
		}
		fmt.Println(i, status)
		failed = failed || status != http.StatusOK
	}
	if failed {
		return 1
	}
	return 0
}

func call(ctx context.Context, hc *http.Client, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
