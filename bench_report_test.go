package proxyhealth_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/probe"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// The report benchmarks measure the spec's success criteria on the real
// engine (proxyhealth.Open, bbolt journal, real clock) against a fake proxy
// farm on loopback, served in-process so that the benchmark can change what
// each proxy does mid-run. They measure behaviour over time, not speed:
// run them with -benchtime 1x (make bench does). Every figure is read from
// the committed event stream (Engine.Subscribe): a transition's time is the
// `at` the engine journaled it with.
//
// Environment knobs (defaults keep each benchmark under about 3 minutes):
//
//	PROXYHEALTH_BENCH_SEED             random seed (default: time-based, logged)
//	PROXYHEALTH_BENCH_DETECT_PROXIES   BenchmarkDetection pool size (1000)
//	PROXYHEALTH_BENCH_DETECT_KILLS     proxies killed, half Refuse, half Blackhole (200)
//	PROXYHEALTH_BENCH_DETECT_WINDOW    span the kills are spread over (60s)
//	PROXYHEALTH_BENCH_SCALE            time divisor of the scaled benchmarks (10)
//	PROXYHEALTH_BENCH_FP_PROXIES       BenchmarkFalsePositives pool size (2000)
//	PROXYHEALTH_BENCH_FP_WINDOW        measuring window, scaled time (120s)
//	PROXYHEALTH_BENCH_RECOVERY_PROXIES BenchmarkRecoveryShare pool size (500)

// BenchmarkDetection measures spec SC-001 (a dead proxy is unhealthy within
// 60 s) with the default health config (interval 30 s ± 10 %, suspect
// re-probe 1 s, unhealthy after 3 failures) and the default probe timeout
// (5 s), unscaled. Once every proxy of the pool is healthy, a sample of
// them is killed at moments drawn uniformly over the kill window — half by
// Refuse (the listener closes: connection refused at once), half by
// Blackhole (connections accepted, never answered: each check ends at the
// probe timeout). A proxy's detection latency is the time from its kill to
// its journaled StateChanged to unhealthy. Reported: detect-p50-s and
// detect-p99-s over all kills (nearest rank), the same per class, the worst,
// detect-bound-s (events.Config.DetectionBound of the config, the worst case
// the schedule allows), undetected (kills with no unhealthy transition two
// bounds after the last kill), lost (kills left out because a check passed
// later than one probe timeout after the kill, or something accepts on the
// port at the end: another program's listener took the port a Refuse kill
// closed, which happens on a shared machine beside big fake farms) and
// false-unhealthy (proxies never killed that went unhealthy).
func BenchmarkDetection(b *testing.B) {
	n := repEnvInt("PROXYHEALTH_BENCH_DETECT_PROXIES", 1000)
	kills := min(repEnvInt("PROXYHEALTH_BENCH_DETECT_KILLS", 200), n)
	window := repEnvDuration("PROXYHEALTH_BENCH_DETECT_WINDOW", 60*time.Second)
	health := events.DefaultConfig()
	pcfg := repProbe(probe.DefaultTimeout)
	bound := health.DetectionBound(pcfg.Timeout)
	for range b.N {
		rng := repRand(b)
		farm := startFarm(b, n)
		run := repOpen(b, farm, health, pcfg)
		run.waitAllHealthy(b, 2*time.Minute)

		type kill struct {
			i   int
			off time.Duration
			how string
			at  time.Time
		}
		plan := make([]kill, kills)
		for k, i := range rng.Perm(n)[:kills] {
			plan[k] = kill{i: i, off: time.Duration(rng.Int64N(int64(window))), how: "refuse"}
			if k%2 == 1 {
				plan[k].how = "blackhole"
			}
		}
		slices.SortFunc(plan, func(x, y kill) int { return int(x.off - y.off) })
		start := time.Now()
		for k := range plan {
			time.Sleep(time.Until(start.Add(plan[k].off))) // the scenario's schedule, not a wait for a result
			behavior := fakeproxy.Refuse()
			if plan[k].how == "blackhole" {
				behavior = fakeproxy.Blackhole()
			}
			plan[k].at = time.Now()
			if err := farm.Set(plan[k].i, behavior); err != nil {
				b.Fatal(err)
			}
		}
		lastKill := time.Now()
		pending := func() int {
			left := 0
			for k := range plan {
				if _, ok := run.firstTo(run.ids[plan[k].i], pb.HealthState_HEALTH_STATE_UNHEALTHY, plan[k].at); !ok {
					left++
				}
			}
			return left
		}
		// Kills still undetected after twice the bound are counted below.
		testutil.Within(time.Until(lastKill.Add(2*bound)), 200*time.Millisecond, func() bool { return pending() == 0 })

		var all, refuse, blackhole []float64
		undetected, lost := 0, 0
		killed := make(map[int]bool, kills)
		for _, k := range plan {
			killed[k.i] = true
			if k.how == "refuse" && repPortTaken(farm.Addr(k.i)) || run.passedAfter(run.ids[k.i], k.at.Add(pcfg.Timeout)) {
				// Another program's listener took the closed port, so
				// checks reached it: not a dead proxy.
				lost++
				continue
			}
			at, ok := run.firstTo(run.ids[k.i], pb.HealthState_HEALTH_STATE_UNHEALTHY, k.at)
			if !ok {
				undetected++
				continue
			}
			s := at.Sub(k.at).Seconds()
			if s > bound.Seconds() {
				b.Logf("proxy %d (%s) killed at %s, unhealthy after %.2fs, beyond the bound; checks since: %s", k.i, k.how, k.at.Format(time.StampMilli), s, run.checksSince(run.ids[k.i], k.at.Add(-pcfg.Timeout)))
			}
			all = append(all, s)
			if k.how == "refuse" {
				refuse = append(refuse, s)
			} else {
				blackhole = append(blackhole, s)
			}
		}
		falseUnhealthy := 0
		for i, id := range run.ids {
			if _, ok := run.firstTo(id, pb.HealthState_HEALTH_STATE_UNHEALTHY, start); ok && !killed[i] {
				falseUnhealthy++
			}
		}
		run.close(b)

		repReportPercentile(b, all, 0.50, "detect-p50-s")
		repReportPercentile(b, all, 0.99, "detect-p99-s")
		repReportPercentile(b, all, 1, "detect-max-s")
		repReportPercentile(b, refuse, 0.50, "refuse-p50-s")
		repReportPercentile(b, refuse, 0.99, "refuse-p99-s")
		repReportPercentile(b, blackhole, 0.50, "blackhole-p50-s")
		repReportPercentile(b, blackhole, 0.99, "blackhole-p99-s")
		b.ReportMetric(bound.Seconds(), "detect-bound-s")
		b.ReportMetric(float64(kills), "killed")
		b.ReportMetric(float64(undetected), "undetected")
		b.ReportMetric(float64(lost), "lost")
		b.ReportMetric(float64(falseUnhealthy), "false-unhealthy")
	}
}

