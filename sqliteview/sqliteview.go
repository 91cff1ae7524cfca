// Package sqliteview registers the SQLite "L3" view with an engine: a
// projection of the journal into DataDir/view.db that users query with
// plain SQL (schema in ARCHITECTURE.md). It is the one part of proxyhealth
// that needs cgo (mattn/go-sqlite3), so the engine does not import it: a
// program that wants the view registers it,
//
//	cfg.Projections = append(cfg.Projections, sqliteview.New())
//
// and the daemon does. The view is built by package projections/sqlview;
// this package is the seam between it and the engine's facade.
package sqliteview

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections/sqlview"
)

// File is the view's file name inside the data directory.
const File = "view.db"

// Name is the view's name in the engine's Health, /healthz and metrics.
const Name = "sqlite view"

// DefaultBatchSize is how many events the view applies per transaction.
const DefaultBatchSize = 4000

// New returns the projection spec of the SQLite view: DataDir/view.db,
// caught up at start and kept up to date. A view that is corrupt, from a
// newer schema, deleted or replaced is moved aside and rebuilt; one ahead
// of its journal (the journal lost history) stops the engine's Open with
// proxyhealth.ErrHistoryLost unless Config.StartFresh. An engine without a
// data directory keeps no view.
func New() proxyhealth.ProjectionSpec {
	return proxyhealth.ProjectionSpec{Name: Name, Open: open}
}

func open(ctx context.Context, env proxyhealth.ProjectionEnv) (proxyhealth.Projection, error) {
	if env.DataDir == "" {
		return nil, nil // nothing to keep
	}
	path := filepath.Join(env.DataDir, File)
	j := env.Journal
	// A view ahead of its journal means the journal lost history
	// (truncated, replaced, restored from an older copy): say so instead of
	// quietly rebuilding the view from what is left.
	if seq, exists, err := sqlview.PeekOffset(ctx, path); err == nil && exists && seq > j.Head() && !env.StartFresh {
		return nil, fmt.Errorf("%w: %s has applied events up to seq %d, but the journal ends at seq %d: the journal lost events (truncated, replaced or restored from an older copy). Restore the journal from a backup, or start over deliberately with --start-fresh (Config.StartFresh: the view is moved aside and rebuilt from the journal as it is)",
			proxyhealth.ErrHistoryLost, path, seq, j.Head())
	}
	v, err := sqlview.OpenView(ctx, path, j, sqlview.Options{RebuildIfInvalid: true, BatchSize: DefaultBatchSize, Logger: env.Logger})
	if err != nil {
		return nil, err
	}
	return view{v}, nil
}

// view adapts *sqlview.View to the engine's Projection.
type view struct{ *sqlview.View }

// Condition implements proxyhealth.ProjectionReporter.
func (v view) Condition() (string, string, time.Time) {
	s := v.Status()
	switch s.State {
	case sqlview.StateFailing:
		return proxyhealth.ProjectionFailing, s.Err, s.Since
	case sqlview.StateRebuilding:
		return proxyhealth.ProjectionRebuilding, s.Err, s.Since
	}
	return proxyhealth.ProjectionRunning, "", time.Time{}
}

// Rebuild rebuilds dataDir/view.db from the journal j (a read-only journal
// is enough), replacing the file atomically; progress, if not nil, is
// called with the events applied so far and the total.
func Rebuild(ctx context.Context, dataDir string, j journal.Journal, progress func(done, total uint64)) error {
	return sqlview.RebuildFile(ctx, filepath.Join(dataDir, File), j, sqlview.Options{Progress: progress})
}

// Offset reads the journal seq the view in dataDir has applied, without
// changing the file; exists is false when there is no view.
func Offset(ctx context.Context, dataDir string) (seq uint64, exists bool, err error) {
	return sqlview.PeekOffset(ctx, filepath.Join(dataDir, File))
}
