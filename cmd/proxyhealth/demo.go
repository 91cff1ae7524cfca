package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
)

const demoUsage = `Usage: proxyhealth demo [flags]

Starts a farm of fake proxies on 127.0.0.1 with mixed, changing behaviours
(healthy, dying and coming back, flapping, slow, asking for credentials,
dead), monitors it with short intervals, serves the dashboard and the API,
and prints the dashboard URL and a live summary every second. Needs no
configuration and no network beyond loopback. Failed proxies whose fake is
working again are revived every 10 seconds, like an operator would.`

const demoExamples = `  proxyhealth demo
  proxyhealth demo --proxies 1000 --listen 127.0.0.1:8080
  proxyhealth demo --data ./demo-data --duration 5m   # keep the journal, then try 'proxyhealth journal stats --data ./demo-data'`

// demoTarget is fetched through the fake proxies (which answer it
// themselves; nothing leaves the machine).
const demoTarget = "http://demo.proxyhealth.test/"

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("demo", demoUsage, demoExamples, stdout, stderr)
	n := fs.Int("proxies", 300, "number of fake proxies")
	listen := fs.String("listen", defaultListen, "`ADDR` of the dashboard and API (a free port is taken when the default is busy; use port 0 for any)")
	data := fs.String("data", "", "keep the data in `DIR` (default: a temporary directory, removed at exit)")
	var duration time.Duration
	fs.Var(durationFlag{&duration}, "duration", "stop after `DURATION` (default: run until interrupted)")
	seed := fs.Uint64("seed", 1, "seed of the behaviour scripts")
	quiet := fs.Bool("quiet", false, "no summary line")
	serve := fs.String("serve", "127.0.0.1:0", "`ADDR` of the rotating endpoint (HTTP forward proxy and SOCKS5; port 0: any free port, printed); \"off\" for none")
	traffic := fs.Int("traffic", 10, "requests per second the demo sends through its rotating endpoint (0: none), so that the dashboard's traffic panel has something to show")
	logFormat := newChoice("text", "text", "json")
	fs.Var(logFormat, "log-format", "log `FORMAT` on stderr: text or json")
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return fs.fail("unexpected argument %q", pos[0])
	}
	if *n < 1 || *n > 5000 {
		return fs.fail("--proxies %d: want 1 to 5000", *n)
	}
	if !isLoopback(*listen) {
		return fs.fail("--listen %s: the demo only listens on loopback", *listen)
	}
	if *serve != "off" && !isLoopback(*serve) {
		return fs.fail("--serve %s: the demo only listens on loopback", *serve)
	}
	if *traffic < 0 || *traffic > 1000 {
		return fs.fail("--traffic %d: want 0 to 1000 requests per second", *traffic)
	}
	log := newLogger(logFormat.value, slog.LevelWarn, stderr)
	if duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}

	dir := *data
	if dir == "" {
		tmp, err := os.MkdirTemp("", "proxyhealth-demo-")
		if err != nil {
			fmt.Fprintf(stderr, "proxyhealth demo: %v\n", err)
			return exitFailure
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil && !fs.isSet("listen") {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		fmt.Fprintf(stderr, "proxyhealth demo: cannot listen on %s: %v\n", *listen, unwrapOpError(err))
		return exitFailure
	}
	farm, err := fakeproxy.Start(ctx, *n, fakeproxy.WithSeed(*seed))
	if err != nil {
		_ = ln.Close()
		fmt.Fprintf(stderr, "proxyhealth demo: start the fake proxies: %v\n", err)
		return exitFailure
	}
	defer farm.Close()
	sc := newDemoScripts(farm, *seed)
	srcs, err := sc.sources(farm)
	if err != nil {
		_ = ln.Close()
		fmt.Fprintf(stderr, "proxyhealth demo: %v\n", err)
		return exitFailure
	}
	cfg := proxyhealth.Config{DataDir: dir, Sources: srcs, Logger: log}
	d, err := startDaemon(ctx, cfg, ln, "", log, *serve != "off")
	if err != nil {
		fmt.Fprintf(stderr, "proxyhealth demo: %v\n", err)
		return exitFailure
	}
	var gen *demoTraffic
	if *serve != "off" {
		eln, err := net.Listen("tcp", *serve)
		if err == nil {
			err = d.serveEndpoint(ctx, eln, proxyhealth.RoundRobin, nil, farm.ClientTLSConfig()) // the farm's https proxies have a test certificate
		}
		if err != nil {
			_ = d.stop(context.WithoutCancel(ctx))
			fmt.Fprintf(stderr, "proxyhealth demo: the rotating endpoint: %v\n", unwrapOpError(err))
			return exitFailure
		}
		if *traffic > 0 {
			gen = startDemoTraffic(d.epAddr, *traffic)
		}
	}
	sc.start()
	fmt.Fprintf(stdout, "proxyhealth demo: %d fake proxies on 127.0.0.1 in %d sources, checked every second; data in %s\n", *n, len(cfg.Sources), dir)
	fmt.Fprintf(stdout, "dashboard: %s\n", d.web.url)
	if d.epAddr != "" {
		a := d.epAddr
		fmt.Fprintf(stdout, "rotating endpoint: %s (HTTP proxy and SOCKS5): curl -x http://%s %s  or  curl --socks5-hostname %s %s\n", a, a, demoTarget, a, demoTarget)
	}
	fmt.Fprintln(stdout, "press Ctrl-C to stop")

	term := isTerminal(stdout)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for i := 1; ; i++ {
		select {
		case <-ctx.Done():
		case <-tick.C:
			if !*quiet {
				p := poolOf(d.status)
				line := fmt.Sprintf("%s  %s · %.1f%% healthy · seq %d", time.Now().Format("15:04:05"), countsLine(p.Counts), p.HealthPercentage, p.JournalSeq)
				if term {
					fmt.Fprintf(stdout, "\r\x1b[K%s", line)
				} else {
					fmt.Fprintln(stdout, line)
				}
			}
			if i%10 == 0 {
				sc.reviveFixed(ctx, d)
			}
			continue
		}
		break
	}
	if term && !*quiet {
		fmt.Fprintln(stdout)
	}
	sc.stop()
	if gen != nil {
		gen.stop()
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), runShutdownTimeout)
	defer cancel()
	if err := d.stop(sctx); err != nil {
		fmt.Fprintf(stderr, "proxyhealth demo: %v\n", err)
		return exitFailure
	}
	fmt.Fprintln(stdout, "demo stopped")
	return exitOK
}

