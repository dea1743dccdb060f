package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"keygate/keys"
	"keygate/store"
)

// seedStore writes n partners, each with a key, straight through the
// SQLite store (many at once, so group commit batches them), to measure
// logins against a large key table.
func seedStore(path string, n int) error {
	ctx := context.Background()
	db, err := store.Open(ctx, store.Config{Driver: "sqlite", Path: path, Synchronous: "NORMAL"}, store.Options{Create: true})
	if err != nil {
		return err
	}
	defer db.Close()
	svc := keys.NewService(db, nil, time.Now, slog.New(slog.DiscardHandler))
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 256)
	for range 256 {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				if _, _, err := svc.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: fmt.Sprintf("seed %d", i)}); err != nil {
					errs <- err
					return
				}
				if i%100_000 == 0 {
					fmt.Fprintf(os.Stderr, "seeded %d keys in %s\n", i, time.Since(start).Round(time.Second))
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}
