package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/internal/etcdtest"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// The cluster's integration test: three real `proxyhealth run` processes
// against one etcd and one farm of 1,000 proxies. Each member checks from
// its own loopback address (--check-source-ip), so the farm counts the
// checks of each proxy per member.

const (
	clusterProxies  = 1000
	clusterInterval = 2 * time.Second
	clusterTTL      = 2 * time.Second
)

// clusterMember is one member process and how to start it again.
type clusterMember struct {
	name      string
	data      string
	advertise string
	ip        netip.Addr
	p         *proc
	api       string
}

type clusterRig struct {
	t       *testing.T
	etcd    *etcdtest.Etcd
	farm    *fakeproxy.Farm
	list    string
	members []*clusterMember
	// unknownSeen is set by the watcher when any member shows a proxy
	// in state unknown after the first sweep (a relapse).
	mu          sync.Mutex
	unknownSeen []string
	phase       string
	// runs are every member process started, in order, for the warnings
	// a failure prints.
	runs []memberRun
}

// memberRun is one process of a member.
type memberRun struct {
	name string
	p    *proc
}

// apiOf and setAPI guard a member's API URL, which the unknown-state
// watcher reads while the test restarts members.
func (r *clusterRig) apiOf(m *clusterMember) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return m.api
}

func (r *clusterRig) setAPI(m *clusterMember, api string) {
	r.mu.Lock()
	m.api = api
	r.mu.Unlock()
}

func (r *clusterRig) setPhase(p string) {
	r.mu.Lock()
	r.phase = p
	r.mu.Unlock()
}

