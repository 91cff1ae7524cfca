package proxyhealth_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// rotationEngine opens an engine over n farm proxies, all healthy.
func rotationEngine(t *testing.T, n int, rc proxyhealth.RotationConfig) (*proxyhealth.Engine, *fakeproxy.Farm, []string) {
	t.Helper()
	farm := startFarm(t, n)
	h := fastHealth()
	h.EjectionTime, h.MaxEjectionTime = 400*time.Millisecond, 2*time.Second
	var urls []string
	for i := range n {
		urls = append(urls, farm.URL(i))
	}
	e := open(t, proxyhealth.Config{Rotation: rc, Sources: []proxyhealth.SourceConfig{{Name: "farm", Health: h, Probe: farmProbe(), Proxies: urls}}})
	ids := make([]string, n)
	for i, u := range urls {
		ids[i], _ = proxyhealth.ResolveProxyID(u)
		waitState(t, e, ids[i], pb.HealthState_HEALTH_STATE_HEALTHY)
	}
	// The picker follows the live status a moment after it (after each
	// batch the live status applied): wait for it too, or the first picks
	// may still be panic picks among proxies it has as unknown.
	testutil.Eventually(t, 5*time.Second, "the picker to count every proxy usable", func() bool {
		return e.Panic().Usable == n
	})
	return e, farm, ids
}

// picked counts the proxies n picks hand out.
func picked(t *testing.T, e *proxyhealth.Engine, req proxyhealth.PickRequest, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		p, err := e.Pick(req)
		if err != nil {
			t.Fatalf("Pick: %v", err)
		}
		got[p.ID]++
	}
	return got
}

// TestPickFollowsTheLiveStatus: picks spread over the healthy proxies,
// with their full URL (credentials included, for the program's own
// transport); a proxy that goes unhealthy stops being picked once the live
// status says so, and comes back when it recovers.
func TestPickFollowsTheLiveStatus(t *testing.T) {
	e, farm, ids := rotationEngine(t, 4, proxyhealth.RotationConfig{})
	testutil.Eventually(t, 10*time.Second, "all four proxies in rotation", func() bool {
		return len(picked(t, e, proxyhealth.PickRequest{}, 40)) == 4
	})
	p, err := e.Pick(proxyhealth.PickRequest{Source: "farm", Scheme: "http"})
	if err != nil || p.URL == nil || p.Host != "127.0.0.1" || p.Port == 0 || p.Source != "farm" || p.State.String() != "healthy" {
		t.Fatalf("Pick = %+v, %v", p, err)
	}
	if _, err := e.Pick(proxyhealth.PickRequest{Source: "nope"}); !errors.Is(err, proxyhealth.ErrNoProxy) {
		t.Fatalf("Pick from an unknown source: %v, want ErrNoProxy", err)
	}
	if err := farm.Set(0, fakeproxy.Refuse()); err != nil {
		t.Fatal(err)
	}
	waitState(t, e, ids[0], pb.HealthState_HEALTH_STATE_UNHEALTHY)
	testutil.Eventually(t, 5*time.Second, "the unhealthy proxy out of rotation", func() bool {
		return picked(t, e, proxyhealth.PickRequest{}, 40)[ids[0]] == 0
	})
	if err := farm.Set(0, fakeproxy.OK()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, "the recovered proxy back in rotation", func() bool {
		return picked(t, e, proxyhealth.PickRequest{}, 40)[ids[0]] > 0
	})
}

