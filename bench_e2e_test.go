package proxyhealth_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/journal"
)

// The end-to-end benchmarks run the fake proxy farm in a child process (this
// test binary re-executed with PROXYHEALTH_FARM_PROXIES set, which TestMain
// turns into the farm), so that the CPU and memory measured are the
// engine's alone. Run them with `make bench-e2e`.

const farmEnv = "PROXYHEALTH_FARM_PROXIES"

// runFarmProcess is the child (see TestMain): it serves N fake proxies
// until its stdin closes, printing their URLs, then answering "count" with
// the number of checks served. It returns the process's exit code.
func runFarmProcess(n int) int {
	farm, err := fakeproxy.Start(context.Background(), n)
	if err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	defer farm.Close()
	out := bufio.NewWriter(os.Stdout)
	for i := range n {
		fmt.Fprintln(out, farm.URL(i))
	}
	fmt.Fprintln(out, "READY")
	out.Flush()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "count" {
			fmt.Fprintln(out, farm.TotalChecks())
			out.Flush()
		}
	}
	return 0
}

type farmProc struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
	urls []string
}

func startFarmProcess(b *testing.B, n int) *farmProc {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), farmEnv+"="+strconv.Itoa(n))
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
	p := &farmProc{cmd: cmd, in: in, out: bufio.NewScanner(stdout)}
	b.Cleanup(func() { in.Close(); _ = cmd.Wait() })
	for p.out.Scan() {
		line := p.out.Text()
		if line == "READY" {
			return p
		}
		if strings.HasPrefix(line, "ERR") {
			b.Fatal(line)
		}
		if strings.HasPrefix(line, "http://") {
			p.urls = append(p.urls, line)
		}
	}
	b.Fatalf("farm process ended: %v", p.out.Err())
	return nil
}

func (p *farmProc) checks(b *testing.B) uint64 {
	fmt.Fprintln(p.in, "count")
	for p.out.Scan() {
		if n, err := strconv.ParseUint(p.out.Text(), 10, 64); err == nil {
			return n
		}
	}
	b.Fatal("farm process did not answer")
	return 0
}

func cpuTime() time.Duration {
	u, s := cpuSplit()
	return u + s
}

// cpuSplit returns the process's user and system CPU time so far.
func cpuSplit() (user, sys time.Duration) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

func rssMiB() float64 { return procStatusMiB("VmRSS:") }

