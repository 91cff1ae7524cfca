package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// BenchmarkDaemon measures the daemon as shipped (`proxyhealth run`, the
// binary TestMain builds: journal fsync'd, SQLite view, metrics and API on)
// against fake proxies served by child processes (this test binary
// re-executed, see benchChild), each with at most benchFarmMax proxies on
// its own loopback address (127.0.0.2, 127.0.0.3, …), and, in the same
// run, against the same farm and for a window of the same length, a plain
// goroutine-per-proxy net/http monitor in its own child process as the
// baseline. Run each size alone with -benchtime 1x:
//
//	go test -run '^$' -bench 'BenchmarkDaemon/proxies=10000$' -benchtime 1x -timeout 30m ./cmd/proxyhealth/
//	go test -run '^$' -bench 'BenchmarkDaemon/proxies=100000$' -benchtime 1x -timeout 30m ./cmd/proxyhealth/
//
// The measuring window is PROXYHEALTH_BENCH_WINDOW (a Go duration, default
// 30s). Per size, in order:
//   - first-sweep-s: from the daemon's exec until GET /v1/pool counts every
//     proxy and none unknown; first-sweep-daemon-cores and
//     first-sweep-farm-cores the CPU the daemon and the farm children used
//     meanwhile, in cores (the log adds the whole machine's: the farm
//     shares the daemon's machine, so when the two fill it the sweep is as
//     fast as both together allow);
//   - one interval of settling, then the window: the daemon's CPU
//     (/proc/PID/stat utime and stime) over the checks the farm accepted
//     (cpu-ms/1k-checks, user-us/check, sys-us/check, checks/s), and per
//     check its context switches and read- and write-like system calls
//     (ctxsw/check, read-syscalls/check, write-syscalls/check; see
//     procCounts), which unlike CPU time do not vary with the machine's
//     speed; alloc-B/check and allocs/check the Go heap's allocation over
//     the window (the daemon's /metrics, which allocates too: two scrapes a
//     window), and the log adds the GC cycles; gc-cpu-ms/1k-checks the
//     part of the CPU the Go runtime counts as its GC's over the same
//     window (an estimate; at 100,000 proxies a 20 s window may hold no
//     cycle, so the log adds the cycles and GC CPU before the window
//     too); farm-cpu-ms/1k-checks the
//     farm children's CPU over the same window and checks (what answering
//     a check costs the test's fake proxies, on the same cores);
//   - a second window of the same length, checks still running: one client
//     alternating GET /v1/pool and GET /v1/proxies?state=healthy&limit=100
//     over HTTP, one request at a time (at least benchAPIMin each), p99
//     measured client-side (pool-p99-ms, proxies-p99-ms); apart from the
//     CPU window, so that serving the API is not counted as checking;
//   - a third window of the same length, checks still running: the API's
//     floor. A child process (this test binary, see runFloor) serves the
//     bodies the daemon has just given for the two requests from memory
//     with a plain net/http server and does nothing else, and the same
//     client measures it (pool-floor-p99-ms, proxies-floor-p99-ms). That
//     is what any server gets on this machine while the daemon checks and
//     the farm answers; the daemon's own share of its p99 is the rest;
//   - peak-rss-MiB: the daemon's VmHWM, read just before SIGTERM (the high
//     water mark of the whole run, start-up included);
//     peak-rss-before-api-MiB the same read before the API window;
//   - SIGTERM (stop-s: until the process exited), then the daemon started
//     again on the same data directory: restart-open-s from its exec until
//     it logs "proxyhealth started" (journal open, state recovered, API
//     about to be served), restart-s from its exec until the farm accepts
//     its first check (the two are polled together, every 5 ms);
//     restart-peak-rss-MiB the restarted daemon's VmHWM;
//   - the baseline: started once the daemon is gone, one interval of
//     settling (its start is spread over the interval), the same window:
//     baseline-cpu-ms/1k-checks, baseline-peak-rss-MiB (VmHWM of its whole
//     run), and the ratios proxyhealth/baseline (cpu-ratio, rss-ratio);
//   - the reference of issue 14, at 10,000 proxies (benchHAProxyMax): HAProxy
//     (if installed; apt-get install haproxy) checking the same proxies
//     with option httpchk, the same HEAD through each proxy at the same
//     interval, alone with the farm, one interval of settling, the same
//     window: haproxy-cpu-ms/1k-checks, haproxy-user-us/check,
//     haproxy-sys-us/check, haproxy-checks/s, haproxy-peak-rss-MiB, and
//     haproxy-cpu-ratio (proxyhealth ÷ HAProxy), so that "checks at
//     HAProxy's cost" is judged against HAProxy on the same machine in the
//     same run (see measureHAProxy).
//
// With PROXYHEALTH_BENCH_PERF=FILE, `perf record -g` samples the daemon
// during its CPU window into FILE (the CPU perf itself costs the daemon is
// counted in the window's figures); PROXYHEALTH_BENCH_PERF_SWEEP=FILE
// samples its first sweep, and PROXYHEALTH_BENCH_PERF_RESTART=FILE the
// restarted daemon until its start-up line and its first check. `perf
// report` writes the flat profile, children and self, to FILE.txt while the
// binary still exists, and `perf script` every sample's stack to
// FILE.script (for a breakdown by subsystem, user and kernel apart).
//
// Nothing is asserted against a target: the figures are reported.
func BenchmarkDaemon(b *testing.B) {
	for _, size := range []struct {
		n        int
		interval time.Duration
	}{{10_000, 10 * time.Second}, {100_000, 60 * time.Second}} {
		b.Run(fmt.Sprintf("proxies=%d", size.n), func(b *testing.B) { benchDaemon(b, size.n, size.interval) })
	}
}

const (
	// benchFarmEnv makes the test binary a farm child: "HOST/N" serves N
	// fake proxies on HOST.
	benchFarmEnv = "PROXYHEALTH_BENCH_FARM"
	// benchBaselineEnv makes the test binary the baseline monitor: the path
	// of a proxy list, one URL a line; benchBaselineIntervalEnv is its
	// interval.
	benchBaselineEnv         = "PROXYHEALTH_BENCH_BASELINE"
	benchBaselineIntervalEnv = "PROXYHEALTH_BENCH_BASELINE_INTERVAL"
	// benchFloorEnv makes the test binary the API's floor: a directory
	// holding the bodies it serves (see runFloor).
	benchFloorEnv = "PROXYHEALTH_BENCH_FLOOR"
	// benchFarmMax is the most proxies one farm child serves (one process
	// may hold 20,000 descriptors on the benchmark machine).
	benchFarmMax = 15_000
	// benchFDHeadroom is what a farm child needs beyond its listeners
	// (connections in progress, the runtime's own).
	benchFDHeadroom = 2_000
	// benchAPIMin is the fewest requests per endpoint behind an API p99.
	benchAPIMin = 2_000
	// benchCheckTimeout is the check timeout of the daemon (its default)
	// and of the baseline.
	benchCheckTimeout = 5 * time.Second
)

