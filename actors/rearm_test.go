package actors

import (
	"testing"
	"time"
)

// TestRealClockTimerRearmedAcrossWheelAndHeap: on the real clock (the
// timer scheduler) an actor's one re-armable timer serves its zombie
// deadline (in the wheel), then its next check an hour away (beyond the
// wheel, in the heap); a pause stops it and a resume arms it again.
func TestRealClockTimerRearmedAcrossWheelAndHeap(t *testing.T) {
	h := newHarnessWith(t, nil, func(e *Env) { e.Clock = nil })
	c := noJitter()
	c.Interval = time.Hour
	s := &script{}
	pid := h.spawn("p1", c, s)
	poll(t, "the first check", func() bool { return s.calls.Load() >= 1 })
	if st := h.idle(pid); st.NextCheckAt.IsZero() || time.Until(st.NextCheckAt) < 30*time.Minute {
		t.Fatalf("next check at %v, want about an hour away", st.NextCheckAt)
	}
	if r := h.request(pid, &Pause{}).(*Reply); r.Err != nil {
		t.Fatal(r.Err)
	}
	if st := h.idle(pid); !st.State.Paused || !st.NextCheckAt.IsZero() || st.Stopped {
		t.Fatalf("paused: %+v", st)
	}
	if r := h.request(pid, &Resume{}).(*Reply); r.Err != nil {
		t.Fatal(r.Err)
	}
	if st := h.idle(pid); st.State.Paused || st.NextCheckAt.IsZero() {
		t.Fatalf("resumed: %+v", st)
	}
	if n := h.env.sched.Pending(); n != 1 {
		t.Fatalf("%d timers pending, want the one check timer", n)
	}
}
