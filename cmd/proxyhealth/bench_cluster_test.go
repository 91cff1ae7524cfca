package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/etcdtest"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
)

// BenchmarkCluster measures a cluster of three `proxyhealth run` members
// (the binary TestMain builds, each configured as shipped: journal, SQLite
// view, metrics, API) against one etcd (internal/etcdtest, skipped without
// etcd installed unless PROXYHEALTH_REQUIRE_ALL=1) and a farm of N fake
// proxies served by child processes (this test binary re-executed, see
// runBenchFarm), at most benchFarmMax proxies each on 127.0.0.2,
// 127.0.0.3, …; each member checks from its own source address
// (--check-source-ip 127.0.0.21–23; the lone member of the comparison
// 127.0.0.24), so the farm counts every proxy's checks per member. Run it
// with -benchtime 1x:
//
//	PROXYHEALTH_BENCH_CLUSTER_PROXIES=10000 go test -run '^$' -bench 'BenchmarkCluster$' -benchtime 1x -timeout 60m ./cmd/proxyhealth/
//	go test -run '^$' -bench 'BenchmarkCluster$' -benchtime 1x -timeout 60m ./cmd/proxyhealth/
//
// N is PROXYHEALTH_BENCH_CLUSTER_PROXIES (default 100,000); the interval
// PROXYHEALTH_BENCH_CLUSTER_INTERVAL (default 10 s up to 10,000 proxies,
// 60 s above, as BenchmarkDaemon's sizes); the members' lease TTL
// PROXYHEALTH_BENCH_CLUSTER_TTL (default 2 s); the windows
// PROXYHEALTH_BENCH_WINDOW (default 30 s). A member that loses its lease
// (starved of CPU longer than the TTL) exits 3 and fails the benchmark,
// naming it. In order:
//   - the three members started at once: members-s until each lists the
//     three; first-sweep-s until every proxy was checked by a member, from
//     the farms' per-source first-check times (exact, whatever the polling);
//   - one interval of settling, then the CPU window: the members' CPU
//     (/proc/PID/stat utime+stime) summed over the checks the farm
//     accepted (cpu-ms/1k-checks), and each member's CPU over its own
//     checks (mK-cpu-ms/1k-checks, from the farms' per-source counts);
//     etcd's traffic over the same window (etcd-req/s: the sum of
//     grpc_server_msg_received_total over every method, each unary request
//     and each message on a stream such as a lease keep-alive; and
//     etcd-proposals/s: etcd_server_proposals_committed_total, its writes
//     through raft; etcd-cpu-ms/s from its process_cpu_seconds_total);
//   - the API window, checks running: one client alternating GET /v1/pool
//     (cluster-wide where the API answers for the cluster) and GET
//     /v1/pool?scope=local on the first member, one request at a time (at
//     least benchAPIMin each); p99 client-side (pool-p99-ms,
//     pool-local-p99-ms); whether the default answer was cluster-wide
//     (cluster_answer with members, the total of all N) is logged and
//     reported as pool-cluster-wide (1 or 0);
//   - peak-rss-MiB of each member (VmHWM, start-up included) before the
//     kill;
//   - kill -9 of the second member: failover-recheck-s until every proxy
//     it checked last was checked again by a survivor (from the farms'
//     per-source times: a survivor's first check of the proxy when it
//     had never checked it, else its last one, an upper bound),
//     failover-members-s until both survivors list 2 members (polled every
//     50 ms); etcd traffic over that window (etcd-req/s-failover,
//     etcd-proposals/s-failover);
//   - the survivors stopped (SIGTERM), then one member alone (no cluster)
//     on the same farm and interval: single-first-sweep-s, one interval of
//     settling, a window of the same length: single-cpu-ms/1k-checks,
//     single-peak-rss-MiB, and cpu-ratio (the cluster's CPU per check over
//     the lone member's).
//
// Nothing is asserted against a target: the figures are reported.
func BenchmarkCluster(b *testing.B) {
	n := 100_000
	if s := os.Getenv(benchClusterProxiesEnv); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("%s=%q: want a positive number of proxies such as 10000", benchClusterProxiesEnv, s)
		}
		n = v
	}
	interval := 10 * time.Second
	if n > 10_000 {
		interval = 60 * time.Second
	}
	if s := os.Getenv(benchClusterIntervalEnv); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			b.Fatalf("%s=%q: want a positive Go duration such as 60s", benchClusterIntervalEnv, s)
		}
		interval = d
	}
	ttl := 2 * time.Second
	if s := os.Getenv(benchClusterTTLEnv); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < time.Second {
			b.Fatalf("%s=%q: want a Go duration of at least 1s such as 2s", benchClusterTTLEnv, s)
		}
		ttl = d
	}
	b.Run(fmt.Sprintf("proxies=%d", n), func(b *testing.B) { benchCluster(b, n, interval, ttl) })
}

