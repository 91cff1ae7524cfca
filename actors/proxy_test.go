package actors

import (
	"context"
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/journal"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// The dead-letter throttle goroutine is protoactor's own: it lives for the
// throttle interval (1 s) after a message reaches a stopped actor, which
// TestRemoveStopsTheActorAndRejectsLaterCommands does on purpose
// (../shared/notes/protoactor-go.md §5).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"))
}

func TestDeadProxyBecomesUnhealthyInExactlyThresholdChecks(t *testing.T) {
	for _, threshold := range []uint32{1, 3, 5} {
		t.Run("threshold="+string(rune('0'+threshold)), func(t *testing.T) {
			h := newHarness(t, nil)
			cfg := noJitter()
			cfg.UnhealthyThreshold = threshold
			s := &script{}
			pid := h.spawn("p1", cfg, s)
			h.step(pid)
			if st := h.idle(pid); st.State.Health != pb.HealthState_HEALTH_STATE_HEALTHY {
				t.Fatalf("after first success: %s", events.StateName(st.State.Health))
			}
			s.set(fail)
			for i := uint32(1); i <= threshold; i++ {
				h.step(pid)
				st := h.idle(pid)
				want := pb.HealthState_HEALTH_STATE_DEGRADED
				if i == threshold {
					want = pb.HealthState_HEALTH_STATE_UNHEALTHY
				}
				if st.State.Health != want {
					t.Fatalf("after %d failures: %s, want %s", i, events.StateName(st.State.Health), events.StateName(want))
				}
			}
			want := []string{"unknown>healthy", "healthy>degraded", "degraded>unhealthy"}
			if threshold == 1 {
				want = []string{"unknown>healthy", "healthy>unhealthy"}
			}
			if got := transitions(h.stream("p1")); !reflect.DeepEqual(got, want) {
				t.Fatalf("transitions %v, want %v", got, want)
			}
			if got := s.calls.Load(); got != int64(threshold)+1 {
				t.Fatalf("%d checks, want %d", got, threshold+1)
			}
		})
	}
}

func TestBackoffFollowsCooldownDoublingCappedAndFailsAfterMaxAttempts(t *testing.T) {
	h := newHarness(t, nil)
	cfg := noJitter()
	cfg.MaxRecoveryAttempts = 7
	s := &script{results: []events.CheckResult{fail}}
	pid := h.spawn("p1", cfg, s)
	var times []time.Time
	for range 3 { // unknown → degraded → degraded → unhealthy
		times = append(times, h.step(pid))
	}
	if st := h.idle(pid); st.State.Health != pb.HealthState_HEALTH_STATE_UNHEALTHY {
		t.Fatalf("state %s", events.StateName(st.State.Health))
	}
	for range 7 {
		times = append(times, h.step(pid))
	}
	var gaps []time.Duration
	for i := 3; i < len(times); i++ {
		gaps = append(gaps, times[i].Sub(times[i-1]))
	}
	want := []time.Duration{60 * time.Second, 120 * time.Second, 240 * time.Second, 480 * time.Second, 960 * time.Second, 1920 * time.Second, time.Hour}
	if !reflect.DeepEqual(gaps, want) {
		t.Fatalf("recovery gaps %v, want %v", gaps, want)
	}
	st := h.idle(pid)
	if st.State.Health != pb.HealthState_HEALTH_STATE_FAILED || st.State.RecoveryAttempt != 7 {
		t.Fatalf("after 7 failed recoveries: %s attempt %d", events.StateName(st.State.Health), st.State.RecoveryAttempt)
	}
	if !st.NextCheckAt.IsZero() {
		t.Fatalf("failed proxy still scheduled at %v", st.NextCheckAt)
	}
	calls := s.calls.Load()
	h.clk.Advance(48 * time.Hour)
	h.idle(pid)
	if s.calls.Load() != calls {
		t.Fatal("a failed proxy was checked")
	}

	// Revive brings it back: unknown, checked at once, healthy on success.
	s.set(ok)
	if r := h.request(pid, &Revive{Reason: "test"}).(*Reply); r.Err != nil {
		t.Fatal(r.Err)
	}
	h.step(pid)
	if st := h.idle(pid); st.State.Health != pb.HealthState_HEALTH_STATE_HEALTHY || st.State.RecoveryAttempt != 0 {
		t.Fatalf("after revive: %s attempt %d", events.StateName(st.State.Health), st.State.RecoveryAttempt)
	}
}

