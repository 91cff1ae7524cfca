package actors

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// TestRefresherRunsOnItsSchedule: the first run after First, the next ones
// after Next() each; RefreshNow runs at once and is answered when the run
// ended; a panicking run restarts the refresher, which goes on.
func TestRefresherRunsOnItsSchedule(t *testing.T) {
	h := newHarness(t, nil)
	var runs atomic.Int64
	var panicOn atomic.Int64
	spec := RefresherSpec{
		First: time.Second,
		Next:  func() time.Duration { return time.Minute },
		Run: func(ctx context.Context) {
			n := runs.Add(1)
			if n == panicOn.Load() {
				panic("provider parser bug")
			}
		},
	}
	res, err := h.sys.Root.RequestFuture(h.src, &SpawnRefresher{Spec: spec}, 5*time.Second).Result()
	if err != nil || res.(*Spawned).Err != nil {
		t.Fatalf("spawn: %v %v", err, res)
	}
	pid := res.(*Spawned).PID
	start := h.clk.Now()
	poll(t, "the first run to be scheduled", func() bool { due, ok := h.clk.NextDue(); return ok && due.Equal(start.Add(time.Second)) })
	h.clk.Advance(999 * time.Millisecond)
	if runs.Load() != 0 {
		t.Fatal("ran before First")
	}
	h.clk.Advance(time.Millisecond)
	poll(t, "the first run", func() bool { return runs.Load() == 1 })
	poll(t, "the second run to be scheduled", func() bool { due, ok := h.clk.NextDue(); return ok && due.Equal(start.Add(time.Second+time.Minute)) })
	h.clk.Advance(time.Minute)
	poll(t, "the second run", func() bool { return runs.Load() == 2 })
	if r := h.request(pid, &RefreshNow{}).(*Reply); r.Err != nil || runs.Load() != 3 {
		t.Fatalf("RefreshNow: %v, %d runs", r.Err, runs.Load())
	}
	// A panic restarts the refresher (the harness restarts at once); it
	// runs again at First after the restart.
	panicOn.Store(4)
	if r := h.request(pid, &RefreshNow{}).(*Reply); !errors.Is(r.Err, ErrRefreshPanicked) {
		t.Fatalf("RefreshNow of a panicking run: %v, want ErrRefreshPanicked", r.Err)
	}
	poll(t, "the restarted refresher to schedule its run", func() bool {
		due, ok := h.clk.NextDue()
		return ok && due.Equal(h.clk.Now().Add(time.Second))
	})
	h.clk.Advance(time.Second)
	poll(t, "a run after the restart", func() bool { return runs.Load() >= 5 })
}

// TestRefreshNowDuringARunWaitsForTheNext: the run in flight may have read
// the list before the caller asked, so a RefreshNow is answered only when a
// run that started after it was asked has ended; those asked during one run
// share the run after it.
func TestRefreshNowDuringARunWaitsForTheNext(t *testing.T) {
	h := newHarness(t, nil)
	var started, ended atomic.Int64
	release := make(chan struct{})
	spec := RefresherSpec{
		First: time.Hour,
		Next:  func() time.Duration { return time.Hour },
		Run: func(ctx context.Context) {
			if started.Add(1) == 1 {
				select {
				case <-release:
				case <-ctx.Done():
				}
			}
			ended.Add(1)
		},
	}
	res, err := h.sys.Root.RequestFuture(h.src, &SpawnRefresher{Spec: spec}, 5*time.Second).Result()
	if err != nil || res.(*Spawned).Err != nil {
		t.Fatalf("spawn: %v %v", err, res)
	}
	pid := res.(*Spawned).PID
	type asked struct {
		f      *actor.Future
		before int64 // runs started when it was asked
	}
	ask := func() asked {
		before := started.Load()
		return asked{h.sys.Root.RequestFuture(pid, &RefreshNow{}, 5*time.Second), before}
	}
	all := []asked{ask()}
	poll(t, "the first run to start", func() bool { return started.Load() == 1 })
	all = append(all, ask(), ask())
	close(release)
	for i, a := range all {
		r, err := a.f.Result()
		if err != nil || r.(*Reply).Err != nil {
			t.Fatalf("RefreshNow %d: %v %v", i, r, err)
		}
		if n := ended.Load(); n <= a.before {
			t.Fatalf("RefreshNow %d, asked when %d runs had started, was answered when %d had ended", i, a.before, n)
		}
	}
	if n := started.Load(); n > 2 {
		t.Errorf("%d runs for three RefreshNow (two asked during the first run), want 2", n)
	}
}
