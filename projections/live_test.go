package projections_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/internal/gen"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

const (
	unknown    = pb.HealthState_HEALTH_STATE_UNKNOWN
	healthy    = pb.HealthState_HEALTH_STATE_HEALTHY
	degraded   = pb.HealthState_HEALTH_STATE_DEGRADED
	unhealthy  = pb.HealthState_HEALTH_STATE_UNHEALTHY
	recovering = pb.HealthState_HEALTH_STATE_RECOVERING
	timeout    = pb.FailureClass_FAILURE_CLASS_TIMEOUT
)

var t0 = time.Date(2025, 3, 4, 5, 0, 0, 0, time.UTC)

func added(src string) *pb.ProxyAdded {
	return &pb.ProxyAdded{UrlRedacted: "http://10.0.0.1:3128", Source: src}
}

func TestLiveProxyView(t *testing.T) {
	l := projections.NewLive(projections.LiveOptions{})
	s := newScript("p1", t0).add(added("a")).add(ok(100)).add(change(unknown, healthy)).add(ok(200)).add(fail(timeout)).add(change(healthy, degraded))
	l.Apply(s.out...)

	v, found := l.Proxy("p1")
	if !found {
		t.Fatal("p1 not found")
	}
	if v.State != "degraded" || v.Source != "a" || v.URLRedacted != "http://10.0.0.1:3128" {
		t.Errorf("view %+v", v)
	}
	if want := 120 * time.Millisecond; v.LatencyEWMA != want {
		t.Errorf("EWMA = %v, want %v (alpha 0.2 over 100ms then 200ms)", v.LatencyEWMA, want)
	}
	if v.LastLatency != time.Second || v.LastErrorClass != "timeout" || v.LastError != "boom" {
		t.Errorf("last check: latency %v class %q error %q", v.LastLatency, v.LastErrorClass, v.LastError)
	}
	if v.ConsecutiveFailures != 1 || v.ConsecutiveSuccesses != 0 || v.TotalChecks != 3 || v.TotalFailures != 1 {
		t.Errorf("counters %+v", v)
	}
	if v.Checks1h != 3 || v.Checks24h != 3 || v.SuccessRate1h != 2.0/3 || v.SuccessRate24h != 2.0/3 {
		t.Errorf("rates 1h %v/%d 24h %v/%d", v.SuccessRate1h, v.Checks1h, v.SuccessRate24h, v.Checks24h)
	}
	st := events.Fold(events.NewState("p1"), s.out...)
	if v.LastCheckAt != st.LastCheckAt || v.Seq != 6 {
		t.Errorf("LastCheckAt %v seq %d", v.LastCheckAt, v.Seq)
	}
	if _, found := l.Proxy("nope"); found {
		t.Error("unknown proxy found")
	}
	// NextCheckAt is what the engine reports, nothing else: zero until then.
	if !v.NextCheckAt.IsZero() {
		t.Errorf("NextCheckAt before any report = %v", v.NextCheckAt)
	}
	due := t0.Add(17 * time.Second)
	l.SetNextCheck("p1", due)
	if v, _ := l.Proxy("p1"); !v.NextCheckAt.Equal(due) {
		t.Errorf("NextCheckAt = %v, want the reported %v", v.NextCheckAt, due)
	}
	l.SetNextCheck("p1", time.Time{})
	if v, _ := l.Proxy("p1"); !v.NextCheckAt.IsZero() {
		t.Errorf("NextCheckAt after an unscheduled report = %v", v.NextCheckAt)
	}
	// A report that comes before the proxy's ProxyAdded is applied is kept.
	l2 := projections.NewLive(projections.LiveOptions{})
	l2.SetNextCheck("p1", due)
	l2.Apply(s.out...)
	if v, _ := l2.Proxy("p1"); !v.NextCheckAt.Equal(due) {
		t.Errorf("NextCheckAt reported early = %v, want %v", v.NextCheckAt, due)
	}
}

