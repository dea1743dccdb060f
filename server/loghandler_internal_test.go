package server

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
)

// TestLogHandlerKeepsRequestID: loggers derived with With and WithGroup
// still stamp records with the request ID of their context.
func TestLogHandlerKeepsRequestID(t *testing.T) {
	var buf bytes.Buffer
	base := slog.New(LogHandler(slog.NewJSONHandler(&buf, nil)))
	ctx := context.WithValue(context.Background(), requestIDKey, "0123456789abcdef01234567")
	for name, log := range map[string]*slog.Logger{
		"plain":      base,
		"with attrs": base.With("component", "test"),
		"with group": base.WithGroup("g"),
	} {
		buf.Reset()
		log.InfoContext(ctx, "hello")
		if !bytes.Contains(buf.Bytes(), []byte(`"request_id":"0123456789abcdef01234567"`)) {
			t.Errorf("%s: record lacks the request ID: %s", name, buf.Bytes())
		}
		buf.Reset()
		log.InfoContext(context.Background(), "no request")
		var rec map[string]any
		if err := json.Unmarshal(buf.Bytes(), &rec); err != nil || bytes.Contains(buf.Bytes(), []byte("request_id")) {
			t.Errorf("%s: record outside a request: %s (%v)", name, buf.Bytes(), err)
		}
	}
}
