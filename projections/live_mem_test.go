package projections_test

import (
	"runtime"
	"testing"

	"github.com/proxyhealth/proxyhealth/projections"
)

// heapInUse returns the bytes of live heap objects after a full collection.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// BenchmarkLiveBytesPerProxy reports the Go heap the live status keeps per
// proxy after folding 100,000 realistic events of 10,000 proxies (the
// events stay alive outside the measurement, so strings shared with them
// are not counted).
func BenchmarkLiveBytesPerProxy(b *testing.B) {
	const proxies = 10_000
	envs := committed(b, 1, proxies, 10*proxies)
	var perProxy float64
	for range b.N {
		before := heapInUse()
		l := projections.NewLive(projections.LiveOptions{})
		l.Apply(envs...)
		perProxy = float64(heapInUse()-before) / proxies
		if got := l.Summary().Total; got == 0 {
			b.Fatal("no proxies")
		}
		runtime.KeepAlive(l)
	}
	b.ReportMetric(perProxy, "B/proxy")
}