// memberAddr returns a free host:port for cluster member i's endpoint
// (its --advertise address), on a loopback address of its own,
// 127.0.1.(21+i). Nothing else binds there, so the port stays the
// member's while its process is down or restarting; on 127.0.0.1 the
// kernel handed it out again as another process's ephemeral port (CI
// saw a restarted member's own API listener, --listen 127.0.0.1:0, take
// it: "cannot listen ... address already in use").
func memberAddr(tb testing.TB, i int) string {
	tb.Helper()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.1.%d:0", 21+i))
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func newClusterRig(t *testing.T) *clusterRig {
	t.Helper()
	r := &clusterRig{t: t, etcd: etcdtest.Start(t)}
	farm, err := fakeproxy.Start(context.Background(), clusterProxies, fakeproxy.WithOverlapWindow(clusterInterval/2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(farm.Close)
	r.farm = farm
	var b strings.Builder
	for i := range clusterProxies {
		b.WriteString(farm.URL(i) + "\n")
	}
	dir := t.TempDir()
	r.list = writeFile(t, dir, "farm.txt", b.String())
	for i := range 3 {
		r.members = append(r.members, &clusterMember{
			name: fmt.Sprintf("m%d", i+1), data: filepath.Join(dir, fmt.Sprintf("data%d", i+1)),
			advertise: memberAddr(t, i), ip: netip.AddrFrom4([4]byte{127, 0, 0, byte(21 + i)}),
		})
	}
	return r
}

// start starts a member's process (not waiting for it).
func (r *clusterRig) start(m *clusterMember) {
	r.setAPI(m, "")
	m.p = startBin(r.t, nil, "run", "--data", m.data, "--listen", "127.0.0.1:0", "--log-format", "json",
		"--interval", clusterInterval.String(), "--timeout", "1s", "--check-url", testTarget, "--proxies", "farm="+r.list,
		"--cluster", "itest", "--etcd", strings.Join(r.etcd.Endpoints(), ","), "--advertise", m.advertise,
		"--lease-ttl", clusterTTL.String(), "--check-source-ip", m.ip.String())
	r.mu.Lock()
	r.runs = append(r.runs, memberRun{name: m.name, p: m.p})
	r.mu.Unlock()
}

// warnings returns the warning and error lines every member process
// logged, each prefixed with its member's name and run.
func (r *clusterRig) warnings() string {
	r.mu.Lock()
	runs := slices.Clone(r.runs)
	r.mu.Unlock()
	var b strings.Builder
	for i, run := range runs {
		for line := range strings.Lines(run.p.stderr.String()) {
			if strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`) {
				fmt.Fprintf(&b, "%s (process %d): %s", run.name, i+1, line)
			}
		}
	}
	return b.String()
}

// startAll starts the members at once and waits until each is up.
func (r *clusterRig) startAll(ms ...*clusterMember) {
	for _, m := range ms {
		r.start(m)
	}
	for _, m := range ms {
		r.setAPI(m, m.p.apiURL())
	}
}

func (r *clusterRig) pool(m *clusterMember) (httpapi.Pool, bool) {
	resp, err := http.Get(r.apiOf(m) + "/v1/pool")
	if err != nil {
		return httpapi.Pool{}, false
	}
	defer resp.Body.Close()
	var p httpapi.Pool
	if resp.StatusCode != http.StatusOK || decodeJSON(resp, &p) != nil {
		return httpapi.Pool{}, false
	}
	return p, true
}

// seeAll waits until every member in ms lists exactly ms as the members.
func (r *clusterRig) seeAll(what string, ms ...*clusterMember) {
	r.t.Helper()
	var want []string
	for _, m := range ms {
		want = append(want, m.advertise)
	}
	slices.Sort(want)
	var last string
	if !testutil.Within(20*time.Second, 50*time.Millisecond, func() bool {
		for _, m := range ms {
			p, ok := r.pool(m)
			if !ok || p.Cluster == nil || !slices.Equal(p.Cluster.Members, want) {
				last = fmt.Sprintf("%s sees %+v", m.name, p.Cluster)
				return false
			}
		}
		return true
	}) {
		r.t.Fatalf("%s: the members do not all see %v: %s", what, want, last)
	}
}

// checkedBy returns, per proxy, the source addresses that checked it
// after since.
func (r *clusterRig) checkedBy(since time.Time) [][]netip.Addr {
	out := make([][]netip.Addr, clusterProxies)
	for i := range clusterProxies {
		for _, s := range r.farm.Stats(i).Sources {
			if s.Last.After(since) {
				out[i] = append(out[i], s.IP)
			}
		}
	}
	return out
}

// everyProxyOnce waits until every proxy was checked after since by one
// of ms, and by one member only.
func (r *clusterRig) everyProxyOnce(what string, since time.Time, ms ...*clusterMember) map[netip.Addr]int {
	r.t.Helper()
	var ips []netip.Addr
	for _, m := range ms {
		ips = append(ips, m.ip)
	}
	var last string
	var share map[netip.Addr]int
	if !testutil.Within(30*time.Second, 100*time.Millisecond, func() bool {
		share = map[netip.Addr]int{}
		for i, srcs := range r.checkedBy(since) {
			if len(srcs) != 1 || !slices.Contains(ips, srcs[0]) {
				last = fmt.Sprintf("proxy %d checked by %v since %s", i, srcs, since.Format("15:04:05.000"))
				return false
			}
			share[srcs[0]]++
		}
		return true
	}) {
		r.t.Fatalf("%s: %s", what, last)
	}
	return share
}

// watchUnknown samples every member's /v1/proxies?state=unknown until
// stop is closed and records any proxy it finds there.
func (r *clusterRig) watchUnknown(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(100 * time.Millisecond): // the sampling period
		}
		for _, m := range r.members {
			api := r.apiOf(m)
			if api == "" {
				continue
			}
			resp, err := http.Get(api + "/v1/proxies?state=unknown&limit=10&scope=local")
			if err != nil {
				continue
			}
			var l httpapi.ProxyList
			if resp.StatusCode == http.StatusOK && decodeJSON(resp, &l) == nil && l.Total > 0 {
				r.mu.Lock()
				r.unknownSeen = append(r.unknownSeen, fmt.Sprintf("%s during %s: %d unknown (e.g. %s)", m.name, r.phase, l.Total, l.Proxies[0].ID))
				r.mu.Unlock()
			}
			resp.Body.Close()
		}
	}
}

func (r *clusterRig) relapses() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.unknownSeen)
}

func TestClusterThreeProcesses(t *testing.T) {
	testutil.Long(t, "three daemons, etcd and 1,000 proxies for about 35 s")
	r := newClusterRig(t)
	m1, m2, m3 := r.members[0], r.members[1], r.members[2]

	// Started at once, they all see all, and every proxy is checked by
	// exactly one member.
	start := time.Now()
	r.startAll(m1, m2, m3)
	r.seeAll("start", m1, m2, m3)
	share := r.everyProxyOnce("first sweep", start, m1, m2, m3)
	t.Logf("shares after start: %v (%.1fs)", share, time.Since(start).Seconds())
	for _, m := range r.members {
		if share[m.ip] < clusterProxies/6 {
			t.Errorf("%s checks %d of %d proxies", m.name, share[m.ip], clusterProxies)
		}
	}
	steady := time.Now()
	r.everyProxyOnce("steady state", steady, m1, m2, m3)

	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() { defer close(watched); r.watchUnknown(stop) }()
	defer func() { close(stop); <-watched }()

	// kill -9: its proxies are checked again by a survivor within 5 s.
	t.Run("kill", func(t *testing.T) {
		r.setPhase("kill")
		before := r.checkedBy(steady)
		var mine []int
		for i, srcs := range before {
			if slices.Contains(srcs, m2.ip) {
				mine = append(mine, i)
			}
		}
		killed := time.Now()
		m2.p.signal(syscall.SIGKILL)
		m2.p.wait(10 * time.Second)
		r.setAPI(m2, "")
		var worst time.Duration
		if !testutil.Within(15*time.Second, 50*time.Millisecond, func() bool {
			worst = 0
			for _, i := range mine {
				var first time.Time
				for _, s := range r.farm.Stats(i).Sources {
					if s.IP != m2.ip && s.Last.After(killed) && (first.IsZero() || s.Last.Before(first)) {
						first = s.Last
					}
				}
				if first.IsZero() {
					return false
				}
				worst = max(worst, first.Sub(killed))
			}
			return true
		}) {
			t.Fatal("the killed member's proxies are not all checked again by a survivor")
		}
		t.Logf("kill -9: all %d proxies of the killed member checked again by a survivor %.2fs after the kill (at most)", len(mine), worst.Seconds())
		// Measured at the last check of each, an upper bound of the first.
		r.seeAll("after the kill", m1, m3)
	})

	t.Run("restart", func(t *testing.T) {
		r.setPhase("restart")
		back := time.Now()
		r.startAll(m2)
		r.seeAll("after the restart", m1, m2, m3)
		share := r.everyProxyOnce("after the restart", back.Add(clusterInterval), m1, m2, m3)
		if share[m2.ip] < clusterProxies/6 {
			t.Errorf("the restarted member checks %d proxies", share[m2.ip])
		}
	})

	t.Run("pause", func(t *testing.T) {
		r.setPhase("pause")
		paused := time.Now()
		m3.p.signal(syscall.SIGSTOP)
		r.seeAll("m3 paused past its lease", m1, m2)
		resumed := time.Now()
		m3.p.signal(syscall.SIGCONT)
		if code := m3.p.wait(40 * time.Second); code != exitRejoin {
			t.Errorf("the paused member exited with %d, want %d (rejoin)\n%s", code, exitRejoin, m3.p.stderr)
		}
		r.setAPI(m3, "")
		for i := range clusterProxies {
			if s := r.farm.Stats(i).From(m3.ip); s.Last.After(resumed) {
				t.Errorf("proxy %d checked by the paused member after SIGCONT (%s)", i, s.Last.Sub(resumed))
				break
			}
		}
		t.Logf("SIGSTOP for %.1fs", resumed.Sub(paused).Seconds())
		// Its supervisor starts it again: it rejoins as a new member.
		r.startAll(m3)
		r.seeAll("m3 rejoined", m1, m2, m3)
		r.everyProxyOnce("after m3 rejoined", time.Now().Add(clusterInterval), m1, m2, m3)
	})

	t.Run("etcd outage", func(t *testing.T) {
		r.setPhase("etcd outage")
		r.etcd.Stop()
		time.Sleep(5 * time.Second) // the outage: the scenario's schedule
		if err := r.etcd.Restart(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, m := range r.members {
			select {
			case <-m.p.done:
				t.Fatalf("%s exited during a 5 s etcd outage (%d)\n%s", m.name, m.p.code, m.p.stderr)
			default:
			}
		}
		r.seeAll("after the outage", m1, m2, m3)
		r.everyProxyOnce("after the outage", time.Now().Add(clusterInterval), m1, m2, m3)
	})

	t.Run("graceful stop", func(t *testing.T) {
		r.setPhase("graceful stop")
		m1.p.signal(syscall.SIGTERM)
		if code := m1.p.wait(20 * time.Second); code != 0 {
			t.Errorf("graceful stop exited %d\n%s", code, m1.p.stderr)
		}
		r.setAPI(m1, "")
		r.seeAll("after m1 left", m2, m3)
		r.everyProxyOnce("after m1 left", time.Now().Add(clusterInterval), m2, m3)
	})

	// No proxy was checked by two members for longer than the lease TTL.
	var worst time.Duration
	for i := range clusterProxies {
		worst = max(worst, r.farm.Stats(i).MaxOverlap)
	}
	if worst > clusterTTL {
		t.Errorf("a proxy was checked by two members for %v (lease TTL %v)", worst, clusterTTL)
	}
	t.Logf("longest double check: %v", worst)
	if rel := r.relapses(); len(rel) > 0 {
		t.Errorf("relapses to unknown after the first sweep: %d samples, e.g. %v\nthe members' warnings:\n%s", len(rel), rel[:min(3, len(rel))], r.warnings())
	}
}

// Three members started at once see each other, ten times over (the
// stock etcd provider's start-up race lost a member 2 times in 36).
func TestClusterStartRace(t *testing.T) {
	testutil.Long(t, "ten starts of three daemons, about 30 s")
	r := newClusterRig(t)
	for round := range 10 {
		r.startAll(r.members...)
		r.seeAll("round "+strconv.Itoa(round), r.members...)
		for _, m := range r.members {
			m.p.signal(syscall.SIGTERM)
		}
		for _, m := range r.members {
			if code := m.p.wait(20 * time.Second); code != 0 {
				t.Fatalf("round %d: %s exited %d\n%s", round, m.name, code, m.p.stderr)
			}
		}
	}
}

func decodeJSON(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }
