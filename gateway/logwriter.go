package gateway

import (
	"io"
	"log/slog"
	"sync"
	"time"

	"keygate/server"
)

// NewLogger makes the logger the configuration describes, writing to w;
// every record logged with a request's context carries its request ID.
func NewLogger(cfg LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level)) // validated by Parse
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if cfg.Format == "text" {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(server.LogHandler(h))
}

// logDelay is how long a log line may wait for others to share its write.
const logDelay = 5 * time.Millisecond

// maxPendingLog bounds the log output waiting to be written; past it,
// loggers wait for the write in progress.
const maxPendingLog = 1 << 20

// LogWriter collects log output and writes it at most every logDelay, in
// one write call: serving keygate logs a line per request, and a write
// call per line cost a tenth of the request's CPU (BENCHMARKS.md). A line
// waits at most logDelay (nothing runs while nothing is logged); what a
// kill -9 catches waiting is lost, a clean exit loses nothing (Close).
type LogWriter struct {
	w    io.Writer
	kick chan struct{}
	quit chan struct{}
	done chan struct{}

	mu     sync.Mutex
	room   *sync.Cond // signalled when the pending buffer was taken
	buf    []byte
	closed bool
}

// NewLogWriter starts a LogWriter over w; Close it to write the rest.
func NewLogWriter(w io.Writer) *LogWriter {
	lw := &LogWriter{w: w, kick: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	lw.room = sync.NewCond(&lw.mu)
	go lw.run()
	return lw
}

// Write implements io.Writer. It never fails: a log line that cannot be
// written does not stop a request.
func (lw *LogWriter) Write(p []byte) (int, error) {
	lw.mu.Lock()
	if lw.closed {
		lw.mu.Unlock()
		return lw.w.Write(p)
	}
	for len(lw.buf) >= maxPendingLog {
		lw.room.Wait()
	}
	first := len(lw.buf) == 0
	lw.buf = append(lw.buf, p...)
	lw.mu.Unlock()
	if first {
		select {
		case lw.kick <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

// Close writes what is pending; later writes go straight through.
func (lw *LogWriter) Close() error {
	lw.mu.Lock()
	if lw.closed {
		lw.mu.Unlock()
		return nil
	}
	lw.closed = true
	lw.mu.Unlock()
	close(lw.quit)
	<-lw.done
	return nil
}

func (lw *LogWriter) run() {
	defer close(lw.done)
	timer := time.NewTimer(logDelay)
	timer.Stop()
	var spare []byte
	for {
		select {
		case <-lw.kick:
		case <-lw.quit:
			lw.flush(&spare)
			return
		}
		timer.Reset(logDelay)
		select {
		case <-timer.C:
		case <-lw.quit:
			timer.Stop()
			lw.flush(&spare)
			return
		}
		lw.flush(&spare)
	}
}

// flush writes what is pending, swapping buffers so that loggers append
// to the other one meanwhile.
func (lw *LogWriter) flush(spare *[]byte) {
	lw.mu.Lock()
	out := lw.buf
	lw.buf = (*spare)[:0]
	lw.room.Broadcast()
	lw.mu.Unlock()
	if len(out) > 0 {
		_, _ = lw.w.Write(out)
	}
	*spare = out
}