func TestRecoveringProxyComesBack(t *testing.T) {
	h := newHarness(t, nil)
	cfg := noJitter()
	s := &script{results: []events.CheckResult{ok, fail, fail, fail, fail, ok, ok}}
	pid := h.spawn("p1", cfg, s)
	for range 7 {
		h.step(pid)
	}
	st := h.idle(pid)
	if st.State.Health != pb.HealthState_HEALTH_STATE_HEALTHY || st.State.RecoveryAttempt != 0 {
		t.Fatalf("state %s attempt %d", events.StateName(st.State.Health), st.State.RecoveryAttempt)
	}
	want := []string{"unknown>healthy", "healthy>degraded", "degraded>unhealthy",
		"unhealthy>recovering", "recovering>unhealthy", "unhealthy>recovering", "recovering>healthy"}
	if got := transitions(h.stream("p1")); !reflect.DeepEqual(got, want) {
		t.Fatalf("transitions\n got %v\nwant %v", got, want)
	}
}

// A proxy failing 5 % of its checks at random must almost never be marked
// unhealthy: over 10,000 checks, less than 1 % of them may find it so.
func TestFlakyProxyStaysOutOfUnhealthy(t *testing.T) {
	testutil.Long(t, "this test runs 10,000 checks through the actor (about 10 s)")
	h := newHarness(t, nil)
	rng := rand.New(rand.NewPCG(42, 6))
	s := &script{}
	var mu sync.Mutex
	s.hook = func(context.Context, int64) {
		mu.Lock()
		defer mu.Unlock()
		if rng.Float64() < 0.05 {
			s.set(fail)
		} else {
			s.set(ok)
		}
	}
	pid := h.spawn("flaky", events.DefaultConfig(), s)
	const checks = 10_000
	unhealthy := 0
	for range checks {
		h.step(pid)
		switch h.idle(pid).State.Health {
		case pb.HealthState_HEALTH_STATE_UNHEALTHY, pb.HealthState_HEALTH_STATE_RECOVERING, pb.HealthState_HEALTH_STATE_FAILED:
			unhealthy++
		}
	}
	rate := float64(unhealthy) / checks
	t.Logf("%d checks, %d found the proxy unhealthy/recovering (%.3f %%)", checks, unhealthy, rate*100)
	if rate >= 0.01 {
		t.Fatalf("false-positive rate %.3f %% ≥ 1 %%", rate*100)
	}
}

func TestPanickingProbeIsRestartedAndStateSurvives(t *testing.T) {
	h := newHarness(t, nil)
	cfg := noJitter()
	s := &script{results: []events.CheckResult{ok, fail}}
	pid := h.spawn("p1", cfg, s)
	h.step(pid)
	h.step(pid)
	before := h.idle(pid).State
	if before.Health != pb.HealthState_HEALTH_STATE_DEGRADED {
		t.Fatalf("state %s", events.StateName(before.Health))
	}
	s.hook = func(_ context.Context, n int64) {
		if n == 3 {
			panic("probe exploded")
		}
	}
	// Fire the timer: the probe panics, the supervisor restarts the actor,
	// which recovers from the journal and checks again.
	st := h.idle(pid)
	h.clk.Set(st.NextCheckAt)
	poll(t, "restart and re-check", func() bool { return s.calls.Load() >= 3 })
	after := h.idle(pid).State
	// The panicking check left no trace: the state is the fold of the
	// journal, and every check recorded since ran after the restart (the
	// restarted actor's check is due at once, so it may already have run
	// within the same clock move).
	if full := events.Fold(events.NewState("p1"), h.stream("p1")...); !reflect.DeepEqual(after, full) {
		t.Fatalf("state after restart %+v\nfold of the journal %+v", after, full)
	}
	if extra := uint64(s.calls.Load() - 3); after.TotalChecks != before.TotalChecks+extra {
		t.Fatalf("state after restart %+v\nbefore %+v (%d checks since the restart)", after, before, extra)
	}
	h.step(pid) // the next check runs normally
	if got := h.idle(pid).State.TotalChecks; got != after.TotalChecks+1 {
		t.Fatalf("total checks %d, want %d", got, after.TotalChecks+1)
	}
}

