package fakeproxy

import (
	"context"
	"io"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// BenchmarkFarmServe measures how fast the farm serves checks: each op is a
// fresh connection carrying one absolute-form HEAD request, from 4×GOMAXPROCS
// client goroutines in the same process (so the figures include the
// client's cost too).
func BenchmarkFarmServe(b *testing.B) {
	for _, tc := range []struct {
		name string
		req  string
		b    Behavior
	}{
		{"http", "HEAD http://t.proxyhealth.test/ HTTP/1.1\r\nHost: t.proxyhealth.test\r\nConnection: close\r\n\r\n", OK()},
		{"socks5", "\x05\x01\x00" + "\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50" + "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n", OK()},
	} {
		b.Run(tc.name, func(b *testing.B) {
			f := startFarm(b, 8)
			req := []byte(tc.req)
			b.ReportAllocs()
			b.SetParallelism(4)
			start := time.Now()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				buf := make([]byte, 512)
				i := 0
				for pb.Next() {
					i++
					c, err := net.Dial("tcp", f.Addr(i%8))
					if err != nil {
						b.Error(err)
						return
					}
					c.Write(req)
					for {
						if _, err := c.Read(buf); err != nil {
							if err != io.EOF {
								b.Error(err)
							}
							break
						}
					}
					c.Close()
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "checks/s")
		})
	}
}

// BenchmarkFarmStart10k starts and stops a 10,000-proxy farm and reports
// the heap and goroutine-stack memory it holds per proxy while idle. Each
// iteration takes about 0.3 s: run it alone with -benchtime=1x.
func BenchmarkFarmStart10k(b *testing.B) {
	if raceEnabled {
		b.Skip("the race detector allows at most 8128 goroutines")
	}
	const n = 10000
	for b.Loop() {
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		f, err := Start(context.Background(), n)
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		b.ReportMetric(float64(int64(m1.HeapInuse)-int64(m0.HeapInuse))/n, "heap-B/proxy")
		b.ReportMetric(float64(int64(m1.StackInuse)-int64(m0.StackInuse))/n, "stack-B/proxy")
		f.Close()
	}
}

// BenchmarkRecord measures what counting a check costs the farm's accept
// loop (under the proxy's lock): the per-proxy counters, the per-source
// slice and, with a window, the overlap counts; checks come from three
// source addresses in turn, as from three cluster members.
func BenchmarkRecord(b *testing.B) {
	srcs := []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("127.0.0.4")}
	for _, window := range []time.Duration{0, time.Minute} {
		b.Run("overlap="+window.String(), func(b *testing.B) {
			p := &proxy{f: &Farm{opts: options{overlap: window}}}
			now := time.Now()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				now = now.Add(time.Millisecond)
				p.record(srcs[i%len(srcs)], now)
				i++
			}
		})
	}
}
