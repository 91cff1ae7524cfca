package probe

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// The benchmarks run each check against a fakeproxy farm, either in this
// process (farm=inproc: ns/op and the cpu metric include the farm's own
// work) or in a child process (farm=child: the cpu-µs/op metric, from
// getrusage(RUSAGE_SELF), is the client side alone).

const childFarmEnv = "PROBE_BENCH_CHILD_FARM"

// childFarmSizeEnv sets the number of proxies of a child farm (default 1).
const childFarmSizeEnv = "PROBE_BENCH_CHILD_FARM_SIZE"

// runChildFarm serves a farm until stdin closes: one proxy, or as many as
// childFarmSizeEnv says. It prints the first proxy's address and the CA
// certificate (PEM) on stdout, then, for a larger farm, a line "ADDRS" and
// every proxy's address, one a line.
func runChildFarm() {
	n, _ := strconv.Atoi(os.Getenv(childFarmSizeEnv))
	f, err := fakeproxy.Start(context.Background(), max(n, 1))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%s\n%s", f.Addr(0), f.CACertPEM())
	if n > 1 {
		fmt.Println("ADDRS")
		for i := range n {
			fmt.Println(f.Addr(i))
		}
	}
	fmt.Println("END")
	_, _ = io.Copy(io.Discard, os.Stdin)
	f.Close()
}

type benchFarm struct {
	addr  string
	addrs []string // every proxy's address (startChildFarm with n > 1)
	tls   *tls.Config
}

func startBenchFarm(b *testing.B, child bool) benchFarm {
	b.Helper()
	if !child {
		f := startFarm(b, 1)
		return benchFarm{addr: f.Addr(0), tls: f.ClientTLSConfig()}
	}
	return startChildFarm(b, 1)
}

// startChildFarm starts a farm of n proxies in a child process (this test
// binary, re-executed); it stops when the benchmark ends.
func startChildFarm(b *testing.B, n int) benchFarm {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), childFarmEnv+"=1", childFarmSizeEnv+"="+strconv.Itoa(n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	var lines, addrs []string
	inAddrs := false
	for sc.Scan() && sc.Text() != "END" {
		switch {
		case sc.Text() == "ADDRS":
			inAddrs = true
		case inAddrs:
			addrs = append(addrs, sc.Text())
		default:
			lines = append(lines, sc.Text())
		}
	}
	if len(lines) < 2 || n > 1 && len(addrs) != n {
		b.Fatalf("child farm printed %d lines and %d addresses", len(lines), len(addrs))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(strings.Join(lines[1:], "\n"))) {
		b.Fatal("child farm CA not parsable")
	}
	if n == 1 {
		addrs = lines[:1]
	}
	return benchFarm{addr: lines[0], addrs: addrs, tls: &tls.Config{RootCAs: pool}}
}

// cpuTimes returns the process's user and system CPU time.
func cpuTimes() (user, sys time.Duration) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// runBench runs fn b.N times and reports process CPU per op: user (Go code
// and runtime) and sys (kernel; on loopback this includes TCP work done on
// behalf of the peer, e.g. SYN and segment delivery, in the sender's
// syscall).
func runBench(b *testing.B, fn func() error) {
	b.ReportAllocs()
	b.ResetTimer()
	u0, s0 := cpuTimes()
	for b.Loop() {
		if err := fn(); err != nil {
			b.Fatal(err)
		}
	}
	u1, s1 := cpuTimes()
	n := float64(b.N)
	b.ReportMetric(float64((u1-u0).Nanoseconds())/n/1e3, "user-µs/op")
	b.ReportMetric(float64((s1-s0).Nanoseconds())/n/1e3, "sys-µs/op")
	b.ReportMetric(float64((u1-u0+s1-s0).Nanoseconds())/n/1e3, "cpu-µs/op")
}

func benchCheck(b *testing.B, scheme, target string) {
	for _, child := range []bool{false, true} {
		name := "farm=inproc"
		if child {
			name = "farm=child"
		}
		b.Run(name, func(b *testing.B) {
			f := startBenchFarm(b, child)
			c := newChecker(b, Config{TargetURL: target, TLSConfig: f.tls})
			p := MustParseProxyURL(scheme + "://" + f.addr)
			ctx := context.Background()
			runBench(b, func() error {
				if r := c.Check(ctx, p); !r.OK() {
					return fmt.Errorf("check failed: %+v", r)
				}
				return nil
			})
		})
	}
}

// BenchmarkCheckHTTP: HTTP proxy, HEAD of an http target (absolute form).
func BenchmarkCheckHTTP(b *testing.B) { benchCheck(b, "http", "http://bench.proxyhealth.test/") }

// BenchmarkCheckCONNECT: HTTP proxy, CONNECT + TLS (session resumption
// after the first check) + HEAD.
func BenchmarkCheckCONNECT(b *testing.B) {
	benchCheck(b, "http", "https://bench.proxyhealth.test/")
}

// BenchmarkCheckSOCKS5: SOCKS5 (remote DNS), HEAD of an http target.
func BenchmarkCheckSOCKS5(b *testing.B) { benchCheck(b, "socks5h", "http://bench.proxyhealth.test/") }

// BenchmarkCheckTCPConnect: connect-only mode.
func BenchmarkCheckTCPConnect(b *testing.B) {
	for _, child := range []bool{false, true} {
		b.Run(fmt.Sprintf("child=%v", child), func(b *testing.B) {
			f := startBenchFarm(b, child)
			c := newChecker(b, Config{Mode: ModeTCPConnect})
			p := MustParseProxyURL("http://" + f.addr)
			runBench(b, func() error {
				if r := c.Check(context.Background(), p); !r.OK() {
					return fmt.Errorf("check failed: %+v", r)
				}
				return nil
			})
		})
	}
}

