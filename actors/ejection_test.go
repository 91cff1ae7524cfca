package actors

import (
	"context"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/proxyhealth/proxyhealth/events"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

func passiveFailures(h *harness, pid *actor.PID, n int) {
	h.t.Helper()
	for range n {
		if r := h.request(pid, &Passive{Class: pb.FailureClass_FAILURE_CLASS_RESET}).(*Reply); r.Err != nil {
			h.t.Fatal(r.Err)
		}
	}
}

func countOf(envs []*pb.Envelope, name string) int {
	n := 0
	for _, e := range envs {
		if events.TypeName(e) == name {
			n++
		}
	}
	return n
}

// TestEjectionEndsOnItsTimer: three passive failures eject the proxy (a
// journaled ProxyEjected, a re-probe at once); it stays ejected through a
// passed check, and the actor's timer ends the ejection at its time with a
// ProxyReturned, freeing its slot of the budget.
func TestEjectionEndsOnItsTimer(t *testing.T) {
	h := newHarness(t, nil)
	h.env.Ejections = NewEjectionBudget(0.5)
	h.env.Ejections.SetTotal(4)
	pid := h.spawn("p1", noJitter(), &script{})
	h.step(pid)
	passiveFailures(h, pid, 3)
	st := h.idle(pid)
	if !st.State.Ejected() || countOf(h.stream("p1"), "proxy_ejected") != 1 {
		t.Fatalf("not ejected after 3 passive failures: %+v", st.State)
	}
	until := st.State.EjectedUntil
	if want := h.clk.Now().Add(30 * time.Second); !until.Equal(want) {
		t.Fatalf("ejected until %v, want %v", until, want)
	}
	if n, _ := h.env.Ejections.Ejected(); n != 1 {
		t.Fatalf("budget holds %d, want 1", n)
	}
	h.step(pid) // the immediate re-probe passes; still ejected
	if st := h.idle(pid); !st.State.Ejected() {
		t.Fatal("a passed check ended the ejection")
	}
	h.clk.Set(until.Add(-time.Millisecond))
	if st := h.idle(pid); !st.State.Ejected() {
		t.Fatal("returned before its time")
	}
	h.clk.Set(until)
	poll(t, "the proxy to return", func() bool { return !h.state(pid).State.Ejected() })
	if n := countOf(h.stream("p1"), "proxy_returned"); n != 1 {
		t.Fatalf("%d ProxyReturned journaled, want 1", n)
	}
	if n, _ := h.env.Ejections.Ejected(); n != 0 {
		t.Fatalf("budget still holds %d after the return", n)
	}
}

// TestTheMaximumEjectionShareHolds: with a budget of half of 4 proxies,
// the third proxy whose traffic fails is not ejected (its failures are
// journaled, it stays in rotation) until a slot frees.
func TestTheMaximumEjectionShareHolds(t *testing.T) {
	h := newHarness(t, nil)
	h.env.Ejections = NewEjectionBudget(0.5)
	h.env.Ejections.SetTotal(4)
	var pids []*actor.PID
	for _, id := range []string{"p1", "p2", "p3"} {
		pid := h.spawn(id, noJitter(), &script{})
		h.step(pid)
		pids = append(pids, pid)
	}
	for _, pid := range pids {
		passiveFailures(h, pid, 3)
		h.idle(pid)
	}
	ejected := 0
	for _, pid := range pids {
		if h.state(pid).State.Ejected() {
			ejected++
		}
	}
	if ejected != 2 || countOf(h.stream("p3"), "proxy_ejected") != 0 || countOf(h.stream("p3"), "passive_failure") != 3 {
		t.Fatalf("%d ejected (want 2); p3's stream: %d ejections, %d passive failures", ejected, countOf(h.stream("p3"), "proxy_ejected"), countOf(h.stream("p3"), "passive_failure"))
	}
	// p1 returns (meanwhile p3's re-probe passed, ending its streak); p3
	// may now be ejected.
	h.clk.Set(h.state(pids[0]).State.EjectedUntil)
	poll(t, "p1 to return", func() bool { return !h.state(pids[0]).State.Ejected() })
	h.idle(pids[2])
	passiveFailures(h, pids[2], 3)
	if st := h.idle(pids[2]); !st.State.Ejected() {
		t.Fatalf("p3 not ejected once a slot freed: %+v", st.State)
	}
}

// TestAnEjectionSurvivesARestart: an actor restarted while its proxy is
// ejected recovers the ejection from the journal, holds its budget slot
// (what is journaled stands) and still ends it on time.
func TestAnEjectionSurvivesARestart(t *testing.T) {
	h := newHarness(t, nil)
	h.env.Ejections = NewEjectionBudget(0.5)
	h.env.Ejections.SetTotal(2)
	s := &script{}
	pid := h.spawn("p1", noJitter(), s)
	h.step(pid)
	passiveFailures(h, pid, 3)
	until := h.idle(pid).State.EjectedUntil
	// A panicking probe restarts the actor (the supervisor); the budget is
	// emptied behind its back to see it taken again on recovery.
	h.env.Ejections.Release("p1")
	s.hook = func(_ context.Context, n int64) {
		if n == 2 {
			panic("probe bug")
		}
	}
	h.clk.Set(h.idle(pid).NextCheckAt)
	poll(t, "the restarted actor to hold its slot", func() bool { n, _ := h.env.Ejections.Ejected(); return n == 1 })
	if st := h.idle(pid); !st.State.Ejected() || !st.State.EjectedUntil.Equal(until) {
		t.Fatalf("after the restart: ejected=%v until %v, want until %v", st.State.Ejected(), st.State.EjectedUntil, until)
	}
	h.clk.Set(until)
	poll(t, "the proxy to return after the restart", func() bool { return !h.state(pid).State.Ejected() })
}
