package actors

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/journal"
)

// scheduledTracker counts the proxies that reported a next check due after
// from: the proxies whose check timer is armed for one. All the proxies
// share one (a pointer: a Tracker of its own would be counted).
type scheduledTracker struct {
	from time.Time
	n    atomic.Int64
}

func (t *scheduledTracker) SetChecking(bool) {}
func (t *scheduledTracker) SetNextCheck(due time.Time) {
	if due.After(t.from) {
		t.n.Add(1)
	}
}
func (t *scheduledTracker) Release() {}

// memEngine is an Env, an actor system and a source actor on the real clock
// (the Env's clock.Scheduler, as in the daemon), over a shared journal.
type memEngine struct {
	env *Env
	sys *actor.ActorSystem
	src *actor.PID
	tr  scheduledTracker
}

func startMemEngine(j journal.Journal, from time.Time) *memEngine {
	e := &memEngine{tr: scheduledTracker{from: from}}
	e.env = &Env{Journal: j, Track: func(string) Tracker { return &e.tr }}
	if err := e.env.Init(); err != nil {
		panic(err)
	}
	e.sys = quietSystem()
	e.src = e.sys.Root.Spawn(SourceProps(e.env, "default", DefaultRestartBackoff(nil)))
	return e
}

// spawn starts the proxies' actors and waits until each has its next check
// scheduled.
func (e *memEngine) spawn(b *testing.B, specs []ProxySpec) {
	b.Helper()
	// Each engine gets specs of its own, made here: a proxy's spec is
	// part of what it costs (the engine makes one a proxy).
	own := make([]*ProxySpec, len(specs))
	for i := range specs {
		s := specs[i]
		own[i] = &s
	}
	res, err := e.sys.Root.RequestFuture(e.src, &SpawnProxies{Specs: own}, time.Minute).Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range res.(*SpawnedProxies).Results {
		if r.Err != nil {
			b.Fatal(r.Err)
		}
	}
	testutil.Eventually(b, time.Minute, "every proxy's next check scheduled", func() bool {
		return e.tr.n.Load() >= int64(len(specs))
	})
}

func (e *memEngine) stop(b *testing.B) {
	b.Helper()
	e.env.CancelChecks()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.env.Wait(ctx); err != nil {
		b.Errorf("wait for actor goroutines: %v", err)
	}
	_ = e.sys.Root.PoisonFuture(e.src).Wait()
	e.sys.Shutdown()
	e.env.Close()
}

// BenchmarkProxyActorBytesPerProxy reports the Go heap that 10,000 idle
// proxy actors keep per proxy, as after a daemon's restart: their actors
// (the proxyActor, protoactor's process, context and registry entries, the
// mailbox), their specs and their armed check timers on the real clock's
// scheduler. A first engine adds the proxies and runs one check of each
// (a probe that answers at once; the next check is minutes away); a second
// one, with a fresh actor system and Env, recovers them from the journal,
// and the figure is its heap growth, so the journal's own records and the
// first engine's grown maps are not counted.
func BenchmarkProxyActorBytesPerProxy(b *testing.B) {
	const proxies = 10_000
	cfg := events.DefaultConfig()
	// A proxy's first check after its first one is due between a tenth of
	// an interval and one interval (plus jitter) later (events.NextCheckAt
	// spreads a new pool): 40 s to 6.6 min, all within the scheduler's
	// wheel, and far enough for the first engine's tracker to tell them
	// from the checks due now.
	cfg.Interval = 6 * time.Minute
	settings := &CheckSettings{Health: cfg, Timeout: checkTimeout}
	specs := make([]ProxySpec, proxies)
	for i := range specs {
		id := fmt.Sprintf("%016x", uint64(i)*0x9e3779b97f4a7c15)
		specs[i] = ProxySpec{ID: id, Source: "default", URLRedacted: "http://10.0.0.1:" + id[:4] + "/",
			Settings: settings, CheckAsync: AsyncCheckFunc(func(_ context.Context, done *CheckDone) { done.Done(ok) })}
	}
	var perProxy float64
	for range b.N {
		j := journal.NewMem()
		first := startMemEngine(j, time.Now().Add(20*time.Second))
		first.spawn(b, specs)
		first.stop(b)

		second := startMemEngine(j, time.Now())
		before := testutil.HeapInUse()
		second.spawn(b, specs)
		perProxy = float64(testutil.HeapInUse()-before) / proxies
		runtime.KeepAlive(second)
		second.stop(b)
		_ = j.Close()
	}
	b.ReportMetric(perProxy, "B/proxy")
}
