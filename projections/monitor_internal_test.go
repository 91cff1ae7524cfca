package projections

import (
	"context"
	"testing"

	"github.com/proxyhealth/proxyhealth/journal"
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
