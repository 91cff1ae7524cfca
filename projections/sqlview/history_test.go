package sqlview_test

import (
	"context"
	"database/sql"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections/sqlview"
)

// historyCounts returns the rows of the recent and archive tables of the
// check history.
func historyCounts(t *testing.T, db *sql.DB) (recent, archive int) {
	t.Helper()
	if err := db.QueryRow("SELECT (SELECT COUNT(*) FROM check_history_recent), (SELECT COUNT(*) FROM check_history_archive)").Scan(&recent, &archive); err != nil {
		t.Fatal(err)
	}
	return recent, archive
}

// checkRows counts the check_history rows of a rebuild of j with opts
// (the checks within its retention), and fails the test unless the view
// at path equals that rebuild.
func checkRows(t *testing.T, path string, j journal.Journal, opts sqlview.Options) int {
	t.Helper()
	full := filepath.Join(t.TempDir(), "rebuilt.db")
	if err := sqlview.RebuildFile(context.Background(), full, j, opts); err != nil {
		t.Fatal(err)
	}
	if err := sameViews(t, path, full); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+full+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM check_history").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRecentChecksMergeIntoArchive: an incremental view appends checks to
// check_history_recent and, once it holds the merge size, moves them into
// check_history_archive in the batch that passes it; check_history shows
// both, equal to a rebuild (which writes the archive only), also after the
// view is closed and opened again (it counts the recent rows it finds).
func TestRecentChecksMergeIntoArchive(t *testing.T) {
	const merge = 200
	sqlview.SetMergeRows(t, merge, 50) // about four chunks of proxies
	j := filled(t, 91, 3000)
	path := filepath.Join(t.TempDir(), "view.db")
	emptyView(t, path)
	// Nothing falls out of retention: the second fill's checks are
	// older than the first's.
	opts := sqlview.Options{BatchSize: 37, HistoryRetention: 100 * 365 * 24 * time.Hour}
	v := openView(t, path, j, opts)
	if err := v.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	recent, archive := historyCounts(t, v.DB())
	if want := checkRows(t, path, j, opts); archive == 0 || recent >= merge || recent+archive != want {
		t.Fatalf("recent %d, archive %d rows; want a merge every %d rows and %d in all", recent, archive, merge, want)
	}

	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	fill(t, j, 92, 20, 1000)
	v = openView(t, path, j, opts)
	if err := v.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	recent2, archive2 := historyCounts(t, v.DB())
	if want := checkRows(t, path, j, opts); archive2 <= archive || recent2 >= merge || recent2+archive2 != want {
		t.Fatalf("after reopening: recent %d, archive %d rows (archive %d before); want a merge every %d rows and %d in all", recent2, archive2, archive, merge, want)
	}

	rebuilt := rebuilt(t, j, t.TempDir())
	db, err := sql.Open("sqlite3", "file:"+rebuilt+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if r, _ := historyCounts(t, db); r != 0 {
		t.Errorf("a rebuild left %d rows in check_history_recent", r)
	}
}

// TestMigrateFromVersion2: a view of schema version 2 (check_history a
// table) is migrated in place when opened, without RebuildIfInvalid: its
// rows are kept (the table becomes the archive), the file is not moved
// aside, and the view goes on to equal a rebuild.
func TestMigrateFromVersion2(t *testing.T) {
	j := filled(t, 93, 2000)
	path := filepath.Join(t.TempDir(), "view.db")
	rebuildAt(t, path, j)
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"DROP VIEW check_history",
		"INSERT INTO check_history_archive SELECT * FROM check_history_recent",
		"DROP TABLE check_history_recent",
		"ALTER TABLE check_history_archive RENAME TO check_history",
		"PRAGMA user_version = 2",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var before int
	if err := db.QueryRow("SELECT COUNT(*) FROM check_history").Scan(&before); err != nil {
		t.Fatal(err)
	}
	db.Close()

	fill(t, j, 94, 20, 500)
	var logged strings.Builder
	v := openView(t, path, j, sqlview.Options{Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if !strings.Contains(logged.String(), "migrated to schema version 3") {
		t.Errorf("log: %s", logged.String())
	}
	if bad := badFiles(t, path); len(bad) != 0 {
		t.Fatalf("moved-aside files: %v", bad)
	}
	var version int
	if err := v.DB().QueryRow("PRAGMA user_version").Scan(&version); err != nil || version != sqlview.SchemaVersion {
		t.Fatalf("user_version %d (%v), want %d", version, err, sqlview.SchemaVersion)
	}
	if _, archive := historyCounts(t, v.DB()); archive != before {
		t.Fatalf("the archive holds %d rows, the version 2 table held %d", archive, before)
	}
	if err := v.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	equalsRebuild(t, path, j)
}