// procStatusMiB reads one of /proc/self/status's kB fields in MiB
// (VmRSS: now; VmHWM: the peak since the process started).
func procStatusMiB(field string) float64 {
	raw, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, field) {
			kb, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// checkedProxies counts distinct proxies with at least one check result in
// the committed event stream.
func waitFirstSweep(b *testing.B, sub *proxyhealth.Subscription, n int, deadline time.Duration) {
	seen := make(map[string]struct{}, n)
	timeout := time.After(deadline)
	for len(seen) < n {
		select {
		case env, ok := <-sub.C:
			if !ok {
				b.Fatalf("subscription closed: %v", sub.Err())
			}
			switch events.TypeName(env) {
			case "check_succeeded", "check_failed":
				seen[env.GetProxyId()] = struct{}{}
			}
		case <-timeout:
			b.Fatalf("first sweep incomplete after %v: %d of %d proxies checked", deadline, len(seen), n)
		}
	}
}

func e2eConfig(b *testing.B, urls []string, interval time.Duration) proxyhealth.Config {
	h := events.DefaultConfig()
	h.Interval = interval
	return proxyhealth.Config{
		DataDir:            b.TempDir(),
		Concurrency:        1000,
		JournalCommitDelay: delayFromEnv(),
		SubscriberBuffer:   1 << 20,
		Sources:            []proxyhealth.SourceConfig{{Name: "farm", Health: h, Probe: farmProbe(), Proxies: urls}},
	}
}

// BenchmarkE2EFirstSweep: 10,000 fake proxies, concurrency 1000, journal on:
// time from Open until every proxy has been checked once. Target ≤ 10 s.
func BenchmarkE2EFirstSweep(b *testing.B) {
	const n = 10_000
	farm := startFarmProcess(b, n)
	daemonGC(b)
	for range b.N {
		cfg := e2eConfig(b, farm.urls, time.Hour)
		start := time.Now()
		cpu0 := cpuTime()
		// Subscribe before the first event: open with no proxies, then add.
		src := cfg.Sources[0]
		cfg.Sources[0].Proxies = nil
		e, err := proxyhealth.Open(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		sub := e.Subscribe()
		if err := e.ReconfigureSource(context.Background(), src); err != nil {
			b.Fatal(err)
		}
		waitFirstSweep(b, sub, n, 2*time.Minute)
		elapsed := time.Since(start)
		b.ReportMetric(elapsed.Seconds(), "sweep-s")
		b.ReportMetric(float64((cpuTime() - cpu0).Milliseconds()), "cpu-ms")
		b.ReportMetric(rssMiB(), "rss-MiB")
		sub.Close()
		if err := e.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkE2ESteadyState: 10,000 fake proxies checked every 10 s with the
// journal on; after the first sweep and one interval of settling, the
// engine's CPU time over a 30 s window divided by the checks the farm
// served. Target ≤ 200 CPU-ms per 1,000 checks (goal ≤ 100); RSS ≤ 100 MiB,
// with the daemon's GC setting (GOGC=100 in the environment measures Go's
// default instead).
// view=false runs the engine without the SQLite view (live status, pool
// monitor and notifier stay on); view=true adds it.
func BenchmarkE2ESteadyState(b *testing.B) {
	const n = 10_000
	window := 30 * time.Second
	if s := os.Getenv("PROXYHEALTH_BENCH_WINDOW"); s != "" {
		if d, err := time.ParseDuration(s); err == nil {
			window = d
		}
	}
	farm := startFarmProcess(b, n)
	// journal only (the actor/probe/journal path), then with the SQLite view.
	for _, view := range []bool{false, true} {
		b.Run(fmt.Sprintf("view=%v", view), func(b *testing.B) { steadyState(b, farm, window, view) })
	}
}

func steadyState(b *testing.B, farm *farmProc, window time.Duration, view bool) {
	daemonGC(b)
	if os.Getenv("PROXYHEALTH_BENCH_HEAPPROFILE") != "" {
		old := runtime.MemProfileRate
		runtime.MemProfileRate = 4096 // every allocation of the run, finely
		b.Cleanup(func() { runtime.MemProfileRate = old })
	}
	if os.Getenv("PROXYHEALTH_BENCH_ALLOCPROFILE") != "" {
		old := runtime.MemProfileRate
		runtime.MemProfileRate = 64 << 10 // one rate for the base and the end
		b.Cleanup(func() { runtime.MemProfileRate = old })
	}
	for range b.N {
		cfg := e2eConfig(b, farm.urls, 10*time.Second)
		if view {
			cfg.Projections = append(cfg.Projections, proxyhealth.SQLiteView())
		}
		var commits, committed atomic.Int64
		cfg.OnJournalCommit = func(c journal.CommitStats) { commits.Add(1); committed.Add(int64(c.Events)) }
		e, err := proxyhealth.Open(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		time.Sleep(12 * time.Second) // first sweep, then settle onto the schedule
		u0, s0 := cpuSplit()
		c0, cpu0, k0, n0 := farm.checks(b), cpuTime(), commits.Load(), committed.Load()
		if path := os.Getenv("PROXYHEALTH_BENCH_ALLOCPROFILE"); path != "" {
			// The window's allocations: pprof -base PATH.base PATH.
			runtime.GC()
			if f, err := os.Create(path + ".base"); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
			defer func() {
				runtime.GC() // the profile holds allocations as of the last GC
				f, _ := os.Create(path)
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}()
		}
		if path := os.Getenv("PROXYHEALTH_BENCH_CPUPROFILE"); path != "" {
			f, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			_ = pprof.StartCPUProfile(f)
			defer f.Close()
		}
		time.Sleep(window)
		pprof.StopCPUProfile()
		c1, cpu1, k1, n1 := farm.checks(b), cpuTime(), commits.Load(), committed.Load()
		u1, s1 := cpuSplit()
		b.ReportMetric(float64(k1-k0)/window.Seconds(), "commits/s")
		b.ReportMetric(float64(n1-n0)/float64(max(k1-k0, 1)), "events/commit")
		checks := c1 - c0
		cpu := cpu1 - cpu0
		b.ReportMetric(float64(checks)/window.Seconds(), "checks/s")
		b.ReportMetric(float64(cpu.Milliseconds())/(float64(checks)/1000), "cpu-ms/1k-checks")
		b.ReportMetric(float64((u1-u0).Microseconds())/float64(max(checks, 1)), "user-us/check")
		b.ReportMetric(float64((s1-s0).Microseconds())/float64(max(checks, 1)), "sys-us/check")
		b.ReportMetric(rssMiB(), "rss-MiB")
		b.ReportMetric(procStatusMiB("VmHWM:"), "peak-rss-MiB") // since the test binary started
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(runtime.NumGoroutine()), "goroutines")
		if os.Getenv("PROXYHEALTH_BENCH_MEMDEBUG") != "" {
			b.Logf("memstats: sys %d MiB, heap sys %d, inuse %d, idle %d, released %d, stacks %d, other %d", ms.Sys>>20, ms.HeapSys>>20, ms.HeapInuse>>20, ms.HeapIdle>>20, ms.HeapReleased>>20, ms.StackInuse>>20, (ms.OtherSys+ms.GCSys+ms.MSpanSys+ms.MCacheSys+ms.BuckHashSys)>>20)
			raw, _ := os.ReadFile("/proc/self/smaps_rollup")
			b.Logf("smaps_rollup:\n%s", raw)
			maps, _ := os.ReadFile("/proc/self/smaps")
			_ = os.WriteFile("/tmp/smaps.txt", maps, 0o644)
		}
		if os.Getenv("PROXYHEALTH_BENCH_HEAPPROFILE") != "" {
			f, _ := os.Create(os.Getenv("PROXYHEALTH_BENCH_HEAPPROFILE"))
			_ = pprof.WriteHeapProfile(f)
			f.Close()
		}
		if err := e.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// daemonGC runs the benchmark with the GC setting of the proxyhealth daemon
// (proxyhealth.RecommendedGCPercent), unless GOGC is set in the
// environment (GOGC=100 measures Go's default), and reports it.
func daemonGC(b *testing.B) {
	pct := proxyhealth.RecommendedGCPercent
	if env := os.Getenv("GOGC"); env != "" {
		pct, _ = strconv.Atoi(env)
	} else {
		old := debug.SetGCPercent(pct)
		b.Cleanup(func() { debug.SetGCPercent(old) })
	}
	b.ReportMetric(float64(pct), "gogc")
}

// delayFromEnv lets a benchmark run try another journal commit delay.
func delayFromEnv() time.Duration {
	d, _ := time.ParseDuration(os.Getenv("PROXYHEALTH_BENCH_COMMIT_DELAY"))
	return d
}