// benchChild runs this process as one of BenchmarkDaemon's children when
// the environment says so (the hook at the top of TestMain), and returns
// its exit code and true; otherwise it returns false at once.
func benchChild() (int, bool) {
	if spec := os.Getenv(benchFarmEnv); spec != "" {
		return runBenchFarm(spec), true
	}
	if list := os.Getenv(benchBaselineEnv); list != "" {
		return runBaseline(list, os.Getenv(benchBaselineIntervalEnv)), true
	}
	if dir := os.Getenv(benchFloorEnv); dir != "" {
		return runFloor(dir), true
	}
	return 0, false
}

// runBenchFarm serves the fake proxies of spec ("HOST/N") until stdin
// closes: it prints their URLs, then READY, then answers fakeproxy's
// ServeControl commands on stdin and stdout: "count" (the checks, accepted
// connections, served so far), "report" (every proxy's counts, per source
// address: BenchmarkCluster) and "reset".
func runBenchFarm(spec string) int {
	host, ns, _ := strings.Cut(spec, "/")
	n, err := strconv.Atoi(ns)
	if err != nil || n <= 0 {
		fmt.Printf("ERR %s=%q: want HOST/N with N > 0\n", benchFarmEnv, spec)
		return 2
	}
	farm, err := fakeproxy.Start(context.Background(), n, fakeproxy.WithHost(host))
	if err != nil {
		fmt.Printf("ERR farm of %d proxies on %s: %v\n", n, host, err)
		return 1
	}
	defer farm.Close()
	out := bufio.NewWriterSize(os.Stdout, 1<<16)
	for i := range n {
		fmt.Fprintln(out, farm.URL(i))
	}
	fmt.Fprintln(out, "READY")
	if err := out.Flush(); err != nil {
		return 1
	}
	if err := farm.ServeControl(context.Background(), os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "farm child:", err)
		return 1
	}
	return 0
}

// runBaseline is the baseline monitor: one goroutine per proxy of the list,
// each with its own http.Client (Proxy: the proxy, keep-alives off) and a
// ticker at the interval, the starts spread evenly over one interval; each
// tick HEADs testTarget through the proxy. Nothing is kept but two
// counters. It prints READY once every goroutine runs, answers each
// "count" line with "OK FAILED" (checks that got a 2xx answer, checks that
// did not) and exits when stdin closes.
func runBaseline(list, every string) int {
	interval, err := time.ParseDuration(every)
	if err != nil || interval <= 0 {
		fmt.Printf("ERR %s=%q: want a duration\n", benchBaselineIntervalEnv, every)
		return 2
	}
	raw, err := os.ReadFile(list)
	if err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	urls := strings.Fields(string(raw))
	start := time.Now()
	for i, u := range urls {
		pu, err := url.Parse(u)
		if err != nil {
			fmt.Println("ERR", err)
			return 1
		}
		go baselineMonitor(pu, start.Add(time.Duration(i)*interval/time.Duration(len(urls))), interval)
	}
	fmt.Println("READY")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "count" {
			fmt.Println(baselineOK.Load(), baselineFailed.Load())
		}
	}
	return 0
}

// Files of the floor's directory: the bodies it serves.
const (
	floorPoolFile    = "pool.json"
	floorProxiesFile = "proxies.json"
)

// runFloor is the API's floor: a plain net/http server on a loopback port
// that answers GET /v1/pool and GET /v1/proxies with fixed bodies (the
// files floorPoolFile and floorProxiesFile in dir: what the daemon
// answered) and does nothing else. It prints its base URL, then READY,
// and exits when stdin closes.
func runFloor(dir string) int {
	pool, err1 := os.ReadFile(filepath.Join(dir, floorPoolFile))
	proxies, err2 := os.ReadFile(filepath.Join(dir, floorProxiesFile))
	if err := errors.Join(err1, err2); err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	answer := func(body []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(body)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /v1/pool", answer(pool))
	mux.Handle("GET /v1/proxies", answer(proxies))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	fmt.Println("http://" + l.Addr().String())
	fmt.Println("READY")
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = srv.Close()
	return 0
}

// measureFloor measures the API's floor for window in the conditions at
// hand (the daemon checking, the farm answering): a floor child (runFloor)
// serving the bodies the daemon gives now, queried as measureAPI queries
// the daemon. It returns both p99 latencies in milliseconds.
func measureFloor(b *testing.B, api, dir string, window time.Duration) (poolP99, proxiesP99 float64) {
	dir = filepath.Join(dir, "floor")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	for file, path := range map[string]string{floorPoolFile: "/v1/pool", floorProxiesFile: "/v1/proxies?state=healthy&limit=100"} {
		resp, err := benchHTTP.Get(api + path)
		if err != nil {
			b.Fatalf("GET %s: %v", path, err)
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s: %s %v", path, resp.Status, err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), body, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	floor := startBenchChild(b, benchFloorEnv+"="+dir)
	floor.readURLs(b)
	if len(floor.urls) != 1 {
		b.Fatalf("the floor child printed %d URLs, want 1", len(floor.urls))
	}
	defer floor.close(b)
	return measureAPI(b, "API floor (a static server)", floor.urls[0], window)
}

// baselineOK and baselineFailed count the baseline's checks.
var baselineOK, baselineFailed atomic.Uint64

func baselineMonitor(proxy *url.URL, first time.Time, interval time.Duration) {
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxy), DisableKeepAlives: true}, Timeout: benchCheckTimeout}
	time.Sleep(time.Until(first)) // the baseline's spread start (its schedule, not a wait for a result)
	t := time.NewTicker(interval)
	for {
		resp, err := c.Head(testTarget)
		if err == nil {
			_ = resp.Body.Close()
		}
		if err == nil && resp.StatusCode/100 == 2 {
			baselineOK.Add(1)
		} else {
			baselineFailed.Add(1)
		}
		<-t.C
	}
}