// BenchmarkNetHTTPBaseline does what BenchmarkCheckHTTP does with net/http:
// a Transport with Proxy and no keep-alives, HEAD, status check.
func BenchmarkNetHTTPBaseline(b *testing.B) {
	for _, child := range []bool{false, true} {
		name := "farm=inproc"
		if child {
			name = "farm=child"
		}
		b.Run(name, func(b *testing.B) {
			f := startBenchFarm(b, child)
			u, _ := url.Parse("http://" + f.addr)
			tr := &http.Transport{Proxy: http.ProxyURL(u), DisableKeepAlives: true}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
			req, _ := http.NewRequest("HEAD", "http://bench.proxyhealth.test/", nil)
			runBench(b, func() error {
				resp, err := client.Do(req)
				if err != nil {
					return err
				}
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					return fmt.Errorf("status %d", resp.StatusCode)
				}
				return nil
			})
		})
	}
}

// BenchmarkCheckHTTPParallel runs BenchmarkCheckHTTP's check from 32
// goroutines at once against a child-process farm, as the engine does;
// cpu-µs/op is client-side CPU per check under concurrency.
func BenchmarkCheckHTTPParallel(b *testing.B) {
	f := startBenchFarm(b, true)
	c := newChecker(b, Config{TargetURL: "http://bench.proxyhealth.test/"})
	p := MustParseProxyURL("http://" + f.addr)
	b.ReportAllocs()
	b.SetParallelism(16) // x GOMAXPROCS goroutines
	u0, s0 := cpuTimes()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r := c.Check(context.Background(), p); !r.OK() {
				b.Errorf("check failed: %+v", r)
				return
			}
		}
	})
	b.StopTimer()
	u1, s1 := cpuTimes()
	n := float64(b.N)
	b.ReportMetric(float64((u1-u0).Nanoseconds())/n/1e3, "user-µs/op")
	b.ReportMetric(float64((s1-s0).Nanoseconds())/n/1e3, "sys-µs/op")
	b.ReportMetric(float64((u1-u0+s1-s0).Nanoseconds())/n/1e3, "cpu-µs/op")
}

// BenchmarkCheckClose compares closing the check's connection with a FIN
// (close=fin) and with a RST (close=reset, SO_LINGER 0) against a
// child-process farm: cpu-µs/op is the checker's CPU per check, and
// client-tw/op and proxy-tw/op are the TIME_WAIT sockets the checks left on
// the checker's and the proxy's side (from /proc/net/tcp, per check). Run
// it with a fixed count below the ephemeral port range (e.g.
// -benchtime=5000x): each sub-benchmark gets a new farm port, and only
// TIME_WAIT sockets that were not there before the run are counted.
func BenchmarkCheckClose(b *testing.B) {
	cases := []struct {
		name, scheme, target string
		mode                 Mode
	}{
		{"http", "http", "http://bench.proxyhealth.test/", ModeAuto},
		{"connect", "http", "https://bench.proxyhealth.test/", ModeAuto},
		{"socks5h", "socks5h", "http://bench.proxyhealth.test/", ModeAuto},
		{"tcp-connect", "http", "", ModeTCPConnect},
	}
	for _, tc := range cases {
		for _, cm := range []CloseMode{CloseFIN, CloseReset} {
			b.Run(tc.name+"/close="+cm.String(), func(b *testing.B) {
				f := startBenchFarm(b, true)
				c := newChecker(b, Config{TargetURL: tc.target, Mode: tc.mode, TLSConfig: f.tls, Close: cm})
				p := MustParseProxyURL(tc.scheme + "://" + f.addr)
				tw0 := timeWaitSet(b)
				runBench(b, func() error {
					if r := c.Check(context.Background(), p); !r.OK() {
						return fmt.Errorf("check failed: %+v", r)
					}
					return nil
				})
				b.StopTimer()
				ctw, ptw := newTimeWaits(b, tw0, f.addr)
				b.ReportMetric(float64(ctw)/float64(b.N), "client-tw/op")
				b.ReportMetric(float64(ptw)/float64(b.N), "proxy-tw/op")
			})
		}
	}
}

// BenchmarkProxyURLBytesPerProxy reports the heap 10,000 parsed proxy URLs
// keep (the engine holds one per proxy), their inputs dropped: the
// struct and what it retains of its own, strings included.
func BenchmarkProxyURLBytesPerProxy(b *testing.B) {
	const proxies = 10_000
	for _, form := range []struct{ name, format string }{
		{"plain", "http://127.0.%d.%d:%d"},
		{"credentials", "http://user-%d:secret-%d@127.0.0.1:%d"},
	} {
		b.Run(form.name, func(b *testing.B) {
			var perProxy float64
			for range b.N {
				before := testutil.HeapInUse()
				urls := make([]ProxyURL, proxies)
				for i := range urls {
					in := fmt.Sprintf(form.format, i/250, i%250, 10_000+i)
					u, err := ParseProxyURL(in)
					if err != nil {
						b.Fatal(err)
					}
					urls[i] = u
				}
				perProxy = float64(testutil.HeapInUse()-before) / proxies
				runtime.KeepAlive(urls)
			}
			b.ReportMetric(perProxy, "B/proxy")
		})
	}
}