func TestLiveSummary(t *testing.T) {
	l := projections.NewLive(projections.LiveOptions{})
	if s := l.Summary(); s.Total != 0 || s.HealthPercentage != 0 || len(s.Sources) != 0 {
		t.Fatalf("empty summary %+v", s)
	}
	s := newScript("a1", t0).add(added("a")).add(ok(100)).add(change(unknown, healthy))
	s.as("a2").add(added("a")).add(ok(300)).add(change(unknown, healthy))
	s.as("b1").add(added("b")).add(fail(timeout)).add(change(unknown, degraded)).add(&pb.ProxyPaused{})
	s.as("").add(&pb.PoolDegraded{HealthyPercentage: 66, ThresholdPercentage: 70})
	l.Apply(s.out...)
	l.SetChecking("b1", true)
	l.SetChecking("c1", true) // not added yet: remembered
	sum := l.Summary()
	if sum.Total != 3 || sum.Healthy != 2 || sum.Degraded != 1 || sum.Paused != 1 || sum.Checking != 1 {
		t.Errorf("counts %+v", sum.Counts)
	}
	if sum.HealthPercentage != 200.0/3 || sum.Seq != 11 || !sum.UpdatedAt.Equal(s.now) || !sum.PoolDegraded {
		t.Errorf("summary %+v", sum)
	}
	if len(sum.Sources) != 2 || sum.Sources[0].Name != "a" || sum.Sources[0].AvgLatency != 200*time.Millisecond || sum.Sources[1].AvgLatency != 0 {
		t.Errorf("sources %+v", sum.Sources)
	}
	// AppendSummary is Summary in the caller's slice, whatever it held.
	buf := make([]projections.SourceSummary, 5, 8)
	buf[0].Name = "stale"
	if got := l.AppendSummary(buf); !reflect.DeepEqual(got, sum) || &got.Sources[0] != &buf[0] {
		t.Errorf("AppendSummary = %+v (in the given array: %v), want %+v", got, &got.Sources[0] == &buf[0], sum)
	}
	s.as("c1").add(added("c"))
	l.Apply(s.out...)
	if sum := l.Summary(); sum.Checking != 2 || sum.Total != 4 {
		t.Errorf("pending checking flag not applied: %+v", sum.Counts)
	}
	l.SetChecking("c1", false)
	l.SetChecking("b1", false)
	if sum := l.Summary(); sum.Checking != 0 {
		t.Errorf("checking %d", sum.Checking)
	}
	if err := checkInvariants(l); err != nil {
		t.Fatal(err)
	}
}

func TestLiveRemoveAndReAdd(t *testing.T) {
	l := projections.NewLive(projections.LiveOptions{})
	s := newScript("p", t0).add(added("a")).add(ok(10)).add(change(unknown, healthy))
	l.Apply(s.out...)
	l.SetChecking("p", true)
	s.add(&pb.ProxyRemoved{Reason: "gone"})
	l.Apply(s.out...)
	if _, found := l.Proxy("p"); found {
		t.Fatal("removed proxy still visible")
	}
	if n, _ := l.List(projections.ListFilter{}, 0, 10); n != 0 {
		t.Fatalf("list total %d", n)
	}
	if sum := l.Summary(); sum.Total != 0 || sum.Checking != 0 || len(sum.Sources) != 0 {
		t.Fatalf("summary after removal %+v", sum)
	}
	s.add(added("b"))
	l.Apply(s.out...)
	v, found := l.Proxy("p")
	if !found || v.Source != "b" || v.State != "unknown" || v.TotalChecks != 0 || v.LatencyEWMA != 0 {
		t.Fatalf("re-added proxy %+v", v)
	}
	if err := checkInvariants(l); err != nil {
		t.Fatal(err)
	}
}