// benchDaemon is one size of BenchmarkDaemon.
func benchDaemon(b *testing.B, n int, interval time.Duration) {
	window := benchWindow(b)
	b.Cleanup(benchHTTP.CloseIdleConnections)
	// At most 10 lines of a benchmark's log are shown: few, long ones.
	loadBefore := loadAvg()
	t0 := time.Now()
	var phases []string
	phase := func(what string) { phases = append(phases, fmt.Sprintf("%.1fs %s", time.Since(t0).Seconds(), what)) }
	farms := startBenchFarms(b, n)
	phase(fmt.Sprintf("%d farm children ready", len(farms)))
	var urls []string
	for _, f := range farms {
		urls = append(urls, f.urls...)
	}
	if len(urls) != n {
		b.Fatalf("the farm children report %d proxy URLs, want %d", len(urls), n)
	}
	dir := b.TempDir()
	list := filepath.Join(dir, "proxies.txt")
	if err := os.WriteFile(list, []byte(strings.Join(urls, "\n")+"\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	cfg := filepath.Join(dir, "proxyhealth.yaml")
	yaml := fmt.Sprintf("data: %s\nlisten: 127.0.0.1:0\nlog_format: json\ndefaults:\n  interval: %s\n  check_url: %s\nsources:\n  - name: farm\n    proxy_files: [%s]\n",
		filepath.Join(dir, "data"), interval, testTarget, list)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		b.Fatal(err)
	}
	checks := func() uint64 {
		var sum uint64
		for _, f := range farms {
			sum += f.count(b)
		}
		return sum
	}

	// The daemon: first sweep, settling, the CPU window.
	farm0, machine0 := farmCPU(b, farms), machineCPU(b)
	started := time.Now()
	d := startBenchDaemon(b, cfg)
	rss := watchRSS(b, d.pid(), t0)
	stopSweepPerf := startPerfTo(b, d.pid(), os.Getenv("PROXYHEALTH_BENCH_PERF_SWEEP"))
	api := d.apiURL(b, 2*time.Minute)
	pollUntil(b, 5*time.Minute, 100*time.Millisecond, func() (bool, string) {
		p, err := fetchPool(api)
		if err != nil {
			return false, err.Error()
		}
		return p.Total == n && p.Unknown == 0, fmt.Sprintf("first sweep: %+v", p.Counts)
	}, d.exited)
	firstSweep := time.Since(started)
	stopSweepPerf()
	du, ds := procCPU(b, d.pid(), d.exited)
	sweepDaemon := (du + ds).Seconds() / firstSweep.Seconds()
	sweepFarm := (farmCPU(b, farms) - farm0).Seconds() / firstSweep.Seconds()
	machine := machineCPU(b).since(machine0)
	cpus := machine0.cpus
	b.Logf("first sweep: %.2f s; CPU in cores: the daemon %.2f (from its exec), the farm children %.2f, the whole machine %.2f of %d (%.0f %% busy)",
		firstSweep.Seconds(), sweepDaemon, sweepFarm, machine*float64(cpus), cpus, 100*machine)
	phase(fmt.Sprintf("first sweep done (VmHWM %.0f MiB)", vmHWM(b, d.pid(), d.exited)))
	settle(interval)
	stopPerf := startPerf(b, d.pid())
	farmW0, heap0 := farmCPU(b, farms), heapCounters(api)
	cpu := measure(b, d.pid(), d.exited, window, checks)
	farmWindow, heapWindow := farmCPU(b, farms)-farmW0, heapCounters(api).since(heap0)
	stopPerf()
	if cpu.checks == 0 {
		b.Fatalf("the farm saw no check in the window\n%s", d.stderr.tail())
	}
	p, err := fetchPool(api)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("daemon: %d checks in %v, user %v, sys %v, %d context switches, %d read and %d write system calls, %.1f MiB allocated in %d allocations, %d GC cycles using %.0f ms of CPU (before the window: %d cycles, %.0f ms); pool after the window %+v; the farm children used %v",
		cpu.checks, cpu.elapsed, cpu.user, cpu.sys, cpu.switches, cpu.reads, cpu.writes, float64(heapWindow.bytes)/(1<<20), heapWindow.allocs, heapWindow.cycles, 1000*heapWindow.gcCPU,
		heap0.cycles, 1000*heap0.gcCPU, p.Counts, farmWindow)

	// The peak so far, before the API window adds its garbage.
	peakChecks := vmHWM(b, d.pid(), d.exited)
	b.Logf("daemon memory after the CPU window: %s", memoryBreakdown(api, d.pid()))

	// The API, checks running.
	phase("CPU window done")
	sched0, heapAPI0 := schedLatencies(api), heapCounters(api)
	poolP99, proxiesP99 := measureAPI(b, "API", api, window)
	b.Logf("daemon scheduling latency over the API window: %s", schedQuantiles(sched0, schedLatencies(api)))
	// The requests' garbage paces the collector as much as the checks'
	// (and a request that meets a cycle's mark phase waits longer).
	heapAPI := heapCounters(api).since(heapAPI0)
	b.Logf("daemon over the API window (checks and requests): %.1f MiB allocated in %d allocations, %d GC cycles using %.0f ms of CPU",
		float64(heapAPI.bytes)/(1<<20), heapAPI.allocs, heapAPI.cycles, 1000*heapAPI.gcCPU)
	phase("API window done")
	afterAPI := memoryBreakdown(api, d.pid())

	// The floor of the API's latency in the same conditions.
	floorPoolP99, floorProxiesP99 := measureFloor(b, api, dir, window)
	phase("API floor window done")
	peak := vmHWM(b, d.pid(), d.exited)
	// One line: a benchmark's log shows its first 10 lines only.
	b.Logf("daemon memory after the API window: %s; its highest resident set sampled (every %v, the API floor's window included; the peak is VmHWM): %s",
		afterAPI, rssWatchEvery, rss.stop())

	// Stop and restart on the same data directory.
	stopped := time.Now()
	d.stop(b, 2*time.Minute)
	stop := time.Since(stopped)
	c0 := checks()
	phase("daemon stopped")
	restarted := time.Now()
	d2 := startBenchDaemon(b, cfg)
	stopRestartPerf := startPerfTo(b, d2.pid(), os.Getenv("PROXYHEALTH_BENCH_PERF_RESTART"))
	var restartOpen, restart time.Duration // 0: not yet
	pollUntil(b, interval+2*time.Minute, 5*time.Millisecond, func() (bool, string) {
		if restartOpen == 0 && d2.stderr.started() != "" {
			restartOpen = time.Since(restarted)
		}
		if restart == 0 && checks() > c0 {
			restart = time.Since(restarted)
		}
		return restartOpen > 0 && restart > 0, fmt.Sprintf("the restarted daemon's start-up line (after %v) and its first check at the farm (after %v)", restartOpen, restart)
	}, d2.exited)
	stopRestartPerf()
	restartPeak := vmHWM(b, d2.pid(), d2.exited)
	d2.stop(b, 2*time.Minute)

	// The baseline, alone with the farm.
	base := startBenchChild(b, benchBaselineEnv+"="+list, benchBaselineIntervalEnv+"="+interval.String())
	phase("restarted daemon stopped")
	base.readURLs(b) // none: up to READY
	phase("baseline ready")
	settle(interval)
	bcpu := measure(b, base.cmd.Process.Pid, base.exited, window, checks)
	b.Logf("baseline: %d checks in %v, user %v, sys %v, %d context switches, %d read and %d write system calls; since its start: %s (OK FAILED)", bcpu.checks, bcpu.elapsed, bcpu.user, bcpu.sys, bcpu.switches, bcpu.reads, bcpu.writes, base.ask(b, "count"))
	if bcpu.checks == 0 {
		b.Fatal("the farm saw no check of the baseline in the window")
	}
	basePeak := vmHWM(b, base.cmd.Process.Pid, base.exited)
	base.close(b)
	phase("baseline stopped")

	// The reference of issue 14: HAProxy's checks, alone with the farm.
	var hcpu cpuWindow
	var hpeak float64
	haproxy := n <= benchHAProxyMax
	if haproxy {
		hcpu, hpeak, haproxy = measureHAProxy(b, dir, urls, interval, window, checks)
		phase("HAProxy stopped")
	}
	b.Logf("phases: %s", strings.Join(phases, ", "))
	b.Logf("load (/proc/loadavg) before: %s, after: %s; GOGC=%q", loadBefore, loadAvg(), os.Getenv("GOGC"))

	b.ReportMetric(cpu.perK(), "cpu-ms/1k-checks")
	b.ReportMetric(float64(cpu.user.Microseconds())/float64(cpu.checks), "user-us/check")
	b.ReportMetric(float64(cpu.sys.Microseconds())/float64(cpu.checks), "sys-us/check")
	b.ReportMetric(cpu.perCheck(cpu.switches), "ctxsw/check")
	b.ReportMetric(cpu.perCheck(cpu.reads), "read-syscalls/check")
	b.ReportMetric(cpu.perCheck(cpu.writes), "write-syscalls/check")
	b.ReportMetric(cpu.perCheck(heapWindow.bytes), "alloc-B/check")
	b.ReportMetric(cpu.perCheck(heapWindow.allocs), "allocs/check")
	b.ReportMetric(1e6*heapWindow.gcCPU/float64(cpu.checks), "gc-cpu-ms/1k-checks")
	b.ReportMetric(peak, "peak-rss-MiB")
	b.ReportMetric(peakChecks, "peak-rss-before-api-MiB")
	b.ReportMetric(firstSweep.Seconds(), "first-sweep-s")
	b.ReportMetric(sweepDaemon, "first-sweep-daemon-cores")
	b.ReportMetric(sweepFarm, "first-sweep-farm-cores")
	b.ReportMetric(float64(farmWindow.Microseconds())/float64(cpu.checks), "farm-cpu-ms/1k-checks")
	b.ReportMetric(cpu.rate(), "checks/s")
	b.ReportMetric(poolP99, "pool-p99-ms")
	b.ReportMetric(proxiesP99, "proxies-p99-ms")
	b.ReportMetric(floorPoolP99, "pool-floor-p99-ms")
	b.ReportMetric(floorProxiesP99, "proxies-floor-p99-ms")
	b.ReportMetric(stop.Seconds(), "stop-s")
	b.ReportMetric(restartOpen.Seconds(), "restart-open-s")
	b.ReportMetric(restart.Seconds(), "restart-s")
	b.ReportMetric(restartPeak, "restart-peak-rss-MiB")
	b.ReportMetric(bcpu.perK(), "baseline-cpu-ms/1k-checks")
	b.ReportMetric(bcpu.rate(), "baseline-checks/s")
	b.ReportMetric(basePeak, "baseline-peak-rss-MiB")
	b.ReportMetric(cpu.perK()/bcpu.perK(), "cpu-ratio")
	b.ReportMetric(peak/basePeak, "rss-ratio")
	if haproxy {
		b.ReportMetric(hcpu.perK(), "haproxy-cpu-ms/1k-checks")
		b.ReportMetric(float64(hcpu.user.Microseconds())/float64(hcpu.checks), "haproxy-user-us/check")
		b.ReportMetric(float64(hcpu.sys.Microseconds())/float64(hcpu.checks), "haproxy-sys-us/check")
		b.ReportMetric(hcpu.rate(), "haproxy-checks/s")
		b.ReportMetric(hpeak, "haproxy-peak-rss-MiB")
		b.ReportMetric(cpu.perK()/hcpu.perK(), "haproxy-cpu-ratio")
	}
}

// benchHAProxyMax is the largest size measureHAProxy runs at: the issue's
// comparison is at 10,000 proxies.
const benchHAProxyMax = 10_000

// measureHAProxy measures the reference of issue 14: HAProxy's own health
// checks of the same proxies (option httpchk: a fresh connection to each
// proxy and a HEAD of testTarget through it, the daemon's check, the
// daemon's timeout; HAProxy closes a check's connection with a RST) at the
// same interval, alone with the farm, one interval of settling (HAProxy
// spreads its first checks over it), then the same window as the daemon's.
// It returns HAProxy's CPU over the window and its peak RSS (VmHWM). ok is
// false when HAProxy is not installed; with PROXYHEALTH_REQUIRE_ALL=1 that
// fails the benchmark instead.
func measureHAProxy(b *testing.B, dir string, urls []string, interval, window time.Duration, checks func() uint64) (w cpuWindow, peak float64, ok bool) {
	path, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv(testutil.RequireAll) == "1" {
			b.Fatalf("haproxy is not installed (apt-get install haproxy): the HAProxy reference cannot be measured (and %s=1)", testutil.RequireAll)
		}
		b.Logf("the HAProxy reference is not measured: haproxy is not installed (apt-get install haproxy)")
		return w, 0, false
	}
	target, err := url.Parse(testTarget)
	if err != nil {
		b.Fatal(err)
	}
	var cfg strings.Builder
	timeout := benchCheckTimeout.Milliseconds()
	// HAProxy runs only with a listener: an abstract unix socket nothing
	// connects to.
	fmt.Fprintf(&cfg, "global\n    maxconn 1000\n\ndefaults\n    mode http\n    timeout connect %[1]dms\n    timeout check %[1]dms\n    timeout client %[1]dms\n    timeout server %[1]dms\n\n", timeout)
	fmt.Fprintf(&cfg, "frontend idle\n    bind abns@proxyhealth-bench-%d\n    default_backend farm\n\n", os.Getpid())
	fmt.Fprintf(&cfg, "backend farm\n    option httpchk\n    http-check send meth HEAD uri %s ver HTTP/1.1 hdr Host %s\n    default-server check inter %dms fall 3 rise 2\n",
		testTarget, target.Host, interval.Milliseconds())
	for i, u := range urls {
		pu, err := url.Parse(u)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(&cfg, "    server p%d %s\n", i, pu.Host)
	}
	file := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(file, []byte(cfg.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	h := startBenchProc(b, "haproxy", exec.Command(path, "-db", "-f", file))
	defer h.kill()
	settle(interval)
	w = measure(b, h.pid(), h.exited, window, checks)
	if w.checks == 0 {
		b.Fatalf("the farm saw no check of HAProxy in the window\n%s", h.stderr.tail())
	}
	peak = vmHWM(b, h.pid(), h.exited)
	b.Logf("HAProxy (%s): %d checks in %v, user %v, sys %v, %d context switches", path, w.checks, w.elapsed, w.user, w.sys, w.switches)
	return w, peak, true
}

// benchWindow is PROXYHEALTH_BENCH_WINDOW, default 30 s.
func benchWindow(b *testing.B) time.Duration {
	s := os.Getenv("PROXYHEALTH_BENCH_WINDOW")
	if s == "" {
		return 30 * time.Second
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		b.Fatalf("PROXYHEALTH_BENCH_WINDOW=%q: want a positive Go duration such as 30s", s)
	}
	return d
}

// startBenchFarms starts the farm children for n proxies, at most
// benchFarmMax each, child k on 127.0.0.(k+2). It fails, naming the cause,
// if the descriptor limit or a loopback address does not allow it.
// benchReportMax bounds one line from a child: a farm's report
// (fakeproxy.WriteReport: about 250 bytes per proxy and source).
const benchReportMax = 256 << 20

func startBenchFarms(b *testing.B, n int) []*benchChildProc {
	k := (n + benchFarmMax - 1) / benchFarmMax
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatalf("read RLIMIT_NOFILE: %v", err)
	}
	if need := uint64((n+k-1)/k + benchFDHeadroom); lim.Max < need {
		b.Fatalf("the benchmark needs %d file descriptors per farm child (%d proxies each), the hard limit (ulimit -Hn) is %d: raise it", need, (n+k-1)/k, lim.Max)
	}
	farms := make([]*benchChildProc, k)
	for i := range k {
		host := fmt.Sprintf("127.0.0.%d", i+2)
		ln, err := net.Listen("tcp", host+":0")
		if err != nil {
			b.Fatalf("the benchmark needs the loopback address %s for farm child %d of %d (Linux routes all of 127.0.0.0/8 to lo): %v", host, i+1, k, err)
		}
		_ = ln.Close()
		size := n/k + btoi(i < n%k)
		farms[i] = startBenchChild(b, benchFarmEnv+"="+host+"/"+strconv.Itoa(size))
	}
	for _, f := range farms {
		f.readURLs(b)
	}
	return farms
}

func btoi(v bool) int {
	if v {
		return 1
	}
	return 0
}

// benchChildProc is a child of BenchmarkDaemon: this test binary with a
// role in its environment, speaking lines over stdin/stdout.
type benchChildProc struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
	urls []string
	done chan struct{}
}

