package proxyhealth

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/clock"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/probe"
	"github.com/proxyhealth/proxyhealth/projections"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// projected runs the folds of the journal: the live status (always), the
// SQLite view (with a data directory), the pool monitor and the notifier.
type projected struct {
	live     *projections.Live
	history  *projections.History
	extra    []namedProjection // Config.Projections, opened
	monitor  *projections.PoolMonitor
	notifier *projections.Notifier
	// after, if set, follows each batch the live status applied (the
	// rotator), on the feeder goroutine.
	after func([]*pb.Envelope)

	// saver saves the live status's checkpoint from the feeder (nil: none)
	saver *liveSaver

	cancel context.CancelFunc
	wg     sync.WaitGroup
	log    *slog.Logger
	j      journal.Journal // what the live status follows (set by start)

	mu     sync.Mutex
	states map[string]*projState // by name, for Engine.Health
}

// webhookDrain bounds how long a stopping engine waits for webhook
// notifications still queued or in flight: a webhook target that does not
// answer must not hold the stop (nor be the reason it fails).
const webhookDrain = 5 * time.Second

// projState is one projection's condition, kept by run.
type projState struct {
	state string
	err   string
	since time.Time
	seq   func() uint64 // nil: no offset
	// status, if set, reports the condition of a projection that retries
	// by itself (the SQLite view); it overrides state while running.
	status func() (state, err string, since time.Time)
}

// namedProjection is an opened Config.Projections entry.
type namedProjection struct {
	name string
	p    Projection
}

// foldLive folds the journal up to seq head into live: the pool-wide
// events retention carried (journal.Carrier: the pool's degraded and panic
// flags, the sources' refreshes, whose events retention deleted), then the
// retained events in batches, then the proxies known only from a snapshot
// (seedSnapshots); the status then counts as caught up with what retention
// deleted. Open's catch-up, and an Archive's status. A live status
// restored from a checkpoint (loadLiveCheckpoint) is folded on from the
// event after it: everything up to it, carried events included, is in it.
func foldLive(ctx context.Context, live *projections.Live, j journal.Journal, head uint64, sources []SourceConfig) error {
	carried, err := journal.Carried(ctx, j)
	if err != nil {
		return err
	}
	live.Apply(carried...)
	batch := make([]*pb.Envelope, 0, 4096)
	for env, err := range j.Read(ctx, max(j.First(), live.Seq()+1)) {
		if err != nil {
			return err
		}
		batch = append(batch, env)
		if len(batch) == cap(batch) {
			live.Apply(batch...)
			batch = batch[:0]
		}
		if env.GetSeq() >= head {
			break
		}
	}
	live.Apply(batch...)
	// Proxies quiet for longer than the retention period have no events
	// left, only their snapshot: every one of them is seeded (a run-time
	// proxy too, so that ResumeAddedProxies resumes it or journals why not).
	if err := seedSnapshots(ctx, live, j, sources); err != nil {
		return err
	}
	if first := j.First(); first > 1 {
		live.SkipTo(first - 1)
	}
	return nil
}

// seedSnapshots seeds the live status with the proxies that have a
// snapshot but no retained event: all of them when the journal can list
// its snapshots, else the configured ones.
func seedSnapshots(ctx context.Context, live *projections.Live, j journal.Journal, sources []SourceConfig) error {
	var ids []string
	if l, ok := j.(journal.SnapshotLister); ok {
		var err error
		if ids, err = l.SnapshotIDs(ctx); err != nil {
			return fmt.Errorf("journal: list the snapshots: %w", err)
		}
	} else {
		for _, sc := range sources {
			for _, raw := range sc.Proxies {
				if u, err := probe.ParseProxyURL(raw); err == nil { // Validate refused the others
					ids = append(ids, u.ID())
				}
			}
		}
	}
	// A proxy the fold knows has retained events, which are the truth:
	// only the others' snapshots are read (after a clean stop every proxy
	// has one: 100,000 reads for nothing).
	ids = slices.DeleteFunc(ids, live.Knows)
	if len(ids) == 0 {
		return nil
	}
	return journal.QuietSnapshots(ctx, j, ids, func(snap *pb.ProxySnapshot) {
		if !live.Knows(snap.GetProxyId()) {
			live.Seed(snap)
		}
	})
}

