// Package sqlview maintains view.db, the SQLite projection of the journal
// (L3 in the spec): one row per proxy, 24 h of check history, state
// changes and pool events, queryable with any SQLite client. See package
// projections for the schema. The view is disposable: it can always be
// rebuilt from the journal, and is never trusted blindly (schema version,
// structure and offset are checked on open).
//
// Events are applied in batches, each in one transaction that also stores
// the journal offset, so every event is applied exactly once, whatever
// crashes.
//
// The view never stops on a failure of its own: Run records it (Status),
// backs off and starts again from the durable offset, and moves a file
// that turned out corrupt, deleted, replaced or invalid aside and rebuilds
// it. Its files (view.db, -wal, -shm, the rebuild's view.db.tmp) are
// created 0600.
package sqlview

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proxyhealth/proxyhealth/journal"
)

// Sentinel errors; the returned errors wrap them with the file and detail.
var (
	// ErrViewVersion: the view was written by a newer proxyhealth.
	ErrViewVersion = errors.New("sqlview: unsupported view schema version")
	// ErrViewCorrupt: the file is not SQLite, not a proxyhealth view, or
	// damaged (SQLITE_CORRUPT, SQLITE_NOTADB, a failed quick_check).
	ErrViewCorrupt = errors.New("sqlview: view database is corrupt or not a proxyhealth view")
	// ErrViewAhead: the view claims events the journal does not have (it
	// belongs to another journal, or the journal lost data).
	ErrViewAhead = errors.New("sqlview: view is ahead of its journal")
	// ErrViewBehind: events the view has not applied were deleted by journal
	// retention; only a rebuild can make the view consistent again.
	ErrViewBehind = errors.New("sqlview: view is behind the journal's retention")
	// ErrViewReplaced: the view's path no longer names the file the view
	// has open (it was deleted, renamed or replaced while open).
	ErrViewReplaced = errors.New("sqlview: view file was deleted or replaced while open")
	// ErrJournal: reading the journal failed. This is not a failure of the
	// view; Run retries it like one, and Status reports it with Journal set.
	ErrJournal = errors.New("sqlview: reading the journal failed")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("sqlview: view closed")
)

// Defaults of Options.
const (
	DefaultBatchSize            = 2000
	DefaultHistoryRetention     = 24 * time.Hour
	DefaultStateChangeRetention = 7 * 24 * time.Hour
	// DefaultRetryMin is the default Options.RetryMin.
	DefaultRetryMin = time.Second
	// DefaultRetryMax is the default Options.RetryMax.
	DefaultRetryMax = 30 * time.Second
	// DefaultCheckInterval is the default Options.CheckInterval.
	DefaultCheckInterval = 5 * time.Second
	rebuildBatchSize     = 20000
)

// Options configures OpenView and Rebuild. The zero value is valid.
type Options struct {
	// RebuildIfInvalid makes the view move an unusable file aside
	// (view.db.bad-<UTC timestamp>) and rebuild it from the journal instead
	// of failing: at OpenView, and while Run or CatchUp work (a file found
	// corrupt, replaced by something that is not a valid view, or behind
	// the journal's retention).
	RebuildIfInvalid bool
	// Progress, if set, is called during rebuilds with the number of events
	// applied so far and the number to apply.
	Progress func(done, total uint64)
	// BatchSize caps the events applied per transaction by Run and CatchUp
	// (default 2000). In a view of more than 5,000 proxies the cap grows
	// in proportion to the proxies, up to 20,000 (see Linger).
	BatchSize int
	// HistoryRetention is how long check_history rows are kept, counted back
	// from the newest applied event (default 24 h). Rows are deleted a
	// PruneStep at a time, so a row stays up to a minute longer.
	HistoryRetention time.Duration
	// StateChangeRetention is the same for state_changes (default 7 days).
	StateChangeRetention time.Duration
	// IntegrityCheck says when opening a file runs PRAGMA quick_check
	// (default CheckAfterCrash).
	IntegrityCheck IntegrityCheck
	// Logger receives rebuild and failure notices; nil is silent.
	Logger *slog.Logger
	// Now names moved-aside files and dates failures (default time.Now).
	Now func() time.Time
	// Linger is how long Run waits to fill up a small batch before
	// applying it (default 1 s; negative applies at once). The view then
	// trails the journal by at most about that much. In a view of more
	// than 5,000 proxies the linger grows in proportion to the proxies, up
	// to 10 s (2 s at 10,000 proxies and 10 s from 50,000 with the
	// default): the checks of one batch whose proxies share a page of the
	// proxies table write it once, and at 100,000 proxies a batch of a
	// second's checks would write nearly a page per check, where batches
	// of 20,000 cost a third less.
	Linger time.Duration
	// RetryMin is how long Run waits before its first retry after a failure
	// (default 1 s); each further failed attempt doubles the wait, up to
	// RetryMax (default 30 s). A failure that calls for a rebuild is
	// retried at once the first time.
	RetryMin, RetryMax time.Duration
	// CheckInterval is how often Run, while no events arrive, checks that
	// the view's path still names the file it has open (default 5 s; it
	// also checks before every batch).
	CheckInterval time.Duration
	// Driver is the database/sql driver name the view opens its files with
	// (default DriverName, "sqlite3"); it must be registered (ErrNoDriver).
	Driver string
	// Hold, if set, is asked by Run before it applies each batch it took
	// from the journal's tail: while Hold returns true, Run waits with
	// that batch and leaves what follows in the journal, for at most
	// MaxHold in a row; then it applies as usual, and holds again only
	// once Hold has returned false. The engine holds its view while a
	// large sweep of new proxies is under way (see
	// proxyhealth.ProjectionEnv.Sweeping): the sweep's checks then have
	// the machine, and the view catches up in large batches afterwards.
	Hold func() bool
	// MaxHold bounds how long Hold holds the view back in a row (default
	// 30 s): the view trails the journal by at most about that much more.
	MaxHold time.Duration
}

