// Command cluster shows three proxyhealth members checking one pool
// together, in one process on loopback: each member is its own Engine with
// its own data directory and its own advertise address
// (Config.Cluster.Advertise), and all three join one cluster through etcd.
// Every member loads the same source (a fake farm of -proxies proxies);
// each proxy is checked by exactly one member.
//
// It prints, every second, each member's share of the pool
// (Engine.Cluster: the members it sees, the proxies it checks out of those
// configured) and its pool counts (Engine.Status), and what the farm saw:
// how many proxies each member checked. Then it closes one member
// gracefully and shows the two others take its proxies over without a
// relapse to unknown; then it closes everything, stops the etcd it
// started and removes its temporary directories.
//
// Each member checks from its own loopback source address (127.0.0.11,
// .12, .13: Linux routes all of 127.0.0.0/8 to lo), so the farm tells the
// members' checks apart.
//
//	go run ./examples/cluster                      # starts etcd (apt-get install etcd-server)
//	go run ./examples/cluster -etcd 127.0.0.1:2379 -proxies 500 -duration 10s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/internal/etcdtest"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
)

// errNoEtcd is returned when no -etcd was given and no etcd is installed.
var errNoEtcd = errors.New("cluster example: no etcd to join: etcd is not installed (on Debian/Ubuntu: apt-get install etcd-server), and no -etcd ENDPOINTS was given")

// errTakeover is returned when the survivors did not take the leaver's
// proxies over in time.
var errTakeover = errors.New("cluster example: the survivors did not take the proxies over")

const (
	members = 3
	// interval is every proxy's check interval: short, so that the farm
	// sees every proxy checked again within a few seconds.
	interval = 2 * time.Second
	// target is the URL the probes ask for; the fake farm answers it
	// itself.
	target = "http://target.cluster.example.test/"
	// farmWindow is how far back a report line counts a member's checks
	// at the farm: one interval, its jitter (±10 %) and some slack.
	farmWindow = interval + interval/10 + 300*time.Millisecond
	// settleTimeout bounds each wait for the cluster to settle.
	settleTimeout = 30 * time.Second
	// closeTimeout bounds each member's graceful Close.
	closeTimeout = 15 * time.Second
)

// options are the example's flags.
type options struct {
	// etcd are the etcd endpoints; none: start an etcd in a temporary
	// directory.
	etcd []string
	// proxies is the size of the fake farm.
	proxies int
	// duration is how long the three members run before one leaves.
	duration time.Duration
	// out receives the report.
	out io.Writer
}