// BenchmarkFalsePositives measures spec SC-007 (false positives < 1 %):
// every proxy of the pool works but drops 5 % of checks (fakeproxy
// Flaky(0.05): half TCP resets, half 502s, drawn per connection), with the
// default thresholds (healthy 2, unhealthy 3) and every duration of the
// default health config and of the probe timeout divided by
// PROXYHEALTH_BENCH_SCALE (default 10: interval 3 s ± 10 %, suspect 100 ms,
// cooldown 6 s, timeout 500 ms), so a 120 s window stands for 20 minutes.
// The rate does not depend on the time scale, only on the thresholds and
// the drop rate (for each check of a healthy proxy, three failures in a
// row: 0.05³).
//
// false-positive-% is defined as the share of proxy-time the working pool
// spent marked unhealthy, recovering or failed (out of rotation) over the
// window, after every proxy has been healthy once: at any moment, that
// share of a working pool is wrongly out of rotation. Also reported:
// fp/1k-checks (transitions to unhealthy per 1,000 checks in the window),
// ever-unhealthy-% (the share of proxies journaled unhealthy at least once
// in the window; it grows with the window's length, so it is no rate),
// drop-% (the measured share of failed checks) and checks.
func BenchmarkFalsePositives(b *testing.B) {
	n := repEnvInt("PROXYHEALTH_BENCH_FP_PROXIES", 2000)
	window := repEnvDuration("PROXYHEALTH_BENCH_FP_WINDOW", 120*time.Second)
	scale := repEnvInt("PROXYHEALTH_BENCH_SCALE", 10)
	health := repScaled(events.DefaultConfig(), scale)
	pcfg := repProbe(probe.DefaultTimeout / time.Duration(scale))
	for range b.N {
		seed := repRand(b).Uint64()
		farm := startFarm(b, n, fakeproxy.WithBehavior(fakeproxy.Flaky(0.05)), fakeproxy.WithSeed(seed))
		run := repOpen(b, farm, health, pcfg)
		run.waitAllHealthy(b, 2*time.Minute)
		time.Sleep(health.Interval) // settle onto the schedule (the scenario, not a wait for a result)
		w0 := time.Now()
		time.Sleep(window) // the measurement window
		w1 := time.Now()
		run.waitSeen(b, w1, 30*time.Second)
		st := run.windowStats(w0, w1)
		run.close(b)

		b.ReportMetric(100*st.outShare, "false-positive-%")
		b.ReportMetric(1000*float64(st.toUnhealthy)/float64(max(st.checks, 1)), "fp/1k-checks")
		b.ReportMetric(100*float64(st.everUnhealthy)/float64(n), "ever-unhealthy-%")
		b.ReportMetric(100*float64(st.failedChecks)/float64(max(st.checks, 1)), "drop-%")
		b.ReportMetric(float64(st.checks), "checks")
		b.ReportMetric(float64(scale), "time-scale")
	}
}