// DefaultMaxHold is the default Options.MaxHold.
const DefaultMaxHold = 30 * time.Second

// IntegrityCheck says when the view runs PRAGMA quick_check on a file it
// opens. The check reads the whole file: about 0.25 s for a view of
// 1,000,000 check results (170 MiB) from the page cache, 3.5 s from disk;
// a day of history at 10,000 proxies checked every 30 s is about 29 times
// that. A file the view has just built is never checked.
type IntegrityCheck int

const (
	// CheckAfterCrash (the default) checks a file that was not closed
	// cleanly: one whose -wal file was left behind with content (a crash,
	// or another process still has it open). Damage in a file closed
	// cleanly is found when a batch reads it (SQLITE_CORRUPT), which makes
	// the view rebuild it too.
	CheckAfterCrash IntegrityCheck = iota
	// CheckAlways checks every file opened.
	CheckAlways
	// CheckNever never checks.
	CheckNever
)

// DefaultLinger is the default Options.Linger. A batch's cost is mostly
// the pages it writes: up to one in the proxies table per check, fewer
// when checks of one batch share a page. (Until schema version 3, also one
// in check_history_proxy_at per check.) At 10,000 proxies checked every
// 10 s, 1 s batches (1,000 checks) wrote about a quarter fewer bytes per
// event than 500 ms ones and cost about 8 % less CPU
// (BenchmarkSteadyState/proxies=10000/batch=*/fresh, schema version 2).
const DefaultLinger = time.Second

