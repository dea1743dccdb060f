package gateway_test

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"

	"keygate/gateway"
)

// countingWriter records every write call.
type countingWriter struct {
	mu     sync.Mutex
	out    bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	return w.out.Write(p)
}

func (w *countingWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.String()
}

// TestLogWriterKeepsEveryLineInOrder: lines from many goroutines all
// arrive, whole, each goroutine's in its own order, in far fewer writes
// than lines, and Close writes the last of them.
func TestLogWriterKeepsEveryLineInOrder(t *testing.T) {
	cw := &countingWriter{}
	lw := gateway.NewLogWriter(cw)
	const writers, lines = 8, 500
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range lines {
				fmt.Fprintf(lw, "g%d line %d\n", g, i)
			}
		})
	}
	wg.Wait()
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	next := make([]int, writers)
	got := strings.Split(strings.TrimSuffix(cw.String(), "\n"), "\n")
	if len(got) != writers*lines {
		t.Fatalf("%d lines arrived, want %d", len(got), writers*lines)
	}
	for _, line := range got {
		var g, i int
		if _, err := fmt.Sscanf(line, "g%d line %d", &g, &i); err != nil {
			t.Fatalf("torn line %q", line)
		}
		if i != next[g] {
			t.Fatalf("goroutine %d: line %d after %d", g, i, next[g]-1)
		}
		next[g]++
	}
	if cw.writes > writers*lines/10 {
		t.Errorf("%d writes for %d lines", cw.writes, writers*lines)
	}
	// After Close, lines go straight through.
	fmt.Fprintln(lw, "late")
	if !strings.HasSuffix(cw.String(), "late\n") {
		t.Errorf("a line written after Close did not arrive")
	}
}