func TestLiveIdempotentAndBatchingIndependent(t *testing.T) {
	envs := committed(t, 1, 30, 3000)
	a := projections.NewLive(projections.LiveOptions{})
	a.Apply(envs...)
	a.Apply(envs...) // all seq <= last: ignored
	a.Apply(envs[100:200]...)
	b := projections.NewLive(projections.LiveOptions{})
	r := rand.New(rand.NewPCG(2, 3))
	for rest := envs; len(rest) > 0; {
		n := min(1+r.IntN(50), len(rest))
		b.Apply(rest[:n]...)
		b.Apply(rest[:n]...)
		rest = rest[n:]
	}
	if !reflect.DeepEqual(a.Summary(), b.Summary()) {
		t.Fatalf("summaries differ:\n%+v\n%+v", a.Summary(), b.Summary())
	}
	_, va := a.List(projections.ListFilter{}, 0, 1000)
	_, vb := b.List(projections.ListFilter{}, 0, 1000)
	if !reflect.DeepEqual(va, vb) {
		t.Fatal("views differ")
	}
	for _, v := range va {
		if !reflect.DeepEqual(a.StateChanges(v.ID, 0), b.StateChanges(v.ID, 0)) {
			t.Fatalf("state changes of %s differ", v.ID)
		}
	}
	if err := checkInvariants(a); err != nil {
		t.Fatal(err)
	}
	// The views agree with a plain fold of each proxy's stream.
	states := gen.States(envs)
	live := 0
	for id, s := range states {
		v, found := a.Proxy(id)
		if s.Removed {
			if found {
				t.Errorf("%s removed but visible", id)
			}
			continue
		}
		live++
		if !found || v.State != events.StateName(s.Health) || v.Paused != s.Paused || v.ConsecutiveFailures != s.ConsecutiveFailures ||
			v.RecoveryAttempt != s.RecoveryAttempt || v.TotalChecks != s.TotalChecks || v.Source != s.Source || v.Seq != s.Seq {
			t.Errorf("%s: view %+v, fold %+v", id, v, s)
		}
	}
	if a.Summary().Total != live {
		t.Errorf("total %d, live proxies %d", a.Summary().Total, live)
	}
}

func TestLiveRateWindows(t *testing.T) {
	l := projections.NewLive(projections.LiveOptions{})
	s := newScript("p", t0).add(added("a"))
	// One check every 7 minutes for 30 hours: failures first, then passes.
	var times []time.Time
	var oks []bool
	for i := range 30 * 60 / 7 {
		at := t0.Add(time.Duration(i) * 7 * time.Minute)
		pass := i > 150
		if pass {
			s.addAt(at, ok(50))
		} else {
			s.addAt(at, fail(timeout))
		}
		times, oks = append(times, at), append(oks, pass)
	}
	l.Apply(s.out...)
	now := s.now
	count := func(width time.Duration, n int64) (uint32, uint32) {
		var good, total uint32
		nb := now.UnixNano() / int64(width)
		for i, at := range times {
			if b := at.UnixNano() / int64(width); b > nb-n && b <= nb {
				total++
				if oks[i] {
					good++
				}
			}
		}
		return good, total
	}
	v, _ := l.Proxy("p")
	g1, n1 := count(5*time.Minute, 12)
	g24, n24 := count(time.Hour, 24)
	if v.Checks1h != n1 || v.SuccessRate1h != float64(g1)/float64(n1) || v.Checks24h != n24 || v.SuccessRate24h != float64(g24)/float64(n24) {
		t.Errorf("rates: 1h %v/%d want %d/%d; 24h %v/%d want %d/%d", v.SuccessRate1h, v.Checks1h, g1, n1, v.SuccessRate24h, v.Checks24h, g24, n24)
	}

	// A fixed clock far ahead: every window is empty.
	late := projections.NewLive(projections.LiveOptions{Clock: func() time.Time { return now.Add(48 * time.Hour) }})
	late.Apply(s.out...)
	if v, _ := late.Proxy("p"); v.Checks24h != 0 || v.Checks1h != 0 {
		t.Errorf("windows not empty 48h later: %+v", v)
	}
}