func (o Options) withDefaults() Options {
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.HistoryRetention <= 0 {
		o.HistoryRetention = DefaultHistoryRetention
	}
	if o.StateChangeRetention <= 0 {
		o.StateChangeRetention = DefaultStateChangeRetention
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Linger == 0 {
		o.Linger = DefaultLinger
	}
	if o.RetryMin <= 0 {
		o.RetryMin = DefaultRetryMin
	}
	if o.RetryMax <= 0 {
		o.RetryMax = DefaultRetryMax
	}
	o.RetryMax = max(o.RetryMax, o.RetryMin)
	if o.CheckInterval <= 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	if o.MaxHold <= 0 {
		o.MaxHold = DefaultMaxHold
	}
	return o
}

// View is an open view.db kept in step with a journal. Its methods are safe
// for concurrent use; batches, reopening, rebuilds and Close are
// serialised.
type View struct {
	path string
	j    journal.Journal
	opts Options

	mu sync.Mutex
	// db and a are nil while the view has no usable handle (a failed
	// reopen or rebuild); file is the identity of the file db has open.
	db   *sql.DB
	a    *applier
	file os.FileInfo
	// broken: the handle failed; reopen it before the next batch.
	// rebuild: the failure calls for moving the file aside and rebuilding.
	broken  bool
	rebuild error
	closed  bool
	hook    func() error // run before each batch commit (tests)
	offset  atomic.Uint64
	proxies atomic.Int64 // in the proxies table after the last batch (shape)
	// heldOut: Run held the view for MaxHold and Hold has not returned
	// false since (Run's goroutine only).
	heldOut bool

	smu    sync.Mutex
	status Status
}

// viewPragmas set up each connection of the incremental view. A 4 MiB
// page cache: at 10,000 proxies an 8 MiB one held 4.7–9.5 MB of C heap
// in the daemon (run to run), 4 MiB 4.8 MB, for 1.140 read system calls
// per check instead of 1.100–1.105, most of them the probe's own
// (BenchmarkDaemon, 2026-12-07): the pages the view reads again come from
// the kernel's page cache. 64 MiB cost about 12 MiB more RSS for no
// measurable speed (rebuilds set their own, larger cache). A WAL
// checkpoint every 16,384 pages (64 MiB) instead of 1,000: batches dirty
// thousands of pages (random positions in the proxies table, and merges
// in the (proxy_id, at) index), and with the default nearly every commit would
// also checkpoint, copying pages the next commits rewrite anyway. This
// alone takes incremental application from about 40,000 to about 58,000
// events/s.
var viewPragmas = []string{
	"PRAGMA busy_timeout = 5000",
	"PRAGMA journal_mode = WAL",
	"PRAGMA synchronous = NORMAL",
	"PRAGMA foreign_keys = OFF",
	"PRAGMA cache_size = -4096",
	"PRAGMA wal_autocheckpoint = 16384",
}

// OpenView opens (or creates) the view file at path for journal j and
// checks it: schema version, structure, PRAGMA quick_check (see
// Options.IntegrityCheck), an offset within the journal's retained
// range, and a real write (a transaction on projection_offsets). A missing
// file is built from the journal, private to the user (0600, as are its
// -wal and -shm). Call CatchUp or Run to apply the events committed since.
//
// An invalid file is an error wrapping ErrViewVersion, ErrViewCorrupt,
// ErrViewAhead or ErrViewBehind, unless opts.RebuildIfInvalid is set: then
// it is moved aside and rebuilt, and the cause logged. A file that cannot
// be opened, built or written for now (a full disk, a read-only file or
// file system, an I/O error, a lock held elsewhere) is not an error:
// OpenView returns the view in the StateFailing state, Status says why, and
// Run (or the next CatchUp) retries. Only an invalid file without
// RebuildIfInvalid, a failure to read the journal, and the end of ctx make
// OpenView fail.
func OpenView(ctx context.Context, path string, j journal.Journal, opts Options) (*View, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlview: view path %s: %w", path, err)
	}
	if err := CheckDriver(opts.Driver); err != nil {
		return nil, err
	}
	v := &View{path: abs, j: j, opts: opts.withDefaults(), status: Status{State: StateRunning}}
	err = v.reopen(ctx)
	switch {
	case err == nil:
		return v, nil
	case ctx.Err() != nil, unusable(err), errors.Is(err, ErrJournal):
		return nil, err
	}
	v.broken = true
	v.noteFailure(err, false)
	return v, nil
}

// unusable reports whether err means the file itself is unusable (as
// opposed to failing for now): only moving it aside and rebuilding helps.
func unusable(err error) bool {
	return errors.Is(err, ErrViewVersion) || errors.Is(err, ErrViewCorrupt) || errors.Is(err, ErrViewAhead) ||
		errors.Is(err, ErrViewBehind) || errors.Is(err, ErrViewReplaced)
}

