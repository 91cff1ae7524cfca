//go:build linux

package probe

import (
	"net/netip"
	"syscall"
)

// ipBindAddressNoPort is Linux's IP_BIND_ADDRESS_NO_PORT (since 4.2; not
// in package syscall): bind(2) with port 0 then takes the address only,
// and connect(2) picks the port for the 4-tuple, as it does for a socket
// that was not bound. Without it bind(2) reserves a port for the address
// alone, so every check in flight and every TIME_WAIT socket of the source
// address holds a port of the ephemeral range whatever its destination.
const ipBindAddressNoPort = 24

// setNoPort sets IP_BIND_ADDRESS_NO_PORT on fd. A kernel without it
// refuses the option; the bind then takes a port at once, which works,
// only with fewer ports to go round.
func setNoPort(fd int) {
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
}

// noPortControl is the dialer's Control with a SourceIP: it runs after
// socket(2) and before bind(2).
func noPortControl(_, _ string, rc syscall.RawConn) error {
	return rc.Control(func(fd uintptr) { setNoPort(int(fd)) })
}

// bindSource binds the event loop's socket fd to src with port 0 (src has
// fd's family and no zone: fastPath sees to it); sa4 and sa6 are the
// loop's scratch addresses.
func bindSource(fd int, src netip.Addr, sa4 *syscall.SockaddrInet4, sa6 *syscall.SockaddrInet6) error {
	setNoPort(fd)
	if src.Is4() {
		*sa4 = syscall.SockaddrInet4{Addr: src.As4()}
		return syscall.Bind(fd, sa4)
	}
	*sa6 = syscall.SockaddrInet6{Addr: src.As16()}
	return syscall.Bind(fd, sa6)
}