func TestLiveRatesAtHighCheckRate(t *testing.T) {
	l := projections.NewLive(projections.LiveOptions{})
	s := newScript("p", t0).add(added("a"))
	// 20 checks a second for 2 hours; every 4th fails.
	for i := range 2 * 3600 * 20 {
		at := t0.Add(time.Duration(i) * 50 * time.Millisecond)
		if i%4 == 3 {
			s.addAt(at, fail(timeout))
		} else {
			s.addAt(at, ok(5))
		}
	}
	l.Apply(s.out...)
	v, _ := l.Proxy("p")
	if v.SuccessRate1h != 0.75 || v.SuccessRate24h != 0.75 || v.Checks24h != 2*3600*20 {
		t.Errorf("rates %v (%d) %v (%d)", v.SuccessRate1h, v.Checks1h, v.SuccessRate24h, v.Checks24h)
	}
}

func TestLiveStateChanges(t *testing.T) {
	l := projections.NewLive(projections.LiveOptions{StateChangeCap: 4})
	s := newScript("p", t0).add(added("a"))
	for range 5 {
		s.add(change(unknown, healthy)).add(change(healthy, degraded)).add(change(degraded, unhealthy)).add(change(unhealthy, recovering))
	}
	l.Apply(s.out...)
	c := l.StateChanges("p", 0)
	if len(c) != 4 || c[0].To != "recovering" || c[0].From != "unhealthy" || c[3].To != "healthy" || c[0].Seq != s.seq {
		t.Fatalf("changes %+v", c)
	}
	if c := l.StateChanges("p", 2); len(c) != 2 || c[1].To != "unhealthy" {
		t.Fatalf("last 2: %+v", c)
	}
	if l.StateChanges("none", 3) != nil {
		t.Fatal("changes of unknown proxy")
	}
}

func TestLiveList(t *testing.T) {
	l := projections.NewLive(projections.LiveOptions{})
	l.Apply(committed(t, 7, 300, 6000)...)
	_, all := l.List(projections.ListFilter{}, 0, 1<<20)
	for _, f := range []projections.ListFilter{{}, {State: "healthy"}, {State: "unhealthy", Source: "beta"}, {Source: "alpha"}, {State: "failed"}, {State: "bogus"}, {Source: "nope"}} {
		var want []projections.ProxyView
		for _, v := range all {
			if (f.State == "" || v.State == f.State) && (f.Source == "" || v.Source == f.Source) {
				want = append(want, v)
			}
		}
		for _, page := range []struct{ off, lim int }{{0, 7}, {5, 20}, {len(want) - 3, 10}, {len(want) + 5, 10}, {0, 0}} {
			total, got := l.List(f, page.off, page.lim)
			if total != len(want) {
				t.Errorf("%+v: total %d, want %d", f, total, len(want))
			}
			exp := want[min(max(page.off, 0), len(want)):]
			exp = exp[:min(len(exp), max(page.lim, 0))]
			if len(exp) == 0 {
				exp = nil
			}
			if len(got) == 0 {
				got = nil
			}
			if !reflect.DeepEqual(got, exp) {
				t.Errorf("%+v page %+v: got %d views, want %d", f, page, len(got), len(exp))
			}
		}
	}
	for i := 1; i < len(all); i++ {
		if all[i-1].ID >= all[i].ID {
			t.Fatal("List not sorted by ID")
		}
	}
}

// TestLiveConcurrentQueries runs readers against the feeder (for -race).
func TestLiveConcurrentQueries(t *testing.T) {
	envs := committed(t, 11, 100, 20000)
	l := projections.NewLive(projections.LiveOptions{})
	done := make(chan struct{})
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				s := l.Summary()
				if sum := s.Unknown + s.Healthy + s.Degraded + s.Unhealthy + s.Recovering + s.Failed; sum != s.Total {
					t.Errorf("torn summary: %+v", s.Counts)
					return
				}
				_, page := l.List(projections.ListFilter{State: "healthy"}, i%50, 10)
				for _, v := range page {
					l.StateChanges(v.ID, 3)
					l.Proxy(v.ID)
				}
				l.SetChecking(gen.ID((i+r)%100), i%2 == 0)
			}
		}()
	}
	for i := 0; i < len(envs); i += 37 {
		l.Apply(envs[i:min(i+37, len(envs))]...)
	}
	close(done)
	wg.Wait()
	for i := range 100 {
		l.SetChecking(gen.ID(i), false)
	}
	if err := checkInvariants(l); err != nil {
		t.Fatal(err)
	}
	if got := l.Seq(); got != envs[len(envs)-1].GetSeq() {
		t.Fatalf("seq %d", got)
	}
}