// TestRestartKeepsTheReconfiguredSpec: an actor restarted by its
// supervisor after a hot reload checks with the new spec (its check
// function and config), not with the one it was first spawned with.
func TestRestartKeepsTheReconfiguredSpec(t *testing.T) {
	h := newHarness(t, nil)
	cfg := noJitter()
	old := &script{}
	pid := h.spawn("p1", cfg, old)
	h.step(pid)

	cfg2 := noJitter()
	cfg2.Interval = 3 * cfg.Interval
	repl := &script{}
	repl.hook = func(_ context.Context, n int64) {
		if n == 1 {
			panic("probe exploded")
		}
	}
	spec := ProxySpec{ID: "p1", Source: "default", URLRedacted: "http://127.0.0.1:1/p1", Settings: &CheckSettings{Health: cfg2, Timeout: checkTimeout}, Check: repl.check}
	if r := h.request(pid, &Reconfigure{Spec: &spec}).(*Reply); r.Err != nil {
		t.Fatal(r.Err)
	}
	oldCalls := old.calls.Load()
	checksBefore := h.idle(pid).State.TotalChecks
	// The next check panics and the supervisor restarts the actor; its
	// next checks use the new check function and interval.
	h.clk.Set(h.idle(pid).NextCheckAt)
	poll(t, "the panicking check", func() bool { return repl.calls.Load() >= 1 })
	first := h.step(pid)
	second := h.step(pid)
	if got := second.Sub(first); got != cfg2.Interval {
		t.Errorf("interval after the restart %v, want the reconfigured %v", got, cfg2.Interval)
	}
	// Every check recorded since the reconfigure ran the new function, and
	// one more call panicked. (How many checks that is depends on whether
	// the restarted actor's check, due at once, fires within the clock
	// move that ran the panicking one or at the next.)
	recorded := h.idle(pid).State.TotalChecks - checksBefore
	if n := repl.calls.Load(); recorded < 2 || n != int64(recorded)+1 {
		t.Errorf("the new check function ran %d times for %d recorded checks, want one more (the panic)", n, recorded)
	}
	if n := old.calls.Load(); n != oldCalls {
		t.Errorf("the old check function ran %d more times after the reconfigure", n-oldCalls)
	}
}

func TestPauseStopsChecksAndResumeRestartsThem(t *testing.T) {
	h := newHarness(t, nil)
	s := &script{}
	pid := h.spawn("p1", noJitter(), s)
	h.step(pid)
	if r := h.request(pid, &Pause{Reason: "maintenance"}).(*Reply); r.Err != nil || r.Events != 1 {
		t.Fatalf("pause: %+v", r)
	}
	if r := h.request(pid, &Pause{}).(*Reply); r.Err != nil || r.Events != 0 {
		t.Fatalf("second pause should be a no-op: %+v", r)
	}
	st := h.idle(pid)
	if !st.State.Paused || !st.NextCheckAt.IsZero() {
		t.Fatalf("paused %v next %v", st.State.Paused, st.NextCheckAt)
	}
	calls := s.calls.Load()
	h.clk.Advance(time.Hour)
	h.idle(pid)
	if s.calls.Load() != calls {
		t.Fatal("paused proxy was checked")
	}
	if r := h.request(pid, &Resume{}).(*Reply); r.Err != nil || r.Events != 1 {
		t.Fatalf("resume: %+v", r)
	}
	// Overdue after an hour: checked at once.
	st = h.idle(pid)
	if !st.NextCheckAt.Equal(h.clk.Now()) {
		t.Fatalf("next check %v, want now %v", st.NextCheckAt, h.clk.Now())
	}
	h.step(pid)
	if s.calls.Load() != calls+1 {
		t.Fatalf("calls %d, want %d", s.calls.Load(), calls+1)
	}
}

// blockingJournal holds appends until released, to observe the actor while
// an append is in flight.
type blockingJournal struct {
	journal.Journal
	gate chan struct{}
	hold bool
	mu   sync.Mutex
}

