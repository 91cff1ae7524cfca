package projections_test

import (
	"runtime"
	"testing"

	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/projections"
)

// BenchmarkLiveBytesPerProxy reports the Go heap the live status keeps per
// proxy after folding 100,000 realistic events of 10,000 proxies (the
// events stay alive outside the measurement, so strings shared with them
// are not counted).
func BenchmarkLiveBytesPerProxy(b *testing.B) {
	const proxies = 10_000
	envs := committed(b, 1, proxies, 10*proxies)
	var perProxy float64
	for range b.N {
		before := testutil.HeapInUse()
		l := projections.NewLive(projections.LiveOptions{})
		l.Apply(envs...)
		perProxy = float64(testutil.HeapInUse()-before) / proxies
		if got := l.Summary().Total; got == 0 {
			b.Fatal("no proxies")
		}
		runtime.KeepAlive(l)
	}
	b.ReportMetric(perProxy, "B/proxy")
}
