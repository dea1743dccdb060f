package postgres

import (
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/jackc/pgx/v5/pgconn"

	"keygate/keys"
)

// SQLSTATE codes keygate acts on (PostgreSQL's errcodes, appendix A).
const (
	codeUniqueViolation      = "23505"
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
	codeReadOnlyTransaction  = "25006" // a standby after failover, or default_transaction_read_only
	codeAdminShutdown        = "57P01"
	codeCrashShutdown        = "57P02"
	codeCannotConnectNow     = "57P03" // starting up, shutting down, in recovery
	codeIOError              = "58030"
	codeLockNotAvailable     = "55P03" // lock_timeout
	codeQueryCanceled        = "57014" // statement_timeout, or a cancel request
)

// mapErr turns driver errors a caller can act on into domain errors,
// matching by SQLSTATE code and by error type, never by message text:
// a unique violation is keys.ErrConflict; a database that cannot be
// reached, is shutting down or restarting, refuses writes (a standby, a
// full disk), lacks resources, or did not answer in time (a deadline, the
// session's statement_timeout or lock_timeout) is keys.ErrUnavailable,
// which the API answers with 503 service_unavailable.
func (d *DB) mapErr(err error) error {
	if err == nil {
		return nil
	}
	if d.closed.Load() {
		return fmt.Errorf("%w: %w", errClosed, err)
	}
	switch {
	case unavailable(err):
		return scrub(fmt.Errorf("%w: %w", keys.ErrUnavailable, err), d.secrets)
	case sqlState(err) == codeUniqueViolation:
		return fmt.Errorf("%w: %w", keys.ErrConflict, err)
	}
	return scrub(err, d.secrets)
}

// sqlState is the SQLSTATE of a server error, "" for any other error.
func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// unavailable reports whether err means the database cannot serve now, as
// opposed to a refusal of this statement.
func unavailable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch class := pe.Code[:2]; {
		case class == "08", // connection exception
			class == "53", // insufficient resources: disk full, out of memory, too many connections
			pe.Code == codeAdminShutdown, pe.Code == codeCrashShutdown, pe.Code == codeCannotConnectNow,
			pe.Code == codeReadOnlyTransaction, pe.Code == codeIOError,
			pe.Code == codeLockNotAvailable, pe.Code == codeQueryCanceled:
			return true
		}
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	switch {
	case errors.As(err, &ce), errors.As(err, &ne), pgconn.Timeout(err),
		errors.Is(err, pgconn.ErrConnClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}
	return false
}

// retryable reports whether a transaction that failed with err was rolled
// back by the database for a reason that another attempt may not meet: a
// serialization failure or a deadlock with another replica's transaction.
func retryable(err error) bool {
	switch sqlState(err) {
	case codeSerializationFailure, codeDeadlockDetected:
		return true
	}
	return false
}

// unavailableErr marks err as the database being unable to serve now.
func unavailableErr(err error) error { return fmt.Errorf("%w: %w", keys.ErrUnavailable, err) }