// BenchmarkRecoveryShare measures spec SC-005 (recovery restores ≥ 80 % of
// temporarily failed proxies). Every duration of the default health config
// and of the probe timeout is divided by PROXYHEALTH_BENCH_SCALE (default
// 10: interval 3 s, suspect 100 ms, timeout 500 ms, recovery cooldown 6 s ×
// 2^attempt capped at 6 min, 5 recovery attempts), and so are the
// downtimes: once the pool is healthy, every proxy goes down (half Reset:
// connections reset at accept, failing each check at once; half Blackhole:
// never answering, each check ending at the timeout) at a moment drawn over one interval, for a time drawn
// uniformly from 1–10 minutes ÷ scale, then comes back (OK). The run ends
// when every proxy is back and healthy again, or failed (terminal until
// Revive). recovered-% is the share of the proxies that were journaled
// unhealthy during their downtime ("temporarily failed") that end healthy
// rather than failed. Also reported: failed, undetected (went down but were
// never journaled unhealthy), unsettled (neither healthy nor failed at the
// deadline, counted as not recovered), lost (left out of the sample: its
// behaviour could not be restored) and back-to-healthy-p50/p99-s, the
// time from a proxy's return to its healthy transition, in scaled seconds
// (multiply by the scale for real time). The fast-failing class is Reset,
// not Refuse: Refuse releases the proxy's port, and on a shared machine
// another program's listener can take it before the proxy comes back (13
// of 25 in a trial run beside a 100,000-proxy farm).
func BenchmarkRecoveryShare(b *testing.B) {
	n := repEnvInt("PROXYHEALTH_BENCH_RECOVERY_PROXIES", 500)
	scale := repEnvInt("PROXYHEALTH_BENCH_SCALE", 10)
	health := repScaled(events.DefaultConfig(), scale)
	pcfg := repProbe(probe.DefaultTimeout / time.Duration(scale))
	unit := time.Minute / time.Duration(scale)
	// The longest a proxy can take to settle after it is back: detection,
	// then every cooldown before it fails, each followed by a recovery try.
	settle := health.DetectionBound(pcfg.Timeout)
	for a := range health.MaxRecoveryAttempts + 1 {
		settle += health.Cooldown(a) + time.Duration(health.HealthyThreshold)*(health.SuspectInterval+pcfg.Timeout)
	}
	for range b.N {
		rng := repRand(b)
		farm := startFarm(b, n)
		run := repOpen(b, farm, health, pcfg)
		run.waitAllHealthy(b, 2*time.Minute)

		type action struct {
			i    int
			at   time.Duration
			down bool
		}
		killAt := make([]time.Time, n)
		backAt := make([]time.Time, n)
		lost := make([]bool, n)
		var plan []action
		for i := range n {
			off := time.Duration(rng.Int64N(int64(health.Interval)))
			down := unit + time.Duration(rng.Int64N(int64(9*unit)+1))
			plan = append(plan, action{i: i, at: off, down: true}, action{i: i, at: off + down})
		}
		slices.SortFunc(plan, func(x, y action) int { return int(x.at - y.at) })
		start := time.Now()
		for _, a := range plan {
			time.Sleep(time.Until(start.Add(a.at))) // the scenario's schedule, not a wait for a result
			behavior := fakeproxy.OK()
			switch {
			case a.down && a.i%2 == 0:
				behavior = fakeproxy.Reset()
			case a.down:
				behavior = fakeproxy.Blackhole()
			}
			now := time.Now()
			if a.down {
				killAt[a.i] = now
			} else {
				backAt[a.i] = now
			}
			if err := repSet(farm, a.i, behavior); err != nil {
				// The port was taken while the proxy refused (another
				// program on the machine): it cannot come back, so it
				// leaves the sample.
				b.Logf("proxy %d left out: %v", a.i, err)
				lost[a.i] = true
			}
		}
		settled := func(i int) bool {
			if lost[i] {
				return true
			}
			st, last, changedSinceKill := run.current(run.ids[i], killAt[i])
			switch st {
			case pb.HealthState_HEALTH_STATE_FAILED:
				return true
			case pb.HealthState_HEALTH_STATE_HEALTHY:
				return !changedSinceKill || !last.Before(backAt[i])
			}
			return false
		}
		allSettled := func() bool {
			for i := range n {
				if !settled(i) {
					return false
				}
			}
			return true
		}
		// Proxies still unsettled then are counted below.
		testutil.Within(settle+30*time.Second, 200*time.Millisecond, allSettled)

		var recovered, failed, undetected, unsettled, lostN int
		var backToHealthy []float64
		for i, id := range run.ids {
			if lost[i] {
				lostN++
				continue
			}
			if _, ok := run.firstTo(id, pb.HealthState_HEALTH_STATE_UNHEALTHY, killAt[i]); !ok {
				undetected++
				continue
			}
			st, _, _ := run.current(id, killAt[i])
			switch {
			case !settled(i):
				unsettled++
				if unsettled <= 5 {
					b.Logf("proxy %d unsettled: down %v, back %v, transitions %s", i, killAt[i].Format(time.StampMilli), backAt[i].Format(time.StampMilli), run.story(id))
				}
			case st == pb.HealthState_HEALTH_STATE_HEALTHY:
				recovered++
				if at, ok := run.firstTo(id, pb.HealthState_HEALTH_STATE_HEALTHY, backAt[i]); ok {
					backToHealthy = append(backToHealthy, at.Sub(backAt[i]).Seconds())
				}
			default:
				failed++
			}
		}
		run.close(b)

		b.ReportMetric(100*float64(recovered)/float64(max(recovered+failed+unsettled, 1)), "recovered-%")
		b.ReportMetric(float64(failed), "failed")
		b.ReportMetric(float64(undetected), "undetected")
		b.ReportMetric(float64(unsettled), "unsettled")
		b.ReportMetric(float64(lostN), "lost")
		repReportPercentile(b, backToHealthy, 0.50, "back-to-healthy-p50-s")
		repReportPercentile(b, backToHealthy, 0.99, "back-to-healthy-p99-s")
		b.ReportMetric(float64(scale), "time-scale")
	}
}

