package actors

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
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
	h.request(pid, &RefreshNow{})
	poll(t, "the restarted refresher to schedule its run", func() bool {
		due, ok := h.clk.NextDue()
		return ok && due.Equal(h.clk.Now().Add(time.Second))
	})
	h.clk.Advance(time.Second)
	poll(t, "a run after the restart", func() bool { return runs.Load() >= 5 })
}