const (
	// benchClusterProxiesEnv and benchClusterIntervalEnv size
	// BenchmarkCluster.
	benchClusterProxiesEnv  = "PROXYHEALTH_BENCH_CLUSTER_PROXIES"
	benchClusterIntervalEnv = "PROXYHEALTH_BENCH_CLUSTER_INTERVAL"
	// benchClusterTTLEnv is the members' lease TTL (default 2 s, the
	// daemon's default).
	benchClusterTTLEnv = "PROXYHEALTH_BENCH_CLUSTER_TTL"
)

// benchClusterMemberIPs are the members' check source addresses (the farm
// children use 127.0.0.2 upwards, at most 14 of them below 127.0.0.16);
// benchClusterSingleIP is the lone member's.
var (
	benchClusterMemberIPs = []netip.Addr{netip.MustParseAddr("127.0.0.21"), netip.MustParseAddr("127.0.0.22"), netip.MustParseAddr("127.0.0.23")}
	benchClusterSingleIP  = netip.MustParseAddr("127.0.0.24")
)

// startClusterFarms starts BenchmarkDaemon's farm children for n proxies
// (child k on 127.0.0.(k+2); they answer "report" too), making sure they
// stay below the members' source addresses.
func startClusterFarms(b *testing.B, n int) []*benchChildProc {
	k := (n + benchFarmMax - 1) / benchFarmMax
	if k+1 >= int(benchClusterMemberIPs[0].As4()[3]) {
		b.Fatalf("%d farm children would reach the members' source address %v: at most %d proxies", k, benchClusterMemberIPs[0], (int(benchClusterMemberIPs[0].As4()[3])-2)*benchFarmMax)
	}
	return startBenchFarms(b, n)
}

// checkLoopback fails the benchmark, naming what needs it, when host is
// not a local address to listen on.
func checkLoopback(b *testing.B, host, what string) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		b.Fatalf("BenchmarkCluster needs the loopback address %s for %s (Linux routes all of 127.0.0.0/8 to lo): %v", host, what, err)
	}
	_ = ln.Close()
}

// farmReport asks one farm child for its report. It may run on any
// goroutine (it does not fail the benchmark), but one at a time per child.
func farmReport(p *benchChildProc) (fakeproxy.Report, error) {
	if _, err := io.WriteString(p.in, "report\n"); err != nil {
		return fakeproxy.Report{}, fmt.Errorf("farm child %s: send report: %w", p.cmd.Env[len(p.cmd.Env)-1], err)
	}
	if !p.out.Scan() {
		return fakeproxy.Report{}, fmt.Errorf("farm child %s did not answer report: %v", p.cmd.Env[len(p.cmd.Env)-1], p.out.Err())
	}
	return fakeproxy.ParseReport(p.out.Bytes())
}

// farmStats asks every farm child for its report at once and returns
// every proxy's statistics, in the order of the URLs.
func farmStats(b *testing.B, farms []*benchChildProc) []fakeproxy.Stats {
	reps := make([]fakeproxy.Report, len(farms))
	errs := make([]error, len(farms))
	var wg sync.WaitGroup
	for i, f := range farms {
		wg.Go(func() { reps[i], errs[i] = farmReport(f) })
	}
	wg.Wait()
	var out []fakeproxy.Stats
	for i, r := range reps {
		if errs[i] != nil {
			b.Fatal(errs[i])
		}
		out = append(out, r.Proxies...)
	}
	return out
}