// startProjections builds every projection before any actor runs, so that
// nothing committed later is missed: the live status is caught up with the
// journal synchronously, then all of them tail it. sources are the
// configured ones (their snapshots are seeded when the journal cannot list
// its own).
func (e *Engine) startProjections(ctx context.Context, sources []SourceConfig) error {
	cfg, j := e.cfg, e.journal
	p := &projected{log: e.log}
	e.proj = p
	p.live = e.restoreLive(ctx)
	restored := p.live.Seq()
	p.history = projections.NewHistory(j, projections.HistoryOptions{Clock: cfg.Clock.Now})
	// Catch up synchronously: Open returns with the status of every proxy.
	head := j.Head()
	if err := foldLive(ctx, p.live, j, head, sources); err != nil {
		return fmt.Errorf("proxyhealth: load live status from the journal: %w", err)
	}
	p.saver = newLiveSaver(cfg, e.log, p.live, restored)

	e.rot.follow(p.live)
	p.after = e.rot.apply

	for _, spec := range cfg.Projections {
		x, err := spec.Open(ctx, ProjectionEnv{DataDir: cfg.DataDir, Journal: journal.ReadOnly(j), Logger: cfg.Logger, StartFresh: cfg.StartFresh, Sweeping: p.sweeping})
		if err != nil {
			return fmt.Errorf("proxyhealth: open the %s: %w", spec.Name, err)
		}
		if x != nil {
			p.extra = append(p.extra, namedProjection{spec.Name, x})
		}
	}
	if !cfg.DisablePoolMonitor {
		m, err := projections.NewPoolMonitor(j, projections.PoolMonitorOptions{
			Threshold: cfg.PoolThreshold, Margin: cfg.PoolMargin, Logger: cfg.Logger,
		})
		if err != nil {
			return fmt.Errorf("%w: %w", ErrBadConfig, err)
		}
		// The live status holds the fold the monitor would make: it
		// starts from there (before the live feeder runs).
		m.StartFrom(p.live)
		p.monitor = m
	}
	n, err := projections.NewNotifier(j, projections.NotifierOptions{
		Webhooks: cfg.Webhooks, Callbacks: cfg.OnNotification, Logger: cfg.Logger,
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	if !n.StartFrom(p.live) { // as the monitor; else it replays the journal
		e.log.Debug("the notifier replays the whole journal: the live status cannot tell every proxy's down episode (an adopted proxy, or a transition it no longer keeps)")
	}
	p.notifier = n

	rctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.j = cancel, j
	// The live status resumes after a failed read from where it stopped.
	p.run(rctx, "live status", p.live.Seq, cfg.Logger, func() error { return p.feedLive(rctx, p.live.Seq()+1) }, cfg.Clock)
	for _, x := range p.extra {
		var status []func() (string, string, time.Time)
		if r, ok := x.p.(ProjectionReporter); ok {
			status = append(status, r.Condition)
		}
		p.run(rctx, x.name, x.p.Offset, cfg.Logger, func() error { return x.p.Run(rctx) }, nil, status...)
	}
	if p.monitor != nil {
		p.run(rctx, "pool monitor", nil, cfg.Logger, func() error { return p.monitor.Run(rctx) }, nil)
	}
	p.run(rctx, "notifier", nil, cfg.Logger, func() error { return p.notifier.Run(rctx) }, nil)
	return nil
}

// restoreLive returns a new live status, restored from the data
// directory's checkpoint (LiveCheckpointFile) when there is one that fits
// the journal; a checkpoint that does not is logged and left for Close to
// replace.
func (e *Engine) restoreLive(ctx context.Context) *projections.Live {
	opts := projections.LiveOptions{Snapshots: e.journal.LoadSnapshot}
	live := projections.NewLive(opts)
	if e.cfg.DataDir == "" {
		return live
	}
	seq, err := loadLiveCheckpoint(ctx, e.cfg.DataDir, live, e.journal)
	switch {
	case err == nil:
		e.log.Info("live status restored from its checkpoint", slog.Uint64("seq", seq), slog.Uint64("journal_head", e.journal.Head()))
		return live
	case !errors.Is(err, fs.ErrNotExist):
		e.log.Info("live status checkpoint not used; folding the whole journal", slog.String("file", filepath.Join(e.cfg.DataDir, LiveCheckpointFile)), slog.Any("reason", err))
	}
	return projections.NewLive(opts)
}

// sweeping implements ProjectionEnv.Sweeping: the live status has at least
// SweepMin proxies in state unknown.
func (p *projected) sweeping() bool { return p.live.Counts().Unknown >= SweepMin }

// Retry delays of a projection that ended with an error (restartable ones
// only: the live status).
const (
	projRetryMin = time.Second
	projRetryMax = 30 * time.Second
)

// run runs a projection on its own goroutine and keeps its condition for
// Engine.Health. A projection that ends with an error is reported as
// stopped; with a clock it is restarted after a delay that doubles up to
// projRetryMax, and reported as failing meanwhile.
func (p *projected) run(ctx context.Context, name string, seq func() uint64, log *slog.Logger, f func() error, clk clock.Clock,
	status ...func() (string, string, time.Time)) {
	st := &projState{state: ProjectionRunning, seq: seq}
	if len(status) > 0 {
		st.status = status[0]
	}
	p.mu.Lock()
	if p.states == nil {
		p.states = map[string]*projState{}
	}
	p.states[name] = st
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		delay := projRetryMin
		for {
			err := f()
			if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, journal.ErrClosed) {
				return
			}
			p.mu.Lock()
			if st.state == ProjectionRunning {
				st.since = time.Now()
			}
			st.err = err.Error()
			st.state = ProjectionStopped
			if clk != nil {
				st.state = ProjectionFailing
			}
			p.mu.Unlock()
			if clk == nil {
				log.Error("projection stopped", slog.String("projection", name), slog.Any("error", err))
				return
			}
			log.Error("projection failed; retrying", slog.String("projection", name), slog.Duration("after", delay), slog.Any("error", err))
			wake := make(chan struct{})
			t := clk.AfterFunc(delay, func() { close(wake) })
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-wake:
			}
			delay = min(2*delay, projRetryMax)
			p.mu.Lock()
			st.state, st.err, st.since = ProjectionRunning, "", time.Time{}
			p.mu.Unlock()
		}
	}()
}

