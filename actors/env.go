package actors

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/internal/clock"
	"github.com/proxyhealth/proxyhealth/internal/idindex"
	"github.com/proxyhealth/proxyhealth/journal"
)

// Defaults of Env.
const (
	// DefaultSnapshotEvery is how many events a proxy appends between
	// snapshots.
	DefaultSnapshotEvery = 100
	// DefaultAppendTimeout bounds one journal append seen from an actor;
	// past it the actor restarts and recovers from the journal.
	DefaultAppendTimeout = time.Minute
	// TimerSlack is how late the actors' timers (a proxy's next check, a
	// zombie deadline, the end of an ejection) may fire on the real clock,
	// so that timers due close together fire in one wake-up
	// (clock.Scheduler). With 10,000 proxies checked every 10 s, one timer
	// per millisecond woke an idle thread each time; coalescing them into
	// 25 ms ticks cut the engine's CPU per check from 215 to 126 CPU-ms per
	// 1,000 checks, and 100 ms ticks by another tenth (BenchmarkE2ESteadyState
	// view=true, five alternating pairs: 128–152 against 103–137 CPU-ms):
	// the checks of a tick start together, their results reach the journal
	// in one commit (10 commits a second instead of 15) and every hand-off
	// after the timer wakes a thread once for many checks. Checks are
	// seconds apart with a jitter of a tenth of the interval: 100 ms late
	// is lost in it.
	TimerSlack = 100 * time.Millisecond
	// FenceRetry is how soon a check held back by Env.MayCheck is asked
	// again: a second is nothing next to check intervals of seconds to
	// minutes, and keeps a fenced member of 30,000 proxies (an etcd
	// outage) at 30,000 wake-ups a second.
	FenceRetry = time.Second
)

// ErrStopping is returned to commands that reach a proxy actor after the
// engine began to stop.
var ErrStopping = errors.New("actors: engine stopping")

// ErrJournalFailing wraps the journal's error in the reply to a command
// whose events the journal did not commit: nothing of it was written and
// nothing was applied. The actor goes on (it does not restart): a check
// whose result could not be journaled is not announced and the next check
// follows after a backoff; a proxy whose ProxyAdded could not be journaled
// stops (it was never added).
var ErrJournalFailing = errors.New("actors: the journal did not commit the events; nothing was written")

// CheckFunc runs one active check of a proxy. It must honour ctx and return
// (never panic on purpose; a panic is caught and escalated to the proxy's
// supervisor). The proxy's URL, credentials and probe config live in the
// closure, never in a message that could be logged.
type CheckFunc func(ctx context.Context) events.CheckResult