func (b *blockingJournal) Append(ctx context.Context, envs []*pb.Envelope) ([]uint64, error) {
	b.mu.Lock()
	hold := b.hold
	b.mu.Unlock()
	if hold {
		<-b.gate
	}
	return b.Journal.Append(ctx, envs)
}

func TestQueriesAnsweredWhileAppendInFlightAndCommandsDecidedInOrder(t *testing.T) {
	bj := &blockingJournal{Journal: journal.NewMem(), gate: make(chan struct{})}
	h := newHarness(t, bj)
	s := &script{}
	pid := h.spawn("p1", noJitter(), s)
	h.step(pid)

	bj.mu.Lock()
	bj.hold = true
	bj.mu.Unlock()
	pause := h.sys.Root.RequestFuture(pid, &Pause{Reason: "1"}, 5*time.Second)
	resume := h.sys.Root.RequestFuture(pid, &Resume{Reason: "2"}, 5*time.Second)
	pause2 := h.sys.Root.RequestFuture(pid, &Pause{Reason: "3"}, 5*time.Second)
	// The mailbox still answers queries, with the last committed state.
	poll(t, "append in flight", func() bool { return h.state(pid).Busy })
	if st := h.state(pid); st.State.Paused {
		t.Fatal("pause applied before its commit")
	}
	bj.mu.Lock()
	bj.hold = false
	bj.mu.Unlock()
	close(bj.gate)
	for _, f := range []interface{ Result() (any, error) }{pause, resume, pause2} {
		res, err := f.Result()
		if err != nil || res.(*Reply).Err != nil || res.(*Reply).Events != 1 {
			t.Fatalf("reply %v %v", res, err)
		}
	}
	var reasons []string
	for _, e := range h.stream("p1") {
		if p := e.GetProxyPaused(); p != nil {
			reasons = append(reasons, "pause:"+p.GetReason())
		}
		if r := e.GetProxyResumed(); r != nil {
			reasons = append(reasons, "resume:"+r.GetReason())
		}
	}
	if want := []string{"pause:1", "resume:2", "pause:3"}; !slices.Equal(reasons, want) {
		t.Fatalf("journal order %v, want %v", reasons, want)
	}
}

func TestZombieCheckIsCancelledAndRecordedAsTimeout(t *testing.T) {
	h := newHarness(t, nil)
	cfg := noJitter()
	release := make(chan struct{})
	s := &script{}
	s.hook = func(ctx context.Context, n int64) {
		if n == 2 {
			<-release // ignores ctx: a misbehaving prober
		}
	}
	pid := h.spawn("p1", cfg, s)
	h.step(pid)
	st := h.idle(pid)
	h.clk.Set(st.NextCheckAt)
	poll(t, "check in flight", func() bool { return s.calls.Load() == 2 })
	if h.env.Limiter.InFlight() != 1 {
		t.Fatalf("in flight %d", h.env.Limiter.InFlight())
	}
	h.clk.Advance(2 * checkTimeout)
	st = h.idle(pid)
	if st.State.LastErrorClass != pb.FailureClass_FAILURE_CLASS_TIMEOUT || !strings.Contains(st.State.LastError, "twice its timeout") {
		t.Fatalf("last error %v %q", st.State.LastErrorClass, st.State.LastError)
	}
	if h.env.Limiter.InFlight() != 0 {
		t.Fatal("zombie kept its limiter slot")
	}
	close(release)
	h.step(pid) // the late result was ignored; checks go on
	if got := h.idle(pid).State.TotalChecks; got != 3 {
		t.Fatalf("total checks %d, want 3", got)
	}
}

func TestRecoveryFromSnapshotAndStreamEqualsLiveState(t *testing.T) {
	j := journal.NewMem()
	h := newHarness(t, j)
	h.env.SnapshotEvery = 5
	s := &script{results: []events.CheckResult{ok, fail, ok, ok, fail, fail, fail, fail, ok, fail}}
	pid := h.spawn("p1", noJitter(), s)
	for range 10 {
		h.step(pid)
	}
	live := h.idle(pid).State
	snap, err := j.LoadSnapshot(context.Background(), "p1")
	if err != nil {
		t.Fatalf("no snapshot after %d events: %v", live.StreamSeq, err)
	}
	if snap.GetStreamSeq() == 0 || snap.GetStreamSeq() > live.StreamSeq {
		t.Fatalf("snapshot at %d, live at %d", snap.GetStreamSeq(), live.StreamSeq)
	}
	// Stop the actor and start a new one under the same name: it recovers.
	if err := h.sys.Root.StopFuture(pid).Wait(); err != nil {
		t.Fatal(err)
	}
	pid2 := h.spawn("p1", noJitter(), s)
	got := h.idle(pid2).State
	if !reflect.DeepEqual(got, live) {
		t.Fatalf("recovered\n%+v\nlive\n%+v", got, live)
	}
	full := events.Fold(events.NewState("p1"), h.stream("p1")...)
	if !reflect.DeepEqual(full, live) {
		t.Fatalf("fold of the stream\n%+v\nlive\n%+v", full, live)
	}
}