// checksFrom sums the checks every proxy received from ip.
func checksFrom(stats []fakeproxy.Stats, ip netip.Addr) uint64 {
	var sum uint64
	for _, s := range stats {
		sum += s.From(ip).Checks
	}
	return sum
}

// sweptBy returns, once every proxy was checked from one of ips since
// since, how long after since the last of them had its first such check;
// otherwise false and how many are still unchecked.
func sweptBy(stats []fakeproxy.Stats, ips []netip.Addr, since time.Time) (time.Duration, int, bool) {
	var worst time.Duration
	left := 0
	for _, s := range stats {
		var first time.Time
		for _, src := range s.Sources {
			if slices.Contains(ips, src.IP) && !src.First.Before(since) && (first.IsZero() || src.First.Before(first)) {
				first = src.First
			}
		}
		if first.IsZero() {
			left++
			continue
		}
		worst = max(worst, first.Sub(since))
	}
	return worst, left, left == 0
}

// lastChecker is the source that checked s last.
func lastChecker(s fakeproxy.Stats) netip.Addr {
	var ip netip.Addr
	var last time.Time
	for _, src := range s.Sources {
		if src.Last.After(last) {
			ip, last = src.IP, src.Last
		}
	}
	return ip
}

// recheckedAfter returns when one of ips checked s after t: a source's
// first check when all of its checks came after t (exact: true), else its
// last one (an upper bound of the first after t); zero when none did.
func recheckedAfter(s fakeproxy.Stats, ips []netip.Addr, t time.Time) (at time.Time, exact bool) {
	for _, src := range s.Sources {
		if !slices.Contains(ips, src.IP) || !src.Last.After(t) {
			continue
		}
		a, e := src.Last, false
		if src.First.After(t) {
			a, e = src.First, true
		}
		if at.IsZero() || a.Before(at) {
			at, exact = a, e
		}
	}
	return at, exact
}

// clusterPool is what BenchmarkCluster reads of GET /v1/pool, decoded
// loosely so that it reads the API before and after the cluster-wide
// answer: the counts, the member's own cluster view, and the cluster
// answer when there is one.
type clusterPool struct {
	Total   int `json:"total"`
	Unknown int `json:"unknown"`
	Cluster *struct {
		Members []string `json:"members"`
		Fresh   bool     `json:"fresh"`
		Checked int      `json:"checked"`
	} `json:"cluster"`
	ClusterAnswer *struct {
		Members []string          `json:"members"`
		Missing []json.RawMessage `json:"missing"`
	} `json:"cluster_answer"`
}

