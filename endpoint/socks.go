package endpoint

import (
	"io"
	"net"
	"strconv"
	"time"
)

// SOCKS5 reply codes (RFC 1928 6).
const (
	socksSucceeded       = 0
	socksGeneralFailure  = 1
	socksNotAllowed      = 2
	socksCmdUnsupported  = 7
	socksAddrUnsupported = 8
)

// socks5 serves a SOCKS5 client whose version byte was read: method
// negotiation (no auth, or RFC 1929 username/password, required when
// Users are set), one CONNECT, then the tunnel. A username's session
// suffix is the sticky key.
func (s *Server) socks5(c *trackedConn) {
	defer c.Close()
	var b [256]byte
	if _, err := io.ReadFull(c, b[:1]); err != nil {
		return
	}
	methods := b[1 : 1+int(b[0])]
	if _, err := io.ReadFull(c, methods); err != nil {
		return
	}
	var offersNone, offersUserPass bool
	for _, m := range methods {
		offersNone = offersNone || m == 0
		offersUserPass = offersUserPass || m == 2
	}
	method := byte(0xff)
	switch {
	case offersUserPass: // also without auth: the username may carry a sticky key
		method = 2
	case offersNone && !s.authRequired():
		method = 0
	}
	if _, err := c.Write([]byte{5, method}); err != nil {
		return
	}
	if method == 0xff {
		s.st.auth.Add(1)
		return
	}
	key := ""
	if method == 2 {
		// RFC 1929: ver 1, ulen, user, plen, pass.
		if _, err := io.ReadFull(c, b[:2]); err != nil || b[0] != 1 {
			return
		}
		uname := make([]byte, b[1])
		if _, err := io.ReadFull(c, uname); err != nil {
			return
		}
		if _, err := io.ReadFull(c, b[:1]); err != nil {
			return
		}
		pass := make([]byte, b[0])
		if _, err := io.ReadFull(c, pass); err != nil {
			return
		}
		var user string
		user, key = splitSession(string(uname))
		if !s.checkUser(user, string(pass)) {
			s.st.auth.Add(1)
			s.log.Debug("endpoint: SOCKS5 authentication failed", "client", c.RemoteAddr().String())
			_, _ = c.Write([]byte{1, 1})
			return
		}
		if _, err := c.Write([]byte{1, 0}); err != nil {
			return
		}
	}
	// Request: ver, cmd, rsv, atyp, addr, port.
	if _, err := io.ReadFull(c, b[:4]); err != nil || b[0] != 5 {
		return
	}
	cmd, atyp := b[1], b[3]
	var host string
	switch atyp {
	case 1, 4:
		n := 4
		if atyp == 4 {
			n = 16
		}
		if _, err := io.ReadFull(c, b[:n]); err != nil {
			return
		}
		host = net.IP(append([]byte(nil), b[:n]...)).String()
	case 3:
		if _, err := io.ReadFull(c, b[:1]); err != nil {
			return
		}
		n := int(b[0])
		if _, err := io.ReadFull(c, b[:n]); err != nil {
			return
		}
		host = string(b[:n])
	default:
		s.st.badReq.Add(1)
		s.socks5Reply(c, socksAddrUnsupported)
		return
	}
	if _, err := io.ReadFull(c, b[:2]); err != nil {
		return
	}
	port := int(b[0])<<8 | int(b[1])
	if cmd != 1 {
		s.st.badReq.Add(1)
		s.socks5Reply(c, socksCmdUnsupported)
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	s.tunnelSOCKS(c, key, net.JoinHostPort(host, strconv.Itoa(port)),
		func() bool { return s.socks5Reply(c, socksSucceeded) },
		func(code byte) { s.socks5Reply(c, code) })
}

func (s *Server) socks5Reply(c net.Conn, code byte) bool {
	_, err := c.Write([]byte{5, code, 0, 1, 0, 0, 0, 0, 0, 0})
	return err == nil
}

// socks4 serves a SOCKS4 or SOCKS4a client whose version byte was read.
// SOCKS4 has no password: with Users set it is refused. The user ID's
// session suffix is the sticky key.
func (s *Server) socks4(c *trackedConn) {
	defer c.Close()
	var b [7]byte // cmd, port, ip
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return
	}
	uid, ok := readCString(c)
	if !ok {
		return
	}
	host := net.IP(b[3:7]).String()
	if b[3] == 0 && b[4] == 0 && b[5] == 0 && b[6] != 0 { // SOCKS4a: the name follows
		name, ok := readCString(c)
		if !ok || name == "" {
			return
		}
		host = name
	}
	reply := func(code byte) bool {
		_, err := c.Write([]byte{0, code, 0, 0, 0, 0, 0, 0})
		return err == nil
	}
	if s.authRequired() {
		s.st.auth.Add(1)
		reply(0x5b)
		return
	}
	if b[0] != 1 {
		s.st.badReq.Add(1)
		reply(0x5b)
		return
	}
	_, key := splitSession(uid)
	port := int(b[1])<<8 | int(b[2])
	_ = c.SetReadDeadline(time.Time{})
	s.tunnelSOCKS(c, key, net.JoinHostPort(host, strconv.Itoa(port)),
		func() bool { return reply(0x5a) },
		func(byte) { reply(0x5b) })
}

// readCString reads a NUL-terminated string of at most 255 bytes.
func readCString(c net.Conn) (string, bool) {
	var out []byte
	var b [1]byte
	for len(out) <= 255 {
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return "", false
		}
		if b[0] == 0 {
			return string(out), true
		}
		out = append(out, b[0])
	}
	return "", false
}

// tunnelSOCKS opens the tunnel for a SOCKS client and splices; ok and
// failed write the protocol's replies.
func (s *Server) tunnelSOCKS(c *trackedConn, key, addr string, ok func() bool, failed func(code byte)) {
	up, p, res, _ := s.dialTunnel(s.ctx, key, addr)
	switch res {
	case dialNoProxy:
		s.st.noProxy.Add(1)
		failed(socksGeneralFailure)
		return
	case dialFailed:
		s.st.upFailed.Add(1)
		failed(socksGeneralFailure)
		return
	case dialBadTarget:
		s.st.badReq.Add(1)
		failed(socksNotAllowed)
		return
	case dialAbandoned:
		return
	}
	upc := s.track(up, false)
	if upc == nil {
		up.Close()
		return
	}
	s.st.ok.Add(1)
	if !ok() {
		upc.Close()
		return
	}
	s.splice(c, c, upc, p)
}
