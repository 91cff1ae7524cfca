package actors

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/proxyhealth/proxyhealth/events"
)

// TestTimerStartsTheCheck: the check timer starts the probe itself, on the
// timer's goroutine (here inside the fake clock's Set), instead of sending
// the actor a message whose mailbox run would start it: one mailbox
// hand-off fewer per check. The actor hears only of the result, and the
// check is journaled as before. With one P, the mailbox cannot run before
// Set returns, so a probe started through the mailbox is not started yet.
func TestTimerStartsTheCheck(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	h := newHarness(t, nil)
	var inSet, startedInSet atomic.Bool
	var calls atomic.Int64
	pid := h.spawnSpec(ProxySpec{ID: "p1", Source: "default", URLRedacted: "http://127.0.0.1:1/p1", Health: noJitter(), Timeout: checkTimeout,
		CheckAsync: func(ctx context.Context, done func(events.CheckResult)) {
			calls.Add(1)
			if inSet.Load() {
				startedInSet.Store(true)
			}
			go done(ok)
		}})
	for i := range 3 {
		st := h.idle(pid)
		if st.NextCheckAt.IsZero() {
			t.Fatalf("check %d: none scheduled", i+1)
		}
		inSet.Store(true)
		h.clk.Set(st.NextCheckAt)
		inSet.Store(false)
		if !startedInSet.Load() {
			t.Fatalf("check %d: the probe had not started when the timer's Set returned (%d probes so far): the timer only messaged the actor", i+1, calls.Load())
		}
		startedInSet.Store(false)
		poll(t, "check journaled", func() bool { return h.state(pid).State.TotalChecks == uint64(i+1) })
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("%d probes, want 3", n)
	}
}

// TestWithdrawnRunNeverStarts: a command that changes the schedule while a
// check's timer is armed takes the armed run back (here Pause): once the
// command is answered, the old timer's due time passes without a probe.
func TestWithdrawnRunNeverStarts(t *testing.T) {
	h := newHarness(t, nil)
	var calls atomic.Int64
	pid := h.spawnSpec(ProxySpec{ID: "p1", Source: "default", URLRedacted: "http://127.0.0.1:1/p1", Health: noJitter(), Timeout: checkTimeout,
		CheckAsync: func(ctx context.Context, done func(events.CheckResult)) { calls.Add(1); go done(ok) }})
	h.step(pid)
	st := h.idle(pid)
	due := st.NextCheckAt
	if r := h.request(pid, &Pause{Reason: "test"}).(*Reply); r.Err != nil {
		t.Fatal(r.Err)
	}
	n := calls.Load()
	h.clk.Set(due.Add(checkTimeout))
	if st := h.idle(pid); st.Checking || calls.Load() != n || st.State.TotalChecks != 1 {
		t.Fatalf("after Pause the armed check ran: %d probes (want %d), checking %v, %d checks journaled", calls.Load(), n, st.Checking, st.State.TotalChecks)
	}
}

// TestArmedRunIsSmall: every proxy holds its armed run between checks (10
// s apart by default), so it stays small: what a started check needs is
// allocated when it starts (flight). 48 bytes a proxy, where the timer's
// message closure it replaces was 32.
func TestArmedRunIsSmall(t *testing.T) {
	if n := unsafe.Sizeof(checkRun{}); n > 48 {
		t.Fatalf("checkRun is %d bytes, want at most 48: 10,000 proxies hold one each", n)
	}
}
