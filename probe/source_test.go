package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
)

// source7 is the source address of these tests: Linux routes all of
// 127.0.0.0/8 to lo, so it is an address of every Linux host.
var source7 = netip.MustParseAddr("127.0.0.7")

// peerRecorder is a loopback proxy on 127.0.0.1 that answers every HTTP
// request with 204 (and a connection without a request with nothing) and
// sends each connection's peer address on peers.
type peerRecorder struct {
	addr  string
	peers chan netip.Addr
}

func recordPeers(t *testing.T) *peerRecorder {
	t.Helper()
	r := &peerRecorder{peers: make(chan netip.Addr, 64)}
	r.addr = scripted(t, func(c net.Conn) {
		r.peers <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
		if head := readRequestHead(c); head != "" {
			_, _ = c.Write([]byte("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"))
		}
	})
	return r
}

// next returns the peer of the next connection, waiting for it up to 5 s
// (a tcp-connect check may end before the proxy accepted it).
func (r *peerRecorder) next(t *testing.T, what string) netip.Addr {
	t.Helper()
	timer := time.NewTimer(5 * time.Second)
	defer timer.Stop()
	select {
	case ip := <-r.peers:
		return ip
	case <-timer.C:
		t.Fatalf("%s: the proxy saw no connection within 5 s", what)
	}
	return netip.Addr{}
}

// TestSourceIPChecksArriveFromIt: with Config.SourceIP 127.0.0.7 a check
// reaches a proxy on 127.0.0.1 from 127.0.0.7 on every path: Check, the
// event loop (an IP-literal proxy) and CheckAsync's fallback (a host
// name), in both modes; without it the kernel picks 127.0.0.1.
func TestSourceIPChecksArriveFromIt(t *testing.T) {
	rec := recordPeers(t)
	port := rec.addr[strings.LastIndexByte(rec.addr, ':')+1:]
	for _, mode := range []Mode{ModeAuto, ModeTCPConnect} {
		for _, src := range []netip.Addr{{}, source7} {
			wantFrom := src
			if !src.IsValid() {
				wantFrom = netip.MustParseAddr("127.0.0.1")
			}
			c := newChecker(t, Config{TargetURL: "http://t.proxyhealth.test/", Mode: mode, SourceIP: src})
			ip := MustParseProxyURL("http://" + rec.addr)
			host := MustParseProxyURL("http://localhost:" + port)
			if !c.fastPath(ip) || c.fastPath(host) {
				t.Fatalf("%v from %v: fast path %v for an IP literal, %v for a host name", mode, src, c.fastPath(ip), c.fastPath(host))
			}
			for _, run := range []struct {
				name string
				r    func() Result
			}{
				{"Check", func() Result { return c.Check(context.Background(), ip) }},
				{"CheckAsync (event loop)", func() Result { return checkAsync(t, c, context.Background(), ip) }},
				{"CheckAsync (fallback)", func() Result { return checkAsync(t, c, context.Background(), host) }},
			} {
				what := run.name + " " + mode.String() + " from " + src.String()
				r := run.r()
				verifyResult(t, r)
				status := 204
				if mode == ModeTCPConnect {
					status = 0
				}
				want(t, what, r, cOK, status)
				if got := rec.next(t, what); got != wantFrom {
					t.Errorf("%s: the proxy saw the check come from %v, want %v", what, got, wantFrom)
				}
			}
		}
	}
}

// TestSourceIPDialErrorsAsCheck: a refused connection from a SourceIP
// reads exactly as net.Dialer words it ("dial tcp 127.0.0.7:0->..."),
// through Check and the event loop alike.
func TestSourceIPDialErrorsAsCheck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connections are refused
	c := newChecker(t, Config{TargetURL: "http://t.proxyhealth.test/", SourceIP: source7})
	p := MustParseProxyURL("http://" + addr)
	if !c.fastPath(p) {
		t.Fatal("not on the fast path")
	}
	rs := c.Check(context.Background(), p)
	ra := checkAsync(t, c, context.Background(), p)
	want(t, "Check", rs, cRefused, 0)
	want(t, "CheckAsync", ra, cRefused, 0)
	wantMsg := "connect to proxy: dial tcp 127.0.0.7:0->" + addr + ": connect: connection refused"
	if rs.Message != wantMsg || ra.Message != wantMsg {
		t.Errorf("messages:\n Check      %q\n CheckAsync %q\n want       %q", rs.Message, ra.Message, wantMsg)
	}
}

// TestSourceIPOtherFamily: an IPv4 SourceIP cannot reach an IPv6 proxy;
// the check fails as net.Dialer says, and CheckAsync leaves it to Check.
func TestSourceIPOtherFamily(t *testing.T) {
	c := newChecker(t, Config{TargetURL: "http://t.proxyhealth.test/", SourceIP: source7})
	p := MustParseProxyURL("http://[::1]:9")
	if c.fastPath(p) {
		t.Fatal("an IPv6 proxy from an IPv4 source is on the fast path")
	}
	rs := c.Check(context.Background(), p)
	ra := checkAsync(t, c, context.Background(), p)
	verifyResult(t, rs)
	if rs.OK() || outcomeOf(rs) != outcomeOf(ra) {
		t.Errorf("Check %v, CheckAsync %v: want the same failure", outcomeOf(rs), outcomeOf(ra))
	}
	if !strings.Contains(rs.Message, "no suitable address") {
		t.Errorf("message %q, want net.Dialer's \"no suitable address\"", rs.Message)
	}
}

