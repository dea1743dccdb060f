package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"keygate/keys"
)

// mapErr recognises PostgreSQL's errors by SQLSTATE and pgx's by type,
// never by message.
func TestMapErr(t *testing.T) {
	d := &DB{}
	pg := func(code string) error {
		return fmt.Errorf("wrapped: %w", &pgconn.PgError{Code: code, Message: "whatever the server says"})
	}
	for _, tc := range []struct {
		name string
		err  error
		want error // nil: passed through unchanged
	}{
		{"unique violation", pg("23505"), keys.ErrConflict},
		{"connection failure", pg("08006"), keys.ErrUnavailable},
		{"admin shutdown", pg("57P01"), keys.ErrUnavailable},
		{"crash shutdown", pg("57P02"), keys.ErrUnavailable},
		{"cannot connect now", pg("57P03"), keys.ErrUnavailable},
		{"disk full", pg("53100"), keys.ErrUnavailable},
		{"out of memory", pg("53200"), keys.ErrUnavailable},
		{"too many connections", pg("53300"), keys.ErrUnavailable},
		{"read-only transaction (a standby)", pg("25006"), keys.ErrUnavailable},
		{"I/O error", pg("58030"), keys.ErrUnavailable},
		{"lock_timeout", pg("55P03"), keys.ErrUnavailable},
		{"statement_timeout", pg("57014"), keys.ErrUnavailable},
		{"call deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), keys.ErrUnavailable},
		{"network", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, keys.ErrUnavailable},
		{"EOF", fmt.Errorf("reading: %w", io.ErrUnexpectedEOF), keys.ErrUnavailable},
		{"connection closed", fmt.Errorf("x: %w", pgconn.ErrConnClosed), keys.ErrUnavailable},
		{"syntax error", pg("42601"), nil},
		{"check violation", pg("23514"), nil},
		{"a domain error", keys.ErrNotFound, keys.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := d.mapErr(tc.err)
			if tc.want == nil {
				if errors.Is(got, keys.ErrUnavailable) || errors.Is(got, keys.ErrConflict) {
					t.Errorf("mapErr(%v) = %v, want it passed through", tc.err, got)
				}
				return
			}
			if !errors.Is(got, tc.want) || !errors.Is(got, tc.err) {
				t.Errorf("mapErr(%v) = %v, want %v wrapping the original", tc.err, got, tc.want)
			}
		})
	}
	for _, code := range []string{"40001", "40P01"} {
		if !retryable(pg(code)) {
			t.Errorf("retryable(%s) = false", code)
		}
	}
	if retryable(pg("23505")) {
		t.Errorf("a unique violation is not retried")
	}
}

// scrub removes every password a URL carries from an error, whichever
// parameter carried it, and keeps the error's chain.
func TestScrubEverySecret(t *testing.T) {
	raw := "postgres://u:userpw-1@h/db?password=parampw-2&sslpassword=sslpw-3"
	secrets := Secrets(raw)
	if len(secrets) != 3 {
		t.Fatalf("Secrets(%q) found %d secrets, want 3", Redact(raw), len(secrets))
	}
	cause := &pgconn.PgError{Code: "08006"}
	err := scrub(fmt.Errorf("dialing %s (userpw-1, parampw-2, sslpw-3): %w", raw, cause), secrets)
	for _, pw := range []string{"userpw-1", "parampw-2", "sslpw-3"} {
		if strings.Contains(err.Error(), pw) {
			t.Errorf("scrubbed error shows %s: %v", pw, err)
		}
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Errorf("scrubbed error lost its chain: %v", err)
	}
}
