package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"keygate/dump"
)

// ErrBackupExists refuses a backup onto a file that is already there.
var ErrBackupExists = errors.New("backup file already exists")

// Backup writes a consistent copy of the live database to path with
// VACUUM INTO (one read transaction on a pooled connection: the writer
// goes on meanwhile), checks the copy's integrity, makes it durable, and
// returns what it holds. The copy is written beside path and renamed into
// place only once it checks out, so a failed backup leaves no half-written
// file under path; path must not exist. The master key is not in the
// database, so it is not in the copy: a restore needs it separately.
func (d *DB) Backup(ctx context.Context, path string) (dump.Counts, error) {
	if _, err := os.Lstat(path); err == nil {
		return dump.Counts{}, fmt.Errorf("%w: %s", ErrBackupExists, path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return dump.Counts{}, err
	}
	tmp := path + ".partial"
	_ = os.Remove(tmp) // left by a backup that was killed
	// The read pool is query_only, which refuses VACUUM INTO; a read-only
	// connection of its own (mode=ro) may make the copy.
	src, err := sql.Open("sqlite3", "file:"+(&url.URL{Path: d.path}).EscapedPath()+"?mode=ro&_busy_timeout="+strconv.Itoa(int(busyTimeout/time.Millisecond)))
	if err != nil {
		return dump.Counts{}, err
	}
	defer src.Close()
	if _, err := src.ExecContext(ctx, `VACUUM INTO ?`, tmp); err != nil {
		_ = os.Remove(tmp)
		return dump.Counts{}, fmt.Errorf("writing the copy: %w", mapErr(err))
	}
	counts, err := checkCopy(ctx, tmp)
	if err == nil {
		err = syncFile(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncFile(filepath.Dir(path))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return dump.Counts{}, err
	}
	return counts, nil
}

// checkCopy opens a database file read-only, runs PRAGMA integrity_check
// on it and counts its rows.
func checkCopy(ctx context.Context, path string) (dump.Counts, error) {
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_query_only=on")
	if err != nil {
		return dump.Counts{}, err
	}
	defer db.Close()
	var verdict string
	if err := db.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&verdict); err != nil {
		return dump.Counts{}, fmt.Errorf("checking the copy: %w", err)
	}
	if verdict != "ok" {
		return dump.Counts{}, fmt.Errorf("the copy failed its integrity check: %s", verdict)
	}
	var c dump.Counts
	err = db.QueryRowContext(ctx, `SELECT
			(SELECT COUNT(*) FROM partners), (SELECT COUNT(*) FROM companies), (SELECT COUNT(*) FROM api_keys),
			(SELECT COUNT(*) FROM signing_keys), (SELECT COUNT(*) FROM refresh_families), (SELECT COUNT(*) FROM audit_events)`).
		Scan(&c.Partners, &c.Companies, &c.Keys, &c.SigningKeys, &c.Families, &c.AuditEvents)
	if err != nil {
		return dump.Counts{}, fmt.Errorf("counting the copy's rows: %w", err)
	}
	return c, nil
}

// syncFile flushes a file or directory to stable storage.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}
