package sqlview

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"slices"
	"time"
)

// SchemaVersion is the view schema this package writes, stored in
// PRAGMA user_version. Version 3 splits check_history into two tables
// behind a view of that name (see historyRecent); a version 2 file is
// migrated in place when opened.
const SchemaVersion = 3

// OffsetName is the projection_offsets row of this view.
const OffsetName = "sqlview"

// TimeLayout is how times are stored: RFC 3339, UTC, always nine fractional
// digits, so that text order is time order and SQLite's date functions
// accept them.
const TimeLayout = "2006-01-02T15:04:05.000000000Z"

// formatTime renders unix nanoseconds with TimeLayout.
func formatTime(n int64) string {
	var buf [len(TimeLayout)]byte
	return string(appendTime(buf[:0], n))
}

// appendTime appends the rendering of unix nanoseconds n with TimeLayout to
// b: the text time.Format gives, at a tenth of its cost.
func appendTime(b []byte, n int64) []byte {
	t := time.Unix(0, n).UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, TimeLayout)
	}
	hour, minute, sec := t.Clock()
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	b = appendDigits(b, t.Nanosecond(), 9)
	return append(b, 'Z')
}

// appendDigits appends the width last decimal digits of v (≥ 0), with
// leading zeros.
func appendDigits(b []byte, v, width int) []byte {
	b = append(b, make([]byte, width)...)
	for i := len(b) - 1; i >= len(b)-width; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return b
}

// nullTime is formatTime, or nil (NULL) for 0.
func nullTime(n int64) driver.Value {
	if n == 0 {
		return nil
	}
	return formatTime(n)
}

// The check history is two tables with check_history's columns, and
// check_history is the view of both (UNION ALL). Checks are appended to
// historyRecent, which has no index but its rowid (seq): an insert lands
// in the table's last page. Once it holds mergeRows rows, the batch that
// passes that moves them all into historyArchive sorted by proxy and time,
// which is where the (proxy_id, at) and (at) indexes are. An insert into
// the (proxy_id, at) index at every check wrote a page of its own per
// check (each proxy's newest entries lie apart), and read it back once
// the index outgrew SQLite's cache; a merge writes about a page per proxy
// for all the checks it moves.
//
// In historyArchive seq is a column, not the rowid: a merge's rows come
// sorted by proxy, so with seq as the rowid they went into pages all over
// the table's tail (splitting them, and more of them than the page cache
// holds); with a rowid of its own the table is appended to. At 10,000
// proxies with 5 minutes of history (BenchmarkSteadyState, one run each
// beside other work, merges in one piece) that took 37.4 µs of CPU and
// 10.6 KB written per check to 30.8 µs and 8.8 KB. A version 2 view
// migrated in place keeps seq as the archive's rowid.
const (
	historyArchive = "check_history_archive"
	historyRecent  = "check_history_recent"
	historyColumns = "seq, proxy_id, at, ok, class, status_code, connect_ms, first_byte_ms, total_ms, message"
	// historyTable is the columns after seq (historyRecent's INTEGER
	// PRIMARY KEY, historyArchive's INTEGER NOT NULL).
	historyTable = `
	proxy_id      TEXT NOT NULL,
	at            TEXT NOT NULL,
	ok            INTEGER NOT NULL,
	class         TEXT NOT NULL,
	status_code   INTEGER NOT NULL,
	connect_ms    REAL NOT NULL,
	first_byte_ms REAL NOT NULL,
	total_ms      REAL NOT NULL,
	message       TEXT NOT NULL
)`
	historyView = `CREATE VIEW check_history AS
	SELECT ` + historyColumns + ` FROM ` + historyArchive + `
	UNION ALL
	SELECT ` + historyColumns + ` FROM ` + historyRecent
)

// migrateV2 turns a version 2 view (check_history a table) into version 3
// in place: the table becomes the archive, with its indexes.
var migrateV2 = []string{
	`ALTER TABLE check_history RENAME TO ` + historyArchive,
	`CREATE TABLE ` + historyRecent + ` (seq INTEGER PRIMARY KEY,` + historyTable,
	historyView,
}

