package actors

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// TestWaitingCheckStartsOnItsGrantOnly: a check that finds no free limiter
// slot waits (checking, no probe) and starts when a Release grants it the
// slot, through the grant message; stale grants start nothing: one of a
// check that is over while none runs, and, while a check waits, those of an
// earlier incarnation's checks, one of which has the waiting check's
// generation.
func TestWaitingCheckStartsOnItsGrantOnly(t *testing.T) {
	h := newHarnessWith(t, nil, func(e *Env) { e.Limiter = NewLimiter(1) })
	var calls atomic.Int64
	dones := make(chan *CheckDone, 8)
	// The test's ticket: asked for by check 2, so that the slot check 2
	// frees goes to the test, and the restarted incarnation's first check
	// (due at once) waits for it.
	var hold Ticket
	var holdGranted granterLog
	check := func(_ context.Context, done *CheckDone) {
		n := calls.Add(1)
		dones <- done
		if n == 2 {
			if h.env.Limiter.AcquireTicket(&hold, t0, &holdGranted) {
				t.Error("the test's ticket was granted while check 2 held the only slot")
			}
			panic("checker exploded") // the actor restarts
		}
		done.Done(ok)
	}
	pid := h.spawnSpec(ProxySpec{ID: "p1", Source: "default", URLRedacted: "http://127.0.0.1:1/p1",
		Settings: &CheckSettings{Health: noJitter(), Timeout: checkTimeout}, CheckAsync: AsyncCheckFunc(check)})
	h.step(pid) // check 1, granted at once
	first := <-dones

	h.sys.Root.Send(pid, (*slotGranted)(first))
	if st := h.state(pid); st.Checking || calls.Load() != 1 {
		t.Fatalf("a stale grant while idle: checking %v, %d checker calls; want false, 1", st.Checking, calls.Load())
	}

	h.clk.Set(h.idle(pid).NextCheckAt) // check 2 panics: the actor restarts
	poll(t, "the slot of check 2 granted to the test", func() bool { return len(holdGranted.tickets()) == 1 })
	second := <-dones
	poll(t, "the restarted incarnation's check waiting for a slot", func() bool {
		if st := h.state(pid); !st.Checking && !st.NextCheckAt.IsZero() {
			h.clk.Set(st.NextCheckAt)
		}
		return h.env.Limiter.Waiting() == 1
	})

	h.sys.Root.Send(pid, (*slotGranted)(first))
	h.sys.Root.Send(pid, (*slotGranted)(second))
	if st := h.state(pid); !st.Checking || calls.Load() != 2 || h.env.Limiter.Waiting() != 1 {
		t.Fatalf("stale grants while a check waits: checking %v, %d checker calls, %d waiting; want true, 2, 1", st.Checking, calls.Load(), h.env.Limiter.Waiting())
	}

	hold.Release() // grants the waiting check its slot
	poll(t, "the granted check", func() bool { return calls.Load() == 3 })
	third := <-dones
	if third.gen != first.gen {
		t.Fatalf("the restarted incarnation's check has generation %d, the first incarnation's stale grant %d: the test does not try a stale grant of the same generation", third.gen, first.gen)
	}
	if st := h.idle(pid); st.State.TotalChecks != 2 {
		t.Fatalf("%d checks recorded, want 2", st.State.TotalChecks)
	}
	if n := h.env.Limiter.InFlight(); n != 0 {
		t.Fatalf("%d limiter slots held", n)
	}
}

// TestWaitingChecksTakeFreedSlotsInDueOrder: with one slot, a proxy whose
// check runs on a pooled goroutine (Check) holds it; two others fall due
// meanwhile and wait; each freed slot goes to the earliest due, whose
// probe then runs.
func TestWaitingChecksTakeFreedSlotsInDueOrder(t *testing.T) {
	h := newHarnessWith(t, nil, func(e *Env) { e.Limiter = NewLimiter(1) })
	var mu sync.Mutex
	var order []string
	record := func(id string) {
		mu.Lock()
		order = append(order, id)
		mu.Unlock()
	}
	recorded := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(order)
	}
	release := make(chan struct{})
	defer func() {
		select {
		case <-release:
		default:
			close(release) // a failed test lets p1's check end
		}
	}()
	block := &script{}
	block.hook = func(_ context.Context, n int64) {
		if n == 2 {
			<-release
		}
	}
	sa, sb := &script{}, &script{}
	sa.hook = func(context.Context, int64) { record("a") }
	sb.hook = func(context.Context, int64) { record("b") }
	// Checked together first, then p1 falls due alone, a next, b last.
	cfg1, cfgA, cfgB := noJitter(), noJitter(), noJitter()
	cfg1.Interval /= 2
	cfgB.Interval *= 2
	// p1's check outlives a's and b's due times: no zombie deadline ends it.
	p1 := h.spawnSpec(ProxySpec{ID: "p1", Source: "default", URLRedacted: "http://127.0.0.1:1/p1",
		Settings: &CheckSettings{Health: cfg1, Timeout: time.Hour}, Check: block.check})
	pa := h.spawn("a", cfgA, sa)
	pb := h.spawn("b", cfgB, sb)
	h.clk.Set(h.idle(p1).NextCheckAt) // all three first checks
	for _, pid := range []*actor.PID{p1, pa, pb} {
		poll(t, "the first checks", func() bool { return h.idle(pid).State.TotalChecks == 1 })
	}
	due1, dueA, dueB := h.idle(p1).NextCheckAt, h.idle(pa).NextCheckAt, h.idle(pb).NextCheckAt
	if !due1.Before(dueA) || !dueA.Before(dueB) {
		t.Fatalf("due times p1 %v a %v b %v: want p1 < a < b", due1, dueA, dueB)
	}
	h.clk.Set(due1)
	poll(t, "p1's check holding the slot", func() bool { return block.calls.Load() == 2 })
	h.clk.Set(dueB) // a and b fall due; both wait
	poll(t, "a and b waiting", func() bool { return h.env.Limiter.Waiting() == 2 })
	if got := recorded(); len(got) != 2 {
		t.Fatalf("checks ran without a slot: %v after the first two", got)
	}
	close(release)
	poll(t, "a and b checked", func() bool { return len(recorded()) == 4 })
	h.idle(p1)
	h.idle(pa)
	h.idle(pb)
	if got := recorded()[2:]; !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("freed slots went to %v, want [a b] (due order)", got)
	}
	if n := h.env.Limiter.InFlight(); n != 0 {
		t.Fatalf("%d limiter slots held", n)
	}
}
