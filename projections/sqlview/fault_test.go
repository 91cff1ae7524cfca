package sqlview_test

import (
	"context"
	"database/sql"
	"errors"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections/sqlview"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// remount makes the tmpfs at dir read-only or read-write.
func remount(t *testing.T, dir string, readOnly bool) {
	t.Helper()
	flags := uintptr(syscall.MS_REMOUNT)
	if readOnly {
		flags |= syscall.MS_RDONLY
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", flags, ""); err != nil {
		t.Fatalf("remount %s (read-only %v): %v", dir, readOnly, err)
	}
}

// fillDisk writes a file into dir until the file system is full and
// returns its path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	testutil.FillDisk(t, p)
	return p
}

// running is a View.Run in the background.
type running struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func startRun(t *testing.T, v *sqlview.View) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan struct{})}
	go func() { defer close(r.done); r.err = v.Run(ctx) }()
	t.Cleanup(func() { r.stop() })
	return r
}

// stop ends Run and returns its error.
func (r *running) stop() error {
	r.cancel()
	<-r.done
	return r.err
}

// ended reports whether Run has returned.
func (r *running) ended() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// caughtUp waits until the view has applied the journal's head, failing
// at once if Run ends.
func caughtUp(t *testing.T, r *running, v *sqlview.View, j journal.Journal) {
	t.Helper()
	waitFor(t, "the view to catch up with the journal", func() bool {
		if r.ended() {
			t.Fatalf("Run ended: %v", r.err)
		}
		return v.Offset() == j.Head()
	})
}

// TestRunSurvivesDiskFull: a full disk stops the view's batches; Run
// keeps retrying (Status says failing, with the cause), and once space is
// back the view catches up by itself and equals a rebuild.
func TestRunSurvivesDiskFull(t *testing.T) {
	dir := testutil.MountTmpfs(t, "16m")
	j := filled(t, 51, 300)
	path := filepath.Join(dir, "view.db")
	v, r := tailing(t, path, j, sqlview.Options{BatchSize: 50, Linger: -1, Logger: testLogger(t), RetryMin: time.Millisecond, RetryMax: 20 * time.Millisecond})
	if st := v.Status(); st.State != sqlview.StateRunning || st.Err != "" || st.Failures != 0 || !st.Since.IsZero() || st.Offset != j.Head() {
		t.Fatalf("status before the fault: %+v", st)
	}

	filler := fillDisk(t, dir)
	fill(t, j, 52, 20, 3000)
	var st sqlview.Status
	waitFor(t, "the view to report the full disk", func() bool {
		if r.ended() {
			t.Fatalf("Run ended: %v", r.err)
		}
		st = v.Status()
		return st.State == sqlview.StateFailing && st.Failures >= 2
	})
	if !strings.Contains(st.Err, "full") || !strings.Contains(st.Err, path) || st.Journal || st.Since.IsZero() || st.Offset >= j.Head() {
		t.Fatalf("status on the full disk: %+v", st)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	caughtUp(t, r, v, j)
	statusRunning(t, v)
	if end := v.Status(); end.Err != "" || !end.Since.IsZero() || end.Failures < st.Failures || end.Offset != j.Head() {
		t.Fatalf("status after recovery: %+v", end)
	}
	stopEqualsRebuild(t, r, path, j)
}

// TestRunRetriesFailedBatches: batches that fail before their commit (an
// injected fault) are retried from the durable offset; nothing is lost or
// applied twice.
func TestRunRetriesFailedBatches(t *testing.T) {
	j := filled(t, 61, 300)
	path := filepath.Join(t.TempDir(), "view.db")
	v := openView(t, path, j, sqlview.Options{BatchSize: 40, Linger: -1, RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond})
	var mu sync.Mutex
	failures := 3
	sqlview.SetBeforeCommitHook(v, func() error {
		mu.Lock()
		defer mu.Unlock()
		if failures > 0 {
			failures--
			return errors.New("injected I/O error")
		}
		return nil
	})
	r := startRun(t, v)
	fill(t, j, 62, 20, 1000)
	caughtUp(t, r, v, j)
	statusRunning(t, v)
	if st := v.Status(); st.Failures != 3 || st.Err != "" || st.Journal || st.Rebuilds != 0 || st.Offset != j.Head() {
		t.Fatalf("status after recovery: %+v", st)
	}
	stopEqualsRebuild(t, r, path, j)
}

// corruptTable overwrites the root page of table (and nothing else) of the
// closed or checkpointed view file at path with garbage.
func corruptTable(t *testing.T, path, table string) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	var root, pageSize int64
	err = db.QueryRow("SELECT rootpage FROM sqlite_master WHERE name = ?", table).Scan(&root)
	if err == nil {
		err = db.QueryRow("PRAGMA page_size").Scan(&pageSize)
	}
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	junk := make([]byte, pageSize)
	for i := range junk {
		junk[i] = byte(i*31 + 7)
	}
	if _, err := f.WriteAt(junk, (root-1)*pageSize); err != nil {
		t.Fatal(err)
	}
}

