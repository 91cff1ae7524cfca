package proxyhealth

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/actors"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/probe"
	"github.com/proxyhealth/proxyhealth/projections"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
	"github.com/proxyhealth/proxyhealth/rotation"
)

// TestLargePoolsPublishCheckResultsTogether: in a pool of 6,000 proxies,
// a batch of check results, or of proxies added, reaches the picker within
// publishDelay (not with every batch, which cost a first sweep of 100,000
// proxies a quarter of the engine's CPU in rebuilding the picker's
// groups), while a batch with an operator's command goes out at once, with
// the results owed.
func TestLargePoolsPublishCheckResultsTogether(t *testing.T) {
	const n = 6000
	if publishDelay(n) == 0 || publishDelay(4999) != 0 || publishDelay(10_000) != 100*time.Millisecond || publishDelay(1_000_000) != time.Second {
		t.Fatalf("publishDelay: %v %v %v %v", publishDelay(n), publishDelay(4999), publishDelay(10_000), publishDelay(1_000_000))
	}
	pool, err := rotation.NewPool(rotation.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	live := projections.NewLive(projections.LiveOptions{})
	j := journal.NewMem()
	defer j.Close()
	running := map[string]*proxy{}
	r := &rotator{pool: pool, budget: actors.NewEjectionBudget(0.5), journal: j, log: slog.New(slog.DiscardHandler),
		now: func() int64 { return time.Now().UnixNano() }, threshold: 50, touched: map[string]struct{}{},
		proxy: func(id string) (*proxy, bool) { p, ok := running[id]; return p, ok }}
	frozen := time.Now()
	r.mono = func() time.Time { return frozen } // applying a batch under -race takes longer than the delay
	r.follow(live)
	defer func() { // before the journal closes: a panic-mode event may still be on its way to it
		r.close()
		r.wait()
	}()
	at := time.Now()
	var seq uint64
	streams := map[string]uint64{}
	env := func(id string, ev *pb.Envelope) *pb.Envelope {
		seq++
		streams[id]++
		ev.ProxyId, ev.Source, ev.AtUnixNano, ev.Seq, ev.StreamSeq = id, "s", at.UnixNano(), seq, streams[id]
		return ev
	}
	var added, checked []*pb.Envelope
	ids := make([]string, n+10)
	for i := range ids {
		u, err := probe.ParseProxyURL(fmt.Sprintf("http://10.%d.%d.%d:3128", i>>16, (i>>8)&255, i&255))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = u.ID()
		running[ids[i]] = &proxy{url: u, spec: actors.ProxySpec{Source: "s"}}
		added = append(added, env(ids[i], &pb.Envelope{Event: &pb.Envelope_ProxyAdded{ProxyAdded: &pb.ProxyAdded{UrlRedacted: u.Redacted(), Source: "s"}}}))
	}
	for i := range ids[:n] {
		checked = append(checked,
			env(ids[i], &pb.Envelope{Event: &pb.Envelope_CheckSucceeded{CheckSucceeded: &pb.CheckSucceeded{StatusCode: 204, Latency: &pb.Latency{TotalNs: 1e6}}}}),
			env(ids[i], &pb.Envelope{Event: &pb.Envelope_StateChanged{StateChanged: &pb.StateChanged{
				From: pb.HealthState_HEALTH_STATE_UNKNOWN, To: pb.HealthState_HEALTH_STATE_HEALTHY}}}))
	}
	feed := func(batch []*pb.Envelope) {
		live.Apply(batch...)
		r.apply(batch)
	}
	feed(added[:n]) // into a small pool (none yet): published at once
	if got := pool.Len(); got != n {
		t.Fatalf("pool has %d members after the additions, want %d", got, n)
	}
	feed(added[n:]) // ten more, right after a publish: owed
	if got := pool.Len(); got != n {
		t.Fatalf("pool has %d members right after ten more were added, want them held back (%d)", got, n)
	}
	testutil.Eventually(t, 10*time.Second, "the owed publish of the additions", func() bool { return pool.Len() == n+10 })
	feed(checked[:n]) // half the pool checked, right after a publish: owed
	if got := pool.Panic().Usable; got != 0 {
		t.Fatalf("%d usable right after the check results, want them held back (0)", got)
	}
	testutil.Eventually(t, 10*time.Second, "the owed publish", func() bool { return pool.Panic().Usable == n/2 })

	feed(checked[n:]) // the other half, owed again
	pause := env(ids[0], &pb.Envelope{Event: &pb.Envelope_ProxyPaused{ProxyPaused: &pb.ProxyPaused{Reason: "operator"}}})
	feed([]*pb.Envelope{pause}) // an operator's command: at once, with the owed results
	if got := pool.Panic().Usable; got != n-1 {
		t.Fatalf("%d usable right after a pause, want %d (the owed results and the pause published at once)", got, n-1)
	}
}
