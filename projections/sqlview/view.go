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
package sqlview

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/proxyhealth/proxyhealth/journal"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// Sentinel errors; the returned errors wrap them with the file and detail.
var (
	// ErrViewVersion: the view was written by a newer proxyhealth.
	ErrViewVersion = errors.New("sqlview: unsupported view schema version")
	// ErrViewCorrupt: the file is not SQLite, not a proxyhealth view, or
	// damaged.
	ErrViewCorrupt = errors.New("sqlview: view database is corrupt or not a proxyhealth view")
	// ErrViewAhead: the view claims events the journal does not have (it
	// belongs to another journal, or the journal lost data).
	ErrViewAhead = errors.New("sqlview: view is ahead of its journal")
	// ErrViewBehind: events the view has not applied were deleted by journal
	// retention; only a rebuild can make the view consistent again.
	ErrViewBehind = errors.New("sqlview: view is behind the journal's retention")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("sqlview: view closed")
)

// Defaults of Options.
const (
	DefaultBatchSize            = 2000
	DefaultHistoryRetention     = 24 * time.Hour
	DefaultStateChangeRetention = 7 * 24 * time.Hour
	rebuildBatchSize            = 20000
)

// Options configures OpenView and Rebuild. The zero value is valid.
type Options struct {
	// RebuildIfInvalid makes OpenView move an invalid view file aside
	// (view.db.bad-<UTC timestamp>) and rebuild it from the journal instead
	// of failing.
	RebuildIfInvalid bool
	// Progress, if set, is called during rebuilds with the number of events
	// applied so far and the number to apply.
	Progress func(done, total uint64)
	// BatchSize caps the events applied per transaction by Run and CatchUp
	// (default 2000).
	BatchSize int
	// HistoryRetention is how long check_history rows are kept, counted back
	// from the newest applied event (default 24 h).
	HistoryRetention time.Duration
	// StateChangeRetention is the same for state_changes (default 7 days).
	StateChangeRetention time.Duration
	// VerifyIntegrity runs PRAGMA quick_check on open (O(file size)).
	VerifyIntegrity bool
	// Logger receives rebuild notices; nil is silent.
	Logger *slog.Logger
	// Now names moved-aside files (default time.Now).
	Now func() time.Time
	// Linger is how long Run waits to fill up a small batch before
	// applying it (default 100 ms; negative applies at once). The view then
	// trails the journal by at most about that much.
	Linger time.Duration
}

// DefaultLinger is the default Options.Linger.
const DefaultLinger = 500 * time.Millisecond

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
	return o
}

// View is an open view.db kept in step with a journal. Its methods are safe
// for concurrent use; batches, rebuilds and Close are serialised.
type View struct {
	path string
	j    journal.Journal
	opts Options

	mu     sync.Mutex
	db     *sql.DB
	a      *applier
	closed bool
	offset atomic.Uint64
}

// driverName is mattn/go-sqlite3 with a connect hook that sets the
// pragmas DSN parameters cannot: a WAL checkpoint every 16,384 pages
// (64 MiB) instead of 1,000. Batches dirty thousands of pages (random
// positions in the proxies table and the (proxy_id, at) index); with the
// default, nearly every commit would also checkpoint, copying pages that
// the next commits rewrite anyway. This alone takes incremental application
// from about 40,000 to about 58,000 events/s.
const driverName = "sqlite3_proxyhealth_view"

func init() {
	sql.Register(driverName, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		_, err := c.Exec("PRAGMA wal_autocheckpoint = 16384", nil)
		return err
	}})
}

// dsn returns the mattn/go-sqlite3 DSN of path with params.
func dsn(path, params string) string {
	return (&url.URL{Scheme: "file", Path: path}).String() + "?" + params
}

// viewParams: an 8 MiB page cache holds the incremental view's working set
// (the proxies table and the tail of the history) at 10,000 proxies; 64 MiB
// cost about 12 MiB more RSS there for no measurable speed (rebuilds set
// their own, larger cache).
const viewParams = "_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=5000&_foreign_keys=off&_cache_size=-8192"

