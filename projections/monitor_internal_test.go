package projections

import (
	"context"
	"testing"

	"github.com/proxyhealth/proxyhealth/journal"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// TestPoolMonitorEvaluateAllocatesOnlyToJournal: evaluate runs for every
// check; while the pool stays on its side of the threshold it journals
// nothing and allocates nothing.
func TestPoolMonitorEvaluateAllocatesOnlyToJournal(t *testing.T) {
	j := journal.NewMem()
	defer j.Close()
	m, err := NewPoolMonitor(j, PoolMonitorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m.total, m.healthy = 10, 10 // all healthy: above the threshold
	if n := testing.AllocsPerRun(100, func() {
		if err := m.evaluate(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("evaluate of a healthy pool: %v allocations, want 0", n)
	}
	if h := j.Head(); h != 0 {
		t.Fatalf("a healthy pool journaled %d events", h)
	}
	m.healthy = 1 // below the threshold: one PoolDegraded
	if err := m.evaluate(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if h := j.Head(); h != 1 {
		t.Fatalf("a pool below its threshold journaled %d events, want 1", h)
	}
}

// TestPoolMonitorHugeStreamSeqs: a stream seq too large for a monProxy
// (never, in practice) is kept exactly all the same, so that duplicates
// are still recognized.
func TestPoolMonitorHugeStreamSeqs(t *testing.T) {
	j := journal.NewMem()
	defer j.Close()
	m, err := NewPoolMonitor(j, PoolMonitorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	seq := uint64(0)
	apply := func(streamSeq uint64, e *pb.Envelope) {
		seq++
		e.Seq, e.StreamSeq, e.ProxyId, e.Source = seq, streamSeq, "p", "s"
		m.apply(ctx, e)
	}
	to := func(h pb.HealthState) *pb.Envelope {
		return &pb.Envelope{Event: &pb.Envelope_StateChanged{StateChanged: &pb.StateChanged{To: h}}}
	}
	const limit = monSeqLimit
	apply(limit-1, &pb.Envelope{Event: &pb.Envelope_ProxyAdded{ProxyAdded: &pb.ProxyAdded{Source: "s"}}})
	apply(limit, to(pb.HealthState_HEALTH_STATE_HEALTHY)) // moves to big
	if len(m.proxies) != 0 || len(m.big) != 1 {
		t.Fatalf("proxies %d, big %d: want the proxy in big", len(m.proxies), len(m.big))
	}
	apply(limit, to(pb.HealthState_HEALTH_STATE_UNHEALTHY)) // a duplicate: ignored
	if s := m.Share(); s.Healthy != 1 || s.Total != 1 {
		t.Fatalf("after a duplicate: %+v", s)
	}
	apply(limit+1, to(pb.HealthState_HEALTH_STATE_UNHEALTHY))
	if s := m.Share(); s.Healthy != 0 || s.Known != 1 || s.Total != 1 {
		t.Fatalf("after a transition: %+v", s)
	}
	apply(limit+2, &pb.Envelope{Event: &pb.Envelope_ProxyRemoved{ProxyRemoved: &pb.ProxyRemoved{}}})
	if s := m.Share(); s.Total != 0 || len(m.proxies) != 0 || len(m.big) != 0 {
		t.Fatalf("after the removal: %+v, proxies %d, big %d", s, len(m.proxies), len(m.big))
	}
}