// startBenchChild starts this test binary with env added; the benchmark's
// cleanup closes its stdin and waits for it (killing it after 10 s).
func startBenchChild(b *testing.B, env ...string) *benchChildProc {
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	out := bufio.NewScanner(stdout)
	out.Buffer(make([]byte, 64<<10), benchReportMax)
	p := &benchChildProc{cmd: cmd, in: in, out: out, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	b.Cleanup(func() { p.close(b) })
	return p
}

// readURLs reads the child's lines up to READY, keeping the URLs (a farm
// child prints them, the baseline none).
func (p *benchChildProc) readURLs(b *testing.B) {
	for p.out.Scan() {
		line := p.out.Text()
		switch {
		case line == "READY":
			return
		case strings.HasPrefix(line, "ERR"):
			b.Fatalf("%s: %s", p.cmd.Env[len(p.cmd.Env)-1], line)
		default:
			p.urls = append(p.urls, line)
		}
	}
	b.Fatalf("%s: the child ended before READY: %v", p.cmd.Env[len(p.cmd.Env)-1], p.out.Err())
}

// ask sends a request line to the child and returns its answer line.
func (p *benchChildProc) ask(b *testing.B, req string) string {
	if _, err := fmt.Fprintln(p.in, req); err != nil {
		b.Fatalf("%s: %v", p.cmd.Env[len(p.cmd.Env)-1], err)
	}
	if !p.out.Scan() {
		b.Fatalf("%s did not answer %q: %v", p.cmd.Env[len(p.cmd.Env)-1], req, p.out.Err())
	}
	return p.out.Text()
}

// count asks a farm child for the checks it served.
func (p *benchChildProc) count(b *testing.B) uint64 {
	n, err := strconv.ParseUint(p.ask(b, "count"), 10, 64)
	if err != nil {
		b.Fatalf("farm child answered %q to count: %v", p.out.Text(), err)
	}
	return n
}

// exited reports, once the child has exited, that it did.
func (p *benchChildProc) exited() string {
	select {
	case <-p.done:
		return fmt.Sprintf("%s exited: %v", p.cmd.Env[len(p.cmd.Env)-1], p.cmd.ProcessState)
	default:
		return ""
	}
}

// close closes the child's stdin (it exits) and waits for it; it kills it
// if it is still running after 10 s. It may be called more than once.
func (p *benchChildProc) close(b *testing.B) {
	_ = p.in.Close()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		b.Logf("%s: still running 10 s after its stdin closed; killing it", p.cmd.Env[len(p.cmd.Env)-1])
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// benchDaemonProc is a running `proxyhealth run`.
type benchDaemonProc struct {
	what   string // who it is, for messages ("the daemon")
	cmd    *exec.Cmd
	stderr *tailBuffer
	done   chan struct{}
	err    error
}

// startBenchDaemon starts `proxyhealth run --config cfg`; the benchmark's
// cleanup kills it if still running.
func startBenchDaemon(b *testing.B, cfg string) *benchDaemonProc {
	cmd := exec.Command(bin, "run", "--config", cfg)
	cmd.Env = append(os.Environ(), "PROXYHEALTH_TOKEN=")
	return startBenchProc(b, "the daemon", cmd)
}

// startBenchProc starts cmd with its output kept (what names it in
// messages); the benchmark's cleanup kills it if still running.
func startBenchProc(b *testing.B, what string, cmd *exec.Cmd) *benchDaemonProc {
	d := &benchDaemonProc{what: what, cmd: cmd, stderr: &tailBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = d.stderr, d.stderr
	if err := cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", what, err)
	}
	go func() { d.err = cmd.Wait(); close(d.done) }()
	b.Cleanup(d.kill)
	return d
}

// kill kills the process if it still runs and waits for it.
func (d *benchDaemonProc) kill() {
	select {
	case <-d.done:
	default:
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

func (d *benchDaemonProc) pid() int { return d.cmd.Process.Pid }

// exited reports, once the daemon has exited, why, with its last output.
func (d *benchDaemonProc) exited() string {
	select {
	case <-d.done:
		return fmt.Sprintf("%s exited (%v)\n%s", d.what, d.err, d.stderr.tail())
	default:
		return ""
	}
}

// apiURL waits for the "proxyhealth started" log line and returns the API
// base URL it names.
func (d *benchDaemonProc) apiURL(b *testing.B, timeout time.Duration) string {
	var api string
	pollUntil(b, timeout, 10*time.Millisecond, func() (bool, string) {
		api = d.stderr.started()
		return api != "", "the daemon's \"proxyhealth started\" log line"
	}, d.exited)
	return api
}

// stop sends SIGTERM and waits for a clean exit.
func (d *benchDaemonProc) stop(b *testing.B, timeout time.Duration) {
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		b.Fatal(err)
	}
	select {
	case <-d.done:
		if d.err != nil {
			b.Fatalf("%s stopped with %v\n%s", d.what, d.err, d.stderr.tail())
		}
	case <-time.After(timeout):
		b.Fatalf("%s still runs %v after SIGTERM\n%s", d.what, timeout, d.stderr.tail())
	}
}

// tailBuffer keeps a process's output: the API URL of its start-up line
// and its last 64 KiB.
type tailBuffer struct {
	buf atomic.Pointer[[]byte] // swapped whole: writes come from one goroutine
	api atomic.Pointer[string]
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	var cur []byte
	if old := t.buf.Load(); old != nil {
		cur = *old
	}
	next := append(slices.Clip(cur), p...)
	if t.api.Load() == nil {
		for line := range bytes.SplitSeq(next, []byte("\n")) {
			var rec struct {
				Msg string `json:"msg"`
				API string `json:"api"`
			}
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "proxyhealth started" {
				api := strings.TrimSuffix(rec.API, "/")
				t.api.Store(&api)
			}
		}
	}
	if len(next) > 64<<10 {
		next = next[len(next)-64<<10:]
	}
	t.buf.Store(&next)
	return len(p), nil
}

func (t *tailBuffer) started() string {
	if p := t.api.Load(); p != nil {
		return *p
	}
	return ""
}

func (t *tailBuffer) tail() string {
	if p := t.buf.Load(); p != nil {
		return string(*p)
	}
	return ""
}

// pollUntil calls cond every step until it holds; it fails with cond's
// explanation after timeout, or at once when dead reports a reason.
func pollUntil(b *testing.B, timeout, step time.Duration, cond func() (bool, string), dead func() string) {
	b.Helper()
	var what, why string
	var ok bool
	testutil.Within(timeout, step, func() bool {
		ok, what = cond()
		why = dead()
		return ok || why != ""
	})
	switch {
	case ok:
	case why != "":
		b.Fatalf("waiting for %s: %s", what, why)
	default:
		b.Fatalf("still waiting after %v for %s", timeout, what)
	}
}

var benchHTTP = &http.Client{Timeout: 10 * time.Second}

func fetchPool(api string) (httpapi.Pool, error) {
	var p httpapi.Pool
	resp, err := benchHTTP.Get(api + "/v1/pool")
	if err != nil {
		return p, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return p, fmt.Errorf("GET /v1/pool: %s", resp.Status)
	}
	return p, json.NewDecoder(resp.Body).Decode(&p)
}

// cpuWindow is a process's CPU time over a window and the checks the farm
// accepted meanwhile.
type cpuWindow struct {
	user, sys time.Duration
	checks    uint64
	elapsed   time.Duration
	// counts of the process over the window (procCounts): context
	// switches, and read- and write-like system calls
	switches, reads, writes uint64
}

// perCheck is n per check of the window.
func (w cpuWindow) perCheck(n uint64) float64 { return float64(n) / float64(w.checks) }

func (w cpuWindow) perK() float64 {
	return float64((w.user + w.sys).Microseconds()) / 1000 / (float64(w.checks) / 1000)
}

func (w cpuWindow) rate() float64 { return float64(w.checks) / w.elapsed.Seconds() }

// measure samples pid's CPU time and the farm's checks over window; dead
// explains why the process is gone.
func measure(b *testing.B, pid int, dead func() string, window time.Duration, checks func() uint64) cpuWindow {
	u0, s0 := procCPU(b, pid, dead)
	n0 := procCounts(b, pid, dead)
	c0, t0 := checks(), time.Now()
	time.Sleep(window) // the measurement window
	u1, s1 := procCPU(b, pid, dead)
	n1 := procCounts(b, pid, dead)
	c1, t1 := checks(), time.Now()
	return cpuWindow{user: u1 - u0, sys: s1 - s0, checks: c1 - c0, elapsed: t1.Sub(t0),
		switches: n1.switches - n0.switches, reads: n1.reads - n0.reads, writes: n1.writes - n0.writes}
}

// counts are a process's cumulative counters (procCounts).
type counts struct{ switches, reads, writes uint64 }

// procCounts reads pid's context switches (voluntary and not, summed over
// its threads in /proc/PID/task/*/status) and its read- and write-like
// system calls (syscr and syscw of /proc/PID/io: read, pread, recv…;
// write, pwrite, send…). Unlike CPU time they do not depend on how fast
// the machine is at the moment, so they show what a change does to a
// check's hand-offs and I/O even where the CPU figures drown in noise. A
// thread that exits within a window takes its switches with it (Go's
// threads seldom exit). A counter it cannot read counts zero (logged).
func procCounts(b *testing.B, pid int, dead func() string) counts {
	var c counts
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil { // some containers hide it; the CPU figures do not need it
		b.Logf("no I/O counters of process %d: %v; %s", pid, err, dead())
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		switch k {
		case "syscr":
			c.reads, _ = strconv.ParseUint(v, 10, 64)
		case "syscw":
			c.writes, _ = strconv.ParseUint(v, 10, 64)
		}
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		b.Logf("no threads of process %d: %v; %s", pid, err, dead())
	}
	for _, t := range tasks {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue // the thread exited meanwhile
		}
		for line := range strings.SplitSeq(string(raw), "\n") {
			// voluntary_ctxt_switches and nonvoluntary_ctxt_switches
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "voluntary_ctxt_switches") {
				n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				c.switches += n
			}
		}
	}
	return c
}

// timedGET GETs url, reads the whole body and returns how long that took;
// anything but 200 fails the benchmark.
func timedGET(b *testing.B, c *http.Client, url string) time.Duration {
	t0 := time.Now()
	resp, err := c.Get(url)
	if err != nil {
		b.Fatalf("GET %s: %v", url, err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	d := time.Since(t0)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return d
}

// measureAPI alternates GET /v1/pool and GET
// /v1/proxies?state=healthy&limit=100 on the server at api (who it is, for
// the log), one request at a time over one kept-alive connection, for
// window and at least benchAPIMin requests each; it returns both p99
// latencies in milliseconds (status, headers and the whole body read).
func measureAPI(b *testing.B, who, api string, window time.Duration) (poolP99, proxiesP99 float64) {
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	get := func(path string) time.Duration { return timedGET(b, c, api+path) }
	var pool, proxies []time.Duration
	end := time.Now().Add(window)
	for time.Now().Before(end) || len(pool) < benchAPIMin {
		pool = append(pool, get("/v1/pool"))
		proxies = append(proxies, get("/v1/proxies?state=healthy&limit=100"))
	}
	b.Logf("%s: %d requests each endpoint; /v1/pool p50 %v p99 %v max %v; /v1/proxies p50 %v p99 %v max %v", who, len(pool),
		quantile(pool, 0.5), quantile(pool, 0.99), quantile(pool, 1), quantile(proxies, 0.5), quantile(proxies, 0.99), quantile(proxies, 1))
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return ms(quantile(pool, 0.99)), ms(quantile(proxies, 0.99))
}

// quantile returns the q quantile of ds (nearest rank); it sorts ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	slices.Sort(ds)
	i := int(q*float64(len(ds))+0.999999) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

// procCPU reads pid's user and system CPU time from /proc/PID/stat; dead
// explains why the process is gone.
func procCPU(b *testing.B, pid int, dead func() string) (user, sys time.Duration) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatalf("read the CPU time of process %d: %v; %s", pid, err, dead())
	}
	// The fields after the command's closing parenthesis start at the
	// state (field 3); utime and stime are fields 14 and 15.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	if len(f) < 13 {
		b.Fatalf("/proc/%d/stat: %d fields after the command, want at least 13", pid, len(f))
	}
	tick := clockTick(b)
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		b.Fatalf("/proc/%d/stat: utime/stime: %v", pid, err)
	}
	return time.Duration(ut) * tick, time.Duration(st) * tick
}

