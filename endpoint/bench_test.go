package endpoint

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/rotation"
)

// benchSetup starts one fake proxy and, for the endpoint case, an endpoint
// in front of it; it returns a client and the target to GET. The farm
// closes its connection after each response, so both cases open one
// connection to the fake proxy per request; the endpoint case also keeps
// a connection to the endpoint.
func benchSetup(b *testing.B, viaEndpoint bool) (*http.Client, string) {
	farm, err := fakeproxy.Start(context.Background(), 1)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(farm.Close)
	proxy := farm.URL(0)
	if viaEndpoint {
		r := newRotator(b, farm.URL(0))
		_, addr := startServer(b, benchRotator{r.ups[0]}, Config{})
		proxy = "http://" + addr
	}
	u, _ := url.Parse(proxy)
	tr := &http.Transport{Proxy: http.ProxyURL(u), MaxIdleConnsPerHost: 256, DisableCompression: true}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}, "http://target.proxyhealth.test/"
}

// benchRotator always picks the one upstream and records nothing, so a
// long benchmark does not grow a slice.
type benchRotator struct{ p rotation.Pick }

func (r benchRotator) Pick(rotation.Request) (rotation.Pick, error) { return r.p, nil }
func (benchRotator) ReportOutcome(rotation.Outcome) error           { return nil }

func fetch(b *testing.B, c *http.Client, target string) {
	resp, err := c.Get(target)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("status %s", resp.Status)
	}
}

// cpuTime returns the process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkThroughput: parallel GETs through one fake proxy, directly and
// through the endpoint; req/s is the figure to compare. cpu-µs/op is the
// whole process's CPU per request (client, endpoint and fake proxy, all in
// this process): the endpoint's own cost is the difference.
func BenchmarkThroughput(b *testing.B) {
	for _, tc := range []struct {
		name string
		via  bool
	}{{"direct", false}, {"endpoint", true}} {
		b.Run(tc.name, func(b *testing.B) {
			c, target := benchSetup(b, tc.via)
			b.SetParallelism(4)
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					fetch(b, c, target)
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

// BenchmarkLatency: sequential GETs; p50 and p99 of single requests.
func BenchmarkLatency(b *testing.B) {
	for _, tc := range []struct {
		name string
		via  bool
	}{{"direct", false}, {"endpoint", true}} {
		b.Run(tc.name, func(b *testing.B) {
			c, target := benchSetup(b, tc.via)
			fetch(b, c, target) // warm up the connection to the endpoint
			samples := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for b.Loop() {
				t0 := time.Now()
				fetch(b, c, target)
				samples = append(samples, time.Since(t0))
			}
			slices.Sort(samples)
			b.ReportMetric(float64(samples[len(samples)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(samples[len(samples)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// BenchmarkThroughputInterleaved measures direct and endpoint throughput
// in alternating slices of 400 parallel requests (one slice each per
// iteration: run it with -benchtime 20x or so), so that the load of a
// shared machine weighs on both alike; it reports both rates, the ratio
// in percent and each side's CPU per request.
func BenchmarkThroughputInterleaved(b *testing.B) {
	direct, target := benchSetup(b, false)
	via, _ := benchSetup(b, true)
	const slice, workers = 400, 8
	var dur [2]time.Duration
	var cpu [2]time.Duration
	run := func(c *http.Client) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= slice {
					fetch(b, c, target)
				}
			}()
		}
		wg.Wait()
	}
	run(direct) // warm up both
	run(via)
	b.ResetTimer()
	clients := [2]*http.Client{direct, via}
	for i := 0; b.Loop(); i++ {
		order := [2]int{0, 1}
		if i%2 == 1 { // alternate which goes first
			order = [2]int{1, 0}
		}
		for _, j := range order {
			start, cpu0 := time.Now(), cpuTime()
			run(clients[j])
			dur[j] += time.Since(start)
			cpu[j] += cpuTime() - cpu0
		}
	}
	n := float64(b.N * slice)
	b.ReportMetric(n/dur[0].Seconds(), "direct-req/s")
	b.ReportMetric(n/dur[1].Seconds(), "endpoint-req/s")
	b.ReportMetric(100*dur[0].Seconds()/dur[1].Seconds(), "ratio-%")
	b.ReportMetric(float64(cpu[0].Microseconds())/n, "direct-cpu-µs/op")
	b.ReportMetric(float64(cpu[1].Microseconds())/n, "endpoint-cpu-µs/op")
}