func TestRemoveStopsTheActorAndRejectsLaterCommands(t *testing.T) {
	h := newHarness(t, nil)
	s := &script{}
	pid := h.spawn("p1", noJitter(), s)
	h.step(pid)
	if r := h.request(pid, &Remove{Reason: "gone"}).(*Reply); r.Err != nil {
		t.Fatal(r.Err)
	}
	_, err := h.sys.Root.RequestFuture(pid, &GetState{}, 200*time.Millisecond).Result()
	if err == nil {
		t.Fatal("removed actor still answers")
	}
	envs := h.stream("p1")
	if envs[len(envs)-1].GetProxyRemoved() == nil {
		t.Fatalf("last event %s", events.TypeName(envs[len(envs)-1]))
	}
	// Re-adding the same proxy continues its stream.
	pid = h.spawn("p1", noJitter(), s)
	if st := h.idle(pid).State; st.Removed || st.Health != pb.HealthState_HEALTH_STATE_UNKNOWN {
		t.Fatalf("re-added state %+v", st)
	}
}

func TestPassiveFailuresTriggerImmediateReprobe(t *testing.T) {
	h := newHarness(t, nil)
	s := &script{}
	pid := h.spawn("p1", noJitter(), s)
	h.step(pid)
	st := h.idle(pid)
	due := st.NextCheckAt
	for i := range 3 {
		if r := h.request(pid, &Passive{Class: pb.FailureClass_FAILURE_CLASS_TIMEOUT}).(*Reply); r.Err != nil {
			t.Fatal(r.Err)
		}
		st = h.idle(pid)
		if i < 2 && !st.NextCheckAt.Equal(due) {
			t.Fatalf("after %d passive failures next check moved to %v", i+1, st.NextCheckAt)
		}
	}
	if !st.NextCheckAt.Equal(h.clk.Now()) {
		t.Fatalf("after 3 passive failures next check %v, want now", st.NextCheckAt)
	}
	h.step(pid)
	if st := h.idle(pid); st.State.PassiveFailures != 0 || st.NextCheckAt.Equal(h.clk.Now()) {
		t.Fatalf("after re-probe passive=%d next=%v", st.State.PassiveFailures, st.NextCheckAt)
	}
}

type failingJournal struct {
	journal.Journal
	mu   sync.Mutex
	fail int
}

func (f *failingJournal) Append(ctx context.Context, envs []*pb.Envelope) ([]uint64, error) {
	f.mu.Lock()
	if f.fail > 0 {
		f.fail--
		f.mu.Unlock()
		return nil, errors.New("disk full")
	}
	f.mu.Unlock()
	return f.Journal.Append(ctx, envs)
}

// TestFailedAppendLeavesNoTraceAndChecksGoOn: an append the journal
// refuses changes nothing (the state stays the fold of the journal), and
// the next check follows after the backoff.
func TestFailedAppendLeavesNoTraceAndChecksGoOn(t *testing.T) {
	fj := &failingJournal{Journal: journal.NewMem()}
	h := newHarness(t, fj)
	s := &script{}
	pid := h.spawn("p1", noJitter(), s)
	h.step(pid)
	before := h.idle(pid).State
	fj.mu.Lock()
	fj.fail = 1
	fj.mu.Unlock()
	st := h.idle(pid)
	h.clk.Set(st.NextCheckAt)
	poll(t, "failed append", func() bool {
		fj.mu.Lock()
		defer fj.mu.Unlock()
		return fj.fail == 0
	})
	after := h.idle(pid).State
	if full := events.Fold(events.NewState("p1"), h.stream("p1")...); !reflect.DeepEqual(after, full) {
		t.Fatalf("actor state\n%+v\nfold of the journal\n%+v", after, full)
	}
	if after.TotalChecks != before.TotalChecks {
		t.Fatalf("a check whose result was not journaled was applied: %d checks, want %d", after.TotalChecks, before.TotalChecks)
	}
	h.step(pid)
	if got := h.idle(pid).State.TotalChecks; got <= before.TotalChecks {
		t.Fatalf("no check recorded after the journal came back: %d", got)
	}
}

