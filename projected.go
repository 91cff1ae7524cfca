package proxyhealth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/probe"
	"github.com/proxyhealth/proxyhealth/projections"
	"github.com/proxyhealth/proxyhealth/projections/sqlview"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// ViewFile is the SQLite view's file name inside Config.DataDir.
const ViewFile = "view.db"

// projected runs the folds of the journal: the live status (always), the
// SQLite view (with a data directory), the pool monitor and the notifier.
type projected struct {
	live     *projections.Live
	history  *projections.History
	view     *sqlview.View
	monitor  *projections.PoolMonitor
	notifier *projections.Notifier

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startProjections builds every projection before any actor runs, so that
// nothing committed later is missed: the live status is caught up with the
// journal synchronously, then all of them tail it.
func (e *Engine) startProjections(ctx context.Context) error {
	cfg, j := e.cfg, e.journal
	p := &projected{}
	e.proj = p
	p.live = projections.NewLive(projections.LiveOptions{Config: e.healthConfig, Snapshots: j.LoadSnapshot})
	p.history = projections.NewHistory(j, projections.HistoryOptions{Clock: cfg.Clock.Now})
	// Catch up synchronously: Open returns with the status of every proxy.
	head := j.Head()
	batch := make([]*pb.Envelope, 0, 4096)
	for env, err := range j.Read(ctx, j.First()) {
		if err != nil {
			return fmt.Errorf("proxyhealth: load live status from the journal: %w", err)
		}
		batch = append(batch, env)
		if len(batch) == cap(batch) {
			p.live.Apply(batch...)
			batch = batch[:0]
		}
		if env.GetSeq() >= head {
			break
		}
	}
	p.live.Apply(batch...)
	// Proxies quiet for longer than the retention period have no events
	// left, only their snapshot.
	for _, sc := range cfg.Sources {
		for _, raw := range sc.Proxies {
			u, err := probe.ParseProxyURL(raw)
			if err != nil {
				continue // Validate already refused it
			}
			if _, known := p.live.Proxy(u.ID()); known {
				continue
			}
			if snap, err := j.LoadSnapshot(ctx, u.ID()); err == nil {
				p.live.Seed(snap)
			}
		}
	}

	if cfg.DataDir != "" && !cfg.DisableView {
		v, err := sqlview.OpenView(ctx, filepath.Join(cfg.DataDir, ViewFile), j, sqlview.Options{
			RebuildIfInvalid: true, BatchSize: 4000, Logger: cfg.Logger,
		})
		if err != nil {
			return fmt.Errorf("proxyhealth: open the SQLite view: %w", err)
		}
		p.view = v
	}
	if !cfg.DisablePoolMonitor {
		m, err := projections.NewPoolMonitor(j, projections.PoolMonitorOptions{
			Threshold: cfg.PoolThreshold, Margin: cfg.PoolMargin, Logger: cfg.Logger,
		})
		if err != nil {
			return fmt.Errorf("%w: %w", ErrBadConfig, err)
		}
		p.monitor = m
	}
	n, err := projections.NewNotifier(j, projections.NotifierOptions{
		Webhooks: cfg.Webhooks, Callbacks: cfg.OnNotification, Logger: cfg.Logger,
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	p.notifier = n

	rctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.run("live status", cfg.Logger, func() error { return p.feedLive(rctx, j, head+1) })
	if p.view != nil {
		p.run("sqlite view", cfg.Logger, func() error { return p.view.Run(rctx) })
	}
	if p.monitor != nil {
		p.run("pool monitor", cfg.Logger, func() error { return p.monitor.Run(rctx) })
	}
	p.run("notifier", cfg.Logger, func() error { return p.notifier.Run(rctx) })
	return nil
}

func (p *projected) run(name string, log *slog.Logger, f func() error) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := f(); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, journal.ErrClosed) {
			log.Error("projection stopped", slog.String("projection", name), slog.Any("error", err))
		}
	}()
}

func (p *projected) feedLive(ctx context.Context, j journal.Journal, from uint64) error {
	sub := j.Subscribe(from)
	defer sub.Close()
	for {
		batch, err := sub.NextBatch(ctx, 4096)
		if err != nil {
			return err
		}
		p.live.Apply(batch...)
	}
}

// stop ends the projections (the journal must still be open). The view
// catches up first; had it not (a crash), its offset, durable with each
// batch, would let it catch up at the next start.
func (p *projected) stop(ctx context.Context) error {
	if p == nil || p.cancel == nil {
		return nil
	}
	p.cancel()
	p.wg.Wait()
	var errs []error
	if p.notifier != nil {
		errs = append(errs, p.notifier.Close(ctx))
	}
	if p.view != nil {
		// The journal is still open: bring the view up to date, so that a
		// cleanly stopped engine leaves a current view.db behind.
		errs = append(errs, p.view.CatchUp(ctx), p.view.Close())
	}
	return errors.Join(errs...)
}

// Live returns the live pool status: counts per state and source, per-proxy
// views and recent transitions. Its queries never block the engine.
func (e *Engine) Live() *projections.Live { return e.proj.live }

// History returns the reader of the proxies' check histories (the last 64
// results within 24 h), which reads them from the journal.
func (e *Engine) History() *projections.History { return e.proj.history }

// ViewPath returns the path of the SQLite view kept by the engine, or ""
// without a data directory (or with Config.DisableView).
func (e *Engine) ViewPath() string {
	if e.proj.view == nil {
		return ""
	}
	return e.proj.view.Path()
}

// PoolShare returns the pool monitor's view of the pool (healthy share,
// degraded or not); ok is false when the monitor is disabled.
func (e *Engine) PoolShare() (projections.PoolShare, bool) {
	if e.proj.monitor == nil {
		return projections.PoolShare{}, false
	}
	return e.proj.monitor.Share(), true
}

// Notifications subscribes to proxy_down, proxy_recovered, pool_degraded and
// pool_recovered notifications. The channel drops its oldest notification
// when the subscriber falls behind; call cancel to unsubscribe.
func (e *Engine) Notifications() (<-chan projections.Notification, func()) {
	return e.proj.notifier.Subscribe()
}

func (e *Engine) healthConfig(source string) events.Config {
	e.mu.Lock()
	defer e.mu.Unlock()
	if s, ok := e.sources[source]; ok {
		return s.cfg.Health
	}
	return events.DefaultConfig()
}