// demoRole is what a fake proxy does over time.
type demoRole int

const (
	roleSteady    demoRole = iota // always fine
	roleDying                     // fine, then dead for a while, then fine again
	roleFlapping                  // fails about a third of its checks
	roleSlow                      // periods slower than the latency ceiling
	roleAuth                      // asks for credentials (407), then is fixed
	roleBadStatus                 // periods of 503
	roleDead                      // connection refused, for good
)

// demoScripts changes the farm's behaviours over time.
type demoScripts struct {
	farm  *fakeproxy.Farm
	mu    sync.Mutex
	rng   *rand.Rand
	roles []demoRole
	next  []time.Time // when proxy i changes behaviour next
	bad   []bool      // whether proxy i is currently misbehaving
	ids   []string

	stopCh chan struct{}
	wg     sync.WaitGroup
}

func newDemoScripts(farm *fakeproxy.Farm, seed uint64) *demoScripts {
	n := farm.Len()
	s := &demoScripts{farm: farm, rng: rand.New(rand.NewPCG(seed, 0x5eed)), roles: make([]demoRole, n),
		next: make([]time.Time, n), bad: make([]bool, n), ids: make([]string, n), stopCh: make(chan struct{})}
	// Shares of the pool: 54 % steady, 14 % dying, 8 % flapping, 8 % slow,
	// 6 % auth, 6 % bad status, 4 % dead.
	shares := []struct {
		role demoRole
		pct  int
	}{{roleDying, 14}, {roleFlapping, 8}, {roleSlow, 8}, {roleAuth, 6}, {roleBadStatus, 6}, {roleDead, 4}}
	perm := s.rng.Perm(n)
	k := 0
	for _, sh := range shares {
		for range n * sh.pct / 100 {
			s.roles[perm[k]] = sh.role
			k++
		}
	}
	now := time.Now()
	for i := range n {
		s.next[i] = now.Add(s.jitter(5, 30))
		switch s.roles[i] {
		case roleFlapping:
			s.set(i, fakeproxy.Flaky(0.35), true)
		case roleAuth:
			s.set(i, fakeproxy.AuthRequired(), true)
			s.next[i] = now.Add(s.jitter(20, 60))
		case roleDead:
			s.set(i, fakeproxy.Refuse(), true)
		}
	}
	return s
}

func (s *demoScripts) jitter(lo, hi int) time.Duration {
	return time.Duration(lo)*time.Second + time.Duration(s.rng.Int64N(int64(hi-lo)*int64(time.Second)))
}

func (s *demoScripts) set(i int, b fakeproxy.Behavior, bad bool) {
	if err := s.farm.Set(i, b); err == nil {
		s.bad[i] = bad
	}
}

