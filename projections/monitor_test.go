package projections_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/gen"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// pool drives proxy states by appending events to a journal, like the
// actors would.
type pool struct {
	t     *testing.T
	j     journal.Journal
	state map[string]pb.HealthState
	now   time.Time
}

func newPool(t *testing.T, j journal.Journal, n int) *pool {
	p := &pool{t: t, j: j, state: map[string]pb.HealthState{}, now: t0}
	var envs []*pb.Envelope
	for i := range n {
		id := fmt.Sprintf("p%02d", i)
		p.state[id] = unknown
		envs = append(envs, &pb.Envelope{ProxyId: id, Source: "s", AtUnixNano: p.now.UnixNano(),
			Event: &pb.Envelope_ProxyAdded{ProxyAdded: &pb.ProxyAdded{UrlRedacted: "http://10.0.0.1:" + fmt.Sprint(1000+i), Source: "s"}}})
	}
	p.append(envs...)
	return p
}

func (p *pool) append(envs ...*pb.Envelope) {
	p.t.Helper()
	if _, err := p.j.Append(context.Background(), envs); err != nil {
		p.t.Fatal(err)
	}
}

// set moves proxy i to state to.
func (p *pool) set(i int, to pb.HealthState) {
	id := fmt.Sprintf("p%02d", i)
	p.now = p.now.Add(time.Second)
	from := p.state[id]
	p.state[id] = to
	p.append(&pb.Envelope{ProxyId: id, Source: "s", AtUnixNano: p.now.UnixNano(),
		Event: &pb.Envelope_StateChanged{StateChanged: &pb.StateChanged{From: from, To: to, Reason: "test"}}})
}

// healthy makes exactly k of the first n proxies healthy, the others
// unhealthy.
func (p *pool) healthy(k, n int) {
	for i := range n {
		want := unhealthy
		if i < k {
			want = healthy
		}
		if p.state[fmt.Sprintf("p%02d", i)] != want {
			p.set(i, want)
		}
	}
}

// poolEvents lists the pool-level event types in the journal.
func poolEvents(t *testing.T, j journal.Journal) []string {
	t.Helper()
	var out []string
	for e, err := range j.Read(context.Background(), 1) {
		if err != nil {
			t.Fatal(err)
		}
		switch ev := e.GetEvent().(type) {
		case *pb.Envelope_PoolDegraded:
			out = append(out, fmt.Sprintf("degraded@%.0f", ev.PoolDegraded.GetHealthyPercentage()))
		case *pb.Envelope_PoolRecovered:
			out = append(out, fmt.Sprintf("recovered@%.0f", ev.PoolRecovered.GetHealthyPercentage()))
		}
	}
	return out
}

// runMonitor starts m.Run; the returned function waits until m has
// processed the whole journal (including what it appended itself).
func runMonitor(t *testing.T, j journal.Journal, opts projections.PoolMonitorOptions) (m *projections.PoolMonitor, settle func(), stop func()) {
	t.Helper()
	m, err := projections.NewPoolMonitor(j, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := m.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	settle = func() {
		t.Helper()
		poll(t, "the monitor to catch up", func() bool { return m.Share().Seq == j.Head() })
	}
	return m, settle, func() { cancel(); wg.Wait() }
}

func poll(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, what, cond)
}

func TestPoolMonitorEdgeTriggeredWithHysteresis(t *testing.T) {
	j := journal.NewMem()
	t.Cleanup(func() { j.Close() }) // after the notifier's cleanup (LIFO)
	p := newPool(t, j, 10)
	m, settle, stop := runMonitor(t, j, projections.PoolMonitorOptions{})
	defer stop()
	settle()

	// Start-up: a first failing proxy alone must not raise the alarm (1 of
	// 10 known < MinKnown 0.5).
	p.set(0, degraded)
	p.set(1, degraded)
	settle()
	if ev := poolEvents(t, j); len(ev) != 0 {
		t.Fatalf("fired during start-up: %v", ev)
	}
	p.healthy(10, 10)
	settle()
	// Fall to 40 %: one PoolDegraded, however long it stays low or wobbles
	// below threshold + margin.
	p.healthy(4, 10)
	settle()
	for _, k := range []int{5, 4, 3, 5, 2, 5} {
		p.healthy(k, 10)
		settle()
	}
	if got := poolEvents(t, j); fmt.Sprint(got) != "[degraded@40]" {
		t.Fatalf("after oscillating below 60 %%: %v", got)
	}
	if s := m.Share(); !s.Degraded || s.Fired != 1 {
		t.Fatalf("share %+v", s)
	}
	// 60 % = threshold + margin: recovered, once.
	p.healthy(6, 10)
	settle()
	p.healthy(9, 10)
	p.healthy(6, 10)
	settle()
	// A second episode.
	p.healthy(4, 10)
	settle()
	p.healthy(5, 10)
	p.healthy(3, 10)
	settle()
	if got := poolEvents(t, j); fmt.Sprint(got) != "[degraded@40 recovered@60 degraded@40]" {
		t.Fatalf("events %v", got)
	}
	// The appended events carry the numbers.
	var last *pb.PoolDegraded
	for e, err := range j.Read(context.Background(), 1) {
		if err != nil {
			t.Fatal(err)
		}
		if d := e.GetPoolDegraded(); d != nil {
			last = d
			if e.GetProxyId() != "" || e.GetAtUnixNano() == 0 {
				t.Errorf("pool event header %v", e)
			}
		}
	}
	if last.GetThresholdPercentage() != 50 || last.GetHealthy() != 4 || last.GetTotal() != 10 {
		t.Errorf("PoolDegraded %v", last)
	}
}

func TestPoolMonitorRestartDoesNotRefire(t *testing.T) {
	j := journal.NewMem()
	t.Cleanup(func() { j.Close() }) // after the notifier's cleanup (LIFO)
	p := newPool(t, j, 10)
	p.healthy(10, 10)
	_, settle, stop := runMonitor(t, j, projections.PoolMonitorOptions{})
	settle()
	p.healthy(2, 10)
	settle()
	stop()
	if got := poolEvents(t, j); fmt.Sprint(got) != "[degraded@40]" {
		t.Fatalf("events %v", got)
	}
	// While no monitor runs the pool gets worse; a restarted monitor knows
	// it is already degraded.
	p.healthy(1, 10)
	m, settle, stop := runMonitor(t, j, projections.PoolMonitorOptions{})
	defer stop()
	settle()
	p.healthy(3, 10)
	settle()
	if got := poolEvents(t, j); fmt.Sprint(got) != "[degraded@40]" {
		t.Fatalf("restart re-fired: %v", got)
	}
	if s := m.Share(); !s.Degraded || s.Fired != 0 || s.Healthy != 3 || s.Known != 10 {
		t.Fatalf("share %+v", s)
	}
	p.healthy(7, 10)
	settle()
	if got := poolEvents(t, j); fmt.Sprint(got) != "[degraded@40 recovered@60]" {
		t.Fatalf("events %v", got)
	}
}

// TestPoolMonitorAfterRetention: retention deleted every event, the
// degraded one too; a restarted monitor still knows the pool is degraded
// (the journal carried the event) and counts every proxy (from their
// snapshots), so it neither fires again nor misses the recovery.
func TestPoolMonitorAfterRetention(t *testing.T) {
	ctx := context.Background()
	j := journal.NewMem()
	t.Cleanup(func() { j.Close() })
	p := newPool(t, j, 10)
	p.healthy(10, 10)
	_, settle, stop := runMonitor(t, j, projections.PoolMonitorOptions{})
	settle()
	p.healthy(2, 10)
	settle()
	stop()
	// A check after the pool event: the carried event is not the last one
	// retention deletes, so the restarted monitor must count the deleted
	// events as processed on its own (it once waited for them forever).
	p.now = p.now.Add(time.Second)
	p.append(&pb.Envelope{ProxyId: "p09", Source: "s", AtUnixNano: p.now.UnixNano(),
		Event: &pb.Envelope_CheckFailed{CheckFailed: &pb.CheckFailed{}}})
	if err := gen.SaveSnapshots(ctx, j, gen.States(readAll(t, j))); err != nil {
		t.Fatal(err)
	}
	if n, err := j.Retain(ctx, p.now.Add(time.Hour)); err != nil || uint64(n) != j.Head() {
		t.Fatalf("Retain = %d, %v; want every one of %d events deleted", n, err, j.Head())
	}
	m, settle, stop := runMonitor(t, j, projections.PoolMonitorOptions{})
	defer stop()
	settle()
	if s := m.Share(); !s.Degraded || s.Total != 10 || s.Known != 10 || s.Healthy != 2 {
		t.Fatalf("share after retention %+v, want degraded, 2 of 10 healthy", s)
	}
	p.healthy(3, 10)
	settle()
	p.healthy(7, 10)
	settle()
	if got := poolEvents(t, j); fmt.Sprint(got) != "[recovered@60]" {
		t.Fatalf("events after retention %v, want only the recovery", got)
	}
}