// Env is what all proxy actors of one engine (one cluster member) share.
// Build it once; its fields must not change afterwards.
type Env struct {
	// Journal receives every event. Required.
	Journal journal.Journal
	// Clock schedules checks and timestamps events. Default clock.Real.
	Clock clock.Clock
	// Limiter bounds checks in flight. Default NewLimiter(DefaultConcurrency).
	Limiter *Limiter
	// Logger receives warnings about failing appends, panics and zombies.
	// Default: discard.
	Logger *slog.Logger
	// SnapshotEvery is the number of events between snapshots. Default 100.
	SnapshotEvery uint64
	// AppendTimeout bounds one append, with a journal that does not
	// implement journal.AsyncAppender (an async append is answered by the
	// journal's writer, which always answers). Default 1 minute.
	AppendTimeout time.Duration
	// Track, if set, gives a proxy actor, when it starts, the Tracker
	// through which it reports its flags that are not journaled: a check
	// in flight, and its next check's due time. The actor releases it when
	// it stops or restarts. Track may block briefly (it runs once per
	// actor start); the Tracker's setters must not block.
	Track func(proxyID string) Tracker
	// Ejections, if set, bounds the share of the pool that passive outlier
	// detection holds ejected at once; nil: no bound.
	Ejections *EjectionBudget
	// MayCheck, if set, is asked before every check; while it says false
	// no check starts (the check is asked again every FenceRetry) and
	// nothing is journaled for it. A cluster member's fence: it checks
	// only while its membership is confirmed. It must be cheap and must
	// not block.
	MayCheck func() bool
	// Abandoned, if set, is told when a proxy actor stops because the
	// journal did not take its ProxyAdded (so the proxy was never added;
	// pid is the actor that stopped). It must not block.
	Abandoned func(proxyID string, pid *actor.PID)
	// Current, if set, is asked by a proxy actor when it starts for the
	// proxy's state as the fold of its whole stream, if the caller holds
	// one that has applied the stream through streamHead (the engine's
	// live status, which Open has just folded): the actor then reads only
	// its snapshot's seq from the journal instead of replaying its stream
	// after the snapshot (up to SnapshotEvery events, each a lookup
	// somewhere in the journal: 5 CPU-s for 100,000 proxies after a
	// crash). It must give exactly what journal.LoadState would; false
	// makes the actor recover from the journal. It must not block.
	Current func(proxyID string, streamHead uint64) (events.State, bool)

	// ctx is cancelled by CancelChecks: it cancels probes in flight.
	ctx    context.Context
	cancel context.CancelFunc
	// work counts goroutines started on behalf of actors (probes, appends);
	// gate makes "no new work after CancelChecks" race-free.
	gate     sync.Mutex
	draining bool
	work     sync.WaitGroup
	// pool runs that work on reused goroutines; dispatch runs the actors'
	// mailboxes on at most dispatchWorkers of them (mailbox runs never
	// block, so more would add goroutines, not parallelism).
	pool     workers
	dispatch workers
	// sched runs the actors' timers when Clock is the real clock; timers is
	// sched then, Clock otherwise.
	sched  *clock.Scheduler
	timers clock.Clock
	// fire is what the actors' re-armable timers call (see timerFunc).
	fire atomic.Pointer[timerFire]

	// specs holds the current spec of every proxy actor by proxy ID, and
	// proxyProps is the one Props all proxy actors are spawned with: an
	// actor (new, or restarted by its supervisor) looks its spec up by the
	// name it was spawned with, so a restart picks up the spec of the last
	// Reconfigure, and the 10,000 actors of a large pool share one Props.
	// It is also how a cluster virtual actor, which only has an identity,
	// would find its spec.
	specs      specRegistry
	proxyProps *actor.Props
}

// specRegistry finds proxies' current specs by proxy ID. Specs are
// immutable once registered: a change registers a new one. It is an
// idindex.Index, not a map: a spec holds its ID, and a map would keep it
// again as its key (BenchmarkProxyActorBytesPerProxy: 31 bytes a proxy less
// at 10,000).
type specRegistry struct {
	mu sync.RWMutex
	x  idindex.Index[ProxySpec, *ProxySpec]
}

func (r *specRegistry) get(id string) (*ProxySpec, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s := r.x.Get(id)
	return s, s != nil
}

// put registers s, replacing the spec of its ID if there is one.
func (r *specRegistry) put(s *ProxySpec) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.x.Set(s)
}

// delete forgets a proxy's spec if it belongs to source: a proxy moved to
// another source meanwhile keeps its new spec.
func (r *specRegistry) delete(id, source string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.x.Get(id); s != nil && s.Source == source {
		r.x.Delete(id)
	}
}

