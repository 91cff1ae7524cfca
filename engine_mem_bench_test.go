package proxyhealth_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/internal/clock"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// BenchmarkEngineBytesPerProxy reports the live heap an engine (in-memory
// journal, fake clock) grows by per proxy when a source of 10,000 is added
// to it: everything a proxy costs, the engine's record, its spec, its actor,
// its journal events and its projections' entries. The clock never moves,
// so no check runs (a new proxy's first one is due a while after it is
// added): what is measured is what a proxy holds between checks.
func BenchmarkEngineBytesPerProxy(b *testing.B) {
	const proxies = 10_000
	urls := benchProxyURLs(proxies)
	h := events.DefaultConfig()
	h.Interval = time.Hour
	var perProxy float64
	for range b.N {
		ctx := context.Background()
		e, err := proxyhealth.Open(ctx, proxyhealth.Config{Clock: clock.NewFake(t0),
			Sources: []proxyhealth.SourceConfig{{Name: "a", Health: h, Probe: farmProbe()}}})
		if err != nil {
			b.Fatal(err)
		}
		before := testutil.HeapInUse()
		if err := e.ReconfigureSource(ctx, proxyhealth.SourceConfig{Name: "a", Health: h, Probe: farmProbe(), Proxies: urls}); err != nil {
			b.Fatal(err)
		}
		perProxy = float64(testutil.HeapInUse()-before) / proxies
		ids := e.ProxyIDs()
		if len(ids) != proxies {
			b.Fatalf("%d proxies monitored, want %d", len(ids), proxies)
		}
		if _, checking := e.Checking(ids[0]); checking != 0 {
			b.Fatalf("%d checks in flight: the figure would count them", checking)
		}
		runtime.KeepAlive(e)
		if err := e.Close(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(perProxy, "B/proxy")
}

// benchProxyURLs returns n distinct proxy URLs (not listening anywhere).
func benchProxyURLs(n int) []string {
	urls := make([]string, n)
	for i := range urls {
		urls[i] = fmt.Sprintf("http://10.%d.%d.%d:3128", i>>16&255, i>>8&255, i&255)
	}
	return urls
}

// BenchmarkEngineAddProxies measures what adding proxies costs before any
// check runs, as a first start of the daemon does for its whole pool: a
// source of 10,000 added to an engine with a bbolt journal (fsync'd, as in
// the daemon) and a fake clock that never moves, until the live status
// counts them all. Each proxy gets its record, its actor (which recovers
// from the journal and journals its ProxyAdded) and its projections'
// entries. Reported: CPU per proxy (the process's, so the journal writer
// and projections count) and Go heap allocated per proxy.
func BenchmarkEngineAddProxies(b *testing.B) {
	const proxies = 10_000
	urls := benchProxyURLs(proxies)
	h := events.DefaultConfig()
	h.Interval = time.Hour
	var cpu time.Duration
	var alloc uint64
	for range b.N {
		ctx := context.Background()
		e, err := proxyhealth.Open(ctx, proxyhealth.Config{Clock: clock.NewFake(t0), DataDir: b.TempDir(),
			Sources: []proxyhealth.SourceConfig{{Name: "a", Health: h, Probe: farmProbe()}}})
		if err != nil {
			b.Fatal(err)
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		alloc0, cpu0 := ms.TotalAlloc, cpuTime()
		if err := e.ReconfigureSource(ctx, proxyhealth.SourceConfig{Name: "a", Health: h, Probe: farmProbe(), Proxies: urls}); err != nil {
			b.Fatal(err)
		}
		testutil.Eventually(b, time.Minute, "the live status counts every proxy added",
			func() bool { return e.Status().Summary().Counts.Total == proxies })
		cpu += cpuTime() - cpu0
		runtime.ReadMemStats(&ms)
		alloc += ms.TotalAlloc - alloc0
		if n := len(e.ProxyIDs()); n != proxies {
			b.Fatalf("%d proxies monitored, want %d", n, proxies)
		}
		if err := e.Close(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*proxies), "cpu-µs/proxy")
	b.ReportMetric(float64(alloc)/float64(b.N*proxies), "alloc-B/proxy")
}