// moveAside renames path (and its WAL) to bad; the shared-memory file is
// transient and removed.
func moveAside(path, bad string) error {
	if err := os.Rename(path, bad); err != nil {
		return err
	}
	if err := os.Rename(path+"-wal", bad+"-wal"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Remove(path + "-shm"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// reopen closes the view's handle and opens v.path afresh from its durable
// offset: it builds a missing file from the journal, and with
// RebuildIfInvalid moves an unusable file aside and rebuilds it (at once
// when v.rebuild says the last failure calls for it). Call with v.mu held
// (or before v is shared).
func (v *View) reopen(ctx context.Context) error {
	v.closeDB()
	cause := v.rebuild
	v.rebuild = nil
	if cause == nil || !v.opts.RebuildIfInvalid {
		err := v.openPath(ctx)
		if err == nil || !v.opts.RebuildIfInvalid || !unusable(err) {
			return err
		}
		cause = err
	}
	return v.rebuildAside(ctx, cause)
}

// openPath opens v.path, building it from the journal first if it is
// missing.
func (v *View) openPath(ctx context.Context) error {
	if _, err := os.Lstat(v.path); errors.Is(err, os.ErrNotExist) {
		if v.file != nil {
			v.opts.Logger.Warn("SQLite view file missing (deleted or renamed while open); rebuilding it from the journal", "path", v.path)
			v.noteRebuilding(fmt.Errorf("%w: %s is missing; rebuilding it from the journal", ErrViewReplaced, v.path))
		}
		if err := RebuildFile(ctx, v.path, v.j, v.opts); err != nil {
			return err
		}
		return v.open(ctx, true)
	} else if err != nil {
		return fmt.Errorf("sqlview: %s: %w", v.path, err)
	}
	return v.open(ctx, false)
}

// rebuildAside moves whatever file is at v.path aside and rebuilds the
// view from the journal.
func (v *View) rebuildAside(ctx context.Context, cause error) error {
	if _, err := os.Lstat(v.path); err == nil {
		bad := fmt.Sprintf("%s.bad-%s", v.path, v.opts.Now().UTC().Format("20060102T150405.000Z"))
		if err := moveAside(v.path, bad); err != nil {
			return fmt.Errorf("sqlview: %v; moving it aside to %s failed: %w", cause, bad, err)
		}
		v.opts.Logger.Warn("SQLite view unusable; moved aside and rebuilding from the journal", "error", cause, "moved_to", bad)
	} else {
		v.opts.Logger.Warn("SQLite view unusable and its file is gone; rebuilding from the journal", "error", cause)
	}
	v.noteRebuilding(cause)
	if err := RebuildFile(ctx, v.path, v.j, v.opts); err != nil {
		return err
	}
	return v.open(ctx, true)
}

// open opens v.path, validates it, proves it writable and loads the state
// cache. The integrity check (Options.IntegrityCheck) runs only on a file
// the view has not had open before and did not just build.
func (v *View) open(ctx context.Context, built bool) error {
	before, err := os.Stat(v.path)
	if err != nil {
		return fmt.Errorf("sqlview: %s: %w", v.path, err)
	}
	verify := false
	if !built && (v.file == nil || !os.SameFile(before, v.file)) {
		switch v.opts.IntegrityCheck {
		case CheckAlways:
			verify = true
		case CheckAfterCrash:
			wal, err := os.Stat(v.path + "-wal")
			verify = err == nil && wal.Size() > 0
		}
	}
	db, err := openDB(v.opts.Driver, v.path, "mode=rw", viewPragmas...)
	if err != nil {
		return fmt.Errorf("sqlview: open %s: %w", v.path, err)
	}
	a := &applier{db: db, load: v.j.LoadSnapshot, opts: v.opts, testHookBeforeCommit: v.hook}
	err = v.validate(ctx, db, a, verify)
	if err == nil {
		err = v.probeWrite(ctx, db)
	}
	if err == nil {
		if after, serr := os.Stat(v.path); serr != nil || !os.SameFile(before, after) {
			err = fmt.Errorf("%w: %s changed while it was being opened", ErrViewReplaced, v.path)
		}
	}
	if err != nil {
		db.Close()
		return err
	}
	v.db, v.a, v.file = db, a, before
	v.broken = false
	v.offset.Store(a.offset)
	return nil
}

// closeDB closes the view's handle, if any.
func (v *View) closeDB() {
	if v.a != nil {
		v.a.closeStatements()
	}
	if v.db != nil {
		v.db.Close()
	}
	v.db, v.a = nil, nil
}

// probeWrite proves that the file can be written now: a transaction that
// inserts and deletes a row of projection_offsets (net no change, but the
// page is written to the WAL at commit; rewriting a row with the same
// values would not write anything).
func (v *View) probeWrite(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return v.classify("write test: begin", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, sqlSetOffset, OffsetName+".probe", int64(0), int64(0)); err != nil {
		return v.classify("write test", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM projection_offsets WHERE name = ?`, OffsetName+".probe"); err != nil {
		return v.classify("write test", err)
	}
	if err := tx.Commit(); err != nil {
		return v.classify("write test: commit", err)
	}
	return nil
}

// classify wraps a SQLite error with the file, what was being done and
// what to do about it: "not a database" and "malformed" become
// ErrViewCorrupt, "database moved" ErrViewReplaced.
func (v *View) classify(what string, err error) error {
	code, extended, ok := sqliteCodes(err)
	if !ok {
		return fmt.Errorf("sqlview: %s: %s: %w", v.path, what, err)
	}
	var hint string
	switch {
	case code == codeNotADB || code == codeCorrupt:
		return fmt.Errorf("%w: %s: %s: %v; run `proxyhealth rebuild` to rebuild it from the journal", ErrViewCorrupt, v.path, what, err)
	case extended == codeReadonlyDBMoved:
		return fmt.Errorf("%w: %s: %s: %v", ErrViewReplaced, v.path, what, err)
	case code == codeFull:
		hint = "free space on its file system"
	case code == codeReadonly || code == codePerm || code == codeCantOpen || code == codeAuth:
		hint = "make the file and its directory writable by this process"
	case code == codeBusy || code == codeLocked:
		hint = "another process holds a lock on it; stop it"
	case code == codeIOErr:
		hint = "check the disk"
	default:
		return fmt.Errorf("sqlview: %s: %s: %w", v.path, what, err)
	}
	return fmt.Errorf("sqlview: %s: %s: %w (%s; the view retries on its own)", v.path, what, err, hint)
}

func (v *View) corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s; run `proxyhealth rebuild` to rebuild it from the journal", ErrViewCorrupt, v.path, fmt.Sprintf(format, args...))
}

func (v *View) validate(ctx context.Context, db *sql.DB, a *applier, verify bool) error {
	var version int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return v.classify("read the schema version", err)
	}
	if version > SchemaVersion {
		return fmt.Errorf("%w: %s has view schema version %d but this proxyhealth supports version %d; run `proxyhealth rebuild` to rebuild it from the journal (or upgrade proxyhealth)",
			ErrViewVersion, v.path, version, SchemaVersion)
	}
	if version == 2 {
		if err := migrate(ctx, db, migrateV2); err != nil {
			return v.classify("migrate the schema from version 2", err)
		}
		v.opts.Logger.Info("SQLite view migrated to schema version 3 (check_history split into an archive and a recent table)", "path", v.path)
		version = SchemaVersion
	}
	if version > 0 && version < SchemaVersion {
		return fmt.Errorf("%w: %s has view schema version %d, older than this proxyhealth's %d; it is rebuilt from the journal (run `proxyhealth rebuild`, or let the daemon do it)",
			ErrViewVersion, v.path, version, SchemaVersion)
	}
	objects := map[string]bool{}
	rows, err := db.QueryContext(ctx, "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
	if err != nil {
		return v.classify("read the schema", err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return v.classify("read the schema", err)
		}
		objects[name] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return v.classify("read the schema", err)
	}
	if version == 0 {
		if len(objects) > 0 {
			return v.corrupt("SQLite database without a proxyhealth schema version")
		}
		if err := createSchema(ctx, db); err != nil {
			return v.classify("create the schema", err)
		}
		a.cache = newStateCache()
		return nil
	}
	for _, name := range requiredObjects {
		if !objects[name] {
			return v.corrupt("table or view %q is missing", name)
		}
	}
	if verify {
		if err := quickCheck(ctx, db); err != nil {
			if _, _, ok := sqliteCodes(err); ok {
				return v.classify("integrity check", err)
			}
			return v.corrupt("integrity check: %v", err)
		}
	}
	if err := a.loadCache(ctx); err != nil {
		if _, _, ok := sqliteCodes(err); ok {
			return v.classify("load the proxies", err)
		}
		return v.corrupt("load the proxies: %v", err)
	}
	return v.checkOffset(a.offset)
}

// quickCheck runs PRAGMA quick_check and returns its first findings as an
// error.
func quickCheck(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, "PRAGMA quick_check(5)")
	if err != nil {
		return err
	}
	defer rows.Close()
	var found []string
	for rows.Next() {
		var res string
		if err := rows.Scan(&res); err != nil {
			return err
		}
		if res != "ok" {
			found = append(found, res)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(found) > 0 {
		return errors.New(strings.Join(found, "; "))
	}
	return nil
}

// checkOffset verifies that offset lies within the journal.
func (v *View) checkOffset(offset uint64) error {
	head, first := v.j.Head(), v.j.First()
	if offset > head {
		return fmt.Errorf("%w: %s has applied events up to seq %d but the journal ends at seq %d (wrong journal, or the journal lost data); run `proxyhealth rebuild` to rebuild it from the journal",
			ErrViewAhead, v.path, offset, head)
	}
	if offset != 0 && offset+1 < first {
		return fmt.Errorf("%w: %s has applied events up to seq %d but the journal now starts at seq %d; run `proxyhealth rebuild` to rebuild it from the journal",
			ErrViewBehind, v.path, offset, first)
	}
	return nil
}

// Path returns the view file's absolute path.
func (v *View) Path() string { return v.path }

// Offset returns the seq of the last event applied to the view.
func (v *View) Offset() uint64 { return v.offset.Load() }

// DB returns the database handle for read queries. Do not write through it.
// Rebuilds and recoveries replace the handle: fetch it again afterwards. It
// is nil while the view has no usable file (see Status).
func (v *View) DB() *sql.DB {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.db
}