// health appends every projection's condition to out[:0]; head is the
// journal's.
func (p *projected) health(out []ProjectionHealth, head uint64) []ProjectionHealth {
	p.mu.Lock()
	defer p.mu.Unlock()
	out = slices.Grow(out[:0], len(p.states))
	for name, st := range p.states {
		h := ProjectionHealth{Name: name, State: st.state, Error: st.err, Since: st.since}
		if st.status != nil && st.state == ProjectionRunning {
			h.State, h.Error, h.Since = st.status()
		}
		if st.seq != nil {
			h.Seq = st.seq()
			if head > h.Seq {
				h.Lag = head - h.Seq
			}
		}
		out = append(out, h)
	}
	return out
}

// feedLive applies the journal from seq from to the live status, batch by
// batch, and hands each batch to p.after, until ctx ends or a read fails;
// between batches it saves the live status's checkpoint when one is due.
func (p *projected) feedLive(ctx context.Context, from uint64) error {
	sub := p.j.Subscribe(from)
	defer sub.Close()
	p.saver.maybeSave(p.live) // due at once after a long fold in Open
	var batch []*pb.Envelope  // reused: Apply and after keep envelopes, not the slice
	for {
		var err error
		batch, err = sub.NextBatchInto(ctx, batch, 4096)
		if err != nil {
			return err
		}
		p.live.Apply(batch...)
		if p.after != nil {
			p.after(batch)
		}
		p.saver.maybeSave(p.live)
	}
}

// catchUpLive applies to the live status what the journal holds beyond it;
// its feeder must have stopped (halt). Unlike feedLive it does not hand
// the events to p.after: the rotator has stopped journaling by then
// (Engine.Close waits for it first) and must not start again.
func (p *projected) catchUpLive(ctx context.Context) error {
	for env, err := range p.j.Read(ctx, p.live.Seq()+1) {
		if err != nil {
			return err
		}
		p.live.Apply(env)
	}
	return nil
}

// waitLive waits until the live status has applied the journal up to seq
// (or ctx ends).
func (p *projected) waitLive(ctx context.Context, seq uint64) error {
	for d := 50 * time.Microsecond; p.live.Seq() < seq; d = min(2*d, 5*time.Millisecond) {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("proxyhealth: the live status did not catch up with the journal (seq %d of %d): %w", p.live.Seq(), seq, ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// halt stops the projections' goroutines (the feeder, and with it the
// rotator's batches), without the final catch-up; idempotent.
func (p *projected) halt() {
	if p != nil && p.cancel != nil {
		p.cancel()
		p.wg.Wait()
	}
}

// stop ends the projections (the journal must still be open). The view
// catches up first; had it not (a crash), its offset, durable with each
// batch, would let it catch up at the next start.
func (p *projected) stop(ctx context.Context) error {
	if p == nil {
		return nil
	}
	var errs []error
	if p.cancel != nil {
		p.halt()
		// What committed after the live feeder stopped (the last checks'
		// events, the rotator's last panic event) goes to the live status
		// too: a stopped engine's Status is its journal's.
		if err := p.catchUpLive(ctx); err != nil {
			errs = append(errs, fmt.Errorf("catch up the live status: %w", err))
		}
		// The journal is still open: bring the registered projections up
		// to date first, so that a cleanly stopped engine leaves a current
		// view.db behind whatever the webhooks do.
		for _, x := range p.extra {
			if err := x.p.CatchUp(ctx); err != nil {
				errs = append(errs, fmt.Errorf("catch up the %s: %w", x.name, err))
			}
		}
		if p.notifier != nil {
			// Webhooks get what is left of the stop, at most webhookDrain;
			// what they could not deliver by then is dropped and logged.
			dctx, cancel := context.WithTimeout(ctx, webhookDrain)
			if err := p.notifier.Close(dctx); err != nil {
				p.log.Warn("stopping: webhook notifications were not delivered", slog.Any("error", err))
			}
			cancel()
		}
	}
	for _, x := range p.extra { // opened, perhaps never started
		errs = append(errs, x.p.Close())
	}
	return errors.Join(errs...)
}

// PoolShare returns the pool monitor's view of the pool (healthy share,
// degraded or not); ok is false when the monitor is disabled.
func (e *Engine) PoolShare() (PoolShare, bool) {
	if e.proj.monitor == nil {
		return PoolShare{}, false
	}
	return e.proj.monitor.Share(), true
}

// Notifications subscribes to proxy_down, proxy_recovered, pool_degraded and
// pool_recovered notifications. The channel drops its oldest notification
// when the subscriber falls behind; call cancel to unsubscribe.
func (e *Engine) Notifications() (<-chan Notification, func()) {
	return e.proj.notifier.Subscribe()
}