// farmCPU is the CPU time (user and system) the farm children have used
// since they started.
func farmCPU(b *testing.B, farms []*benchChildProc) time.Duration {
	var sum time.Duration
	for _, f := range farms {
		u, s := procCPU(b, f.cmd.Process.Pid, f.exited)
		sum += u + s
	}
	return sum
}

// machineTicks are the machine's cumulative CPU ticks from /proc/stat:
// busy (all but idle and iowait) and in all, over its cpus CPUs.
type machineTicks struct {
	busy, total uint64
	cpus        int
}

// since is the share of the machine's CPU time that was busy since m0.
func (m machineTicks) since(m0 machineTicks) float64 {
	if m.total == m0.total {
		return 0
	}
	return float64(m.busy-m0.busy) / float64(m.total-m0.total)
}

// machineCPU reads the machine's CPU ticks (the first line of /proc/stat:
// user nice system idle iowait irq softirq steal…; guest time is already
// in user and nice).
func machineCPU(b *testing.B) machineTicks {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatalf("read the machine's CPU time: %v", err)
	}
	line, rest, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		b.Fatalf("/proc/stat starts with %q, want the cpu line with at least 8 counters", line)
	}
	var m machineTicks
	for l := range strings.SplitSeq(rest, "\n") { // cpu0, cpu1…
		if len(l) > 3 && strings.HasPrefix(l, "cpu") && l[3] >= '0' && l[3] <= '9' {
			m.cpus++
		}
	}
	for i, v := range f[1:9] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			b.Fatalf("/proc/stat: %q: %v", line, err)
		}
		m.total += n
		if i != 3 && i != 4 { // idle, iowait
			m.busy += n
		}
	}
	return m
}

