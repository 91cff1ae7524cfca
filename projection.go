package proxyhealth

import (
	"context"
	"log/slog"
	"time"

	"github.com/proxyhealth/proxyhealth/journal"
)

// Projection is a fold of the journal that a program registers in
// Config.Projections, kept outside the engine's memory: the SQLite view
// (SQLiteView, which the daemon registers) is one. The engine opens
// it after the live status is loaded and before any proxy runs, so it
// misses nothing; runs it; reports it in Health; and at Close catches it up
// and closes it while the journal is still open. A projection must be able
// to rebuild itself from the journal.
type Projection interface {
	// Run follows the journal until ctx ends (then it returns nil) or the
	// journal closes. It retries its own failures: an error ends it for
	// good and shows as "stopped" in Health.
	Run(ctx context.Context) error
	// CatchUp applies everything committed so far.
	CatchUp(ctx context.Context) error
	// Offset is the seq of the last journal event applied.
	Offset() uint64
	// Close releases the projection.
	Close() error
}

// ProjectionReporter is implemented by projections that report their own
// condition (one of the Projection* states, the error, since when); Health
// shows it.
type ProjectionReporter interface {
	Condition() (state, err string, since time.Time)
}

// ProjectionSpec registers a projection in Config.Projections.
type ProjectionSpec struct {
	// Name identifies the projection in Health, /healthz and the metrics.
	Name string
	// Open opens the projection; a nil Projection with a nil error means
	// it has nothing to do for this engine (say, no data directory). An
	// error stops the engine's Open (nothing is left running).
	Open func(ctx context.Context, env ProjectionEnv) (Projection, error)
	// Validate, if not nil, is called by Config.Validate: an error it
	// returns is one Open would return whatever the journal holds (say, a
	// missing driver).
	Validate func() error
}

// ProjectionEnv is what a projection may use.
type ProjectionEnv struct {
	// DataDir is Config.DataDir ("" for an engine without one).
	DataDir string
	// Journal is a read-only view of the engine's journal (its writes fail
	// with journal.ErrReadOnly).
	Journal journal.Journal
	// Logger is the engine's logger.
	Logger *slog.Logger
	// StartFresh is Config.StartFresh: the operator accepts that history
	// was lost, so a projection ahead of the journal may be rebuilt instead
	// of refusing to start (ErrHistoryLost).
	StartFresh bool
	// Sweeping reports whether a large sweep of new proxies is under way:
	// at least SweepMin proxies in the pool await their first check (at
	// start-up, or after a source brought many). A projection that may
	// trail the journal can hold its work back meanwhile, so that the
	// sweep's checks have the machine; the SQLite view does, for at most
	// 30 s (sqlview.Options.Hold).
	Sweeping func() bool
}

// SweepMin is how many proxies must await their first check for
// ProjectionEnv.Sweeping to report a sweep. A smaller sweep is over in
// about a second (10,000 proxies take about 2 s on two cores), too soon
// for holding a projection back to matter.
const SweepMin = 1000