// sources splits the farm into three sources with different schemes.
func (s *demoScripts) sources(farm *fakeproxy.Farm) ([]proxyhealth.SourceConfig, error) {
	health := proxyhealth.DefaultHealthConfig()
	health.Interval, health.SuspectInterval = time.Second, 200*time.Millisecond
	health.RecoveryCooldown, health.MaxRecoveryCooldown, health.MaxRecoveryAttempts = 2*time.Second, 8*time.Second, 3
	base := proxyhealth.ProbeConfig{TargetURL: demoTarget, Timeout: 800 * time.Millisecond, LatencyCeiling: 300 * time.Millisecond}
	secure := base
	secure.TLSConfig = farm.ClientTLSConfig()
	srcs := []proxyhealth.SourceConfig{
		{Name: "datacenter", Health: health, Probe: base},
		{Name: "residential", Health: health, Probe: base},
		{Name: "mobile", Health: health, Probe: secure},
	}
	for i := range farm.Len() {
		var k int
		var scheme string
		switch r := i % 20; {
		case r < 12:
			k, scheme = 0, "http"
		case r < 17:
			k, scheme = 1, "socks5h"
		default:
			k, scheme = 2, "https"
		}
		u := farm.URLWith(i, scheme, "", "")
		srcs[k].Proxies = append(srcs[k].Proxies, u)
		info, err := proxyhealth.ParseProxy(u)
		if err != nil {
			return nil, fmt.Errorf("the fake proxy %d: %w", i, err)
		}
		s.ids[i] = info.ID
	}
	return srcs, nil
}

// start runs the scripts until stop.
func (s *demoScripts) start() {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.stopCh:
				return
			case now := <-t.C:
				s.step(now)
			}
		}
	}()
}

func (s *demoScripts) stop() {
	close(s.stopCh)
	s.wg.Wait()
}

// step changes the behaviours that are due.
func (s *demoScripts) step(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, role := range s.roles {
		if now.Before(s.next[i]) {
			continue
		}
		switch role {
		case roleDying:
			if s.bad[i] {
				s.set(i, fakeproxy.OK(), false)
				s.next[i] = now.Add(s.jitter(15, 45))
			} else {
				deaths := []fakeproxy.Behavior{fakeproxy.Refuse(), fakeproxy.Blackhole(), fakeproxy.Reset(), fakeproxy.Status(502)}
				s.set(i, deaths[s.rng.IntN(len(deaths))], true)
				s.next[i] = now.Add(s.jitter(5, 20))
			}
		case roleSlow:
			if s.bad[i] {
				s.set(i, fakeproxy.OK(), false)
			} else {
				s.set(i, fakeproxy.Slow(450*time.Millisecond), true)
			}
			s.next[i] = now.Add(s.jitter(10, 30))
		case roleBadStatus:
			if s.bad[i] {
				s.set(i, fakeproxy.OK(), false)
				s.next[i] = now.Add(s.jitter(20, 40))
			} else {
				s.set(i, fakeproxy.Status(503), true)
				s.next[i] = now.Add(s.jitter(5, 15))
			}
		case roleAuth:
			if s.bad[i] {
				s.set(i, fakeproxy.OK(), false) // "credentials fixed"
			}
			s.next[i] = now.Add(time.Hour)
		default:
			s.next[i] = now.Add(time.Hour)
		}
	}
}

// reviveFixed revives the failed proxies whose fake works again.
func (s *demoScripts) reviveFixed(ctx context.Context, d *daemon) {
	_, failed := d.status.List(proxyhealth.ListFilter{State: "failed"}, 0, 10000)
	s.mu.Lock()
	byID := make(map[string]bool, len(s.ids))
	for i, id := range s.ids {
		byID[id] = !s.bad[i]
	}
	s.mu.Unlock()
	for _, v := range failed {
		if byID[v.ID] {
			_ = d.eng.Revive(ctx, v.ID)
		}
	}
}

// demoTraffic sends requests through the demo's rotating endpoint at a
// steady rate, as a client of the endpoint would.
type demoTraffic struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func startDemoTraffic(endpointAddr string, perSecond int) *demoTraffic {
	ctx, cancel := context.WithCancel(context.Background())
	g := &demoTraffic{cancel: cancel, done: make(chan struct{})}
	proxyURL := &url.URL{Scheme: "http", Host: endpointAddr}
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL), MaxIdleConnsPerHost: 4}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	go func() {
		defer close(g.done)
		defer tr.CloseIdleConnections()
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		defer tick.Stop()
		var wg sync.WaitGroup
		defer wg.Wait()
		sem := make(chan struct{}, 16) // at most 16 requests in flight
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			select {
			case sem <- struct{}{}:
			default:
				continue // the endpoint is slower than the rate: skip
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, demoTarget, nil)
				if err != nil {
					return
				}
				if resp, err := client.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}()
		}
	}()
	return g
}

func (g *demoTraffic) stop() {
	g.cancel()
	<-g.done
}
