package membership

import (
	"runtime"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/etcdtest"
)

// Idle members stay fresh at every read (the keep-alive runs every TTL/4,
// so the confirmation never lapses), and the test reports what an idle
// member costs in goroutines and heap.
func TestIdleMembersStayFresh(t *testing.T) {
	e := etcdtest.Start(t)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()

	ms := joinN(t, e, "idle", 3)
	allSee(t, ms, selves(ms), 5*time.Second)

	// The measurement window: two TTLs of reads, one every millisecond.
	reads, stale := 0, 0
	for end := time.Now().Add(2 * testTTL); time.Now().Before(end); time.Sleep(time.Millisecond) {
		for _, m := range ms {
			reads++
			if !m.Fresh() {
				stale++
			}
		}
	}
	if stale != 0 {
		t.Errorf("%d of %d reads of Fresh were false on idle members", stale, reads)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	t.Logf("%d reads of Fresh, %d false; per idle member (3 in one process, one etcd): %d goroutines, %.1f MiB heap",
		reads, stale, (runtime.NumGoroutine()-g0)/len(ms), float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(len(ms))/(1<<20))
}

func BenchmarkFresh(b *testing.B) {
	p := &provider{}
	p.freshUntil.Store(int64(mono() + time.Hour))
	for b.Loop() {
		if !p.fresh() {
			b.Fatal("not fresh")
		}
	}
}
