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
	urls := make([]string, proxies)
	for i := range urls {
		urls[i] = fmt.Sprintf("http://10.%d.%d.%d:3128", i>>16&255, i>>8&255, i&255)
	}
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