// TestLiveAfterRetention rebuilds from a journal whose oldest events were
// deleted by retention: proxies come back from their snapshots.
func TestLiveAfterRetention(t *testing.T) {
	ctx := context.Background()
	j := journal.NewMem()
	defer j.Close()
	sim := gen.NewSim(5, 20)
	sim.JumpProb = 0
	if _, err := j.Append(ctx, sim.Events(2000)); err != nil {
		t.Fatal(err)
	}
	envs := readAll(t, j)
	full := projections.NewLive(projections.LiveOptions{})
	full.Apply(envs...)
	// Snapshot every proxy as of the 1500th event, then retain from there.
	cut := envs[1500]
	if err := gen.SaveSnapshots(ctx, j, gen.States(envs[:1500])); err != nil {
		t.Fatal(err)
	}
	if n, err := j.Retain(ctx, events.At(cut)); err != nil || n == 0 {
		t.Fatalf("retain: %d, %v", n, err)
	}
	rest := readAll(t, j)
	if rest[0].GetSeq() == 1 {
		t.Fatal("nothing retained")
	}
	rebuilt := projections.NewLive(projections.LiveOptions{Snapshots: j.LoadSnapshot})
	rebuilt.Apply(rest...)
	_, a := full.List(projections.ListFilter{}, 0, 100)
	_, b := rebuilt.List(projections.ListFilter{}, 0, 100)
	if len(a) != len(b) {
		t.Fatalf("%d proxies from the full journal, %d after retention", len(a), len(b))
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.ID != y.ID || x.State != y.State || x.URLRedacted != y.URLRedacted || x.Source != y.Source || x.TotalChecks != y.TotalChecks ||
			x.ConsecutiveFailures != y.ConsecutiveFailures || x.Paused != y.Paused || x.Seq != y.Seq || !x.LastCheckAt.Equal(y.LastCheckAt) {
			t.Errorf("proxy %s differs:\n full %+v\n rebuilt %+v", x.ID, x, y)
		}
	}
	if err := checkInvariants(rebuilt); err != nil {
		t.Fatal(err)
	}
}

// A proxy taken over from another cluster member is journaled as
// ProxyAdded and ProxyAdopted in one append; a query never sees it
// between the two (unknown for an instant), however the applies and the
// queries interleave.
func TestLiveShowsNoProxyBetweenTheEventsOfOneDecision(t *testing.T) {
	const proxies = 20000
	s := newScript("", t0)
	for i := range proxies {
		s.as(fmt.Sprintf("p%05d", i)).add(added("s")).add(&pb.ProxyAdopted{
			FromMember: "m2:1", Previous: unknown,
			State: &pb.ProxySnapshot{State: healthy, ConsecutiveSuccesses: 3, LastCheckUnixNano: t0.UnixNano()},
		})
	}
	l := projections.NewLive(projections.LiveOptions{})
	done, ready := make(chan struct{}), make(chan struct{})
	var seen, samples int
	go func() {
		defer close(done)
		for l.Seq() < s.seq {
			if samples == 1 {
				close(ready) // the applies start once the sampling runs
			}
			samples++
			if n, _ := l.List(projections.ListFilter{State: "unknown"}, 0, 1); n > 0 {
				seen++
			}
		}
	}()
	<-ready
	for envs := s.out; len(envs) > 0; {
		n := min(len(envs), 100) // whole proxies: the journal's tail may split them, this test does not
		l.Apply(envs[:n]...)
		envs = envs[n:]
	}
	<-done
	if c := l.Summary().Counts; c.Healthy != proxies {
		t.Fatalf("after the applies: %+v, want %d healthy", c, proxies)
	}
	if seen > 0 {
		t.Errorf("%d of %d samples saw proxies in state unknown", seen, samples)
	}
	t.Logf("%d samples", samples)
}