// OpenView opens (or creates) the view file at path for journal j and
// checks it: schema version, structure, and an offset within the journal's
// retained range. A missing file is built from the journal. An invalid file
// is an error wrapping ErrViewVersion, ErrViewCorrupt, ErrViewAhead or
// ErrViewBehind, unless opts.RebuildIfInvalid is set. Call CatchUp or Run to
// apply the events committed since.
func OpenView(ctx context.Context, path string, j journal.Journal, opts Options) (*View, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlview: view path %s: %w", path, err)
	}
	v := &View{path: abs, j: j, opts: opts.withDefaults()}
	if _, err := os.Stat(abs); errors.Is(err, os.ErrNotExist) {
		if err := RebuildFile(ctx, abs, j, opts); err != nil {
			return nil, err
		}
	}
	err = v.open(ctx)
	if err == nil {
		return v, nil
	}
	if !opts.RebuildIfInvalid || !invalid(err) {
		return nil, err
	}
	bad := fmt.Sprintf("%s.bad-%s", abs, v.opts.Now().UTC().Format("20060102T150405.000Z"))
	if mvErr := moveAside(abs, bad); mvErr != nil {
		return nil, fmt.Errorf("sqlview: %v; moving it aside failed: %w", err, mvErr)
	}
	v.opts.Logger.Warn("view database invalid; moved aside and rebuilding from the journal", "error", err, "moved_to", bad)
	if err := RebuildFile(ctx, abs, j, opts); err != nil {
		return nil, err
	}
	if err := v.open(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

func invalid(err error) bool {
	return errors.Is(err, ErrViewVersion) || errors.Is(err, ErrViewCorrupt) || errors.Is(err, ErrViewAhead) || errors.Is(err, ErrViewBehind)
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

// open opens v.path, validates it and loads the state cache.
func (v *View) open(ctx context.Context) error {
	db, err := sql.Open(driverName, dsn(v.path, viewParams))
	if err != nil {
		return fmt.Errorf("sqlview: open %s: %w", v.path, err)
	}
	a := &applier{db: db, load: v.j.LoadSnapshot, opts: v.opts}
	if err := v.validate(ctx, db, a); err != nil {
		db.Close()
		return err
	}
	v.db, v.a = db, a
	v.offset.Store(a.offset)
	return nil
}

// classify turns SQLite's "not a database" and "malformed" errors into
// ErrViewCorrupt.
func (v *View) classify(what string, err error) error {
	var se sqlite3.Error
	if errors.As(err, &se) && (se.Code == sqlite3.ErrNotADB || se.Code == sqlite3.ErrCorrupt) {
		return fmt.Errorf("%w: %s: %s: %v; run `proxyhealth rebuild` to rebuild it from the journal", ErrViewCorrupt, v.path, what, err)
	}
	return fmt.Errorf("sqlview: %s: %s: %w", v.path, what, err)
}

func (v *View) corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s; run `proxyhealth rebuild` to rebuild it from the journal", ErrViewCorrupt, v.path, fmt.Sprintf(format, args...))
}

func (v *View) validate(ctx context.Context, db *sql.DB, a *applier) error {
	var version int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return v.classify("read the schema version", err)
	}
	if version > SchemaVersion {
		return fmt.Errorf("%w: %s has view schema version %d but this proxyhealth supports version %d; run `proxyhealth rebuild` to rebuild it from the journal (or upgrade proxyhealth)",
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
		a.cache = map[string]*proxyRow{}
		return nil
	}
	for _, name := range requiredObjects {
		if !objects[name] {
			return v.corrupt("table or view %q is missing", name)
		}
	}
	if v.opts.VerifyIntegrity {
		var res string
		if err := db.QueryRowContext(ctx, "PRAGMA quick_check").Scan(&res); err != nil {
			return v.classify("integrity check", err)
		}
		if res != "ok" {
			return v.corrupt("integrity check: %s", res)
		}
	}
	if err := a.loadCache(ctx); err != nil {
		var se sqlite3.Error
		if errors.As(err, &se) {
			return v.classify("load the proxies", err)
		}
		return v.corrupt("load the proxies: %v", err)
	}
	return v.checkOffset(a.offset)
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
// Rebuild replaces the handle: fetch it again afterwards.
func (v *View) DB() *sql.DB {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.db
}

// apply applies one batch under the lock.
func (v *View) apply(ctx context.Context, envs []*pb.Envelope) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return ErrClosed
	}
	if err := v.a.applyBatch(ctx, envs, true); err != nil {
		return err
	}
	v.offset.Store(v.a.offset)
	return nil
}

// CatchUp applies every event from the view's offset to the journal's
// current head.
func (v *View) CatchUp(ctx context.Context) error {
	for {
		from := v.Offset() + 1
		if from > v.j.Head() {
			return nil
		}
		batch := make([]*pb.Envelope, 0, v.opts.BatchSize)
		for e, err := range v.j.Read(ctx, from) {
			if err != nil {
				return fmt.Errorf("sqlview: read the journal from seq %d: %w", from, err)
			}
			batch = append(batch, e)
			if len(batch) == v.opts.BatchSize {
				break
			}
		}
		if len(batch) == 0 {
			return nil
		}
		if err := v.apply(ctx, batch); err != nil {
			return err
		}
	}
}

// Run keeps the view in step with the journal until ctx ends: it catches up,
// then tails the journal, applying whatever has arrived (up to BatchSize
// events) in one transaction at a time. It returns nil when ctx ends, and an
// error when the journal closes or the view cannot be written.
func (v *View) Run(ctx context.Context) error {
	if err := v.CatchUp(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	sub := v.j.Subscribe(v.Offset() + 1)
	defer sub.Close()
	for {
		batch, err := sub.NextBatch(ctx, v.opts.BatchSize)
		if err != nil {
			err = fmt.Errorf("sqlview: tail the journal for %s: %w", v.path, err)
		} else {
			batch = v.linger(ctx, sub, batch)
			err = v.apply(ctx, batch)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// linger tops a small batch up with what arrives within Options.Linger, so
// that a trickle of events costs one transaction per linger period instead
// of one per event.
func (v *View) linger(ctx context.Context, sub *journal.Subscription, batch []*pb.Envelope) []*pb.Envelope {
	if v.opts.Linger <= 0 || len(batch) >= v.opts.BatchSize {
		return batch
	}
	lctx, cancel := context.WithTimeout(ctx, v.opts.Linger)
	defer cancel()
	for len(batch) < v.opts.BatchSize {
		more, err := sub.NextBatch(lctx, v.opts.BatchSize-len(batch))
		if err != nil {
			break // the linger ended (or the journal closed: the next read says so)
		}
		batch = append(batch, more...)
	}
	return batch
}

// Close closes the view. Stop Run first. Idempotent.
func (v *View) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil
	}
	v.closed = true
	if v.a != nil {
		v.a.closeStatements()
	}
	return v.db.Close()
}