// clockTick is the length of a clock tick (1/sysconf(_SC_CLK_TCK)), read
// from the kernel's auxiliary vector (AT_CLKTCK) as libc does.
func clockTick(b *testing.B) time.Duration {
	const atClkTck = 17
	raw, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		b.Fatalf("read the clock tick rate: %v", err)
	}
	for i := 0; i+16 <= len(raw); i += 16 {
		if binary.NativeEndian.Uint64(raw[i:]) == atClkTck {
			if hz := binary.NativeEndian.Uint64(raw[i+8:]); hz > 0 {
				return time.Second / time.Duration(hz)
			}
		}
	}
	b.Fatal("/proc/self/auxv has no AT_CLKTCK")
	return 0
}

// settle lets a checker that just started (the daemon, the baseline,
// HAProxy) run one check interval before its CPU window: its first sweep
// is over and its checks are spread over the interval, as they are from
// then on. This is a benchmark of real processes on the real clock, and
// there is no event to wait for: a fake clock cannot drive another
// process, and polling the farm's count would only wait as long.
func settle(interval time.Duration) { time.Sleep(interval) }

// vmHWM is pid's peak resident set size (VmHWM) in MiB; dead explains why
// the process is gone.
func vmHWM(b *testing.B, pid int, dead func() string) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatalf("read the peak RSS of process %d: %v; %s", pid, err, dead())
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				b.Fatalf("/proc/%d/status: %q, want VmHWM: N kB", pid, line)
			}
			kb, err := strconv.ParseFloat(f[0], 64)
			if err != nil {
				b.Fatalf("/proc/%d/status: %q: %v", pid, line, err)
			}
			return kb / 1024
		}
	}
	b.Fatalf("/proc/%d/status has no VmHWM", pid)
	return 0
}