// getClusterPool fetches GET api+path and decodes it as a clusterPool.
func getClusterPool(c *http.Client, url string) (clusterPool, int, error) {
	var p clusterPool
	resp, err := c.Get(url)
	if err != nil {
		return p, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return p, resp.StatusCode, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return p, resp.StatusCode, json.NewDecoder(resp.Body).Decode(&p)
}

// seesMembers reports whether the member at api lists exactly want.
func seesMembers(c *http.Client, api string, want []string) (bool, string) {
	p, _, err := getClusterPool(c, api+"/v1/pool?scope=local")
	if err != nil {
		// Before the scope existed the query was ignored; a 400 would
		// mean scope=local is refused: ask without it.
		if p, _, err = getClusterPool(c, api+"/v1/pool"); err != nil {
			return false, err.Error()
		}
	}
	if p.Cluster == nil {
		return false, "no cluster view in /v1/pool"
	}
	got := slices.Sorted(slices.Values(p.Cluster.Members))
	return slices.Equal(got, want), fmt.Sprintf("members %v", got)
}

// etcdCounters are etcd's counters read from its /metrics at one moment.
type etcdCounters struct {
	at        time.Time
	received  float64            // sum of grpc_server_msg_received_total
	byMethod  map[string]float64 // grpc_server_msg_received_total per grpc_method
	proposals float64            // etcd_server_proposals_committed_total
	cpu       float64            // process_cpu_seconds_total
}

// readEtcd reads etcd's Prometheus metrics (served on its client URL).
func readEtcd(b *testing.B, c *http.Client, e *etcdtest.Etcd) etcdCounters {
	resp, err := c.Get(e.ClientURL() + "/metrics")
	if err != nil {
		b.Fatalf("etcd metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("etcd metrics: GET %s/metrics: %s", e.ClientURL(), resp.Status)
	}
	out := etcdCounters{at: time.Now(), byMethod: map[string]float64{}}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		name, labels, _ := strings.Cut(line[:i], "{")
		switch name {
		case "grpc_server_msg_received_total":
			out.received += v
			_, m, _ := strings.Cut(labels, `grpc_method="`)
			m, _, _ = strings.Cut(m, `"`)
			out.byMethod[m] += v
		case "etcd_server_proposals_committed_total":
			out.proposals += v
		case "process_cpu_seconds_total":
			out.cpu += v
		}
	}
	if err := sc.Err(); err != nil {
		b.Fatalf("etcd metrics: read: %v", err)
	}
	return out
}

// etcdRates are etcd's traffic between two readings.
type etcdRates struct {
	reqPerS, proposalsPerS, cpuMsPerS float64
	top                               string // the busiest methods
}

func etcdBetween(a, z etcdCounters) etcdRates {
	s := z.at.Sub(a.at).Seconds()
	type mr struct {
		m string
		v float64
	}
	var ms []mr
	for m, v := range z.byMethod {
		if d := v - a.byMethod[m]; d > 0 {
			ms = append(ms, mr{m, d / s})
		}
	}
	slices.SortFunc(ms, func(x, y mr) int {
		if x.v != y.v {
			if x.v > y.v {
				return -1
			}
			return 1
		}
		return strings.Compare(x.m, y.m)
	})
	var top []string
	for _, m := range ms[:min(4, len(ms))] {
		top = append(top, fmt.Sprintf("%s %.1f/s", m.m, m.v))
	}
	return etcdRates{
		reqPerS:       (z.received - a.received) / s,
		proposalsPerS: (z.proposals - a.proposals) / s,
		cpuMsPerS:     (z.cpu - a.cpu) * 1000 / s,
		top:           strings.Join(top, ", "),
	}
}

// clusterBenchConfig writes a member's configuration file and returns its
// path; cluster is the YAML of its cluster section ("" for none). The
// source address is a flag (startClusterMember).
func clusterBenchConfig(b *testing.B, dir, name string, interval time.Duration, list string, cluster string) string {
	path := filepath.Join(dir, name+".yaml")
	yaml := fmt.Sprintf("data: %s\nlisten: 127.0.0.1:0\nlog_format: json\ndefaults:\n  interval: %s\n  check_url: %s\nsources:\n  - name: farm\n    proxy_files: [%s]\n%s",
		filepath.Join(dir, name), interval, testTarget, list, cluster)
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		b.Fatal(err)
	}
	return path
}

// startClusterMember is startBenchDaemon with --check-source-ip ip.
func startClusterMember(b *testing.B, cfg string, ip netip.Addr) *benchDaemonProc {
	cmd := exec.Command(bin, "run", "--config", cfg, "--check-source-ip", ip.String())
	cmd.Env = append(os.Environ(), "PROXYHEALTH_TOKEN=")
	return startBenchProc(b, "the daemon", cmd)
}

