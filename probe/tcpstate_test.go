package probe

import (
	"bufio"
	"encoding/hex"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
)

// tcpTimeWait is the TIME_WAIT state in /proc/net/tcp ("st" column).
const tcpTimeWait = 0x06

// tcpSocket is one line of /proc/net/tcp or /proc/net/tcp6.
type tcpSocket struct {
	local, remote netip.AddrPort
	state         int
}

// procTCPSockets returns the sockets listed in /proc/net/tcp and
// /proc/net/tcp6 (Linux only), or ok false when they cannot be read.
func procTCPSockets() (out []tcpSocket, ok bool) {
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(name)
		if err != nil {
			if name == "/proc/net/tcp6" && os.IsNotExist(err) {
				continue // no IPv6 in this kernel
			}
			return nil, false
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 {
				continue
			}
			local, ok1 := parseProcAddr(fields[1])
			remote, ok2 := parseProcAddr(fields[2])
			st, err := strconv.ParseUint(fields[3], 16, 8)
			if !ok1 || !ok2 || err != nil {
				continue
			}
			out = append(out, tcpSocket{local: local, remote: remote, state: int(st)})
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, false
		}
	}
	return out, true
}

// parseProcAddr parses "0100007F:1F90": the address as 32-bit words
// printed in host (little-endian) order, then the port in hex.
func parseProcAddr(s string) (netip.AddrPort, bool) {
	h, p, found := strings.Cut(s, ":")
	port, err := strconv.ParseUint(p, 16, 16)
	if !found || err != nil {
		return netip.AddrPort{}, false
	}
	b, err := hex.DecodeString(h)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return netip.AddrPort{}, false
	}
	for i := 0; i < len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	a, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), true
}

// timeWaitSet returns the TIME_WAIT sockets now listed, to be compared
// with a later snapshot by newTimeWaits. It skips the test or benchmark
// where /proc/net/tcp cannot be read.
func timeWaitSet(tb testing.TB) map[tcpSocket]bool {
	tb.Helper()
	socks, ok := procTCPSockets()
	if !ok {
		tb.Skip("/proc/net/tcp is not readable here (Linux only): TIME_WAIT not counted")
	}
	set := make(map[tcpSocket]bool)
	for _, s := range socks {
		if s.state == tcpTimeWait {
			set[s] = true
		}
	}
	return set
}

// newTimeWaits counts the TIME_WAIT sockets of connections to addrs
// ("host:port" listeners) that are listed now and were not in before:
// client is the connecting side's (remote address one of addrs), server the
// listener side's (local address one of addrs). Sockets that expired
// meanwhile do not make the counts negative; a TIME_WAIT socket the kernel
// recycled for a new connection to the same listener from the same port
// (net.ipv4.tcp_tw_reuse) is not counted, so a test that counts one socket
// a connection connects each to a listener of its own.
func newTimeWaits(tb testing.TB, before map[tcpSocket]bool, addrs ...string) (client, server int) {
	tb.Helper()
	want := make(map[netip.AddrPort]bool, len(addrs))
	for _, addr := range addrs {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			tb.Fatalf("newTimeWaits: %q: %v", addr, err)
		}
		want[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())] = true
	}
	for s := range timeWaitSet(tb) {
		if before[s] {
			continue
		}
		if want[s.remote] {
			client++
		}
		if want[s.local] {
			server++
		}
	}
	return client, server
}