// TestPoolMonitorFiresAtStartWhenNeeded: a pool that degraded while no
// monitor ran is reported once the monitor has replayed to the head.
func TestPoolMonitorFiresAtStartWhenNeeded(t *testing.T) {
	j := journal.NewMem()
	t.Cleanup(func() { j.Close() }) // after the notifier's cleanup (LIFO)
	p := newPool(t, j, 4)
	p.healthy(1, 4)
	_, settle, stop := runMonitor(t, j, projections.PoolMonitorOptions{Threshold: 30, Margin: -1, MinKnown: -1})
	defer stop()
	settle()
	if got := poolEvents(t, j); fmt.Sprint(got) != "[degraded@25]" {
		t.Fatalf("events %v", got)
	}
	p.healthy(2, 4) // 50 % ≥ 30 + 0: recovered (margin 0)
	settle()
	p.set(3, pb.HealthState_HEALTH_STATE_UNKNOWN) // revived: 2 of 3 known
	settle()
	if got := poolEvents(t, j); fmt.Sprint(got) != "[degraded@25 recovered@50]" {
		t.Fatalf("events %v", got)
	}
}

func TestPoolMonitorOptions(t *testing.T) {
	j := journal.NewMem()
	t.Cleanup(func() { j.Close() }) // after the notifier's cleanup (LIFO)
	for _, o := range []projections.PoolMonitorOptions{{Threshold: 120}, {Threshold: -5}, {MinKnown: 2}, {Margin: 101}} {
		if _, err := projections.NewPoolMonitor(j, o); !errors.Is(err, projections.ErrBadOption) {
			t.Errorf("%+v: %v", o, err)
		}
	}
}

// TestPoolAlertEndToEnd wires the monitor, the notifier (with a webhook)
// and the live projection to one journal.
func TestPoolAlertEndToEnd(t *testing.T) {
	j := journal.NewMem()
	t.Cleanup(func() { j.Close() }) // after the notifier's cleanup (LIFO)
	p := newPool(t, j, 10)
	p.healthy(10, 10)
	srv := newHookServer(t, nil)
	defer srv.Close()
	n, _ := runNotifier(t, j, projections.NotifierOptions{Webhooks: []projections.WebhookOptions{{URL: srv.URL, Types: []string{projections.NotifyPoolDegraded, projections.NotifyPoolRecovered}}}})
	_, settle, stop := runMonitor(t, j, projections.PoolMonitorOptions{})
	defer stop()
	live := projections.NewLive(projections.LiveOptions{})
	p.healthy(3, 10)
	settle()
	poll(t, "the pool_degraded webhook", func() bool { return len(srv.received()) == 1 })
	got := srv.received()[0]
	if got.Type != projections.NotifyPoolDegraded || got.HealthyPercentage != 40 || got.Total != 10 {
		t.Fatalf("webhook got %+v", got)
	}
	live.Apply(readAll(t, j)...)
	if s := live.Summary(); !s.PoolDegraded || s.Healthy != 3 || s.Unhealthy != 7 {
		t.Fatalf("summary %+v", s)
	}
	p.healthy(8, 10)
	settle()
	poll(t, "the pool_recovered webhook", func() bool { return len(srv.received()) == 2 })
	live.Apply(readAll(t, j)...)
	if live.Summary().PoolDegraded {
		t.Fatal("still degraded")
	}
	// 7 proxy_down, 5 proxy_recovered, 2 pool events; the webhook takes
	// only the pool ones.
	poll(t, "all notifications", func() bool { return n.Stats().Notified == 14 })
	// The server may see the POST before the notifier counts it delivered.
	poll(t, "both webhooks counted delivered", func() bool { return n.Stats().Webhooks[0].Delivered == 2 })
	if s := n.Stats(); s.Webhooks[0].Failed != 0 || s.Webhooks[0].Dropped != 0 {
		t.Fatalf("stats %+v", s)
	}
}
