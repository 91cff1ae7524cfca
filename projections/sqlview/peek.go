package sqlview

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// PeekOffset reads the journal offset of the view file at path (the seq of
// the last event applied to it) without modifying anything: the file is
// opened read-only (mode=ro), so there is no checkpoint, no WAL reset and
// no schema change; SQLite may create the transient -shm file, with the
// database file's mode. Call it before OpenView to compare the offset with
// the journal's head: a view ahead of its journal means the journal lost
// data or is not the view's.
//
// A missing file gives exists false; an empty file or a view without an
// offset gives seq 0. A file that is not a readable view gives an error
// wrapping ErrViewCorrupt or ErrViewVersion.
func PeekOffset(ctx context.Context, path string) (seq uint64, exists bool, err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return 0, false, fmt.Errorf("sqlview: view path %s: %w", path, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("sqlview: %s: %w", abs, err)
	case fi.Size() == 0:
		return 0, true, nil
	}
	db, err := openDB("", abs, "mode=ro", "PRAGMA busy_timeout = 5000")
	if err != nil {
		return 0, true, fmt.Errorf("sqlview: open %s read-only: %w", abs, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		return 0, true, peekErr(abs, "open read-only", err)
	}
	defer conn.Close()
	var version int
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return 0, true, peekErr(abs, "read the schema version", err)
	}
	if version > SchemaVersion {
		return 0, true, fmt.Errorf("%w: %s has view schema version %d but this proxyhealth supports version %d", ErrViewVersion, abs, version, SchemaVersion)
	}
	if version == 0 {
		var n int
		if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM sqlite_master").Scan(&n); err != nil {
			return 0, true, peekErr(abs, "read the schema", err)
		}
		if n > 0 {
			return 0, true, fmt.Errorf("%w: %s: SQLite database without a proxyhealth schema version", ErrViewCorrupt, abs)
		}
		return 0, true, nil
	}
	var s int64
	switch err := conn.QueryRowContext(ctx, "SELECT seq FROM projection_offsets WHERE name = ?", OffsetName).Scan(&s); {
	case errors.Is(err, sql.ErrNoRows):
		return 0, true, nil
	case err != nil:
		return 0, true, peekErr(abs, "read the offset", err)
	case s < 0:
		return 0, true, fmt.Errorf("%w: %s: negative offset %d", ErrViewCorrupt, abs, s)
	}
	return uint64(s), true, nil
}

// peekErr names the file, and wraps ErrViewCorrupt for SQLite's "not a
// database", "malformed" and SQL errors (a missing table).
func peekErr(path, what string, err error) error {
	if code, _, ok := sqliteCodes(err); ok && (code == codeNotADB || code == codeCorrupt || code == codeError) {
		return fmt.Errorf("%w: %s: %s: %v", ErrViewCorrupt, path, what, err)
	}
	return fmt.Errorf("sqlview: %s: %s: %w", path, what, err)
}
