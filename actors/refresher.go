package actors

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/proxyhealth/proxyhealth/internal/clock"
)

// RefresherSpec is what a source's list refresher runs: Run reads the
// source's list and applies it (the engine's code: fetch, diff, journal),
// then the refresher waits Next() and runs it again. Run's errors are its
// own to report (they are not the actor's failures); a panic in Run
// restarts the refresher under its source's supervision.
type RefresherSpec struct {
	// Run reads and applies the list once; it must honour ctx.
	Run func(ctx context.Context)
	// Next is the wait before the next run (jittered by the caller).
	Next func() time.Duration
	// First is the wait before the first run (0: at once).
	First time.Duration
}

// Refresher messages.
type (
	// SpawnRefresher asks a source actor to start its list refresher (a
	// child it supervises, named "refresher"); answered with a *Spawned.
	SpawnRefresher struct{ Spec RefresherSpec }
	// RefreshNow makes a refresher run at once (or as soon as the run in
	// flight ends); answered with a *Reply when that run has ended.
	RefreshNow struct{}
)

// ErrRefreshPanicked answers a RefreshNow whose run panicked (the
// refresher restarts under its source's supervision and runs again at its
// First wait). The panic is a bug in the list's provider or parser: report it.
var ErrRefreshPanicked = errors.New("actors: list refresh panicked")

// refresherName is the refresher's name under its source actor.
const refresherName = "refresher"

// refresher runs a source's list refresh on its own schedule, on the
// engine's work pool, so that a slow provider never holds up checks.
type refresher struct {
	env     *Env
	spec    RefresherSpec
	timer   clock.Timer
	gen     uint64
	running bool
	again   bool         // a RefreshNow arrived during a run
	waiters []*actor.PID // RefreshNow callers answered when the run in flight ends
	next    []*actor.PID // RefreshNow callers that arrived during a run: answered when the run after it ends
	cancel  context.CancelFunc
}

type (
	refreshDue  struct{ gen uint64 }
	refreshDone struct {
		owner *refresher
		panic any
	}
)

func (r *refresher) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		r.arm(ctx, r.spec.First)
	case *actor.Stopping, *actor.Restarting:
		r.stop()
	case *refreshDue:
		if m.gen == r.gen {
			r.start(ctx)
		}
	case *RefreshNow:
		if r.running {
			// The run in flight may have read the list before the caller
			// asked: the caller waits for the run after it.
			if ctx.Sender() != nil {
				r.next = append(r.next, ctx.Sender())
			}
			r.again = true
			return
		}
		if ctx.Sender() != nil {
			r.waiters = append(r.waiters, ctx.Sender())
		}
		r.start(ctx)
	case *refreshDone:
		if m.owner != r {
			return
		}
		r.running = false
		r.cancel = nil
		if m.panic != nil {
			// The restart drops this instance: every caller is answered,
			// those waiting for the next run too (it will not happen).
			err := fmt.Errorf("%w: %v", ErrRefreshPanicked, m.panic)
			r.answer(ctx, r.waiters, err)
			r.answer(ctx, r.next, err)
			r.waiters, r.next = nil, nil
			panic(err)
		}
		r.answer(ctx, r.waiters, nil)
		r.waiters, r.next = r.next, nil
		if r.again {
			r.again = false
			r.start(ctx)
			return
		}
		r.arm(ctx, r.spec.Next())
	}
}

// answer tells RefreshNow callers that their run ended.
func (r *refresher) answer(ctx actor.Context, to []*actor.PID, err error) {
	for _, w := range to {
		ctx.Send(w, &Reply{Err: err})
	}
}

// arm schedules the next run after d.
func (r *refresher) arm(ctx actor.Context, d time.Duration) {
	if r.timer != nil {
		r.timer.Stop()
	}
	r.gen++
	gen, self, sys := r.gen, ctx.Self(), ctx.ActorSystem()
	r.timer = r.env.after(max(d, 0), func() { sys.Root.Send(self, &refreshDue{gen: gen}) })
}

// start runs the refresh on the work pool.
func (r *refresher) start(ctx actor.Context) {
	if r.running || r.env.stopping() || !r.env.begin() {
		return
	}
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	r.gen++
	r.running = true
	rctx, cancel := context.WithCancel(r.env.ctx)
	r.cancel = cancel
	self, sys, run := ctx.Self(), ctx.ActorSystem(), r.spec.Run
	r.env.pool.run(func() {
		defer r.env.work.Done()
		done := &refreshDone{owner: r}
		defer func() {
			done.panic = recover()
			cancel()
			sys.Root.Send(self, done)
		}()
		run(rctx)
	})
}

func (r *refresher) stop() {
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	if r.cancel != nil {
		r.cancel()
	}
}
