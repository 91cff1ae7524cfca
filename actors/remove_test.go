package actors

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestRemoveDuringACheckStopsAtOnce: a proxy removed while its check is in
// flight stops without waiting for the probe (which is not cancelled on its
// own and here ignores its context), so it can be added again at once; the
// old probe's late result reaches nobody's state.
func TestRemoveDuringACheckStopsAtOnce(t *testing.T) {
	h := newHarness(t, nil)
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // registered after the harness's: runs before it
	s := &script{}
	pid := h.spawn("p1", noJitter(), s)
	h.step(pid)
	s.hook = func(_ context.Context, n int64) {
		if n == 2 {
			<-release // a prober that ignores its context
		}
	}
	st := h.idle(pid)
	h.clk.Set(st.NextCheckAt)
	poll(t, "check in flight", func() bool { return s.calls.Load() == 2 })
	if r := h.request(pid, &Remove{Reason: "gone"}).(*Reply); r.Err != nil {
		t.Fatal(r.Err)
	}
	poll(t, "removed actor stopped", func() bool {
		_, err := h.sys.Root.RequestFuture(pid, &GetState{}, 100*time.Millisecond).Result()
		return err != nil
	})
	if n := h.env.Limiter.InFlight(); n != 0 {
		t.Fatalf("the removed proxy's check kept its limiter slot (%d in flight)", n)
	}
	pid = h.spawn("p1", noJitter(), s) // re-added while the old probe runs
	before := h.idle(pid).State
	unblock()
	wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.env.Wait(wctx); err != nil {
		t.Fatalf("the old probe did not end: %v", err)
	}
	if after := h.idle(pid).State; after.TotalChecks != before.TotalChecks || after.StreamSeq != before.StreamSeq {
		t.Fatalf("the old probe's result reached the re-added proxy: before %+v after %+v", before, after)
	}
}
