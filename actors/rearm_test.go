package actors

import (
	"context"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/clock"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
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

// plainClock is a host's clock that makes no re-armable timers: only Now
// and AfterFunc of the harness's fake clock.
type plainClock struct{ f *clock.Fake }

func (c plainClock) Now() time.Time                                  { return c.f.Now() }
func (c plainClock) AfterFunc(d time.Duration, f func()) clock.Timer { return c.f.AfterFunc(d, f) }

// TestClockWithoutRearmableTimers: with a clock that makes no re-armable
// timers, each arming of the actor's timer is an AfterFunc timer of its
// own, and it works as the re-armable one: checks run on schedule, a
// zombie check is recorded as a timeout, a re-arming or a pause leaves no
// earlier timer pending.
func TestClockWithoutRearmableTimers(t *testing.T) {
	h := newHarnessWith(t, nil, func(e *Env) { e.Clock = plainClock{e.Clock.(*clock.Fake)} })
	release := make(chan struct{})
	s := &script{}
	s.hook = func(ctx context.Context, n int64) {
		if n == 2 {
			<-release // ignores ctx: a misbehaving prober
		}
	}
	pid := h.spawn("p1", noJitter(), s)
	h.step(pid)
	st := h.idle(pid)
	if n := h.clk.Pending(); n != 1 {
		t.Fatalf("%d timers pending, want the next check's", n)
	}
	h.clk.Set(st.NextCheckAt)
	poll(t, "check in flight", func() bool { return s.calls.Load() == 2 })
	h.clk.Advance(2 * checkTimeout)
	st = h.idle(pid)
	if st.State.LastErrorClass != pb.FailureClass_FAILURE_CLASS_TIMEOUT {
		t.Fatalf("last error %v %q, want the zombie's timeout", st.State.LastErrorClass, st.State.LastError)
	}
	close(release)
	h.step(pid)
	if got := h.idle(pid).State.TotalChecks; got != 3 {
		t.Fatalf("total checks %d, want 3", got)
	}
	if n := h.clk.Pending(); n != 1 {
		t.Fatalf("%d timers pending, want the next check's", n)
	}
	if r := h.request(pid, &Pause{}).(*Reply); r.Err != nil {
		t.Fatal(r.Err)
	}
	h.idle(pid)
	if n := h.clk.Pending(); n != 0 {
		t.Fatalf("paused: %d timers pending, want none", n)
	}
}
