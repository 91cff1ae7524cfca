package probe

import "net"

// maxUnwrap bounds how many NetConn layers setResetOnClose looks through.
const maxUnwrap = 8

// setResetOnClose makes conn's Close send a RST instead of a FIN (SO_LINGER
// 0), so the closing side keeps no TIME_WAIT socket. It looks through
// wrappers that expose the connection below them with a NetConn method
// (crypto/tls.Conn does; so may a custom dialer's conn) to reach the
// *net.TCPConn, and does nothing for connections that are not TCP.
func setResetOnClose(conn net.Conn) {
	for range maxUnwrap {
		switch c := conn.(type) {
		case *net.TCPConn:
			_ = c.SetLinger(0)
			return
		case interface{ NetConn() net.Conn }:
			conn = c.NetConn()
			if conn == nil {
				return
			}
		default:
			return
		}
	}
}