// TestSourceIPConfig: addresses that cannot be a source are configuration
// errors naming SourceIP and what to do; an IPv4-mapped address is its
// IPv4 address.
func TestSourceIPConfig(t *testing.T) {
	for _, tc := range []struct {
		ip   string
		want string
	}{
		{"0.0.0.0", "leave SourceIP empty"},
		{"::", "leave SourceIP empty"},
		{"224.0.0.1", "multicast"},
		{"ff02::1", "multicast"},
		{"255.255.255.255", "broadcast"},
	} {
		cfg := Config{SourceIP: netip.MustParseAddr(tc.ip)}
		err := cfg.Validate()
		if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), "SourceIP "+tc.ip) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(SourceIP %s) = %v, want ErrBadConfig naming it and %q", tc.ip, err, tc.want)
		}
		if _, err := NewChecker(cfg); !errors.Is(err, ErrBadConfig) {
			t.Errorf("NewChecker(SourceIP %s) = %v, want ErrBadConfig", tc.ip, err)
		}
	}
	// 192.0.2.1 (TEST-NET-1) is valid in form but no address of this host.
	notHere := Config{SourceIP: netip.MustParseAddr("192.0.2.1")}
	if err := notHere.Validate(); err != nil {
		t.Errorf("Validate does not look at the host's addresses, got %v", err)
	}
	if _, err := NewChecker(notHere); !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), "SourceIP 192.0.2.1: not usable as a local address") {
		t.Errorf("NewChecker(SourceIP 192.0.2.1) = %v, want ErrBadConfig saying it is not a local address", err)
	}
	var d net.Dialer
	if _, err := NewChecker(Config{SourceIP: source7}, WithDialContext(d.DialContext)); !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), "WithDialContext") {
		t.Errorf("NewChecker(SourceIP, WithDialContext) = %v, want ErrBadConfig naming WithDialContext", err)
	}
	c := newChecker(t, Config{SourceIP: netip.MustParseAddr("::ffff:127.0.0.7")})
	if got := c.Config().SourceIP; got != source7 {
		t.Errorf("SourceIP ::ffff:127.0.0.7 became %v, want 127.0.0.7", got)
	}
}

// TestSourceIPEcho: the echo's connections (through the proxy, and the
// direct GET that learns the checker's own address) leave from SourceIP
// too: the direct echo server sees 127.0.0.7 as the checker's address.
func TestSourceIPEcho(t *testing.T) {
	f := startFarm(t, 1)
	c := newChecker(t, Config{TargetURL: "http://t.proxyhealth.test/", EchoURL: f.EchoURL(), SourceIP: source7})
	r := c.Check(context.Background(), MustParseProxyURL(f.URL(0)))
	verifyResult(t, r)
	want(t, "echo from 127.0.0.7", r, cOK, 200)
	if r.ExitIP == "" {
		t.Fatalf("no exit IP: %+v", r)
	}
	c.echo.own.mu.Lock()
	own := c.echo.own.ips
	c.echo.own.mu.Unlock()
	if len(own) != 1 || own[0] != source7 {
		t.Errorf("the direct echo server saw the checker at %v, want [127.0.0.7]", own)
	}
}

// TestSourceIPFarmCountsPerChecker is issue 15's measurement in small:
// three checkers on one machine, each from its own loopback address,
// check one fake farm through CheckAsync; the farm tells them apart: each
// proxy was checked by its owner alone, and two checkers that both check
// one proxy show up as overlaps.
func TestSourceIPFarmCountsPerChecker(t *testing.T) {
	const n = 9
	f := startFarm(t, n, fakeproxy.WithOverlapWindow(time.Hour))
	srcs := []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("127.0.0.4")}
	checkers := make([]*Checker, len(srcs))
	for k, src := range srcs {
		checkers[k] = newChecker(t, Config{TargetURL: "http://t.proxyhealth.test/", SourceIP: src})
	}
	for round := range 2 {
		for i := range n {
			owner := checkers[i%len(srcs)]
			r := checkAsync(t, owner, context.Background(), MustParseProxyURL(f.URL(i)))
			want(t, fmt.Sprintf("round %d proxy %d", round, i), r, cOK, 200)
		}
	}
	for i := range n {
		st := f.Stats(i)
		if len(st.Sources) != 1 || st.Sources[0].IP != srcs[i%len(srcs)] || st.Sources[0].Checks != 2 || st.Overlaps != 0 {
			t.Errorf("proxy %d: sources %+v, %d overlaps; want 2 checks from %v alone", i, st.Sources, st.Overlaps, srcs[i%len(srcs)])
		}
	}
	for _, s := range f.Sources() {
		if s.Checks != 2*n/uint64(len(srcs)) {
			t.Errorf("farm: %v checked %d times, want %d", s.IP, s.Checks, 2*n/len(srcs))
		}
	}
	// Proxy 0's owner is 127.0.0.2; 127.0.0.3 checks it too, in turn.
	for _, k := range []int{1, 0, 1} {
		want(t, "double owner", checkAsync(t, checkers[k], context.Background(), MustParseProxyURL(f.URL(0))), cOK, 200)
	}
	if st := f.Stats(0); st.Overlaps != 3 || st.From(srcs[1]).Checks != 2 {
		t.Errorf("proxy 0 checked by .2 and .3 in turn: %+v, want 3 overlaps and 2 checks from .3", st)
	}
}