// tables are created before the data is written.
var tables = []string{
	`CREATE TABLE proxies (
	id                    TEXT PRIMARY KEY,
	url_redacted          TEXT NOT NULL,
	source                TEXT NOT NULL,
	state                 TEXT NOT NULL,
	paused                INTEGER NOT NULL,
	has_credentials       INTEGER NOT NULL,
	consecutive_successes INTEGER NOT NULL,
	consecutive_failures  INTEGER NOT NULL,
	passive_failures      INTEGER NOT NULL,
	recovery_attempt      INTEGER NOT NULL,
	total_checks          INTEGER NOT NULL,
	total_failures        INTEGER NOT NULL,
	last_check_at         TEXT,
	last_check_unix_ms    INTEGER,
	last_change_at        TEXT,
	last_error_class      TEXT NOT NULL,
	last_error            TEXT NOT NULL,
	last_status_code      INTEGER NOT NULL,
	last_latency_ms       REAL,
	latency_ewma_ms       REAL,
	added_at              TEXT,
	tags                  TEXT NOT NULL,
	weight                REAL,
	exit_ip               TEXT NOT NULL,
	anonymity             TEXT NOT NULL,
	ejected_until         TEXT,
	updated_seq           INTEGER NOT NULL,
	state_pb              BLOB NOT NULL
) WITHOUT ROWID`,
	`CREATE TABLE ` + historyArchive + ` (seq INTEGER NOT NULL,` + historyTable,
	`CREATE TABLE ` + historyRecent + ` (seq INTEGER PRIMARY KEY,` + historyTable,
	historyView,
	`CREATE TABLE state_changes (
	seq              INTEGER PRIMARY KEY,
	proxy_id         TEXT NOT NULL,
	at               TEXT NOT NULL,
	from_state       TEXT NOT NULL,
	to_state         TEXT NOT NULL,
	reason           TEXT NOT NULL,
	recovery_attempt INTEGER NOT NULL
)`,
	`CREATE TABLE pool_events (
	seq         INTEGER PRIMARY KEY,
	at          TEXT NOT NULL,
	type        TEXT NOT NULL,
	healthy_pct REAL NOT NULL,
	threshold   REAL NOT NULL,
	healthy     INTEGER NOT NULL,
	total       INTEGER NOT NULL
)`,
	`CREATE TABLE source_refreshes (
	source        TEXT PRIMARY KEY,
	last_refresh  TEXT,
	last_error    TEXT NOT NULL,
	last_error_at TEXT,
	held          INTEGER NOT NULL
) WITHOUT ROWID`,
	`CREATE TABLE projection_offsets (
	name                TEXT PRIMARY KEY,
	seq                 INTEGER NOT NULL,
	newest_at_unix_nano INTEGER NOT NULL
) WITHOUT ROWID`,
	`CREATE VIEW sources AS SELECT
	source,
	COUNT(*)                                            AS total,
	SUM(state = 'unknown')                              AS unknown,
	SUM(state = 'healthy')                              AS healthy,
	SUM(state = 'degraded')                             AS degraded,
	SUM(state = 'unhealthy')                            AS unhealthy,
	SUM(state = 'recovering')                           AS recovering,
	SUM(state = 'failed')                               AS failed,
	SUM(paused)                                         AS paused,
	ROUND(100.0 * SUM(state = 'healthy') / COUNT(*), 2) AS health_percentage,
	AVG(latency_ewma_ms)                                AS avg_latency_ms,
	MAX(last_check_at)                                  AS last_check_at
FROM proxies GROUP BY source`,
}

// indexes are created after a rebuild has written the data.
var indexes = []string{
	`CREATE INDEX proxies_state_source ON proxies(state, source)`,
	`CREATE INDEX proxies_source_state ON proxies(source, state)`,
	`CREATE INDEX check_history_proxy_at ON ` + historyArchive + `(proxy_id, at)`,
	`CREATE INDEX check_history_at ON ` + historyArchive + `(at)`,
	`CREATE INDEX state_changes_proxy_at ON state_changes(proxy_id, at)`,
	`CREATE INDEX state_changes_at ON state_changes(at)`,
}

// requiredObjects must exist in a valid view.
var requiredObjects = []string{"proxies", "check_history", historyArchive, historyRecent, "state_changes", "pool_events", "source_refreshes", "projection_offsets", "sources"}

// execAll runs statements in order.
func execAll(ctx context.Context, db execer, stmts ...string) error {
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("sqlview: %.40s…: %w", s, err)
		}
	}
	return nil
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// createSchema creates the whole schema (tables, view, indexes) and sets
// the schema version, in one transaction.
func createSchema(ctx context.Context, db *sql.DB) error {
	return migrate(ctx, db, slices.Concat(tables, indexes))
}

// migrate runs steps and sets the schema version to SchemaVersion, in one
// transaction.
func migrate(ctx context.Context, db *sql.DB, steps []string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := execAll(ctx, tx, steps...); err != nil {
		return err
	}
	if err := execAll(ctx, tx, fmt.Sprintf("PRAGMA user_version = %d", SchemaVersion)); err != nil {
		return err
	}
	return tx.Commit()
}
