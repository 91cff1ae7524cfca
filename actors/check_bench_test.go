package actors

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/clock"
	"github.com/proxyhealth/proxyhealth/journal"
)

// dueTracker hands the actor's next due times (not the zeros it reports
// while checking) to the benchmark, which takes each before the next can
// come; it never blocks the actor.
type dueTracker struct{ due chan time.Time }

func (t dueTracker) SetChecking(bool) {}
func (t dueTracker) SetNextCheck(due time.Time) {
	if !due.IsZero() {
		select {
		case t.due <- due:
		default:
		}
	}
}
func (t dueTracker) Release() {}

// BenchmarkAsyncCheck runs one proxy's checks through its actor with a
// CheckAsync that completes at once, on the fake clock: each op fires the
// check timer and waits for the next check to be scheduled, so it covers
// the whole check cycle (timer, limiter, probe start and completion, the
// CheckCompleted append to an in-memory journal, the next arming). Its
// allocs/op are the per-check allocations of the actor's async path.
func BenchmarkAsyncCheck(b *testing.B) {
	clk := clock.NewFake(t0)
	j := journal.NewMem()
	tr := dueTracker{due: make(chan time.Time, 1)}
	env := &Env{Journal: j, Clock: clk, Limiter: NewLimiter(10), Track: func(string) Tracker { return tr }}
	if err := env.Init(); err != nil {
		b.Fatal(err)
	}
	sys := quietSystem()
	strategy := DefaultRestartBackoff(nil)
	src := sys.Root.Spawn(SourceProps(env, "default", strategy))
	defer func() {
		env.CancelChecks()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := env.Wait(ctx); err != nil {
			b.Errorf("wait for actor goroutines: %v", err)
		}
		_ = sys.Root.PoisonFuture(src).Wait()
		_ = j.Close()
		sys.Shutdown()
		env.Close()
	}()
	spec := ProxySpec{ID: "p1", Source: "default", URLRedacted: "http://127.0.0.1:1/p1",
		Settings:   &CheckSettings{Health: noJitter(), Timeout: checkTimeout},
		CheckAsync: AsyncCheckFunc(func(_ context.Context, done *CheckDone) { done.Done(ok) })}
	res, err := sys.Root.RequestFuture(src, &SpawnProxy{Spec: &spec}, 5*time.Second).Result()
	if err != nil {
		b.Fatal(err)
	}
	if sp := res.(*Spawned); sp.Err != nil {
		b.Fatal(sp.Err)
	}
	// wait returns the next check's due time once its timer is armed
	// (the actor reports it just before arming it). Its own timer is
	// reused, so that the benchmark allocates nothing per op itself.
	timeout := time.NewTimer(time.Hour)
	defer timeout.Stop()
	wait := func() time.Time {
		var due time.Time
		timeout.Reset(10 * time.Second)
		select {
		case due = <-tr.due:
		case <-timeout.C:
			b.Fatal("no check scheduled within 10s")
		}
		for deadline := time.Now().Add(10 * time.Second); ; runtime.Gosched() {
			if at, ok := clk.NextDue(); ok && at.Equal(due) {
				return due
			}
			if time.Now().After(deadline) {
				b.Fatal("the next check's timer was not armed within 10s")
			}
		}
	}
	due := wait()
	for range 200 { // settle: healthy, snapshots taken, buffers grown
		clk.Set(due)
		due = wait()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		clk.Set(due)
		due = wait()
	}
}