// TestOutcomesEjectAProxyFromRotation: three failures reported by real
// traffic eject the proxy (journaled), so picks avoid it at once although
// its checks pass; its ejection ends on time (journaled) and it is picked
// again. A target's error (OK outcome) does not count; an outcome with a
// class that is not the proxy's own is refused.
func TestOutcomesEjectAProxyFromRotation(t *testing.T) {
	e, _, ids := rotationEngine(t, 3, proxyhealth.RotationConfig{})
	bad := ids[1]
	for range 5 {
		if err := e.ReportOutcome(proxyhealth.Outcome{ProxyID: bad, OK: true}); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if err := e.ReportOutcome(proxyhealth.Outcome{ProxyID: bad, Class: "refused", Latency: time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 5*time.Second, "the proxy ejected and out of rotation", func() bool {
		v, _ := e.Status().Proxy(bad)
		return v.Ejected && picked(t, e, proxyhealth.PickRequest{}, 30)[bad] == 0
	})
	if n, _ := e.Ejections(); n != 1 {
		t.Errorf("Ejections = %d, want 1", n)
	}
	testutil.Eventually(t, 10*time.Second, "the ejection to end and the proxy to be picked again", func() bool {
		return picked(t, e, proxyhealth.PickRequest{}, 30)[bad] > 0
	})
	var types []string
	for env, err := range e.ReadJournal(context.Background(), proxyhealth.JournalFilter{Proxy: bad, Types: []string{"proxy_ejected", "proxy_returned"}}) {
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, proxyhealth.EventType(env))
	}
	if fmt.Sprint(types) != "[proxy_ejected proxy_returned]" {
		t.Errorf("journal of the ejection: %v", types)
	}
	if err := e.ReportOutcome(proxyhealth.Outcome{ProxyID: bad, Class: "too_slow"}); !errors.Is(err, proxyhealth.ErrBadOutcome) {
		t.Errorf("outcome class too_slow: %v, want ErrBadOutcome", err)
	}
	if err := e.ReportOutcome(proxyhealth.Outcome{ProxyID: "0000000000000000", OK: true}); !errors.Is(err, proxyhealth.ErrUnknownProxy) {
		t.Errorf("outcome of an unknown proxy: %v", err)
	}
}

// TestTheMaximumEjectionShareKeepsThePoolUp: when traffic through every
// proxy fails (a bad target), at most half of the pool is ejected and
// picks go on.
func TestTheMaximumEjectionShareKeepsThePoolUp(t *testing.T) {
	e, _, ids := rotationEngine(t, 4, proxyhealth.RotationConfig{})
	for _, id := range ids {
		for range 3 {
			if err := e.ReportOutcome(proxyhealth.Outcome{ProxyID: id, Class: "reset"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	testutil.Eventually(t, 5*time.Second, "two proxies ejected, in the picker too", func() bool {
		return e.Status().Summary().Ejected == 2 && e.Panic().Usable == 2
	})
	if n, limit := e.Ejections(); n != 2 || limit != 2 {
		t.Fatalf("Ejections = %d of %d, want 2 of 2", n, limit)
	}
	if got := picked(t, e, proxyhealth.PickRequest{}, 20); len(got) != 2 {
		t.Fatalf("picks went to %d proxies, want the 2 left in rotation: %v", len(got), got)
	}
}

// TestPanicModeIsJournaled: when fewer than half the proxies are usable,
// picks are made among the least-bad ones (Picked.Panic) instead of
// failing, and the pool journals PoolPanicEntered; once enough recover it
// journals PoolPanicLeft.
func TestPanicModeIsJournaled(t *testing.T) {
	e, farm, ids := rotationEngine(t, 4, proxyhealth.RotationConfig{})
	for i := range 3 {
		if err := farm.Set(i, fakeproxy.Refuse()); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids[:3] {
		waitState(t, e, id, pb.HealthState_HEALTH_STATE_UNHEALTHY)
	}
	testutil.Eventually(t, 5*time.Second, "panic mode", func() bool { return e.Panic().Active && e.Status().Summary().PanicMode })
	p, err := e.Pick(proxyhealth.PickRequest{})
	if err != nil || !p.Panic {
		t.Fatalf("a pick in panic mode: %+v, %v; want a panic pick", p, err)
	}
	for i := range 3 {
		if err := farm.Set(i, fakeproxy.OK()); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 15*time.Second, "panic mode to end", func() bool { return !e.Panic().Active && !e.Status().Summary().PanicMode })
	var types []string
	for env, err := range e.ReadJournal(context.Background(), proxyhealth.JournalFilter{Types: []string{"pool_panic_entered", "pool_panic_left"}}) {
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, proxyhealth.EventType(env))
	}
	if fmt.Sprint(types) != "[pool_panic_entered pool_panic_left]" {
		t.Errorf("panic episodes journaled: %v", types)
	}
}

// TestTheEngineRunsInTheHostsActorSystem: with Config.ActorSystem the
// engine's actors live in the host's system, and Close stops only them:
// the host's own actor keeps running.
func TestTheEngineRunsInTheHostsActorSystem(t *testing.T) {
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }))
	defer sys.Shutdown()
	echo := sys.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if s, ok := c.Message().(string); ok {
			c.Respond(s)
		}
	}))
	before := processCount(sys)
	farm := startFarm(t, 2)
	cfg := proxyhealth.Config{ActorSystem: sys, Sources: []proxyhealth.SourceConfig{{Health: fastHealth(), Probe: farmProbe(), Proxies: []string{farm.URL(0), farm.URL(1)}}}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e1, err := proxyhealth.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// A second engine in the same system: its actor names do not collide.
	cfg.Sources[0].Proxies = []string{farm.URL(1)}
	e2, err := proxyhealth.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []*proxyhealth.Engine{e1, e2} {
		for _, id := range e.ProxyIDs() {
			waitState(t, e, id, pb.HealthState_HEALTH_STATE_HEALTHY)
		}
	}
	if err := e1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := sys.Root.RequestFuture(echo, "still here", 5*time.Second).Result()
	if err != nil || res != "still here" {
		t.Fatalf("the host's actor after Close: %v, %v", res, err)
	}
	testutil.Eventually(t, 5*time.Second, "the engines' actors gone from the host system", func() bool { return processCount(sys) == before })
}

// processCount counts the processes registered in an actor system.
func processCount(sys *actor.ActorSystem) int {
	n := 0
	for _, m := range sys.ProcessRegistry.LocalPIDs.LocalPIDs {
		n += m.Count()
	}
	return n
}
