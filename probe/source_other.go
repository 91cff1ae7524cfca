//go:build !linux

package probe

import "syscall"

// noPortControl is the dialer's Control with a SourceIP: outside Linux
// there is no IP_BIND_ADDRESS_NO_PORT, so bind(2) takes a port at once.
func noPortControl(_, _ string, _ syscall.RawConn) error { return nil }