// TestJournalOutageNeverStopsChecks is the regression test of a disk-full
// episode that stopped most proxy actors for good: every failed append
// restarted the actor, and more than 10 failures a minute made the
// supervisor stop it. Now the actor keeps checking through any number of
// failures, with the backoff capped at the check interval, and records
// results again at its next check once the journal takes writes.
func TestJournalOutageNeverStopsChecks(t *testing.T) {
	fj := &failingJournal{Journal: journal.NewMem()}
	h := newHarness(t, fj)
	s := &script{}
	cfg := noJitter()
	pid := h.spawn("p1", cfg, s)
	h.step(pid)
	recorded := h.idle(pid).State.TotalChecks
	const failures = 25 // well past the supervisor's 10 restarts a minute
	fj.mu.Lock()
	fj.fail = failures
	fj.mu.Unlock()
	var last time.Time
	for i := 0; ; i++ {
		st := h.idle(pid)
		fj.mu.Lock()
		left := fj.fail
		fj.mu.Unlock()
		if left == 0 {
			break
		}
		if i > 4*failures {
			t.Fatalf("only %d of %d failing appends were attempted", failures-left, failures)
		}
		if st.Stopped || st.NextCheckAt.IsZero() {
			t.Fatalf("after %d failed appends the actor stopped checking (stopped %v, next %v)", failures-left, st.Stopped, st.NextCheckAt)
		}
		if !last.IsZero() {
			if gap := st.NextCheckAt.Sub(last); gap > cfg.Interval {
				t.Fatalf("retry gap %v is longer than the check interval %v", gap, cfg.Interval)
			}
		}
		last = st.NextCheckAt
		h.clk.Set(st.NextCheckAt)
	}
	st := h.idle(pid)
	if st.State.TotalChecks != recorded {
		t.Fatalf("results that were never journaled were applied: %d checks, want %d", st.State.TotalChecks, recorded)
	}
	if st.Stopped || st.NextCheckAt.IsZero() || st.NextCheckAt.Sub(h.clk.Now()) > cfg.Interval {
		t.Fatalf("after the outage: stopped %v, next check %v (now %v)", st.Stopped, st.NextCheckAt, h.clk.Now())
	}
	h.step(pid)
	if got := h.idle(pid).State.TotalChecks; got != recorded+1 {
		t.Fatalf("checks recorded after the outage: %d, want %d", got, recorded+1)
	}
	if full := events.Fold(events.NewState("p1"), h.stream("p1")...); !reflect.DeepEqual(h.idle(pid).State, full) {
		t.Fatalf("actor state differs from the fold of the journal")
	}
}

// TestFailedAddIsNotAppliedLater: a proxy whose ProxyAdded the journal
// refused stops and is never added behind the requester's back (an error
// answer means "not applied"; before, the restarted actor journaled the
// add again after the caller had been told it failed).
func TestFailedAddIsNotAppliedLater(t *testing.T) {
	fj := &failingJournal{Journal: journal.NewMem(), fail: 1}
	h := newHarness(t, fj)
	var abandoned atomic.Pointer[string]
	h.env.Abandoned = func(id string, _ *actor.PID) { abandoned.Store(&id) }
	spec := ProxySpec{ID: "p1", Source: "default", URLRedacted: "http://127.0.0.1:1/p1", Settings: &CheckSettings{Health: noJitter(), Timeout: time.Second}, Check: (&script{}).check}
	res := h.request(h.src, &SpawnProxy{Spec: &spec}).(*Spawned)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	r, err := h.sys.Root.RequestFuture(res.PID, &Sync{}, 5*time.Second).Result()
	if err == nil {
		if rep := r.(*Reply); !errors.Is(rep.Err, ErrJournalFailing) {
			t.Fatalf("sync after a refused ProxyAdded: %v, want ErrJournalFailing", rep.Err)
		}
	}
	poll(t, "the proxy reported as abandoned", func() bool { p := abandoned.Load(); return p != nil && *p == "p1" })
	poll(t, "the actor stopped", func() bool {
		_, alive := h.sys.ProcessRegistry.GetLocal(res.PID.GetId())
		return !alive
	})
	h.clk.Advance(time.Hour)
	if got := h.stream("p1"); len(got) != 0 {
		t.Fatalf("the refused add was journaled later: %v", got)
	}
}

