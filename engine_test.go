package proxyhealth_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // the SQLite view's driver, for the tests that keep a view
	"go.uber.org/goleak"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/internal/clock"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/probe"
	"github.com/proxyhealth/proxyhealth/projections"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

func TestMain(m *testing.M) {
	// The end-to-end benchmarks re-execute this binary as their proxy farm.
	if n, _ := strconv.Atoi(os.Getenv(farmEnv)); n > 0 {
		os.Exit(runFarmProcess(n))
	}
	// A finer heap profile for the e2e benchmarks' PROXYHEALTH_BENCH_HEAPPROFILE
	// (the rate must be set before the first allocation it should see).
	if r, _ := strconv.Atoi(os.Getenv("PROXYHEALTH_BENCH_MEMPROFILERATE")); r > 0 {
		runtime.MemProfileRate = r
	}
	// protoactor's dead-letter log throttle lives 1 s after a dead letter
	// (../shared/notes/protoactor-go.md §5); at Close a check slot freed by
	// one stopping actor can be granted to another that already stopped.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"))
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func startFarm(t testing.TB, n int, opts ...fakeproxy.Option) *fakeproxy.Farm {
	t.Helper()
	f, err := fakeproxy.Start(context.Background(), n, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

// farmProbe checks through the farm: the target is served by the fake proxy
// itself, so any host works.
func farmProbe() probe.Config {
	return probe.Config{TargetURL: "http://probe.test/generate_204", Timeout: 2 * time.Second}
}

func fastHealth() events.Config {
	c := events.DefaultConfig()
	c.Interval = 200 * time.Millisecond
	c.SuspectInterval = 100 * time.Millisecond
	c.RecoveryCooldown = 200 * time.Millisecond
	c.MaxRecoveryCooldown = time.Second
	return c
}

func open(t *testing.T, cfg proxyhealth.Config) *proxyhealth.Engine {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e, err := proxyhealth.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := e.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return e
}

func waitState(t *testing.T, e *proxyhealth.Engine, id string, want pb.HealthState) {
	t.Helper()
	var st proxyhealth.ProxyStatus
	testutil.EventuallyExplain(t, 15*time.Second, func() bool {
		var err error
		if st, err = e.Proxy(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		return st.State.Health == want
	}, func() string {
		return fmt.Sprintf("proxy %s to be %s (it is %s)", id, events.StateName(want), events.StateName(st.State.Health))
	})
}

func TestEngineDetectsDeadProxiesAndResumesAfterRestart(t *testing.T) {
	farm := startFarm(t, 4)
	dir := t.TempDir()
	urls := []string{farm.URL(0), farm.URL(1), farm.URL(2), farm.URL(3)}
	cfg := proxyhealth.Config{
		DataDir: dir,
		Sources: []proxyhealth.SourceConfig{{Name: "lab", Health: fastHealth(), Probe: farmProbe(), Proxies: urls}},
	}
	e := open(t, cfg)
	ids := e.ProxyIDs()
	if len(ids) != 4 {
		t.Fatalf("ids %v", ids)
	}
	for _, id := range ids {
		waitState(t, e, id, pb.HealthState_HEALTH_STATE_HEALTHY)
	}
	if err := farm.Set(2, fakeproxy.Refuse()); err != nil {
		t.Fatal(err)
	}
	dead := probe.MustParseProxyURL(urls[2]).ID()
	waitState(t, e, dead, pb.HealthState_HEALTH_STATE_UNHEALTHY)
	before, err := e.Proxy(context.Background(), dead)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// Reopen with a frozen fake clock: no check can run, so what we see is
	// what was recovered from the journal.
	cfg.Clock = clock.NewFake(time.Now())
	e2 := open(t, cfg)
	after, err := e2.Proxy(context.Background(), dead)
	if err != nil {
		t.Fatal(err)
	}
	if after.State.Health != pb.HealthState_HEALTH_STATE_UNHEALTHY || after.State.TotalChecks < before.State.TotalChecks {
		t.Fatalf("after restart %s with %d checks; before %s with %d", events.StateName(after.State.Health), after.State.TotalChecks,
			events.StateName(before.State.Health), before.State.TotalChecks)
	}
	// The dead proxy's history, read back from the journal: its newest
	// results are the refusals, and it holds every check since it was added.
	hist, err := e2.CheckHistory(context.Background(), dead, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(hist)) != min(after.State.TotalChecks, projections.DefaultHistoryCap) || hist[0].OK || hist[0].Class != "refused" {
		t.Fatalf("history of the dead proxy (%d checks): %+v", after.State.TotalChecks, hist)
	}
	if err := e2.Journal().Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestEngineRejectsBadInputNamingTheValue(t *testing.T) {
	e := open(t, proxyhealth.Config{Clock: clock.NewFake(t0), Sources: []proxyhealth.SourceConfig{{Name: "a", Probe: farmProbe()}}})
	ctx := context.Background()
	cases := []struct {
		url, source string
		want        error
		mention     string
	}{
		{"ftp://1.2.3.4:21", "a", proxyhealth.ErrBadConfig, "ftp"},
		{"http://user:s3cret@[::1", "a", proxyhealth.ErrBadConfig, ""},
		{"http://127.0.0.1:8080", "nope", proxyhealth.ErrUnknownSource, "nope"},
	}
	for _, c := range cases {
		_, err := e.AddProxy(ctx, c.source, c.url)
		if !errors.Is(err, c.want) {
			t.Errorf("AddProxy(%q, %q) = %v, want %v", c.source, c.url, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error leaks the password: %v", err)
		}
		if c.mention != "" && !strings.Contains(err.Error(), c.mention) {
			t.Errorf("error %q does not name %q", err, c.mention)
		}
	}
	if _, err := e.AddProxy(ctx, "a", "http://127.0.0.1:8080"); err != nil {
		t.Fatal(err)
	}
	// The user name is part of a proxy's identity (a gateway's sessions
	// are different proxies), the password is not.
	if _, err := e.AddProxy(ctx, "a", "http://u:p@127.0.0.1:8080/"); err != nil {
		t.Fatalf("the same host and port with a user name is another proxy: %v", err)
	}
	if _, err := e.AddProxy(ctx, "a", "http://u:other@127.0.0.1:8080/"); !errors.Is(err, proxyhealth.ErrDuplicate) {
		t.Fatalf("duplicate (same user, another password) = %v", err)
	}
	if _, err := e.AddProxy(ctx, "a", "http://u-session-2:p@127.0.0.1:8080/"); err != nil {
		t.Fatalf("another session of a gateway: %v", err)
	}
	if err := e.Revive(ctx, "0000000000000000"); !errors.Is(err, proxyhealth.ErrUnknownProxy) {
		t.Fatalf("unknown proxy = %v", err)
	}
	bad := proxyhealth.Config{Sources: []proxyhealth.SourceConfig{{Name: "bad name!"}}}
	if _, err := proxyhealth.Open(ctx, bad); !errors.Is(err, proxyhealth.ErrBadConfig) || !strings.Contains(err.Error(), "bad name!") {
		t.Fatalf("bad source name: %v", err)
	}
	h := events.DefaultConfig()
	h.UnhealthyThreshold = 0
	bad = proxyhealth.Config{Sources: []proxyhealth.SourceConfig{{Name: "x", Health: h}}}
	if _, err := proxyhealth.Open(ctx, bad); !errors.Is(err, proxyhealth.ErrBadConfig) || !strings.Contains(err.Error(), "unhealthy_threshold") {
		t.Fatalf("bad threshold: %v", err)
	}
}

func TestCredentialsNeverReachTheJournal(t *testing.T) {
	farm := startFarm(t, 1, fakeproxy.WithCredentials("alice", "hunter2-secret"), fakeproxy.WithBehavior(fakeproxy.AuthRequired()))
	dir := t.TempDir()
	e := open(t, proxyhealth.Config{DataDir: dir, Sources: []proxyhealth.SourceConfig{{Health: fastHealth(), Probe: farmProbe()}}})
	ctx := context.Background()
	good := farm.URLWith(0, "http", "alice", "hunter2-secret")
	id, err := e.AddProxy(ctx, "", good)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, e, id, pb.HealthState_HEALTH_STATE_HEALTHY)
	st, _ := e.Proxy(ctx, id)
	if strings.Contains(st.URL, "hunter2") || !st.State.HasCredentials {
		t.Fatalf("status %+v", st)
	}
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, proxyhealth.JournalFile))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("hunter2")) || bytes.Contains(raw, []byte("alice")) {
		t.Fatal("credentials found in journal.db")
	}
}

func TestPauseResumePerSourceAndSubscribe(t *testing.T) {
	farm := startFarm(t, 2)
	e := open(t, proxyhealth.Config{Sources: []proxyhealth.SourceConfig{
		{Name: "a", Health: fastHealth(), Probe: farmProbe(), Proxies: []string{farm.URL(0)}},
		{Name: "b", Health: fastHealth(), Probe: farmProbe(), Proxies: []string{farm.URL(1)}},
	}})
	ctx := context.Background()
	sub := e.Subscribe()
	defer sub.Close()
	for _, id := range e.ProxyIDs() {
		waitState(t, e, id, pb.HealthState_HEALTH_STATE_HEALTHY)
	}
	if err := e.Pause(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := e.Pause(ctx, "nope"); !errors.Is(err, proxyhealth.ErrUnknownSource) {
		t.Fatalf("pause unknown source: %v", err)
	}
	a := probe.MustParseProxyURL(farm.URL(0)).ID()
	b := probe.MustParseProxyURL(farm.URL(1)).ID()
	// Let any check in flight land, then count.
	poll(t, "source a paused with no check in flight", func() bool {
		st, _ := e.Proxy(ctx, a)
		return st.State.Paused && !st.Checking
	})
	n0, m0 := farm.Checks(0), farm.Checks(1)
	poll(t, "source b keeps being checked", func() bool { return farm.Checks(1) >= m0+3 })
	if farm.Checks(0) != n0 {
		t.Fatalf("paused proxy checked %d more times", farm.Checks(0)-n0)
	}
	if err := e.Resume(ctx, ""); err != nil {
		t.Fatal(err)
	}
	poll(t, "source a checked again", func() bool { return farm.Checks(0) > n0 })

	// The subscription saw the pause and resume of a, only as committed events.
	seen := map[string]bool{}
	timeout := time.After(5 * time.Second)
	for !seen["proxy_paused"] || !seen["proxy_resumed"] {
		select {
		case env := <-sub.C:
			if env.GetProxyId() == a {
				seen[events.TypeName(env)] = true
			}
			if env.GetProxyId() == b && events.TypeName(env) == "proxy_paused" {
				t.Fatal("source b was paused")
			}
		case <-timeout:
			t.Fatalf("subscription saw %v", seen)
		}
	}
}

func TestSlowSubscriberIsDroppedWithoutBlockingTheEngine(t *testing.T) {
	farm := startFarm(t, 3)
	e := open(t, proxyhealth.Config{SubscriberBuffer: 64, Sources: []proxyhealth.SourceConfig{{Health: fastHealth(), Probe: farmProbe()}}})
	slow := e.Subscribe()
	fast := e.Subscribe()
	defer fast.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range fast.C {
		}
	}()
	ctx := context.Background()
	for i := range 3 {
		if _, err := e.AddProxy(ctx, "", farm.URL(i)); err != nil {
			t.Fatal(err)
		}
	}
	poll(t, "slow subscriber dropped", func() bool { return errors.Is(slow.Err(), proxyhealth.ErrSlowSubscriber) })
	for _, id := range e.ProxyIDs() {
		waitState(t, e, id, pb.HealthState_HEALTH_STATE_HEALTHY)
	}
	if fast.Err() != nil {
		t.Fatalf("fast subscriber: %v", fast.Err())
	}
	fast.Close()
	<-done
}

func TestPassiveFailuresTriggerAnImmediateReprobe(t *testing.T) {
	farm := startFarm(t, 1)
	h := fastHealth()
	h.Interval = time.Hour // only the passive signal can cause a second check soon
	e := open(t, proxyhealth.Config{Sources: []proxyhealth.SourceConfig{{Health: h, Probe: farmProbe(), Proxies: []string{farm.URL(0)}}}})
	id := e.ProxyIDs()[0]
	waitState(t, e, id, pb.HealthState_HEALTH_STATE_HEALTHY)
	n := farm.Checks(0)
	for range 3 {
		if err := e.ReportOutcome(proxyhealth.Outcome{ProxyID: id, Class: "timeout"}); err != nil {
			t.Fatal(err)
		}
	}
	poll(t, "re-probe after 3 passive failures", func() bool { return farm.Checks(0) > n })
}

func TestReconfigureSourceHotReloadsWithoutRestart(t *testing.T) {
	farm := startFarm(t, 3)
	sc := proxyhealth.SourceConfig{Name: "s", Health: fastHealth(), Probe: farmProbe(), Proxies: []string{farm.URL(0), farm.URL(1)}}
	e := open(t, proxyhealth.Config{Sources: []proxyhealth.SourceConfig{sc}})
	for _, id := range e.ProxyIDs() {
		waitState(t, e, id, pb.HealthState_HEALTH_STATE_HEALTHY)
	}
	keep := probe.MustParseProxyURL(farm.URL(1)).ID()
	before, _ := e.Proxy(context.Background(), keep)
	sc.Proxies = []string{farm.URL(1), farm.URL(2)}
	sc.Health.UnhealthyThreshold = 1
	if err := e.ReconfigureSource(context.Background(), sc); err != nil {
		t.Fatal(err)
	}
	ids := e.ProxyIDs()
	want := []string{probe.MustParseProxyURL(farm.URL(1)).ID(), probe.MustParseProxyURL(farm.URL(2)).ID()}
	if len(ids) != 2 || !(ids[0] == want[0] && ids[1] == want[1] || ids[0] == want[1] && ids[1] == want[0]) {
		t.Fatalf("ids %v, want %v", ids, want)
	}
	after, _ := e.Proxy(context.Background(), keep)
	if after.State.TotalChecks < before.State.TotalChecks {
		t.Fatal("kept proxy lost its state")
	}
	// The new threshold (1) applies: one refused check makes it unhealthy.
	_ = farm.Set(1, fakeproxy.Refuse())
	waitState(t, e, keep, pb.HealthState_HEALTH_STATE_UNHEALTHY)
	var removed bool
	for env, err := range e.Journal().ReadStream(context.Background(), probe.MustParseProxyURL(farm.URL(0)).ID(), 1) {
		if err != nil {
			t.Fatal(err)
		}
		removed = removed || env.GetProxyRemoved() != nil
	}
	if !removed {
		t.Fatal("proxy dropped from the config was not journaled as removed")
	}
}

func TestCloseWhileChecksAreInFlight(t *testing.T) {
	farm := startFarm(t, 20, fakeproxy.WithBehavior(fakeproxy.Blackhole()))
	urls := make([]string, 20)
	for i := range urls {
		urls[i] = farm.URL(i)
	}
	p := farmProbe()
	p.Timeout = time.Minute
	e, err := proxyhealth.Open(context.Background(), proxyhealth.Config{Sources: []proxyhealth.SourceConfig{{Health: fastHealth(), Probe: p, Proxies: urls}}})
	if err != nil {
		t.Fatal(err)
	}
	poll(t, "checks in flight", func() bool { _, n := e.Checking(""); return n == 20 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.AddProxy(ctx, "", "http://127.0.0.1:1"); !errors.Is(err, proxyhealth.ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

func TestJournalLockedByAnotherEngine(t *testing.T) {
	dir := t.TempDir()
	open(t, proxyhealth.Config{DataDir: dir})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := proxyhealth.Open(ctx, proxyhealth.Config{DataDir: dir})
	if !errors.Is(err, journal.ErrLocked) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second engine on the same data dir: %v", err)
	}
}

func poll(t *testing.T, what string, f func() bool) {
	t.Helper()
	testutil.Eventually(t, 15*time.Second, what, f)
}

// Retention deletes week-old events even when a proxy has been quiet
// (paused) since, because it snapshots every proxy first; a restart then
// recovers every proxy from snapshot + retained stream, and the live status
// still knows every proxy.
func TestRetentionWithQuietProxiesAndRestart(t *testing.T) {
	farm := startFarm(t, 3)
	dir := t.TempDir()
	clk := clock.NewFake(time.Now())
	cfg := proxyhealth.Config{
		DataDir: dir, Clock: clk, Retention: 7 * 24 * time.Hour,
		Sources: []proxyhealth.SourceConfig{
			{Name: "quiet", Health: fastHealth(), Probe: farmProbe(), Proxies: []string{farm.URL(0)}},
			{Name: "busy", Health: fastHealth(), Probe: farmProbe(), Proxies: []string{farm.URL(1), farm.URL(2)}},
		},
	}
	e := open(t, cfg)
	ctx := context.Background()
	ids := e.ProxyIDs()
	poll(t, "every proxy healthy", func() bool {
		clk.Advance(50 * time.Millisecond) // the fake clock fires due checks
		for _, id := range ids {
			if st, _ := e.Proxy(ctx, id); st.State.Health != pb.HealthState_HEALTH_STATE_HEALTHY {
				return false
			}
		}
		return true
	})
	// The quiet proxy writes nothing more: its events stay the oldest.
	if err := e.Pause(ctx, "quiet"); err != nil {
		t.Fatal(err)
	}
	// Nothing is a week old yet: retention deletes nothing, and does not
	// have every proxy snapshot its state first (at 100,000 proxies that
	// was 100,000 journal writes at every start).
	quiet := probe.MustParseProxyURL(farm.URL(0)).ID()
	if n, err := e.ApplyRetention(ctx); err != nil || n != 0 {
		t.Fatalf("retention of a young journal: %d deleted, %v; want 0, nil", n, err)
	}
	if _, err := e.Journal().LoadSnapshot(ctx, quiet); !errors.Is(err, journal.ErrNoSnapshot) {
		t.Fatalf("retention of a young journal had the quiet proxy snapshot its state (LoadSnapshot: %v)", err)
	}
	head := e.Journal().Head()
	// A week and a day later the busy proxies are checked again (the fake
	// clock fires their overdue timers).
	clk.Advance(8 * 24 * time.Hour)
	poll(t, "checks after the clock jump", func() bool {
		clk.Advance(50 * time.Millisecond)
		return e.Journal().Head() > head+2
	})
	// The hourly retention timer has run during the jump; run it once more.
	if _, err := e.ApplyRetention(ctx); err != nil {
		t.Fatal(err)
	}
	if first := e.Journal().First(); first <= head {
		t.Fatalf("first retained seq %d: the week-old events (up to seq %d) were not deleted", first, head)
	}
	if err := e.Journal().Check(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Journal().LoadSnapshot(ctx, quiet); err != nil {
		t.Fatalf("quiet proxy has no snapshot: %v", err)
	}
	// Quiesce: pause everything and let checks in flight land, so that the
	// state read below is the last one journaled.
	if err := e.Pause(ctx, ""); err != nil {
		t.Fatal(err)
	}
	poll(t, "no check in flight", func() bool { _, n := e.Checking(""); return n == 0 })
	if err := e.Pause(ctx, ""); err != nil { // a no-op that waits for pending appends
		t.Fatal(err)
	}
	before := map[string]events.State{}
	for _, id := range ids {
		st, err := e.Proxy(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		before[id] = st.State
	}
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}
	cfg.Clock = clock.NewFake(clk.Now()) // frozen: nothing new is checked
	e2 := open(t, cfg)
	for _, id := range ids {
		st, err := e2.Proxy(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if st.State.Health != before[id].Health || st.State.TotalChecks != before[id].TotalChecks ||
			st.State.StreamSeq != before[id].StreamSeq || st.State.Paused != before[id].Paused {
			t.Fatalf("proxy %s after restart %+v\nbefore %+v", id, st.State, before[id])
		}
		if v, ok := e2.Status().Proxy(id); !ok || v.State != events.StateName(before[id].Health) {
			t.Fatalf("live status of %s after retention and restart: %+v %v", id, v, ok)
		}
	}
}

// TestPoolStateSurvivesRetention: the pool's degraded and panic flags are
// known from pool events; once retention deleted those events, the
// running engine, an archive's status and a restarted engine still know
// the pool is degraded and in panic (the journal carries the newest
// pool-wide events it deleted), and neither the pool monitor nor the
// picker journals (and notifies) the same episode a second time.
func TestPoolStateSurvivesRetention(t *testing.T) {
	farm := startFarm(t, 4, fakeproxy.WithBehavior(fakeproxy.Reset()))
	dir := t.TempDir()
	clk := clock.NewFake(time.Now())
	var urls []string
	for i := range 4 {
		urls = append(urls, farm.URL(i))
	}
	cfg := proxyhealth.Config{
		DataDir: dir, Clock: clk, Retention: 7 * 24 * time.Hour,
		Sources: []proxyhealth.SourceConfig{{Name: "farm", Health: fastHealth(), Probe: farmProbe(), Proxies: urls}},
	}
	e := open(t, cfg)
	ctx := context.Background()
	poll(t, "the pool degraded and in panic", func() bool {
		clk.Advance(50 * time.Millisecond) // the fake clock fires due checks
		s := e.Status().Summary()
		return s.PoolDegraded && s.PanicMode
	})
	type reader interface {
		ReadJournal(context.Context, proxyhealth.JournalFilter) iter.Seq2[*pb.Envelope, error]
	}
	episode := func(r reader) (n int) {
		for _, err := range r.ReadJournal(ctx, proxyhealth.JournalFilter{Types: []string{"pool_degraded", "pool_recovered", "pool_panic_entered", "pool_panic_left"}}) {
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		return n
	}
	if n := episode(e); n != 2 {
		t.Fatalf("%d pool events, want pool_degraded and pool_panic_entered", n)
	}
	// A week and a day later the proxies are checked again (still
	// failing); retention deletes the episode's events.
	head := e.Journal().Head()
	clk.Advance(8 * 24 * time.Hour)
	poll(t, "checks after the clock jump", func() bool {
		clk.Advance(50 * time.Millisecond)
		return e.Journal().Head() > head+4
	})
	if _, err := e.ApplyRetention(ctx); err != nil {
		t.Fatal(err)
	}
	if first := e.Journal().First(); first <= head || episode(e) != 0 {
		t.Fatalf("first retained seq %d (head was %d), %d pool events left: retention did not delete the episode", first, head, episode(e))
	}
	if s := e.Status().Summary(); !s.PoolDegraded || !s.PanicMode {
		t.Fatalf("running engine after retention: degraded %v, panic %v", s.PoolDegraded, s.PanicMode)
	}
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}

	a, err := proxyhealth.OpenArchive(ctx, dir, proxyhealth.ArchiveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := a.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s := st.Summary(); !s.PoolDegraded || !s.PanicMode || s.Total != 4 {
		t.Errorf("archive status after retention: degraded %v, panic %v, %d proxies; want true, true, 4", s.PoolDegraded, s.PanicMode, s.Total)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	e2 := open(t, cfg)
	if s := e2.Status().Summary(); !s.PoolDegraded || !s.PanicMode {
		t.Fatalf("restarted engine: degraded %v, panic %v; want both still true", s.PoolDegraded, s.PanicMode)
	}
	// The same episode goes on: every proxy (failed by now) is revived,
	// checked again and fails.
	resumed := e2.Journal().Head()
	for _, id := range e2.ProxyIDs() {
		if err := e2.Revive(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	poll(t, "every proxy failing again, as the pool monitor sees it", func() bool {
		clk.Advance(50 * time.Millisecond)
		share, _ := e2.PoolShare()
		return e2.Journal().Head() >= resumed+8 && share.Known == 4
	})
	if share, _ := e2.PoolShare(); !share.Degraded || share.Healthy != 0 {
		t.Errorf("pool monitor after the restart: %+v, want degraded, none healthy", share)
	}
	if err := e2.Pause(ctx, ""); err != nil { // waits for pending appends
		t.Fatal(err)
	}
	for env, err := range e2.ReadJournal(ctx, proxyhealth.JournalFilter{Types: []string{"pool_degraded", "pool_panic_entered"}}) {
		if err != nil {
			t.Fatal(err)
		}
		t.Errorf("the episode journaled again after the restart: %s at seq %d", proxyhealth.EventType(env), env.GetSeq())
	}
}