// repPortTaken tells whether something accepts connections on addr (a
// port a refusing proxy closed).
func repPortTaken(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// repSet sets proxy i's behavior; re-opening a refusing proxy's port is
// retried for a second, since another program on the machine may hold it
// for a moment.
func repSet(farm *fakeproxy.Farm, i int, behavior fakeproxy.Behavior) error {
	var err error
	testutil.Within(time.Second, 20*time.Millisecond, func() bool { err = farm.Set(i, behavior); return err == nil })
	return err
}

// repScaled divides every duration of a health config by scale.
func repScaled(c events.Config, scale int) events.Config {
	d := time.Duration(scale)
	c.Interval /= d
	c.SuspectInterval /= d
	c.RecoveryCooldown /= d
	c.MaxRecoveryCooldown /= d
	c.EjectionTime /= d
	c.MaxEjectionTime /= d
	return c
}

// repProbe checks through the in-process farm (which plays the target
// itself, so any host works) with the given timeout.
func repProbe(timeout time.Duration) probe.Config {
	return probe.Config{TargetURL: "http://probe.test/generate_204", Timeout: timeout}
}

// repRun is an engine over a farm and a follower of its committed events.
type repRun struct {
	e    *proxyhealth.Engine
	sub  *proxyhealth.Subscription
	ids  []string // ids[i] is farm proxy i's ID
	done chan struct{}

	mu     sync.Mutex
	trans  map[string][]repTransition
	checks map[string][]repCheck
	lastAt time.Time // the newest event's time
}

type repTransition struct {
	at time.Time
	to pb.HealthState
}

type repCheck struct {
	at time.Time
	ok bool
}

// repOpen opens an engine with one source checking every proxy of farm,
// subscribed before the first event, and follows its events until close.
func repOpen(b *testing.B, farm *fakeproxy.Farm, health events.Config, pcfg probe.Config) *repRun {
	b.Helper()
	r := &repRun{done: make(chan struct{}), trans: make(map[string][]repTransition, farm.Len()), checks: make(map[string][]repCheck, farm.Len())}
	urls := make([]string, farm.Len())
	for i := range urls {
		urls[i] = farm.URL(i)
		info, err := proxyhealth.ParseProxy(urls[i])
		if err != nil {
			b.Fatal(err)
		}
		r.ids = append(r.ids, info.ID)
	}
	ctx := context.Background()
	e, err := proxyhealth.Open(ctx, proxyhealth.Config{
		DataDir:          b.TempDir(),
		SubscriberBuffer: 1 << 20,
		Sources:          []proxyhealth.SourceConfig{{Name: "farm", Health: health, Probe: pcfg}},
	})
	if err != nil {
		b.Fatal(err)
	}
	r.e, r.sub = e, e.Subscribe()
	go r.follow()
	if err := e.ReconfigureSource(ctx, proxyhealth.SourceConfig{Name: "farm", Health: health, Probe: pcfg, Proxies: urls}); err != nil {
		r.close(b)
		b.Fatal(err)
	}
	b.Cleanup(func() { r.close(b) })
	return r
}

func (r *repRun) follow() {
	defer close(r.done)
	for env := range r.sub.C {
		at := time.Unix(0, env.GetAtUnixNano())
		r.mu.Lock()
		if at.After(r.lastAt) {
			r.lastAt = at
		}
		switch ev := env.GetEvent().(type) {
		case *pb.Envelope_StateChanged:
			r.trans[env.GetProxyId()] = append(r.trans[env.GetProxyId()], repTransition{at: at, to: ev.StateChanged.GetTo()})
		case *pb.Envelope_CheckSucceeded:
			r.checks[env.GetProxyId()] = append(r.checks[env.GetProxyId()], repCheck{at: at, ok: true})
		case *pb.Envelope_CheckFailed:
			r.checks[env.GetProxyId()] = append(r.checks[env.GetProxyId()], repCheck{at: at})
		}
		r.mu.Unlock()
	}
}

// close stops the engine and waits for the follower; it fails the
// benchmark if the subscription was dropped (a figure would be missing
// events). Closing twice is harmless.
func (r *repRun) close(b *testing.B) {
	b.Helper()
	if r.e == nil {
		return
	}
	r.sub.Close()
	<-r.done
	if err := r.sub.Err(); err != nil {
		b.Fatalf("event subscription: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.e.Close(ctx); err != nil {
		b.Fatal(err)
	}
	r.e = nil
}

// waitAllHealthy polls (every 100 ms: it walks every proxy's transitions)
// until every proxy has been journaled healthy once.
func (r *repRun) waitAllHealthy(b *testing.B, timeout time.Duration) {
	b.Helper()
	left := 0
	if !testutil.Within(timeout, 100*time.Millisecond, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		left = 0
		for _, id := range r.ids {
			if !slices.ContainsFunc(r.trans[id], func(t repTransition) bool { return t.to == pb.HealthState_HEALTH_STATE_HEALTHY }) {
				left++
			}
		}
		return left == 0
	}) {
		b.Fatalf("%d of %d proxies not healthy after %v", left, len(r.ids), timeout)
	}
}

// waitSeen polls until the follower has seen an event journaled after t,
// so that every event up to t has been counted.
func (r *repRun) waitSeen(b *testing.B, t time.Time, timeout time.Duration) {
	b.Helper()
	testutil.Eventually(b, timeout, fmt.Sprintf("an event journaled after %v", t), func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.lastAt.After(t)
	})
}

