package probe

import (
	"context"
	"io"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// SOCKS5 (RFC 1928) with username/password authentication (RFC 1929), and
// SOCKS4/4a. The handshakes run on the check's goroutine with the
// connection deadline already set; replies are read through the pooled
// reader, exactly as many bytes as the protocol defines.

// SOCKS5ReplyText names a SOCKS5 reply code (RFC 1928 §6): "connection
// refused" for 5, "unknown reply code" for codes the RFC does not define.
// The transport's dialer uses it too.
func SOCKS5ReplyText(rep byte) string {
	if int(rep) < len(socks5Replies) && socks5Replies[rep] != "" {
		return socks5Replies[rep]
	}
	return "unknown reply code"
}

var socks5Replies = [...]string{
	1: "general SOCKS server failure",
	2: "connection not allowed by ruleset",
	3: "network unreachable",
	4: "host unreachable",
	5: "connection refused",
	6: "TTL expired",
	7: "command not supported",
	8: "address type not supported",
}

func socksReadFailure(what string, err error) *failure {
	if err == errNeedMore {
		return needMore
	}
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		return &failure{class: pb.FailureClass_FAILURE_CLASS_RESET, msg: "proxy closed the connection during the " + what}
	}
	return netFailure("read "+what, err)
}

func (c *Checker) socks5(ctx context.Context, st *state, conn io.Writer, p ProxyURL) *failure {
	w := st.wbuf[:0]
	if p.HasCredentials() {
		w = append(w, 5, 2, 0, 2) // offer "no auth" and "username/password"
	} else {
		w = append(w, 5, 1, 0)
	}
	if _, err := conn.Write(w); err != nil {
		return netFailure("write SOCKS5 greeting", err)
	}
	b, err := st.rd.readFull(2)
	if err != nil {
		return socksReadFailure("SOCKS5 greeting", err)
	}
	if b[0] != 5 {
		return protocolf("not a SOCKS5 reply to the greeting (version byte %#x)", b[0])
	}
	switch b[1] {
	case 0:
	case 2:
		if !p.HasCredentials() {
			return protocolf("SOCKS5 proxy chose username/password authentication, which was not offered")
		}
		w = append(w[:0], 1, byte(len(p.user())))
		w = append(w, p.user()...)
		w = append(w, byte(len(p.pass())))
		w = append(w, p.pass()...)
		_, err := conn.Write(w)
		clear(w) // do not leave the password in the pooled buffer
		if err != nil {
			return netFailure("write SOCKS5 authentication", err)
		}
		b, err := st.rd.readFull(2)
		if err != nil {
			return socksReadFailure("SOCKS5 authentication", err)
		}
		if b[1] != 0 {
			return authFailure(p, "SOCKS5 proxy rejected username/password authentication")
		}
	case 0xff:
		return authFailure(p, "SOCKS5 proxy accepts none of the offered authentication methods")
	default:
		return protocolf("SOCKS5 proxy chose unknown authentication method %#x", b[1])
	}

	w = append(w[:0], 5, 1, 0) // CONNECT
	switch {
	case c.targetIP.Is4():
		a := c.targetIP.As4()
		w = append(append(w, 1), a[:]...)
	case c.targetIP.Is6():
		a := c.targetIP.As16()
		w = append(append(w, 4), a[:]...)
	case p.scheme == SchemeSOCKS5H:
		if len(c.t.host) > 255 {
			return failuref(pb.FailureClass_FAILURE_CLASS_OTHER, "target host name longer than 255 bytes")
		}
		w = append(w, 3, byte(len(c.t.host)))
		w = append(w, c.t.host...)
	default:
		ip, f := c.resolveTarget(ctx, st.deadline, false)
		if f != nil {
			return f
		}
		if ip.Is4() {
			a := ip.As4()
			w = append(append(w, 1), a[:]...)
		} else {
			a := ip.As16()
			w = append(append(w, 4), a[:]...)
		}
	}
	w = append(w, byte(c.t.port>>8), byte(c.t.port))
	st.wbuf = w
	if _, err := conn.Write(w); err != nil {
		return netFailure("write SOCKS5 request", err)
	}
	b, err = st.rd.readFull(4)
	if err != nil {
		return socksReadFailure("SOCKS5 reply", err)
	}
	if b[0] != 5 {
		return protocolf("not a SOCKS5 reply (version byte %#x)", b[0])
	}
	if rep := b[1]; rep != 0 {
		return failuref(pb.FailureClass_FAILURE_CLASS_BAD_STATUS, "SOCKS5 proxy could not connect to %s: %s (reply %d)", c.t.hostPort, SOCKS5ReplyText(rep), rep)
	}
	var rest int // BND.ADDR + BND.PORT
	switch b[3] {
	case 1:
		rest = 4 + 2
	case 4:
		rest = 16 + 2
	case 3:
		n, err := st.rd.readFull(1)
		if err != nil {
			return socksReadFailure("SOCKS5 reply", err)
		}
		rest = int(n[0]) + 2
	default:
		return protocolf("SOCKS5 reply has unknown address type %#x", b[3])
	}
	if _, err := st.rd.readFull(rest); err != nil {
		return socksReadFailure("SOCKS5 reply", err)
	}
	return nil
}

func (c *Checker) socks4(ctx context.Context, st *state, conn io.Writer, p ProxyURL) *failure {
	w := append(st.wbuf[:0], 4, 1, byte(c.t.port>>8), byte(c.t.port))
	remoteName := false
	switch {
	case c.targetIP.IsValid() || p.scheme == SchemeSOCKS4:
		ip, f := c.resolveTarget(ctx, st.deadline, true)
		if f != nil {
			return f
		}
		a := ip.As4()
		w = append(w, a[:]...)
	default: // socks4a with a host name
		w = append(w, 0, 0, 0, 1)
		remoteName = true
	}
	w = append(w, p.user()...)
	w = append(w, 0)
	if remoteName {
		w = append(w, c.t.host...)
		w = append(w, 0)
	}
	st.wbuf = w
	if _, err := conn.Write(w); err != nil {
		return netFailure("write SOCKS4 request", err)
	}
	b, err := st.rd.readFull(8)
	if err != nil {
		return socksReadFailure("SOCKS4 reply", err)
	}
	if b[0] != 0 && b[0] != 4 {
		return protocolf("not a SOCKS4 reply (version byte %#x)", b[0])
	}
	switch b[1] {
	case 0x5a:
		return nil
	case 0x5b:
		return failuref(pb.FailureClass_FAILURE_CLASS_BAD_STATUS, "SOCKS4 proxy rejected or failed the request to %s (reply 0x5b)", c.t.hostPort)
	case 0x5c, 0x5d:
		return authFailure(p, "SOCKS4 proxy rejected the user ID")
	}
	return protocolf("SOCKS4 reply has unknown status %#x", b[1])
}