// rssWatchEvery is how often watchRSS samples.
const rssWatchEvery = 20 * time.Millisecond

// rssWatch samples a process's resident set and keeps the sample with the
// most: the kernel keeps the peak (VmHWM), not what it was made of.
type rssWatch struct {
	quit, done chan struct{}
	once       sync.Once
	top        rssSample
}

// rssSample is one read of /proc/PID/status, in kB, at a time since the
// benchmark's start, and the files whose pages were resident then.
type rssSample struct {
	at              time.Duration
	rss, anon, file int64
	files           string
}

func (r rssSample) String() string {
	if r.rss == 0 {
		return "none"
	}
	return fmt.Sprintf("VmRSS %.1f MiB %.1f s after the benchmark's start: RssAnon %.1f MiB, RssFile %.1f MiB (%s)",
		float64(r.rss)/1024, r.at.Seconds(), float64(r.anon)/1024, float64(r.file)/1024, r.files)
}

// residentFiles sums the resident pages of pid's file mappings by file
// (/proc/PID/smaps) and names the largest.
func residentFiles(pid int) string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return err.Error()
	}
	byFile := make(map[string]int64)
	file := ""
	for line := range strings.SplitSeq(string(raw), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			file = "" // a mapping's header: address range, perms, offset, dev, inode[, path]
			if len(f) >= 6 && strings.HasPrefix(f[5], "/") {
				file = filepath.Base(f[5])
			}
		case len(f) == 3 && f[0] == "Rss:" && file != "":
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			byFile[file] += kb
		}
	}
	names := slices.Collect(maps.Keys(byFile))
	slices.SortFunc(names, func(a, b string) int { return cmp.Compare(byFile[b], byFile[a]) })
	var parts []string
	for _, n := range names[:min(len(names), 4)] {
		parts = append(parts, fmt.Sprintf("%s %.1f MiB", n, float64(byFile[n])/1024))
	}
	return strings.Join(parts, ", ")
}

// watchRSS samples pid's resident set every rssWatchEvery until stop (or
// the benchmark's end).
func watchRSS(b *testing.B, pid int, t0 time.Time) *rssWatch {
	w := &rssWatch{quit: make(chan struct{}), done: make(chan struct{})}
	path := fmt.Sprintf("/proc/%d/status", pid)
	go func() {
		defer close(w.done)
		tick := time.NewTicker(rssWatchEvery)
		defer tick.Stop()
		for {
			if s, ok := readRSS(path, time.Since(t0)); ok && s.rss > w.top.rss {
				s.files = residentFiles(pid)
				w.top = s
			}
			select {
			case <-tick.C:
			case <-w.quit:
				return
			}
		}
	}()
	b.Cleanup(func() { w.stop() })
	return w
}

// stop ends the sampling and returns the largest sample.
func (w *rssWatch) stop() rssSample {
	w.once.Do(func() { close(w.quit) })
	<-w.done
	return w.top
}

// readRSS reads the resident set's figures from a /proc/PID/status.
func readRSS(path string, at time.Duration) (rssSample, bool) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return rssSample{}, false
	}
	s := rssSample{at: at}
	for line := range strings.SplitSeq(string(raw), "\n") {
		var dst *int64
		switch key, _, _ := strings.Cut(line, ":"); key {
		case "VmRSS":
			dst = &s.rss
		case "RssAnon":
			dst = &s.anon
		case "RssFile":
			dst = &s.file
		default:
			continue
		}
		if f := strings.Fields(line[strings.IndexByte(line, ':')+1:]); len(f) == 2 {
			*dst, _ = strconv.ParseInt(f[0], 10, 64)
		}
	}
	return s, s.rss > 0
}

// memoryBreakdown says where pid's resident set is now (the kernel keeps
// no breakdown of the peak): anonymous and file-backed pages (the journal's
// mmap) from /proc/PID/status, and the Go heap from the daemon's /metrics.
// A figure it cannot read is left out; it is for the log, not a metric.
func memoryBreakdown(api string, pid int) string {
	var parts []string
	if raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for line := range strings.SplitSeq(string(raw), "\n") {
			for _, key := range []string{"VmRSS:", "RssAnon:", "RssFile:", "VmHWM:"} {
				if rest, ok := strings.CutPrefix(line, key); ok {
					parts = append(parts, key+" "+strings.Join(strings.Fields(rest), " "))
				}
			}
		}
	}
	values := scrapeValues(api)
	for _, name := range []string{"go_goroutines", "go_memstats_heap_idle_bytes", "go_memstats_heap_inuse_bytes", "go_memstats_heap_released_bytes",
		"go_memstats_next_gc_bytes", "go_memstats_stack_inuse_bytes", "go_memstats_sys_bytes"} {
		f, ok := values[name]
		switch {
		case !ok:
		case name == "go_goroutines":
			parts = append(parts, fmt.Sprintf("%s %.0f", name, f))
		default:
			parts = append(parts, fmt.Sprintf("%s %.1f MiB", strings.TrimPrefix(name, "go_memstats_"), f/(1<<20)))
		}
	}
	return strings.Join(parts, ", ")
}