func main() {
	o := options{out: os.Stdout}
	etcd := flag.String("etcd", "", "comma-separated etcd `ENDPOINTS` to join (default: start an etcd on loopback in a temporary directory)")
	flag.IntVar(&o.proxies, "proxies", 300, "number of fake proxies in the pool")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "how long the three members run before one of them leaves")
	flag.Parse()
	if flag.NArg() != 0 || o.proxies < 1 || o.duration <= 0 {
		fmt.Fprintln(os.Stderr, "usage: cluster [-etcd ENDPOINTS] [-proxies N] [-duration D]")
		os.Exit(2)
	}
	if *etcd != "" {
		o.etcd = strings.Split(*etcd, ",")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// member is one cluster member of the example.
type member struct {
	name string
	ip   netip.Addr // its checks' source address
	eng  *proxyhealth.Engine
}

// run runs the example: start etcd (unless given), the farm and three
// members; report; close one member and report the takeover; close
// everything. Everything it starts is stopped, and its temporary
// directories removed, before it returns.
func run(ctx context.Context, o options) (err error) {
	endpoints := o.etcd
	if len(endpoints) == 0 {
		e, serr := etcdtest.StartProcess(ctx, "")
		if errors.Is(serr, etcdtest.ErrNotInstalled) {
			return errNoEtcd
		}
		if serr != nil {
			return fmt.Errorf("cluster example: start etcd: %w", serr)
		}
		defer func() {
			if cerr := e.Close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("cluster example: stop etcd: %w", cerr))
			}
		}()
		endpoints = e.Endpoints()
		fmt.Fprintf(o.out, "etcd started at %s\n", strings.Join(endpoints, ","))
	}

	dir, err := os.MkdirTemp("", "proxyhealth-cluster-")
	if err != nil {
		return fmt.Errorf("cluster example: make a temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)

	farm, err := fakeproxy.Start(ctx, o.proxies)
	if err != nil {
		return fmt.Errorf("cluster example: start the fake farm: %w", err)
	}
	defer farm.Close()
	urls := make([]string, o.proxies)
	for i := range urls {
		urls[i] = farm.URL(i)
	}
	fmt.Fprintf(o.out, "fake farm: %d proxies on loopback\n", o.proxies)

	// A cluster name of its own, so that an etcd shared with others (or a
	// previous run's keys, until their leases expire) does not mix in.
	name := "example-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	ms := make([]*member, members)
	defer func() {
		for _, m := range ms {
			if m != nil && m.eng != nil {
				err = errors.Join(err, closeMember(m))
			}
		}
	}()
	for i := range ms {
		m := &member{name: fmt.Sprintf("m%d", i+1), ip: netip.AddrFrom4([4]byte{127, 0, 0, byte(11 + i)})}
		addr, err := freeLoopbackAddr()
		if err != nil {
			return err
		}
		health := proxyhealth.DefaultHealthConfig()
		health.Interval = interval
		m.eng, err = proxyhealth.Open(ctx, proxyhealth.Config{
			DataDir: filepath.Join(dir, m.name),
			Sources: []proxyhealth.SourceConfig{{
				Name:    "farm",
				Health:  health,
				Probe:   proxyhealth.ProbeConfig{TargetURL: target, Timeout: time.Second, SourceIP: m.ip},
				Proxies: urls,
			}},
			Cluster: proxyhealth.ClusterConfig{Name: name, Etcd: endpoints, Advertise: addr},
		})
		if err != nil {
			return fmt.Errorf("cluster example: open member %s: %w", m.name, err)
		}
		ms[i] = m
		fmt.Fprintf(o.out, "member %s joined cluster %s as %s, checking from %s\n", m.name, name, addr, m.ip)
	}

	start := time.Now()
	fmt.Fprintf(o.out, "\n-- three members, %v --\n", o.duration)
	if err := every(ctx, o.duration, func() { report(o.out, start, ms, farm) }); err != nil {
		return err
	}
	// Before one leaves: the members share every proxy, each checked.
	if !poll(ctx, settleTimeout, func() bool { return settled(ms, o.proxies, members) }) {
		report(o.out, start, ms, farm)
		return fmt.Errorf("cluster example: the three members did not share the %d proxies, all checked, within %v", o.proxies, settleTimeout)
	}

	leaver, survivors := ms[len(ms)-1], ms[:len(ms)-1]
	fmt.Fprintf(o.out, "\n-- %s leaves (graceful Close) --\n", leaver.name)
	left := time.Now()
	cerr := closeMember(leaver)
	if cerr != nil {
		return cerr
	}
	closed := time.Since(left)
	// No relapse: sample the survivors' unknown count while they take over.
	maxUnknown := 0
	taken := poll(ctx, settleTimeout, func() bool {
		u := 0
		for _, m := range survivors {
			u += m.eng.Status().Summary().Unknown
		}
		maxUnknown = max(maxUnknown, u)
		return settled(survivors, o.proxies, len(survivors))
	})
	took := time.Since(left)
	report(o.out, start, survivors, farm)
	if !taken {
		return fmt.Errorf("%w: after %v the two members do not hold all %d proxies, all checked", errTakeover, settleTimeout, o.proxies)
	}
	// Every proxy is checked again at the farm, by a survivor, within the
	// check interval (and some slack).
	again := func() (bySurvivor, byLeaver int) {
		for i := range o.proxies {
			st := farm.Stats(i)
			if l := st.From(leaver.ip).Last; l.After(left.Add(closed)) {
				byLeaver++
			}
			for _, s := range survivors {
				if st.From(s.ip).Last.After(left) {
					bySurvivor++
					break
				}
			}
		}
		return
	}
	poll(ctx, 2*interval+5*time.Second, func() bool { n, _ := again(); return n == o.proxies })
	bySurvivor, byLeaver := again()
	report(o.out, start, survivors, farm)

	held, unknown := 0, 0
	var shares []string
	for _, m := range survivors {
		st, _ := m.eng.Cluster()
		sum := m.eng.Status().Summary()
		held += sum.Total
		unknown += sum.Unknown
		shares = append(shares, fmt.Sprintf("%s checks %d", m.name, st.Checked))
	}
	fmt.Fprintf(o.out, "takeover: %s left in %v; %s; %d of %d proxies held; %d in state unknown (at most %d while taking over, sampled every 50 ms); taken over in %v\n",
		leaver.name, closed.Round(time.Millisecond), strings.Join(shares, ", "), held, o.proxies, unknown, maxUnknown, took.Round(time.Millisecond))
	fmt.Fprintf(o.out, "farm: %d of %d proxies checked again by a survivor since %s left; checks by %s after it left: %d\n",
		bySurvivor, o.proxies, leaver.name, leaver.name, byLeaver)
	if unknown != 0 || maxUnknown != 0 || held != o.proxies || bySurvivor != o.proxies || byLeaver != 0 {
		return fmt.Errorf("%w: %d of %d proxies held, %d unknown, %d checked again by a survivor, %d by the leaver after it left", errTakeover, held, o.proxies, unknown, bySurvivor, byLeaver)
	}

	fmt.Fprintln(o.out, "\n-- closing --")
	for _, m := range survivors {
		if err := closeMember(m); err != nil {
			return err
		}
	}
	return nil
}

// closeMember closes a member's engine gracefully (it hands its proxies
// over and leaves the cluster); a member is closed once.
func closeMember(m *member) error {
	if m.eng == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	eng := m.eng
	m.eng = nil
	if err := eng.Close(ctx); err != nil {
		return fmt.Errorf("cluster example: close member %s: %w", m.name, err)
	}
	return nil
}

// settled reports whether the open members each see n members and
// together check all proxies, none in state unknown.
func settled(ms []*member, proxies, n int) bool {
	checked := 0
	for _, m := range ms {
		if m.eng == nil {
			continue
		}
		st, _ := m.eng.Cluster()
		sum := m.eng.Status().Summary()
		if len(st.Members) != n || !st.Fresh || sum.Unknown != 0 || sum.Total != st.Checked {
			return false
		}
		checked += st.Checked
	}
	return checked == proxies
}

// report prints one line per open member: its view of the cluster, its
// pool counts, and how many proxies the farm saw it check in the last
// interval.
func report(w io.Writer, start time.Time, ms []*member, farm *fakeproxy.Farm) {
	now := time.Now()
	t := now.Sub(start).Round(100 * time.Millisecond)
	since := now.Add(-farmWindow)
	for _, m := range ms {
		if m.eng == nil {
			continue
		}
		st, _ := m.eng.Cluster()
		sum := m.eng.Status().Summary()
		atFarm := 0
		for i := range farm.Len() {
			if farm.Stats(i).From(m.ip).Last.After(since) {
				atFarm++
			}
		}
		fmt.Fprintf(w, "%6v %s: members %d, checks %d of %d configured (replicas %d) | pool: healthy %d, unknown %d, other %d, total %d | farm: %d proxies checked by it in the last %v\n",
			t, m.name, len(st.Members), st.Checked, st.Configured, st.Replicas,
			sum.Healthy, sum.Unknown, sum.Total-sum.Healthy-sum.Unknown, sum.Total, atFarm, farmWindow)
	}
}

// every calls fn every second for d (and once at the end).
func every(ctx context.Context, d time.Duration, fn func()) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	end := time.NewTimer(d)
	defer end.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-end.C:
			return nil
		case <-tick.C:
			fn()
		}
	}
}

// poll re-evaluates cond every 50 ms until it holds, timeout passes or
// ctx ends; it reports whether cond held.
func poll(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return cond()
		case <-tick.C:
		}
	}
	return true
}

// freeLoopbackAddr returns a loopback host:port that was free a moment
// ago, for a member to advertise.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("cluster example: find a free loopback port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
