package probe

import (
	"fmt"
	"net"
	"net/netip"
)

// sourceDialer returns the checker's own dialer: with a valid src, bound
// to it (port 0) with noPortControl, so that the kernel picks the port at
// connect time.
func sourceDialer(src netip.Addr) *net.Dialer {
	d := &net.Dialer{KeepAlive: -1} // short-lived connections: no keep-alive probes
	if src.IsValid() {
		d.LocalAddr = sourceTCPAddr(src)
		d.Control = noPortControl
	}
	return d
}

// sourceTCPAddr is src as the dialer's LocalAddr (and, so that the event
// loop's errors read as net.Dialer's, as their Source).
func sourceTCPAddr(src netip.Addr) *net.TCPAddr {
	return &net.TCPAddr{IP: src.AsSlice(), Zone: src.Zone()}
}

// checkSourceIP makes sure src is an address of this host, by binding a
// UDP socket to it once; the error wraps ErrBadConfig.
func checkSourceIP(src netip.Addr) error {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
	if err != nil {
		return fmt.Errorf("%w: SourceIP %v: not usable as a local address of this host (%v): give one of its addresses (ip addr) or leave SourceIP empty", ErrBadConfig, src, err)
	}
	return c.Close()
}