// firstTo returns the time of the proxy's first transition to state at or
// after since.
func (r *repRun) firstTo(id string, state pb.HealthState, since time.Time) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.trans[id] {
		if t.to == state && !t.at.Before(since) {
			return t.at, true
		}
	}
	return time.Time{}, false
}

// checksSince lists the proxy's checks journaled after t, for a log line.
func (r *repRun) checksSince(id string, t time.Time) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s []string
	for _, c := range r.checks[id] {
		if c.at.After(t) {
			s = append(s, fmt.Sprintf("%s ok=%v", c.at.Format(time.StampMilli), c.ok))
		}
	}
	return strings.Join(s, ", ")
}

// passedAfter tells whether a check of the proxy passed after t.
func (r *repRun) passedAfter(id string, t time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.ContainsFunc(r.checks[id], func(c repCheck) bool { return c.ok && c.at.After(t) })
}

// current returns the proxy's state (its last transition's), the time of
// that transition and whether it changed state at or after since.
func (r *repRun) current(id string, since time.Time) (pb.HealthState, time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ts := r.trans[id]
	if len(ts) == 0 {
		return pb.HealthState_HEALTH_STATE_UNKNOWN, time.Time{}, false
	}
	last := ts[len(ts)-1]
	return last.to, last.at, !last.at.Before(since)
}

