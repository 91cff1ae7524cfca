package actors

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/internal/clock"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/journal"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// harness runs proxy actors against an in-memory journal and a fake clock.
type harness struct {
	t   *testing.T
	sys *actor.ActorSystem
	env *Env
	clk *clock.Fake
	j   journal.Journal
	src *actor.PID
}

// quietSystem is an actor system as the engine makes its own: quiet, with
// a compacted registry.
func quietSystem() *actor.ActorSystem {
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	CompactRegistry(sys)
	return sys
}

func newHarness(t *testing.T, j journal.Journal) *harness {
	t.Helper()
	return newHarnessWith(t, j, nil)
}

// newHarnessWith is newHarness with a chance to set Env fields before Init.
func newHarnessWith(t *testing.T, j journal.Journal, set func(*Env)) *harness {
	t.Helper()
	if j == nil {
		j = journal.NewMem()
	}
	h := &harness{t: t, sys: quietSystem(), clk: clock.NewFake(t0), j: j}
	h.env = &Env{Journal: j, Clock: h.clk, Limiter: NewLimiter(10)}
	if set != nil {
		set(h.env)
	}
	if err := h.env.Init(); err != nil {
		t.Fatal(err)
	}
	strategy := DefaultRestartBackoff(nil)
	strategy.AfterFunc = func(d time.Duration, f func()) { f() } // restart at once in tests
	h.src = h.sys.Root.Spawn(SourceProps(h.env, "default", strategy))
	t.Cleanup(h.close)
	return h
}

func (h *harness) close() {
	h.env.CancelChecks()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.env.Wait(ctx); err != nil {
		h.t.Errorf("wait for actor goroutines: %v", err)
	}
	_ = h.sys.Root.PoisonFuture(h.src).Wait()
	_ = h.j.Close()
	h.sys.Shutdown()
	h.env.Close()
}

// script is a CheckFunc returning scripted results (the last one repeats).
type script struct {
	mu      sync.Mutex
	results []events.CheckResult
	calls   atomic.Int64
	hook    func(ctx context.Context, n int64) // optional, runs before returning
}

func (s *script) check(ctx context.Context) events.CheckResult {
	n := s.calls.Add(1)
	if s.hook != nil {
		s.hook(ctx, n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.results) == 0 {
		return ok
	}
	r := s.results[0]
	if len(s.results) > 1 {
		s.results = s.results[1:]
	}
	return r
}

func (s *script) set(rs ...events.CheckResult) {
	s.mu.Lock()
	s.results = rs
	s.mu.Unlock()
}

var (
	ok   = events.CheckResult{StatusCode: 204, Latency: events.Latency{Total: time.Millisecond}}
	fail = events.CheckResult{Class: pb.FailureClass_FAILURE_CLASS_REFUSED, Message: "connection refused"}
)

// checkTimeout is the check timeout of the harness's proxies.
const checkTimeout = 5 * time.Second

func noJitter() events.Config {
	c := events.DefaultConfig()
	c.Jitter = 0
	return c
}

// checkAsync runs the script like an event-loop checker: the check goes
// on elsewhere and its result comes back through done.
func (s *script) checkAsync(ctx context.Context, done *CheckDone) {
	go func() { done.Done(s.check(ctx)) }()
}

func (h *harness) spawn(id string, cfg events.Config, s *script) *actor.PID {
	h.t.Helper()
	return h.spawnSpec(ProxySpec{ID: id, Source: "default", URLRedacted: "http://127.0.0.1:1/" + id, Settings: &CheckSettings{Health: cfg, Timeout: checkTimeout}, Check: s.check})
}

// spawnAsync spawns a proxy whose checks run through CheckAsync.
func (h *harness) spawnAsync(id string, cfg events.Config, s *script) *actor.PID {
	h.t.Helper()
	return h.spawnSpec(ProxySpec{ID: id, Source: "default", URLRedacted: "http://127.0.0.1:1/" + id, Settings: &CheckSettings{Health: cfg, Timeout: checkTimeout}, CheckAsync: AsyncCheckFunc(s.checkAsync)})
}

func (h *harness) spawnSpec(spec ProxySpec) *actor.PID {
	h.t.Helper()
	res, err := h.sys.Root.RequestFuture(h.src, &SpawnProxy{Spec: &spec}, 5*time.Second).Result()
	if err != nil {
		h.t.Fatal(err)
	}
	sp := res.(*Spawned)
	if sp.Err != nil {
		h.t.Fatal(sp.Err)
	}
	h.sync(sp.PID)
	return sp.PID
}

func (h *harness) sync(pid *actor.PID) {
	h.t.Helper()
	if r := h.request(pid, &Sync{}).(*Reply); r.Err != nil {
		h.t.Fatal(r.Err)
	}
}

func (h *harness) request(pid *actor.PID, msg any) any {
	h.t.Helper()
	res, err := h.sys.Root.RequestFuture(pid, msg, 5*time.Second).Result()
	if err != nil {
		h.t.Fatalf("request %T: %v", msg, err)
	}
	return res
}

func (h *harness) state(pid *actor.PID) *StateReply {
	h.t.Helper()
	return h.request(pid, &GetState{}).(*StateReply)
}

// poll calls f until it returns true or the deadline passes.
func poll(t *testing.T, what string, f func() bool) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, what, f)
}

// idle waits until the actor has nothing in flight.
func (h *harness) idle(pid *actor.PID) *StateReply {
	h.t.Helper()
	var st *StateReply
	poll(h.t, "actor idle", func() bool {
		st = h.state(pid)
		return !st.Checking && !st.Busy
	})
	return st
}

// step fires the actor's next timer(s) until one more check has been
// recorded, and returns the fake time at which that check ran.
func (h *harness) step(pid *actor.PID) time.Time {
	h.t.Helper()
	st := h.idle(pid)
	before := st.State.TotalChecks
	for i := 0; ; i++ {
		if i > 20 {
			h.t.Fatalf("no check recorded after %d timer firings (state %s)", i, events.StateName(st.State.Health))
		}
		if st.NextCheckAt.IsZero() {
			h.t.Fatalf("no check scheduled (state %s, paused %v)", events.StateName(st.State.Health), st.State.Paused)
		}
		h.clk.Set(st.NextCheckAt)
		st = h.idle(pid)
		if st.State.TotalChecks > before {
			return st.State.LastCheckAt
		}
	}
}

func (h *harness) stream(id string) []*pb.Envelope {
	h.t.Helper()
	var out []*pb.Envelope
	for env, err := range h.j.ReadStream(context.Background(), id, 1) {
		if err != nil {
			h.t.Fatal(err)
		}
		out = append(out, env)
	}
	return out
}

// transitions lists "from>to" for each StateChanged of a stream.
func transitions(envs []*pb.Envelope) []string {
	var out []string
	for _, e := range envs {
		if sc := e.GetStateChanged(); sc != nil {
			out = append(out, fmt.Sprintf("%s>%s", events.StateName(sc.GetFrom()), events.StateName(sc.GetTo())))
		}
	}
	return out
}
