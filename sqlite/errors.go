package sqlite

import (
	"errors"
	"fmt"
	"keygate/keys"

	"github.com/mattn/go-sqlite3"
)

// mapErr turns driver errors a caller can act on into domain errors,
// matching by SQLite result code, never by message text.
func mapErr(err error) error {
	var se sqlite3.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code {
	case sqlite3.ErrFull, sqlite3.ErrReadonly, sqlite3.ErrIoErr, sqlite3.ErrBusy,
		sqlite3.ErrLocked, sqlite3.ErrCantOpen, sqlite3.ErrPerm, sqlite3.ErrNotADB, sqlite3.ErrCorrupt:
		return fmt.Errorf("%w: %w", keys.ErrUnavailable, err)
	}
	if se.ExtendedCode == sqlite3.ErrConstraintUnique || se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey {
		return fmt.Errorf("%w: %w", keys.ErrConflict, err)
	}
	return err
}