func TestAppendRetryDelayDoublesUpToTheInterval(t *testing.T) {
	cfg := events.DefaultConfig() // suspect 1 s, interval 30 s
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for i, w := range want {
		if got := appendRetryDelay(cfg, i+1, 0); got != w {
			t.Errorf("failure %d: %v, want %v", i+1, got, w)
		}
		if got := appendRetryDelay(cfg, i+1, 0.999999); got < w*9/10 || got > w {
			t.Errorf("failure %d: jittered delay %v outside [90 %%, 100 %%] of %v", i+1, got, w)
		}
	}
}

// TestSpecRegistryKeepsAMovedProxysSpec: the late end of a proxy's actor in
// its old source does not drop the spec it was registered with in its new
// one.
func TestSpecRegistryKeepsAMovedProxysSpec(t *testing.T) {
	var r specRegistry
	r.put(&ProxySpec{ID: "p1", Source: "a"})
	r.put(&ProxySpec{ID: "p1", Source: "b"}) // moved: removed from a, added to b
	r.delete("p1", "a")                      // a's Terminated arrives late
	if s, ok := r.get("p1"); !ok || s.Source != "b" {
		t.Fatalf("spec after the old source's delete: %+v, %v", s, ok)
	}
	r.delete("p1", "b")
	if _, ok := r.get("p1"); ok {
		t.Fatal("spec still registered after its own source dropped it")
	}
}

// TestAsyncChecksFollowTheSameStory: a proxy checked through CheckAsync
// (no pooled goroutine per check) goes through the same transitions as one
// checked through Check, and a check that never answers is still a zombie:
// recorded as a timeout, its slot freed, its late answer ignored.
func TestAsyncChecksFollowTheSameStory(t *testing.T) {
	h := newHarness(t, nil)
	cfg := noJitter()
	cfg.UnhealthyThreshold = 2
	s := &script{}
	pid := h.spawnAsync("p1", cfg, s)
	h.step(pid)
	s.set(fail)
	h.step(pid)
	h.step(pid)
	if want, got := []string{"unknown>healthy", "healthy>degraded", "degraded>unhealthy"}, transitions(h.stream("p1")); !reflect.DeepEqual(got, want) {
		t.Fatalf("transitions %v, want %v", got, want)
	}
	if got := s.calls.Load(); got != 3 {
		t.Fatalf("%d checks, want 3", got)
	}

	release := make(chan struct{})
	z := &script{}
	z.hook = func(ctx context.Context, n int64) {
		if n == 2 {
			<-release // ignores ctx: a misbehaving checker
		}
	}
	zp := h.spawnAsync("p2", noJitter(), z)
	h.step(zp)
	h.clk.Set(h.idle(zp).NextCheckAt)
	poll(t, "check in flight", func() bool { return z.calls.Load() == 2 })
	h.clk.Advance(2 * checkTimeout)
	st := h.idle(zp)
	if st.State.LastErrorClass != pb.FailureClass_FAILURE_CLASS_TIMEOUT || !strings.Contains(st.State.LastError, "twice its timeout") {
		t.Fatalf("last error %v %q", st.State.LastErrorClass, st.State.LastError)
	}
	if h.env.Limiter.InFlight() != 0 {
		t.Fatal("zombie kept its limiter slot")
	}
	close(release)
	h.step(zp)
	if got := h.idle(zp).State.TotalChecks; got != 3 {
		t.Fatalf("total checks %d, want 3", got)
	}
}

