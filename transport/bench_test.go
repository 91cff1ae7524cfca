package transport

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/fwdproxy"
	"github.com/proxyhealth/proxyhealth/rotation"
)

// benchRotator hands out one proxy without locking and counts outcomes,
// like the engine's lock-free picker.
type benchRotator struct {
	p        rotation.Pick
	outcomes atomic.Int64
}

func (r *benchRotator) Pick(rotation.Request) (rotation.Pick, error) { return r.p, nil }
func (r *benchRotator) ReportOutcome(rotation.Outcome) error {
	r.outcomes.Add(1)
	return nil
}

// cpuTimes returns the process's user plus system CPU time.
func cpuTimes() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchGet(rt http.RoundTripper, target string) error {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return err
}

// BenchmarkRoundTrip compares a GET through one proxy on loopback with a
// plain http.Transport (Proxy set: "direct") and through Transport with a
// rotator that always picks that proxy. The proxy for http:// targets
// answers absolute-form requests itself (keep-alive), so the figures are
// the client side's; for https:// targets it tunnels (CONNECT, kept
// alive) to an httptest TLS origin. "serial" reports the median latency
// (p50-µs), "parallel" the throughput (req/s, 4·GOMAXPROCS requests in flight); both report the process's
// CPU per request (cpu-µs/op: client, proxy and origin, all in this
// process).
func BenchmarkRoundTrip(b *testing.B) {
	self := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello")
	}))
	defer self.Close()
	tunnelProxy := fwdproxy.Start(b, fwdproxy.Options{Name: "p"})
	tlsOrigin := startOrigin(b, true)
	pool := fwdproxy.CertPool(b)

	for _, c := range []struct {
		name, proxy, target string
	}{
		{"http", self.URL, "http://origin.invalid/"},
		{"https", tunnelProxy.URL(), tlsOrigin.srv.URL + "/"},
	} {
		proxyURL, _ := url.Parse(c.proxy)
		direct := &http.Transport{Proxy: http.ProxyURL(proxyURL), MaxIdleConnsPerHost: 64,
			TLSClientConfig: &tls.Config{RootCAs: pool}}
		r := &benchRotator{}
		r.p.ID, r.p.URL, r.p.Scheme = "p0", proxyURL, proxyURL.Scheme
		tr, err := New(r, Options{MaxIdleConnsPerProxy: 64, TLSClientConfig: &tls.Config{RootCAs: pool}})
		if err != nil {
			b.Fatal(err)
		}
		for _, rt := range []struct {
			name string
			rt   http.RoundTripper
		}{{"direct", direct}, {"transport", tr}} {
			b.Run(c.name+"/"+rt.name+"/serial", func(b *testing.B) {
				if err := benchGet(rt.rt, c.target); err != nil { // warm the pool
					b.Fatal(err)
				}
				lat := make([]time.Duration, 0, 1024)
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := cpuTimes()
				for b.Loop() {
					t0 := time.Now()
					if err := benchGet(rt.rt, c.target); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(t0))
				}
				cpu := cpuTimes() - cpu0
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/1e3, "cpu-µs/op")
			})
			b.Run(c.name+"/"+rt.name+"/parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := cpuTimes()
				start := time.Now()
				b.SetParallelism(4) // 4·GOMAXPROCS requests in flight
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := benchGet(rt.rt, c.target); err != nil {
							b.Error(err)
							return
						}
					}
				})
				elapsed := time.Since(start)
				cpu := cpuTimes() - cpu0
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/1e3, "cpu-µs/op")
			})
		}
		direct.CloseIdleConnections()
		tr.Close()
	}
}