// story lists the proxy's transitions, for a log line.
func (r *repRun) story(id string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s []string
	for _, t := range r.trans[id] {
		s = append(s, t.at.Format(time.StampMilli)+" "+t.to.String())
	}
	return strings.Join(s, ", ")
}

type repWindow struct {
	outShare             float64 // share of proxy-time out of rotation
	toUnhealthy          int     // transitions to unhealthy
	everUnhealthy        int     // proxies with at least one
	checks, failedChecks int
}

// windowStats folds the events journaled in [w0, w1].
func (r *repRun) windowStats(w0, w1 time.Time) repWindow {
	r.mu.Lock()
	defer r.mu.Unlock()
	var w repWindow
	out := func(s pb.HealthState) bool {
		return s == pb.HealthState_HEALTH_STATE_UNHEALTHY || s == pb.HealthState_HEALTH_STATE_RECOVERING || s == pb.HealthState_HEALTH_STATE_FAILED
	}
	var outTime time.Duration
	for _, id := range r.ids {
		state, since := pb.HealthState_HEALTH_STATE_UNKNOWN, w0
		ever := false
		for _, t := range r.trans[id] {
			if t.at.After(w1) {
				break
			}
			if t.at.After(w0) {
				if out(state) {
					outTime += t.at.Sub(since)
				}
				since = t.at
				if t.to == pb.HealthState_HEALTH_STATE_UNHEALTHY {
					w.toUnhealthy++
					ever = true
				}
			}
			state = t.to
		}
		if out(state) {
			outTime += w1.Sub(since)
		}
		if ever {
			w.everUnhealthy++
		}
	}
	w.outShare = float64(outTime) / (float64(w1.Sub(w0)) * float64(len(r.ids)))
	for _, cs := range r.checks {
		for _, c := range cs {
			if c.at.Before(w0) || c.at.After(w1) {
				continue
			}
			w.checks++
			if !c.ok {
				w.failedChecks++
			}
		}
	}
	return w
}

// repPercentile is the nearest-rank percentile (p in (0, 1]) of xs; NaN
// for none.
func repPercentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	k := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(k, 0)]
}

// repReportPercentile reports the p percentile of xs as unit, unless xs
// is empty (no figure rather than a made-up one).
func repReportPercentile(b *testing.B, xs []float64, p float64, unit string) {
	if len(xs) > 0 {
		b.ReportMetric(repPercentile(xs, p), unit)
	}
}

// repRand returns the run's random source, seeded from
// PROXYHEALTH_BENCH_SEED or the clock (logged, to replay a run).
func repRand(b *testing.B) *rand.Rand {
	seed, err := strconv.ParseUint(os.Getenv("PROXYHEALTH_BENCH_SEED"), 10, 64)
	if err != nil {
		seed = uint64(time.Now().UnixNano())
	}
	b.Logf("PROXYHEALTH_BENCH_SEED=%d", seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

func repEnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func repEnvDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