// benchCluster is one size of BenchmarkCluster.
func benchCluster(b *testing.B, n int, interval, ttl time.Duration) {
	window := benchWindow(b)
	etcd := etcdtest.Start(b)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}, Timeout: 10 * time.Second}
	b.Cleanup(hc.CloseIdleConnections)
	b.Cleanup(benchHTTP.CloseIdleConnections)
	for _, ip := range append(slices.Clone(benchClusterMemberIPs), benchClusterSingleIP) {
		checkLoopback(b, ip.String(), "a member's check source address")
	}
	loadBefore, memBefore := loadAvg(), memAvailable()
	t0 := time.Now()
	var phases []string
	phase := func(what string) { phases = append(phases, fmt.Sprintf("%.1fs %s", time.Since(t0).Seconds(), what)) }
	farms := startClusterFarms(b, n)
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
	totalChecks := func() uint64 {
		var sum uint64
		for _, f := range farms {
			sum += f.count(b)
		}
		return sum
	}
	// Polling the farms' reports costs CPU the members share: at most
	// every pollStep.
	pollStep := max(500*time.Millisecond, time.Duration(n/20_000)*time.Second)

	// The three members, started at once.
	var adv []string // sorted
	var advOf []string
	var members []*benchDaemonProc
	var cfgs []string
	for i := range benchClusterMemberIPs {
		a := memberAddr(b, i)
		adv = append(adv, a)
		advOf = append(advOf, a)
		cfgs = append(cfgs, clusterBenchConfig(b, dir, fmt.Sprintf("m%d", i+1), interval, list,
			fmt.Sprintf("cluster:\n  name: bench\n  etcd: [%s]\n  advertise: %s\n  lease_ttl: %s\n", etcd.ClientURL(), a, ttl)))
	}
	slices.Sort(adv)
	started := time.Now()
	for i, cfg := range cfgs {
		members = append(members, startClusterMember(b, cfg, benchClusterMemberIPs[i]))
	}
	anyExited := func() string {
		for i, m := range members {
			if why := m.exited(); why != "" {
				return fmt.Sprintf("member m%d: %s", i+1, why)
			}
		}
		return ""
	}
	apis := make([]string, len(members))
	for i, m := range members {
		apis[i] = m.apiURL(b, 2*time.Minute)
	}
	pollUntil(b, 2*time.Minute, 50*time.Millisecond, func() (bool, string) {
		for i, api := range apis {
			if ok, what := seesMembers(hc, api, adv); !ok {
				return false, fmt.Sprintf("m%d to list %v: %s", i+1, adv, what)
			}
		}
		return true, ""
	}, anyExited)
	membersUp := time.Since(started)
	phase("members see each other")
	var firstSweep time.Duration
	pollUntil(b, 5*time.Minute+2*interval, pollStep, func() (bool, string) {
		d, left, ok := sweptBy(farmStats(b, farms), benchClusterMemberIPs, started)
		firstSweep = d
		return ok, fmt.Sprintf("the first sweep: %d of %d proxies not checked by a member yet", left, n)
	}, anyExited)
	phase("first sweep done")

	// Steady state: settle, then the CPU window, etcd's traffic beside it.
	time.Sleep(interval) // settle onto the schedule (not a wait for a result)
	type cpuAt struct{ user, sys time.Duration }
	// cpus reads the CPU time of the members that run (all, or those of
	// which).
	cpus := func(which ...int) []cpuAt {
		if which == nil {
			which = []int{0, 1, 2}
		}
		out := make([]cpuAt, len(members))
		for _, i := range which {
			out[i].user, out[i].sys = procCPU(b, members[i].pid(), func() string {
				if why := members[i].exited(); why != "" {
					return fmt.Sprintf("member m%d: %s", i+1, why)
				}
				return ""
			})
		}
		return out
	}
	cpu0, e0, c0, st0, w0 := cpus(), readEtcd(b, hc, etcd), totalChecks(), farmStats(b, farms), time.Now()
	time.Sleep(window) // the measurement window
	cpu1, e1, c1, st1, w1 := cpus(), readEtcd(b, hc, etcd), totalChecks(), farmStats(b, farms), time.Now()
	phase("CPU window done")
	steadyEtcd := etcdBetween(e0, e1)
	var all cpuWindow
	all.checks, all.elapsed = c1-c0, w1.Sub(w0)
	if all.checks == 0 {
		b.Fatalf("the farm saw no check in the window\n%s", members[0].stderr.tail())
	}
	memberCPU := make([]cpuWindow, len(members))
	var per []string
	for i := range members {
		memberCPU[i] = cpuWindow{user: cpu1[i].user - cpu0[i].user, sys: cpu1[i].sys - cpu0[i].sys, elapsed: all.elapsed,
			checks: checksFrom(st1, benchClusterMemberIPs[i]) - checksFrom(st0, benchClusterMemberIPs[i])}
		all.user += memberCPU[i].user
		all.sys += memberCPU[i].sys
		per = append(per, fmt.Sprintf("m%d %d checks user %v sys %v (%.3f ms/1k)", i+1, memberCPU[i].checks, memberCPU[i].user, memberCPU[i].sys, memberCPU[i].perK()))
	}

	// The API, checks running.
	poolP99, localP99, clusterWide, apiNote := measureClusterPool(b, apis[0], n, window)
	phase("API window done")
	peaks := make([]float64, len(members))
	for i, m := range members {
		peaks[i] = vmHWM(b, m.pid(), anyExited)
	}

	// kill -9 the second member.
	victim := 1
	reportStart := time.Now()
	before := farmStats(b, farms)
	reportTook := time.Since(reportStart)
	var mine []int
	for i, s := range before {
		if lastChecker(s) == benchClusterMemberIPs[victim] {
			mine = append(mine, i)
		}
	}
	survivors := []netip.Addr{benchClusterMemberIPs[0], benchClusterMemberIPs[2]}
	survAPIs := []string{apis[0], apis[2]}
	survAdv := slices.DeleteFunc(slices.Clone(adv), func(a string) bool { return a == advOf[victim] })
	eKill := readEtcd(b, hc, etcd)
	survCPU0 := cpus(0, 2)
	killed := time.Now()
	if err := members[victim].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		b.Fatal(err)
	}
	<-members[victim].done
	survivorsExited := func() string {
		for _, i := range []int{0, 2} {
			if why := members[i].exited(); why != "" {
				return fmt.Sprintf("member m%d: %s", i+1, why)
			}
		}
		return ""
	}
	// First the survivors' member lists (cheap to poll), then the farms'
	// reports (costly at 100,000 proxies: the CPU they take is the
	// members'), which date each check themselves.
	pollUntil(b, time.Minute, 50*time.Millisecond, func() (bool, string) {
		for k, api := range survAPIs {
			if ok, what := seesMembers(hc, api, survAdv); !ok {
				return false, fmt.Sprintf("survivor %d of 2 to list %v: %s", k+1, survAdv, what)
			}
		}
		return true, ""
	}, survivorsExited)
	seen2 := time.Since(killed)
	// The farms date each check themselves: the takeover runs for a while
	// without their reports competing with it for the CPU.
	time.Sleep(3 * pollStep) // not a wait for a result: the polling below is
	var recheck time.Duration
	var exact int
	var rechecks []time.Duration
	pollUntil(b, 2*time.Minute+interval, pollStep, func() (bool, string) {
		st := farmStats(b, farms)
		recheck, exact, rechecks = 0, 0, rechecks[:0]
		left := 0
		for _, i := range mine {
			at, ex := recheckedAfter(st[i], survivors, killed)
			if at.IsZero() {
				left++
				continue
			}
			exact += btoi(ex)
			rechecks = append(rechecks, at.Sub(killed))
			recheck = max(recheck, at.Sub(killed))
		}
		return left == 0, fmt.Sprintf("%d of the killed member's %d proxies checked again by a survivor", len(mine)-left, len(mine))
	}, survivorsExited)
	eFail := readEtcd(b, hc, etcd)
	survCPU1, failEnd := cpus(0, 2), time.Now()
	var survCores []string
	for _, i := range []int{0, 2} {
		used := survCPU1[i].user + survCPU1[i].sys - survCPU0[i].user - survCPU0[i].sys
		survCores = append(survCores, fmt.Sprintf("m%d %.2f", i+1, used.Seconds()/failEnd.Sub(killed).Seconds()))
	}
	var placed []string
	for _, i := range []int{0, 2} {
		placed = append(placed, fmt.Sprintf("m%d %s", i+1, placementsAfter(members[i].stderr.tail(), killed)))
	}
	failNote := fmt.Sprintf("rechecks after the kill p50 %.2fs p90 %.2fs p99 %.2fs max %.2fs; survivors' \"cluster placement changed\" log lines after the kill (logged once the proxies are taken): %s; survivors' CPU from the kill to the last report (cores): %s; one report of the whole farm took %v",
		quantile(rechecks, 0.5).Seconds(), quantile(rechecks, 0.9).Seconds(), quantile(rechecks, 0.99).Seconds(), quantile(rechecks, 1).Seconds(), strings.Join(placed, ", "), strings.Join(survCores, ", "), reportTook.Round(time.Millisecond))
	failEtcd := etcdBetween(eKill, eFail)
	phase("failover done")
	for _, i := range []int{0, 2} {
		members[i].stop(b, 3*time.Minute)
	}
	phase("survivors stopped")
	clusterLine := fmt.Sprintf("cluster of 3, %d proxies, interval %v, lease TTL %v: members list each other %.2fs, first sweep %.2fs; CPU window %v: %d checks (%.0f/s), all members %.3f ms/1k checks [%s]; etcd steady %.1f req/s (grpc_server_msg_received_total; %s), %.2f proposals/s, %.1f ms CPU/s; %s; peak RSS %v MiB; kill -9 m%d (checked %d proxies last): all rechecked by a survivor %.2fs after (%d of them by a survivor that had never checked them: exact first checks; the others' last checks), survivors list 2 members %.2fs after; %s; etcd failover window %.1fs: %.1f req/s (%s), %.2f proposals/s",
		n, interval, ttl, membersUp.Seconds(), firstSweep.Seconds(), all.elapsed.Round(time.Millisecond), all.checks, all.rate(), all.perK(), strings.Join(per, "; "),
		steadyEtcd.reqPerS, steadyEtcd.top, steadyEtcd.proposalsPerS, steadyEtcd.cpuMsPerS, apiNote, peaks, victim+1, len(mine), recheck.Seconds(), exact, seen2.Seconds(), failNote,
		eFail.at.Sub(eKill.at).Seconds(), failEtcd.reqPerS, failEtcd.top, failEtcd.proposalsPerS)
	b.Log(clusterLine)

	// One member alone, same farm, same interval.
	scfg := clusterBenchConfig(b, dir, "single", interval, list, "")
	sStarted := time.Now()
	single := startClusterMember(b, scfg, benchClusterSingleIP)
	single.apiURL(b, 2*time.Minute)
	var singleSweep time.Duration
	pollUntil(b, 5*time.Minute+2*interval, pollStep, func() (bool, string) {
		d, left, ok := sweptBy(farmStats(b, farms), []netip.Addr{benchClusterSingleIP}, sStarted)
		singleSweep = d
		return ok, fmt.Sprintf("the lone member's first sweep: %d of %d proxies not checked yet", left, n)
	}, single.exited)
	phase("lone member's first sweep done")
	time.Sleep(interval) // settle onto the schedule (not a wait for a result)
	scpu := measure(b, single.pid(), single.exited, window, totalChecks)
	if scpu.checks == 0 {
		b.Fatalf("the farm saw no check of the lone member in the window\n%s", single.stderr.tail())
	}
	singlePeak := vmHWM(b, single.pid(), single.exited)
	single.stop(b, 3*time.Minute)
	phase("lone member stopped")
	b.Logf("lone member: first sweep %.2fs; %d checks in %v (%.0f/s), user %v, sys %v: %.3f ms/1k checks; peak RSS %.0f MiB; cluster/lone CPU per check %.2f",
		singleSweep.Seconds(), scpu.checks, scpu.elapsed.Round(time.Millisecond), scpu.rate(), scpu.user, scpu.sys, scpu.perK(), singlePeak, all.perK()/scpu.perK())
	b.Logf("phases: %s", strings.Join(phases, ", "))
	b.Logf("load (/proc/loadavg) before: %s, after: %s; %d CPUs shared with whatever else runs; MemAvailable before %s, after %s; GOGC=%q", loadBefore, loadAvg(), runtime.NumCPU(), memBefore, memAvailable(), os.Getenv("GOGC"))

	b.ReportMetric(membersUp.Seconds(), "members-s")
	b.ReportMetric(firstSweep.Seconds(), "first-sweep-s")
	b.ReportMetric(all.perK(), "cpu-ms/1k-checks")
	for i := range members {
		b.ReportMetric(memberCPU[i].perK(), fmt.Sprintf("m%d-cpu-ms/1k-checks", i+1))
		b.ReportMetric(peaks[i], fmt.Sprintf("m%d-peak-rss-MiB", i+1))
	}
	b.ReportMetric(all.rate(), "checks/s")
	b.ReportMetric(poolP99, "pool-p99-ms")
	if localP99 > 0 {
		b.ReportMetric(localP99, "pool-local-p99-ms")
	}
	b.ReportMetric(float64(btoi(clusterWide)), "pool-cluster-wide")
	b.ReportMetric(recheck.Seconds(), "failover-recheck-s")
	b.ReportMetric(seen2.Seconds(), "failover-members-s")
	b.ReportMetric(steadyEtcd.reqPerS, "etcd-req/s")
	b.ReportMetric(steadyEtcd.proposalsPerS, "etcd-proposals/s")
	b.ReportMetric(steadyEtcd.cpuMsPerS, "etcd-cpu-ms/s")
	b.ReportMetric(failEtcd.reqPerS, "etcd-req/s-failover")
	b.ReportMetric(failEtcd.proposalsPerS, "etcd-proposals/s-failover")
	b.ReportMetric(singleSweep.Seconds(), "single-first-sweep-s")
	b.ReportMetric(scpu.perK(), "single-cpu-ms/1k-checks")
	b.ReportMetric(scpu.rate(), "single-checks/s")
	b.ReportMetric(singlePeak, "single-peak-rss-MiB")
	b.ReportMetric(all.perK()/scpu.perK(), "cpu-ratio")
}

