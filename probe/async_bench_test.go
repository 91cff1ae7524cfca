package probe

import (
	"context"
	"sync"
	"testing"
)

// benchInFlight is how many checks the concurrent benchmarks keep in
// flight, against a child-process farm of as many proxies.
const benchInFlight = 1000

// benchCheckCase is one configuration of the concurrent benchmarks.
type benchCheckCase struct {
	name, scheme string
	cfg          Config
}

var benchCheckCases = []benchCheckCase{
	{"http", "http", Config{TargetURL: "http://bench.proxyhealth.test/"}},
	{"socks5h", "socks5h", Config{TargetURL: "http://bench.proxyhealth.test/"}},
	{"tcp-connect", "http", Config{Mode: ModeTCPConnect}},
	// http from Config.SourceIP: what the bind(2) before connect(2) costs.
	{"http-source", "http", Config{TargetURL: "http://bench.proxyhealth.test/", SourceIP: source7}},
}

// runInFlight runs b.N checks, at most benchInFlight at once, over the
// farm's proxies in turn; start launches check i and must call finish(r)
// exactly once, from any goroutine. A collector goroutine receives every
// result, as a proxy's actor would, and frees the slot. It reports the
// checking process's CPU per check (getrusage RUSAGE_SELF; the farm is
// another process): user-µs/check and sys-µs/check.
func runInFlight(b *testing.B, f benchFarm, scheme string, start func(p ProxyURL, finish func(Result))) {
	proxies := make([]ProxyURL, len(f.addrs))
	for i, a := range f.addrs {
		proxies[i] = MustParseProxyURL(scheme + "://" + a)
	}
	results := make(chan Result, benchInFlight)
	slots := make(chan struct{}, benchInFlight)
	finish := func(r Result) { results <- r }
	var failed int
	var first Result
	collected := make(chan struct{})
	n := b.N
	go func() {
		defer close(collected)
		for range n {
			r := <-results
			if !r.OK() {
				if failed == 0 {
					first = r
				}
				failed++
			}
			<-slots
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	u0, s0 := cpuTimes()
	for i := range n {
		slots <- struct{}{}
		start(proxies[i%len(proxies)], finish)
	}
	<-collected
	u1, s1 := cpuTimes()
	b.StopTimer()
	if failed > 0 {
		b.Fatalf("%d of %d checks failed, first: %+v", failed, n, first)
	}
	b.ReportMetric(float64((u1-u0).Nanoseconds())/float64(n)/1e3, "user-µs/check")
	b.ReportMetric(float64((s1-s0).Nanoseconds())/float64(n)/1e3, "sys-µs/check")
}

// BenchmarkCheckInFlight runs Check as the engine did before CheckAsync:
// each check on a pooled goroutine (benchInFlight workers), its result sent
// to a collector, benchInFlight checks in flight against a child-process
// farm of benchInFlight proxies.
func BenchmarkCheckInFlight(b *testing.B) {
	for _, tc := range benchCheckCases {
		b.Run(tc.name, func(b *testing.B) {
			f := startChildFarm(b, benchInFlight)
			c := newChecker(b, tc.cfg)
			ctx, cancel := context.WithCancel(context.Background()) // cancelable, as the actors' are
			defer cancel()
			type job struct {
				p      ProxyURL
				finish func(Result)
			}
			jobs := make(chan job)
			var wg sync.WaitGroup
			for range benchInFlight {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := range jobs {
						j.finish(c.Check(ctx, j.p))
					}
				}()
			}
			runInFlight(b, f, tc.scheme, func(p ProxyURL, finish func(Result)) { jobs <- job{p, finish} })
			close(jobs)
			wg.Wait()
		})
	}
}

// BenchmarkCheckAsync is BenchmarkCheckInFlight with CheckAsync: the checks
// run on the event loop and done sends the result to the collector.
func BenchmarkCheckAsync(b *testing.B) {
	for _, tc := range benchCheckCases {
		b.Run(tc.name, func(b *testing.B) {
			f := startChildFarm(b, benchInFlight)
			c := newChecker(b, tc.cfg)
			p := MustParseProxyURL(tc.scheme + "://" + f.addrs[0])
			if !c.fastPath(p) {
				b.Fatal("not on the fast path")
			}
			ctx, cancel := context.WithCancel(context.Background()) // cancelable, as the actors' are
			defer cancel()
			runInFlight(b, f, tc.scheme, func(p ProxyURL, finish func(Result)) { c.CheckAsync(ctx, p, DoneFunc(finish)) })
		})
	}
}
