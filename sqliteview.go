package proxyhealth

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/proxyhealth/proxyhealth/projections/sqlview"
)

// The SQLite "L3" view: a projection of the journal into DataDir/view.db
// that users query with plain SQL (schema in ARCHITECTURE.md). The engine
// speaks to it through database/sql only, so that a program that does not
// keep a view does not compile SQLite (cgo); a program that does registers
// the view and the driver:
//
//	import _ "github.com/mattn/go-sqlite3" // cgo
//
//	cfg.Projections = append(cfg.Projections, proxyhealth.SQLiteView())
//
// The daemon does both.
const (
	// SQLiteViewFile is the view's file name inside the data directory.
	SQLiteViewFile = "view.db"
	// SQLiteViewName is the view's name in Health, /healthz and metrics.
	SQLiteViewName = "sqlite view"
	// SQLiteViewBatchSize is how many events the view applies per
	// transaction.
	SQLiteViewBatchSize = 4000
)

// ErrNoSQLiteDriver: the SQLite view was asked for, but no database/sql
// driver is registered as "sqlite3"; import _ "github.com/mattn/go-sqlite3".
var ErrNoSQLiteDriver = sqlview.ErrNoDriver

// SQLiteView returns the projection spec of the SQLite view, for
// Config.Projections: DataDir/view.db, caught up at Open and kept up to date
// while the engine runs (it trails the journal by about a second; by up to
// 2 s in a pool of 10,000 proxies and 10 s from 50,000, see
// sqlview.Options.Linger; while a sweep of at least SweepMin new proxies
// runs, by up to 30 s more, see ProjectionEnv.Sweeping). A view that is
// corrupt, from a newer schema, deleted or replaced is moved aside and
// rebuilt; one ahead of its journal (the journal lost history) stops Open
// with ErrHistoryLost unless Config.StartFresh. An engine without a data
// directory keeps no view. Config.Validate fails with ErrNoSQLiteDriver
// when no SQLite driver is registered.
func SQLiteView() ProjectionSpec {
	return ProjectionSpec{Name: SQLiteViewName, Open: openSQLiteView, Validate: func() error {
		return sqlview.CheckDriver("")
	}}
}

func openSQLiteView(ctx context.Context, env ProjectionEnv) (Projection, error) {
	if env.DataDir == "" {
		return nil, nil // nothing to keep
	}
	path := filepath.Join(env.DataDir, SQLiteViewFile)
	j := env.Journal
	// A view ahead of its journal means the journal lost history
	// (truncated, replaced, restored from an older copy): say so instead of
	// quietly rebuilding the view from what is left.
	if seq, exists, err := sqlview.PeekOffset(ctx, path); err == nil && exists && seq > j.Head() && !env.StartFresh {
		return nil, fmt.Errorf("%w: %s has applied events up to seq %d, but the journal ends at seq %d: the journal lost events (truncated, replaced or restored from an older copy). Restore the journal from a backup, or start over deliberately with --start-fresh (Config.StartFresh: the view is moved aside and rebuilt from the journal as it is)",
			ErrHistoryLost, path, seq, j.Head())
	}
	v, err := sqlview.OpenView(ctx, path, j, sqlview.Options{RebuildIfInvalid: true, BatchSize: SQLiteViewBatchSize, Logger: env.Logger, Hold: env.Sweeping})
	if err != nil {
		return nil, err
	}
	return sqliteView{v}, nil
}

// sqliteView adapts *sqlview.View to the engine's Projection.
type sqliteView struct{ *sqlview.View }

// Condition implements ProjectionReporter.
func (v sqliteView) Condition() (string, string, time.Time) {
	s := v.Status()
	switch s.State {
	case sqlview.StateFailing:
		return ProjectionFailing, s.Err, s.Since
	case sqlview.StateRebuilding:
		return ProjectionRebuilding, s.Err, s.Since
	}
	return ProjectionRunning, "", time.Time{}
}

// RebuildView rebuilds the data directory's SQLite view (view.db) from the
// archive's journal, replacing the file atomically: it is built aside
// (view.db.tmp) and renamed into place when complete, so an interrupted
// rebuild leaves the old view intact. progress, if not nil, is called with
// the events applied so far and the total. It returns the view's path.
func (a *Archive) RebuildView(ctx context.Context, progress func(done, total uint64)) (string, error) {
	path := filepath.Join(a.dir, SQLiteViewFile)
	return path, sqlview.RebuildFile(ctx, path, a.Journal(), sqlview.Options{Progress: progress})
}

// ViewSnapshot is what a data directory's SQLite view says of the pool:
// read without the journal, so it works while a daemon holds the journal,
// and without folding it, so it is fast on any journal length. It is as
// recent as the view (Summary.Seq).
type ViewSnapshot = sqlview.Snapshot

// ViewOffset reads the journal seq the SQLite view in dataDir has applied,
// without changing the file; exists is false when there is no view. A file
// that is not a readable view is an error saying so.
func ViewOffset(ctx context.Context, dataDir string) (seq uint64, exists bool, err error) {
	return sqlview.PeekOffset(ctx, filepath.Join(dataDir, SQLiteViewFile))
}

// ReadView reads dataDir's SQLite view read-only (the file is never
// changed): the pool summary and up to pausedLimit paused proxies. A
// missing view wraps os.ErrNotExist; one that is not a proxyhealth view
// says so and how to rebuild it.
func ReadView(ctx context.Context, dataDir string, pausedLimit int) (ViewSnapshot, error) {
	return sqlview.ReadSnapshot(ctx, filepath.Join(dataDir, SQLiteViewFile), pausedLimit)
}
