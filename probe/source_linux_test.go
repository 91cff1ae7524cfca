//go:build linux

package probe

import (
	"context"
	"net"
	"net/netip"
	"syscall"
	"testing"

	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// boundPort opens a TCP socket of src's family, binds it to src (port 0)
// with bindSource, or with a plain bind(2) when noPort is false, and
// returns the port getsockname reports: 0 while the kernel has not picked
// one yet.
func boundPort(t *testing.T, src netip.Addr, noPort bool) int {
	t.Helper()
	family := syscall.AF_INET
	if !src.Is4() {
		family = syscall.AF_INET6
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	var sa4 syscall.SockaddrInet4
	var sa6 syscall.SockaddrInet6
	if noPort {
		err = bindSource(fd, src, &sa4, &sa6)
	} else if src.Is4() {
		err = syscall.Bind(fd, &syscall.SockaddrInet4{Addr: src.As4()})
	} else {
		err = syscall.Bind(fd, &syscall.SockaddrInet6{Addr: src.As16()})
	}
	if err != nil {
		t.Fatalf("bind %v: %v", src, err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		if netip.AddrFrom4(sa.Addr) != src {
			t.Fatalf("bound to %v, want %v", sa.Addr, src)
		}
		return sa.Port
	case *syscall.SockaddrInet6:
		if netip.AddrFrom16(sa.Addr) != src {
			t.Fatalf("bound to %v, want %v", sa.Addr, src)
		}
		return sa.Port
	}
	t.Fatalf("getsockname: %T", sa)
	return 0
}

// TestBindSourceTakesNoPort: the event loop's bind leaves the port to
// connect(2) (IP_BIND_ADDRESS_NO_PORT), where a plain bind(2) takes one
// of the ephemeral range at once; IPv4 and IPv6.
func TestBindSourceTakesNoPort(t *testing.T) {
	srcs := []netip.Addr{source7}
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		testutil.Unavailable(t, "no IPv6 loopback (::1), so bindSource's AF_INET6 path is not checked: %v", err)
	} else {
		ln.Close()
		srcs = append(srcs, netip.IPv6Loopback())
	}
	for _, src := range srcs {
		if p := boundPort(t, src, false); p == 0 {
			t.Fatalf("plain bind to %v: port 0, so this test cannot tell the option's effect", src)
		}
		if p := boundPort(t, src, true); p != 0 {
			t.Errorf("bindSource(%v) took port %d at bind time, want 0 (picked at connect)", src, p)
		}
	}
}

// TestSourceDialerSetsNoPort: Check's dialer sets the same option on its
// sockets before it binds them to SourceIP.
func TestSourceDialerSetsNoPort(t *testing.T) {
	rec := recordPeers(t)
	d := sourceDialer(source7)
	control := d.Control
	opt := -1
	d.Control = func(network, address string, rc syscall.RawConn) error {
		err := control(network, address, rc)
		_ = rc.Control(func(fd uintptr) {
			opt, _ = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort)
		})
		return err
	}
	c, err := d.DialContext(context.Background(), "tcp", rec.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if opt != 1 {
		t.Errorf("IP_BIND_ADDRESS_NO_PORT = %d on the dialer's socket, want 1", opt)
	}
	if got := rec.next(t, "dial"); got != source7 {
		t.Errorf("the dial came from %v, want %v", got, source7)
	}
}

// TestSourceIPBindFails: when the bind to SourceIP fails at check time
// (the address left the host after NewChecker), the event loop reports it
// as Check's net.Dialer does. 192.0.2.1 (TEST-NET-1) stands for the
// address that left: NewChecker would refuse it, so the test swaps it in
// afterwards, in the checker (for the loop) and in its dialer (for Check).
func TestSourceIPBindFails(t *testing.T) {
	rec := recordPeers(t)
	gone := netip.MustParseAddr("192.0.2.1")
	c := newChecker(t, Config{TargetURL: "http://t.proxyhealth.test/", SourceIP: source7})
	c.source, c.sourceAddr, c.dial = gone, sourceTCPAddr(gone), sourceDialer(gone).DialContext
	p := MustParseProxyURL("http://" + rec.addr)
	if !c.fastPath(p) {
		t.Fatal("not on the fast path")
	}
	rs := c.Check(context.Background(), p)
	ra := checkAsync(t, c, context.Background(), p)
	want(t, "Check", rs, cOther, 0)
	wantMsg := "connect to proxy: dial tcp 192.0.2.1:0->" + rec.addr + ": bind: cannot assign requested address"
	if rs.Message != wantMsg || ra.Message != wantMsg || ra.Class != rs.Class {
		t.Errorf("bind failure:\n Check      %v %q\n CheckAsync %v %q\n want       %q", rs.Class, rs.Message, ra.Class, ra.Message, wantMsg)
	}
	select {
	case ip := <-rec.peers:
		t.Errorf("a connection from %v reached the proxy", ip)
	default:
	}
}