// checkpoint copies the view's WAL into its file with a connection of its
// own (another process would do the same).
func checkpoint(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var busy, logged, done int
	if err := db.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logged, &done); err != nil || busy != 0 {
		t.Fatalf("checkpoint: busy %d, %v", busy, err)
	}
}

// badFiles lists the moved-aside files next to path.
func badFiles(t *testing.T, path string) []string {
	t.Helper()
	bad, err := filepath.Glob(path + ".bad-*[0-9Z]")
	if err != nil {
		t.Fatal(err)
	}
	return bad
}

// crashImage puts at path a copy of a fresh view of j as a crash leaves
// it: the file and a -wal file with content (written through another
// connection, copied while that connection is open).
func crashImage(t *testing.T, path string, j journal.Journal) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "view.db")
	rebuildAt(t, src, j)
	db, err := sql.Open("sqlite3", "file:"+src)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{"INSERT INTO projection_offsets VALUES ('x', 0, 0)", "DELETE FROM projection_offsets WHERE name = 'x'"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(src + suffix)
		if err != nil || (suffix == "-wal" && len(b) == 0) {
			t.Fatalf("read %s%s: %d bytes, %v", src, suffix, len(b), err)
		}
		if err := os.WriteFile(path+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCorruptClosedViewIsRebuilt: damage in a table that opening does not
// read (the check history's) is found by the integrity check at open after a
// crash (by default) or always (CheckAlways), and the file is moved aside
// and rebuilt; in a file closed cleanly, by default, it is found by the
// first batch that reads it, and the next attempt rebuilds the file.
func TestCorruptClosedViewIsRebuilt(t *testing.T) {
	ctx := context.Background()
	j := filled(t, 71, 3000)
	check := func(t *testing.T, v *sqlview.View, path string) {
		t.Helper()
		if err := v.CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
		if bad := badFiles(t, path); len(bad) != 1 {
			t.Fatalf("moved-aside files: %v", bad)
		}
		equalsRebuild(t, path, j)
	}
	t.Run("at open after a crash", func(t *testing.T) {
		refused := filepath.Join(t.TempDir(), "view.db")
		crashImage(t, refused, j)
		corruptTable(t, refused, "check_history_archive")
		if _, err := sqlview.OpenView(ctx, refused, j, sqlview.Options{}); !errors.Is(err, sqlview.ErrViewCorrupt) || !strings.Contains(err.Error(), refused) {
			t.Fatalf("open without RebuildIfInvalid: %v", err)
		}
		path := filepath.Join(t.TempDir(), "view.db")
		crashImage(t, path, j)
		corruptTable(t, path, "check_history_archive")
		var logged strings.Builder
		v := openView(t, path, j, sqlview.Options{RebuildIfInvalid: true, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
		if !strings.Contains(logged.String(), "level=WARN") || !strings.Contains(logged.String(), "integrity check") {
			t.Errorf("log: %s", logged.String())
		}
		check(t, v, path)
	})
	t.Run("at open always", func(t *testing.T) {
		path := viewOf(t, j)
		corruptTable(t, path, "check_history_archive")
		v := openView(t, path, j, sqlview.Options{RebuildIfInvalid: true, IntegrityCheck: sqlview.CheckAlways})
		if bad := badFiles(t, path); len(bad) != 1 {
			t.Fatalf("moved-aside files after OpenView: %v", bad)
		}
		fill(t, j, 72, 20, 300)
		check(t, v, path)
	})
	t.Run("by a batch", func(t *testing.T) {
		// Opening counts the recent rows; the archive is read by a merge,
		// here at every batch.
		sqlview.SetMergeRows(t, 1, 0)
		path := viewOf(t, j)
		corruptTable(t, path, "check_history_archive")
		fill(t, j, 73, 20, 300)
		v := openView(t, path, j, sqlview.Options{RebuildIfInvalid: true})
		if err := v.CatchUp(ctx); !errors.Is(err, sqlview.ErrViewCorrupt) {
			t.Fatalf("first CatchUp: %v", err)
		}
		if st := v.Status(); st.State != sqlview.StateFailing || !strings.Contains(st.Err, "malformed") {
			t.Fatalf("status: %+v", st)
		}
		check(t, v, path)
		if st := v.Status(); st.State != sqlview.StateRunning || st.Rebuilds != 1 || st.Failures != 1 {
			t.Fatalf("status: %+v", st)
		}
	})
}

// TestCorruptionWhileRunning: damage written into the file while Run
// tails the journal makes the next batch fail with SQLITE_CORRUPT; the
// view moves the file aside, rebuilds it and carries on.
func TestCorruptionWhileRunning(t *testing.T) {
	j := filled(t, 81, 3000)
	path := filepath.Join(t.TempDir(), "view.db")
	v, r := tailing(t, path, j, sqlview.Options{RebuildIfInvalid: true, BatchSize: 50, Linger: -1})
	checkpoint(t, path)
	corruptTable(t, path, "check_history_recent")
	fill(t, j, 82, 20, 500)
	caughtUp(t, r, v, j)
	if bad := badFiles(t, path); len(bad) != 1 {
		t.Fatalf("moved-aside files: %v", bad)
	}
	statusRunning(t, v)
	if st := v.Status(); st.Rebuilds != 1 || st.Failures == 0 {
		t.Fatalf("status after the rebuild: %+v", st)
	}
	stopEqualsRebuild(t, r, path, j)
}

// TestFileDeletedWhileRunning: view.db removed while Run holds it open is
// noticed and rebuilt at its path.
func TestFileDeletedWhileRunning(t *testing.T) {
	j := filled(t, 91, 500)
	path := filepath.Join(t.TempDir(), "view.db")
	var vp atomic.Pointer[sqlview.View]
	var seen atomic.Value
	progress := func(done, total uint64) {
		if v := vp.Load(); v != nil {
			seen.Store(v.Status())
		}
	}
	v := openView(t, path, j, sqlview.Options{RebuildIfInvalid: true, BatchSize: 50, Linger: -1, Progress: progress})
	vp.Store(v)
	r := startRun(t, v)
	caughtUp(t, r, v, j)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	fill(t, j, 92, 20, 500)
	caughtUp(t, r, v, j)
	waitFor(t, "view.db to be back", func() bool {
		_, err := os.Stat(path)
		return err == nil
	})
	during, _ := seen.Load().(sqlview.Status)
	if during.State != sqlview.StateRebuilding || !strings.Contains(during.Err, "missing") || during.Since.IsZero() {
		t.Errorf("status during the rebuild: %+v", during)
	}
	statusRunning(t, v)
	if st := v.Status(); st.Rebuilds != 1 || st.Failures != 1 || st.Offset != j.Head() {
		t.Errorf("status after the rebuild: %+v", st)
	}
	stopEqualsRebuild(t, r, path, j)
}

// TestFileReplacedWhileRunning: another file renamed over view.db while
// Run holds the old one open is moved aside and the view rebuilt.
func TestFileReplacedWhileRunning(t *testing.T) {
	j := filled(t, 93, 500)
	dir := t.TempDir()
	path := filepath.Join(dir, "view.db")
	v, r := tailing(t, path, j, sqlview.Options{RebuildIfInvalid: true, BatchSize: 50, Linger: -1})
	other := filepath.Join(dir, "other.db")
	if err := os.WriteFile(other, []byte("not the view"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, path); err != nil {
		t.Fatal(err)
	}
	fill(t, j, 94, 20, 500)
	caughtUp(t, r, v, j)
	waitFor(t, "the replacement to be moved aside", func() bool { return len(badFiles(t, path)) == 1 })
	if b, err := os.ReadFile(badFiles(t, path)[0]); err != nil || string(b) != "not the view" {
		t.Fatalf("moved-aside file: %q, %v", b, err)
	}
	stopEqualsRebuild(t, r, path, j)
}

// TestOpenReadOnlyFileSystem: a view on a read-only file system opens in
// a failing state (the write probe fails) instead of pretending to work;
// Run catches up as soon as the file system is writable again.
func TestOpenReadOnlyFileSystem(t *testing.T) {
	dir := testutil.MountTmpfs(t, "8m")
	j := filled(t, 101, 300)
	path := filepath.Join(dir, "view.db")
	rebuildAt(t, path, j)
	fill(t, j, 102, 20, 300)
	remount(t, dir, true)
	v := openView(t, path, j, sqlview.Options{RebuildIfInvalid: true, BatchSize: 50, Linger: -1, RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond})
	if st := v.Status(); st.State != sqlview.StateFailing || !strings.Contains(st.Err, path) || st.Failures != 1 || st.Since.IsZero() {
		t.Fatalf("status on the read-only file system: %+v", st)
	}
	if err := v.CatchUp(context.Background()); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("CatchUp on the read-only file system: %v", err)
	}
	r := startRun(t, v)
	remount(t, dir, false)
	caughtUp(t, r, v, j)
	stopEqualsRebuild(t, r, path, j)
}

// TestFileModes: view.db, its WAL and shared memory, and the rebuild's
// view.db.tmp are private (0600) under a umask of 022.
func TestFileModes(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	j := filled(t, 111, 300)
	dir := t.TempDir()
	path := filepath.Join(dir, "view.db")
	var tmpMode os.FileMode
	v := openView(t, path, j, sqlview.Options{Progress: func(done, total uint64) {
		if fi, err := os.Stat(path + ".tmp"); err == nil {
			tmpMode = fi.Mode().Perm()
		}
	}})
	fill(t, j, 112, 20, 300)
	if err := v.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	if tmpMode != 0o600 {
		t.Errorf("view.db.tmp mode %v, want 0600", tmpMode)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", filepath.Base(p), fi.Mode().Perm())
		}
	}
}

// testLogger logs to the test's log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) { w.t.Log(strings.TrimSpace(string(p))); return len(p), nil }

// TestOpenProbesWrites: a view another process holds the write lock of
// can be read but not written; OpenView finds out with its write test and
// returns the view failing; Run catches up once the lock is gone.
func TestOpenProbesWrites(t *testing.T) {
	ctx := context.Background()
	j := filled(t, 121, 300)
	path := viewOf(t, j)
	fill(t, j, 122, 20, 300)
	other, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	v := openView(t, path, j, sqlview.Options{IntegrityCheck: sqlview.CheckNever, RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond})
	st := v.Status()
	if st.State != sqlview.StateFailing || !strings.Contains(st.Err, path) || !strings.Contains(st.Err, "write test") || !strings.Contains(st.Err, "locked") {
		t.Fatalf("status with the lock held elsewhere: %+v", st)
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	r := startRun(t, v)
	caughtUp(t, r, v, j)
	stopEqualsRebuild(t, r, path, j)
}

// TestValidReplacementIsAdopted: a valid view renamed over view.db while
// Run holds the old file (what `proxyhealth rebuild` does) is opened and
// caught up, not moved aside.
func TestValidReplacementIsAdopted(t *testing.T) {
	j := filled(t, 131, 500)
	path := filepath.Join(t.TempDir(), "view.db")
	v, r := tailing(t, path, j, sqlview.Options{RebuildIfInvalid: true, BatchSize: 50, Linger: -1})
	fill(t, j, 132, 20, 200)
	caughtUp(t, r, v, j)
	if err := sqlview.RebuildFile(context.Background(), path, j, sqlview.Options{}); err != nil {
		t.Fatal(err)
	}
	fill(t, j, 133, 20, 500)
	caughtUp(t, r, v, j)
	if bad := badFiles(t, path); len(bad) != 0 {
		t.Fatalf("moved-aside files: %v", bad)
	}
	if st := v.Status(); st.Rebuilds != 0 || st.Failures != 1 {
		t.Fatalf("status: %+v", st)
	}
	stopEqualsRebuild(t, r, path, j)
}

// TestIdleViewNoticesDeletion: with no events arriving, Run still notices
// within CheckInterval that view.db was deleted, and rebuilds it.
func TestIdleViewNoticesDeletion(t *testing.T) {
	j := filled(t, 141, 300)
	path := filepath.Join(t.TempDir(), "view.db")
	v, r := tailing(t, path, j, sqlview.Options{RebuildIfInvalid: true, CheckInterval: 5 * time.Millisecond})
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "view.db to be rebuilt", func() bool {
		_, err := os.Stat(path)
		return err == nil && v.Status().State == sqlview.StateRunning && v.Status().Rebuilds == 1
	})
	stopEqualsRebuild(t, r, path, j)
}

// flakyJournal fails Read while fail is set.
type flakyJournal struct {
	journal.Journal
	fail atomic.Bool
}

func (f *flakyJournal) Read(ctx context.Context, from uint64) iter.Seq2[*pb.Envelope, error] {
	if f.fail.Load() {
		return func(yield func(*pb.Envelope, error) bool) { yield(nil, errors.New("injected journal read error")) }
	}
	return f.Journal.Read(ctx, from)
}

// TestJournalErrorsAreTheJournals: a failing journal read is reported as
// such (ErrJournal, Status.Journal), retried, and does not touch the file.
func TestJournalErrorsAreTheJournals(t *testing.T) {
	ctx := context.Background()
	mem := journal.NewMem()
	t.Cleanup(func() { mem.Close() }) // after the view's (openView) and Run's (startRun) cleanups
	j := &flakyJournal{Journal: mem}
	fill(t, j, 151, 20, 300)
	path := filepath.Join(t.TempDir(), "view.db")
	v := openView(t, path, j, sqlview.Options{RebuildIfInvalid: true, RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond})
	fill(t, j, 152, 20, 300)
	j.fail.Store(true)
	if err := v.CatchUp(ctx); !errors.Is(err, sqlview.ErrJournal) || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("CatchUp: %v", err)
	}
	if st := v.Status(); st.State != sqlview.StateFailing || !st.Journal || !strings.Contains(st.Err, "injected") {
		t.Fatalf("status: %+v", st)
	}
	r := startRun(t, v)
	waitFor(t, "Run to retry", func() bool { return v.Status().Failures >= 3 })
	j.fail.Store(false)
	caughtUp(t, r, v, j)
	statusRunning(t, v)
	if st := v.Status(); st.Journal || st.Rebuilds != 0 || len(badFiles(t, path)) != 0 {
		t.Fatalf("status: %+v", st)
	}
	stopEqualsRebuild(t, r, path, j)
}

// TestRunRebuildsWhenLeftBehind: while the view was failing, retention
// deleted events it had not applied; once it can write again, Run finds
// the gap (ErrViewBehind) and rebuilds instead of failing for ever.
func TestRunRebuildsWhenLeftBehind(t *testing.T) {
	ctx := context.Background()
	j, sim := steadySim(t, 181)
	appendSim(t, j, sim, 300)
	path := filepath.Join(t.TempDir(), "view.db")
	v := openView(t, path, j, sqlview.Options{RebuildIfInvalid: true, Linger: -1, RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond})
	var broken atomic.Bool
	broken.Store(true)
	sqlview.SetBeforeCommitHook(v, func() error {
		if broken.Load() {
			return errors.New("injected I/O error")
		}
		return nil
	})
	r := startRun(t, v)
	sim.Now = sim.Now.Add(time.Hour)
	appendSim(t, j, sim, 600)
	waitFor(t, "the view to fail", func() bool { return v.Status().Failures >= 2 })
	// Snapshot every proxy at the head, then retain away what the view
	// has not applied.
	_, cut := snapshotHead(t, j, 500)
	if n, err := j.Retain(ctx, cut); err != nil || uint64(n) <= v.Offset() {
		t.Fatalf("retained %d (view at %d): %v", n, v.Offset(), err)
	}
	// An attempt under way may have read the events before they were
	// deleted; the one after it has not.
	f := v.Status().Failures
	waitFor(t, "an attempt that started after the retention", func() bool {
		st := v.Status()
		return st.Failures >= f+2 || st.Rebuilds > 0
	})
	broken.Store(false)
	caughtUp(t, r, v, j)
	statusRunning(t, v)
	if st := v.Status(); st.Rebuilds != 1 || len(badFiles(t, path)) != 1 {
		t.Fatalf("status %+v, moved aside %v", st, badFiles(t, path))
	}
	stopEqualsRebuild(t, r, path, j)
}