// measureClusterPool checks what GET /v1/pool on the member at api
// answers (the whole cluster's n proxies with a cluster answer naming its
// members, or the member's own), then alternates GET /v1/pool and GET
// /v1/pool?scope=local, one request at a time over one kept-alive
// connection, for window and at least benchAPIMin requests each. It
// returns both p99 latencies in milliseconds (localP99 0 when scope=local
// is refused) and whether the default answer was cluster-wide.
func measureClusterPool(b *testing.B, api string, n int, window time.Duration) (poolP99, localP99 float64, clusterWide bool, note string) {
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	def, _, err := getClusterPool(c, api+"/v1/pool")
	if err != nil {
		b.Fatal(err)
	}
	loc, code, lerr := getClusterPool(c, api+"/v1/pool?scope=local")
	clusterWide = def.ClusterAnswer != nil && len(def.ClusterAnswer.Members) > 0 && def.Total == n
	hasLocal := lerr == nil && def.ClusterAnswer != nil && loc.ClusterAnswer == nil
	var members []string
	if def.ClusterAnswer != nil {
		members = def.ClusterAnswer.Members
	}
	note = fmt.Sprintf("/v1/pool answers for %d proxies (cluster answer members %v: cluster-wide %v); ?scope=local: ", def.Total, members, clusterWide)
	switch {
	case hasLocal:
		note += fmt.Sprintf("%d proxies", loc.Total)
	case lerr != nil:
		note += fmt.Sprintf("refused (%d: %v)", code, lerr)
	default:
		note += "the same answer (no scope in this API)"
	}
	get := func(path string) time.Duration { return timedGET(b, c, api+path) }
	var pool, local []time.Duration
	end := time.Now().Add(window)
	for time.Now().Before(end) || len(pool) < benchAPIMin {
		pool = append(pool, get("/v1/pool"))
		if hasLocal {
			local = append(local, get("/v1/pool?scope=local"))
		}
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	note += fmt.Sprintf("; %d requests: /v1/pool p50 %v p99 %v max %v", len(pool), quantile(pool, 0.5), quantile(pool, 0.99), quantile(pool, 1))
	if hasLocal {
		note += fmt.Sprintf(", ?scope=local p50 %v p99 %v max %v", quantile(local, 0.5), quantile(local, 0.99), quantile(local, 1))
		localP99 = ms(quantile(local, 0.99))
	}
	return ms(quantile(pool, 0.99)), localP99, clusterWide, note
}

// memAvailable is MemAvailable of /proc/meminfo, for the log.
func memAvailable() string {
	raw, _ := os.ReadFile("/proc/meminfo")
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// placementsAfter lists a member's "cluster placement changed" log lines
// (JSON) after t: when each was logged, relative to t, and how many
// proxies it took; "none" when its kept output has none.
func placementsAfter(out string, t time.Time) string {
	var got []string
	for line := range strings.SplitSeq(out, "\n") {
		var rec struct {
			Time  time.Time `json:"time"`
			Msg   string    `json:"msg"`
			Taken int       `json:"taken"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "cluster placement changed" && rec.Time.After(t) {
			got = append(got, fmt.Sprintf("+%.2fs taken %d", rec.Time.Sub(t).Seconds(), rec.Taken))
		}
	}
	if len(got) == 0 {
		return "none"
	}
	return strings.Join(got, " ")
}