// heapTotals are the daemon's cumulative Go allocation counters, from
// its /metrics: bytes and objects allocated, GC cycles completed, and the
// runtime's estimate of the CPU its GC used (seconds).
type heapTotals struct {
	bytes, allocs, cycles uint64
	gcCPU                 float64
}

// since is what was allocated and collected since h0; zero if either
// reading failed (a counter went back).
func (h heapTotals) since(h0 heapTotals) heapTotals {
	if h.bytes < h0.bytes || h.allocs < h0.allocs || h.cycles < h0.cycles || h.gcCPU < h0.gcCPU || h0 == (heapTotals{}) {
		return heapTotals{}
	}
	return heapTotals{h.bytes - h0.bytes, h.allocs - h0.allocs, h.cycles - h0.cycles, h.gcCPU - h0.gcCPU}
}

// heapCounters reads the daemon's heapTotals (go_memstats_alloc_bytes_total,
// go_memstats_mallocs_total, go_gc_duration_seconds_count,
// go_cpu_classes_gc_total_cpu_seconds_total); zero when /metrics cannot be
// read (the figures built on them then read zero).
func heapCounters(api string) heapTotals {
	v := scrapeValues(api)
	return heapTotals{bytes: uint64(v["go_memstats_alloc_bytes_total"]), allocs: uint64(v["go_memstats_mallocs_total"]),
		cycles: uint64(v["go_gc_duration_seconds_count"]), gcCPU: v["go_cpu_classes_gc_total_cpu_seconds_total"]}
}

// scrapeValues returns the daemon's unlabelled /metrics samples by name
// (labelled ones, such as histogram buckets, are left out: schedLatencies
// reads those); empty if /metrics cannot be read.
func scrapeValues(api string) map[string]float64 {
	values := map[string]float64{}
	for _, line := range scrapeMetrics(api) {
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if f, err := strconv.ParseFloat(value, 64); err == nil {
			values[name] = f
		}
	}
	return values
}

// scrapeMetrics returns the lines of the daemon's /metrics, nil if it
// cannot be read.
func scrapeMetrics(api string) []string {
	resp, err := benchHTTP.Get(api + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	in := bufio.NewScanner(resp.Body)
	in.Buffer(make([]byte, 1<<16), 1<<20)
	var lines []string
	for in.Scan() {
		lines = append(lines, in.Text())
	}
	return lines
}

// schedLatencies reads the daemon's go_sched_latencies_seconds histogram
// (how long its goroutines waited runnable for a thread): cumulative counts
// by upper bound, nil if it cannot be read.
func schedLatencies(api string) map[float64]float64 {
	lines := scrapeMetrics(api)
	if lines == nil {
		return nil
	}
	h := map[float64]float64{}
	for _, line := range lines {
		rest, ok := strings.CutPrefix(line, `go_sched_latencies_seconds_bucket{le="`)
		if !ok {
			continue
		}
		le, count, ok := strings.Cut(rest, `"} `)
		bound, err1 := strconv.ParseFloat(le, 64)
		n, err2 := strconv.ParseFloat(count, 64)
		if ok && err1 == nil && err2 == nil {
			h[bound] = n
		}
	}
	return h
}

// schedQuantiles says the p50, p99 and p99.9 of the scheduling latencies
// between two readings of schedLatencies, as the histogram's upper bounds.
func schedQuantiles(before, after map[float64]float64) string {
	if len(after) == 0 {
		return "not read"
	}
	bounds := slices.Sorted(maps.Keys(after))
	total := after[bounds[len(bounds)-1]] - before[bounds[len(bounds)-1]]
	if total <= 0 {
		return "no goroutine scheduled"
	}
	var parts []string
	for _, q := range []float64{0.5, 0.99, 0.999} {
		for _, le := range bounds {
			if after[le]-before[le] >= q*total {
				parts = append(parts, fmt.Sprintf("p%g ≤ %v", q*100, time.Duration(le*float64(time.Second)).Round(time.Microsecond)))
				break
			}
		}
	}
	return fmt.Sprintf("%s (%.0f goroutines scheduled)", strings.Join(parts, ", "), total)
}

// loadAvg is /proc/loadavg, for the log beside the figures.
func loadAvg() string {
	raw, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(raw))
}

// startPerf starts `perf record` on pid when PROXYHEALTH_BENCH_PERF names a
// file, and returns what stops it and writes the report; without the
// variable it does nothing. The benchmark's cleanup stops it too.
func startPerf(b *testing.B, pid int) (stop func()) {
	return startPerfTo(b, pid, os.Getenv("PROXYHEALTH_BENCH_PERF"))
}

// startPerfTo is startPerf writing to path ("": nothing recorded).
func startPerfTo(b *testing.B, pid int, path string) (stop func()) {
	if path == "" {
		return func() {}
	}
	perf, err := exec.LookPath("perf")
	if err != nil {
		b.Fatalf("PROXYHEALTH_BENCH_PERF is set but perf is not installed: %v", err)
	}
	rec := exec.Command(perf, "record", "-F", "999", "-g", "-p", strconv.Itoa(pid), "-o", path)
	rec.Stdout, rec.Stderr = os.Stderr, os.Stderr
	if err := rec.Start(); err != nil {
		b.Fatalf("perf record: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- rec.Wait() }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = rec.Process.Signal(os.Interrupt)
			select {
			case err := <-done:
				// perf record ends with the SIGINT's status.
				if _, serr := os.Stat(path); err != nil && serr != nil {
					b.Logf("perf record: %v, and no %s: %v", err, path, serr)
					return
				}
			case <-time.After(30 * time.Second):
				_ = rec.Process.Kill()
				<-done
				b.Logf("perf record still ran 30 s after SIGINT; killed")
				return
			}
			// perfTo writes what `perf ARGS -i path` prints to path+ext.
			perfTo := func(ext string, args ...string) bool {
				out, err := exec.Command(perf, append(args, "-i", path)...).Output()
				if err == nil {
					err = os.WriteFile(path+ext, out, 0o644)
				}
				if err != nil {
					b.Logf("perf %s: %v", args[0], err)
				}
				return err == nil
			}
			// The flat profile; then every sample's stack with its
			// symbols, while the binary still exists: for breakdowns by
			// subsystem and by user and kernel time (a kernel frame's
			// address is in the upper half).
			if perfTo(".txt", "report", "--stdio", "--children", "--sort", "symbol", "-g", "none", "--percent-limit", "0.5") &&
				perfTo(".script", "script", "-F", "ip,sym") {
				b.Logf("perf: %s, report %s.txt, stacks %s.script", path, path, path)
			}
		})
	}
	b.Cleanup(stop)
	return stop
}