// Init fills in defaults. Call it once before spawning actors.
func (e *Env) Init() error {
	if e.Journal == nil {
		return errors.New("actors: Env.Journal is required")
	}
	if e.Clock == nil {
		e.Clock = clock.Real{}
	}
	if e.Limiter == nil {
		e.Limiter = NewLimiter(DefaultConcurrency)
	}
	if e.Logger == nil {
		e.Logger = slog.New(slog.DiscardHandler)
	}
	if e.SnapshotEvery == 0 {
		e.SnapshotEvery = DefaultSnapshotEvery
	}
	if e.AppendTimeout <= 0 {
		e.AppendTimeout = DefaultAppendTimeout
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.dispatch.max = dispatchWorkers
	e.timers = e.Clock
	if _, real := e.Clock.(clock.Real); real {
		e.sched = clock.NewScheduler(TimerSlack)
		e.timers = e.sched
	}
	e.proxyProps = actor.PropsFromProducer(func() actor.Actor { return &proxyActor{env: e} },
		actor.WithDispatcher(e.Dispatcher()), actor.WithMailbox(proxyMailbox))
	return nil
}

// CancelChecks cancels every probe in flight and makes actors stop starting
// new ones. Used at shutdown, before Wait.
func (e *Env) CancelChecks() {
	e.gate.Lock()
	e.draining = true
	e.gate.Unlock()
	e.cancel()
}

// begin registers work about to start on behalf of an actor (run it with
// e.pool.run and call e.work.Done when it ends); it returns false once the
// engine is stopping.
func (e *Env) begin() bool {
	e.gate.Lock()
	defer e.gate.Unlock()
	if e.draining {
		return false
	}
	e.work.Add(1)
	return true
}

// Wait blocks until every probe, append and snapshot started by actors has
// finished, or ctx ends. Call it after CancelChecks.
func (e *Env) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { e.work.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// dispatchWorkers bounds the goroutines that run mailboxes. Without a
// bound, spawning 10,000 actors ran 10,000 mailboxes at once, and the
// runtime keeps every goroutine descriptor it ever made (7 MB of live heap
// at 10,000 proxies). No Receive blocks on another actor (probes, appends
// and snapshots run elsewhere and answer with messages), so about one
// worker per CPU keeps every CPU busy; more only add hand-offs, since a
// mailbox scheduled on an idle worker is a goroutine wake-up, while a busy
// worker takes the next mailbox from the queue without one (64 workers:
// 151–175 CPU-ms per 1,000 checks, 4: 147–158, in interleaved runs of
// BenchmarkE2ESteadyState/view=false on a loaded machine).
var dispatchWorkers = max(4, runtime.GOMAXPROCS(0))

// Dispatcher is the dispatcher of the engine's actors: it runs their
// mailboxes on the Env's pooled goroutines. ProxyProps and SourceProps use
// it.
func (e *Env) Dispatcher() actor.Dispatcher { return &e.dispatch }

// Close waits for the Env's pooled goroutines and its timer goroutine to
// exit. Call it last, after Wait and after the actor system shut down; a
// message sent to a mailbox later still runs, on a goroutine of its own.
func (e *Env) Close() {
	e.pool.close()
	e.dispatch.close()
	if e.sched != nil {
		e.sched.Close()
	}
}

// after schedules f, which only sends a message, like Clock.AfterFunc. On
// the real clock the actors' timers share one goroutine (clock.Scheduler)
// instead of starting one per firing timer: thousands of goroutines
// started together (a new pool's first checks, all due at once; timers
// lined up after a pause) left their descriptors live for good.
func (e *Env) after(d time.Duration, f func()) clock.Timer { return e.timers.AfterFunc(d, f) }

func (e *Env) stopping() bool { return e.ctx.Err() != nil }

// timerFire is the function of the actors' re-armable timers for the
// actors of sys.
type timerFire struct {
	sys *actor.ActorSystem
	f   func(arg any, token uint64)
}

// timerFunc returns the function an actor of sys gives its re-armable
// timer, with its PID as the timer's arg: one for all the Env's actors
// (those of an engine share its actor system), so that a proxy's timer
// needs no closure of its own (24 bytes a proxy). An Env shared by actors
// of several systems keeps the first system's, and makes the others' each
// time.
func (e *Env) timerFunc(sys *actor.ActorSystem) func(arg any, token uint64) {
	if tf := e.fire.Load(); tf != nil && tf.sys == sys {
		return tf.f
	}
	tf := &timerFire{sys: sys, f: func(arg any, tok uint64) { sys.Root.Send(arg.(*actor.PID), timerMessage(tok)) }}
	e.fire.CompareAndSwap(nil, tf)
	return tf.f
}

// track returns the Tracker of a starting proxy actor.
func (e *Env) track(id string) Tracker {
	if e.Track == nil {
		return noTracker{}
	}
	return e.Track(id)
}

// Tracker receives a proxy's flags that are not journaled, from its actor
// (projections.Tracker is one). Its setters are called from the actor's
// mailbox, three times a check: they must be cheap and must not block.
type Tracker interface {
	// SetChecking is told when a check starts (true: it may wait for a
	// limiter slot) and ends.
	SetChecking(on bool)
	// SetNextCheck is told the next check's due time whenever it changes
	// (zero: none scheduled, as while paused, failed or checking).
	SetNextCheck(due time.Time)
	// Release ends the actor's hold: it stopped or restarts.
	Release()
}

// noTracker is the Tracker of an Env without Track.
type noTracker struct{}

func (noTracker) SetChecking(bool)       {}
func (noTracker) SetNextCheck(time.Time) {}
func (noTracker) Release()               {}