// TestAsyncCheckCompletesOnce: a checker that calls done twice, or panics
// after or before calling it, gets at most one result per check recorded:
// a second Done is dropped, a result sent before a panic reaches only the
// restarted incarnation (which ignores it), and a Done after a panic does
// nothing. The actor's work stays balanced: a second work.Done would panic,
// a missing one would make Env.Wait time out.
func TestAsyncCheckCompletesOnce(t *testing.T) {
	h := newHarness(t, nil)
	var calls atomic.Int64
	late := make(chan *CheckDone, 1)
	check := func(_ context.Context, done *CheckDone) {
		switch calls.Add(1) {
		case 1: // twice: the second result is dropped
			done.Done(ok)
			done.Done(fail)
		case 2: // a result, then a panic: the actor restarts
			done.Done(fail)
			panic("checker exploded after its result")
		case 3: // a panic before the result, which comes anyway, later
			late <- done
			panic("checker exploded before its result")
		default:
			go done.Done(ok)
		}
	}
	pid := h.spawnSpec(ProxySpec{ID: "p1", Source: "default", URLRedacted: "http://127.0.0.1:1/p1",
		Settings: &CheckSettings{Health: noJitter(), Timeout: checkTimeout}, CheckAsync: AsyncCheckFunc(check)})
	h.step(pid)
	if st := h.idle(pid).State; st.TotalChecks != 1 || st.Health != pb.HealthState_HEALTH_STATE_HEALTHY {
		t.Fatalf("after the check that called done twice: %d checks, %s; want 1, healthy", st.TotalChecks, events.StateName(st.Health))
	}
	h.step(pid) // checks 2 and 3 panic (two restarts), check 4 is recorded
	if n := calls.Load(); n != 4 {
		t.Fatalf("%d calls of the checker for 2 recorded checks, want 4", n)
	}
	// Nothing is in flight now (the clock stands still): the panics
	// ended their checks' work.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.env.Wait(ctx); err != nil {
		t.Fatalf("the panicking checks' work is still counted: %v", err)
	}
	(<-late).Done(fail)
	h.sync(pid)
	if st := h.idle(pid).State; st.TotalChecks != 2 || st.Health != pb.HealthState_HEALTH_STATE_HEALTHY {
		t.Fatalf("after the panics and the late result: %d checks, %s; want 2, healthy", st.TotalChecks, events.StateName(st.Health))
	}
	for _, env := range h.stream("p1") {
		if env.GetCheckFailed() != nil {
			t.Fatalf("a dropped or stale result was journaled: %v", env)
		}
	}
	if n := h.env.Limiter.InFlight(); n != 0 {
		t.Fatalf("%d limiter slots held after the panics", n)
	}
}

// TestSpecWithoutSettingsIsRefused: a spec needs its source's check
// settings and a check; spawning or reconfiguring a proxy without them is
// an error that names the field, not a nil call in the actor.
func TestSpecWithoutSettingsIsRefused(t *testing.T) {
	h := newHarness(t, nil)
	bare := ProxySpec{ID: "p1", Source: "default", URLRedacted: "http://127.0.0.1:1/p1", Check: (&script{}).check}
	res := h.request(h.src, &SpawnProxy{Spec: &bare}).(*Spawned)
	if res.Err == nil || !strings.Contains(res.Err.Error(), "ProxySpec.Settings") {
		t.Fatalf("spawn without settings: %v, want an error naming ProxySpec.Settings", res.Err)
	}
	pid := h.spawn("p1", noJitter(), &script{})
	if r := h.request(pid, &Reconfigure{Spec: &bare}).(*Reply); r.Err == nil || !strings.Contains(r.Err.Error(), "ProxySpec.Settings") {
		t.Fatalf("reconfigure without settings: %v, want an error naming ProxySpec.Settings", r.Err)
	}
	if st := h.idle(pid); st.Stopped {
		t.Fatal("a refused reconfigure stopped the proxy")
	}
	unchecked := ProxySpec{ID: "p2", Source: "default", URLRedacted: "http://127.0.0.1:1/p2", Settings: &CheckSettings{Health: noJitter()}}
	res = h.request(h.src, &SpawnProxy{Spec: &unchecked}).(*Spawned)
	if res.Err == nil || !strings.Contains(res.Err.Error(), "ProxySpec.Check") {
		t.Fatalf("spawn without a check: %v, want an error naming ProxySpec.Check", res.Err)
	}
}
