package fakeproxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// garbage is what Garbage answers: neither HTTP nor SOCKS.
const garbage = "SSH-2.0-garbage from fakeproxy\r\n\r\n"

const bufSize = 4096

var errTooBig = errors.New("fakeproxy: request head too big")

// session is one accepted connection.
type session struct {
	f         *Farm
	p         *proxy
	b         Behavior
	authValue string
	user      string
	pass      string
	hasCreds  bool
	exit      string
	anonymity Anonymity

	conn    net.Conn // current connection (TLS-wrapped after a handshake)
	buf     *[bufSize]byte
	r, w    int
	fail502 bool
	delayed bool
	out     []byte
}

var bufPool = sync.Pool{New: func() any { return new([bufSize]byte) }}

func (s *session) run(c net.Conn) {
	switch s.b.kind {
	case kindReset:
		reset(c)
		return
	case kindBlackhole:
		_, _ = io.Copy(io.Discard, c)
		return
	case kindFlaky:
		if fail, rst := s.f.flip(s.b.p); fail {
			if rst {
				reset(c)
				return
			}
			s.fail502 = true
		}
	}
	s.conn = c
	s.buf = bufPool.Get().(*[bufSize]byte)
	defer bufPool.Put(s.buf)
	if err := s.fill(); err != nil {
		return
	}
	switch s.buf[s.r] {
	case 5:
		s.socks5()
	case 4:
		s.socks4()
	case 0x16: // TLS handshake record: an https:// proxy
		if s.startTLS() {
			s.httpProxy()
		}
	default:
		s.httpProxy()
	}
}

func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// fill reads at least one more byte into the buffer.
func (s *session) fill() error {
	if s.r > 0 {
		copy(s.buf[:], s.buf[s.r:s.w])
		s.w -= s.r
		s.r = 0
	}
	if s.w == bufSize {
		return errTooBig
	}
	n, err := s.conn.Read(s.buf[s.w:])
	s.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

func (s *session) readFull(n int) ([]byte, error) {
	for s.w-s.r < n {
		if err := s.fill(); err != nil {
			return nil, err
		}
	}
	b := s.buf[s.r : s.r+n]
	s.r += n
	return b, nil
}

// readCString reads up to and excluding a NUL byte.
func (s *session) readCString() ([]byte, error) {
	for {
		if i := bytes.IndexByte(s.buf[s.r:s.w], 0); i >= 0 {
			b := s.buf[s.r : s.r+i]
			s.r += i + 1
			return b, nil
		}
		if err := s.fill(); err != nil {
			return nil, err
		}
	}
}

// readHead reads an HTTP request line and headers, up to the blank line.
func (s *session) readHead() ([]byte, error) {
	scanned := 0
	for {
		data := s.buf[s.r:s.w]
		if i := bytes.Index(data[max(0, scanned-3):], []byte("\r\n\r\n")); i >= 0 {
			end := max(0, scanned-3) + i + 4
			s.r += end
			return data[:end], nil
		}
		scanned = len(data)
		if err := s.fill(); err != nil {
			return nil, err
		}
	}
}

// startTLS terminates TLS on the connection, handing over buffered bytes.
func (s *session) startTLS() bool {
	pre := append([]byte(nil), s.buf[s.r:s.w]...)
	s.r, s.w = 0, 0
	tc := tls.Server(&prefixConn{Conn: s.conn, pre: pre}, s.f.tlsServer)
	if err := tc.Handshake(); err != nil {
		return false
	}
	s.conn = tc
	return true
}

type prefixConn struct {
	net.Conn
	pre []byte
}

// Read returns the handed-over bytes first, then reads the connection.
func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(b, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// firstAnswer applies the behavior's delay once, before the first answer.
// It returns false if the farm closed meanwhile.
func (s *session) firstAnswer() bool {
	if s.delayed || s.b.delay <= 0 {
		return true
	}
	s.delayed = true
	t := time.NewTimer(s.b.delay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.f.done:
		return false
	}
}

// drain half-closes the connection and discards what the client still
// sends (for up to a second), so that closing does not reset the connection
// and destroy the response we just wrote.
func (s *session) drain() {
	if cw, ok := s.conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = s.conn.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.Copy(io.Discard, s.conn)
}

func (s *session) write(b []byte) bool {
	_, err := s.conn.Write(b)
	return err == nil
}

// httpProxy serves one proxy request: absolute-form or CONNECT.
func (s *session) httpProxy() {
	head, err := s.readHead()
	if err != nil {
		if err == errTooBig {
			s.write([]byte("HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))
			s.drain()
		}
		return
	}
	method, target, ok := requestLine(head)
	if !ok {
		s.write([]byte("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))
		return
	}
	isConnect := string(method) == "CONNECT"
	if !isConnect && !bytes.Contains(target, []byte("://")) {
		s.write([]byte("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))
		return
	}
	if !s.firstAnswer() {
		return
	}
	switch {
	case s.b.kind == kindGarbage:
		s.write([]byte(garbage))
		return
	case s.fail502:
		s.write([]byte("HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))
		return
	case s.b.auth && (!s.hasCreds || string(headerValue(head, "proxy-authorization")) != s.authValue):
		s.write([]byte("HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"fakeproxy\"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))
		return
	}
	if !isConnect {
		s.respond(string(method) == "HEAD", s.echoFor(head, target))
		return
	}
	if s.write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")) {
		s.serveTarget()
	}
}

// serveTarget acts as the target at the end of a tunnel: optional TLS, then
// one origin-form request.
func (s *session) serveTarget() {
	if s.r == s.w {
		if err := s.fill(); err != nil {
			return
		}
	}
	if s.buf[s.r] == 0x16 && !s.startTLS() {
		return
	}
	head, err := s.readHead()
	if err != nil {
		return
	}
	method, target, ok := requestLine(head)
	if !ok {
		s.write([]byte("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))
		return
	}
	s.respond(string(method) == "HEAD", s.echoFor(head, target))
}

// runDirect serves one request on the direct echo server: optional TLS,
// then an echo answer for EchoPath or the farm's body otherwise.
func (s *session) runDirect(c net.Conn) {
	s.conn = c
	s.buf = bufPool.Get().(*[bufSize]byte)
	defer bufPool.Put(s.buf)
	s.serveTarget()
}

// echoFor returns the echo answer for a request to target, or nil when
// the target is not EchoPath. It counts the answer in the proxy's stats.
func (s *session) echoFor(head, target []byte) []byte {
	if !isEchoTarget(target) {
		return nil
	}
	exit := s.exit
	if s.p.direct {
		exit = ""
	}
	s.p.mu.Lock()
	s.p.stats.echoes++
	s.p.mu.Unlock()
	return echoBody(head, target, s.conn.RemoteAddr(), exit, s.anonymity)
}

// respond writes the final (target) response; echo, if not nil, replaces
// the farm's body (WrongContent still sends its wrong body).
func (s *session) respond(head bool, echo []byte) {
	code, reason, body := 200, "OK", s.f.okBody
	ctype := "text/plain"
	if echo != nil {
		body, ctype = echo, "application/json"
	}
	switch s.b.kind {
	case kindStatus:
		code, reason = s.b.code, "Fake Status"
	case kindWrongContent:
		body, ctype = s.f.wrongBody, "text/plain"
	}
	out := s.out[:0]
	if s.b.interim {
		out = append(out, "HTTP/1.1 100 Continue\r\n\r\n"...)
	}
	out = append(out, "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(code), 10)
	out = append(out, ' ')
	out = append(out, reason...)
	out = append(out, "\r\nContent-Type: "...)
	out = append(out, ctype...)
	out = append(out, "\r\nConnection: close\r\n"...)
	if s.b.chunked {
		out = append(out, "Transfer-Encoding: chunked\r\n\r\n"...)
		if !head {
			for _, c := range body {
				out = append(out, "1\r\n"...)
				out = append(out, c, '\r', '\n')
			}
			out = append(out, "0\r\n\r\n"...)
		}
	} else {
		out = append(out, "Content-Length: "...)
		out = strconv.AppendInt(out, int64(len(body)), 10)
		out = append(out, "\r\n\r\n"...)
		if !head {
			out = append(out, body...)
		}
	}
	s.out = out
	if !s.b.trickle {
		s.write(out)
		return
	}
	for i := range out {
		if !s.write(out[i : i+1]) {
			return
		}
	}
}

// requestLine splits "METHOD target HTTP/1.x".
func requestLine(head []byte) (method, target []byte, ok bool) {
	line := head
	if i := bytes.IndexByte(head, '\n'); i >= 0 {
		line = bytes.TrimRight(head[:i], "\r")
	}
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return nil, nil, false
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 || !bytes.HasPrefix(rest[sp2+1:], []byte("HTTP/1.")) {
		return nil, nil, false
	}
	return line[:sp1], rest[:sp2], true
}

// headerValue returns the trimmed value of the first header named name
// (lowercase), or nil.
func headerValue(head []byte, name string) []byte {
	for len(head) > 0 {
		i := bytes.IndexByte(head, '\n')
		if i < 0 {
			return nil
		}
		head = head[i+1:]
		line := head
		if j := bytes.IndexByte(head, '\n'); j >= 0 {
			line = head[:j]
		}
		colon := bytes.IndexByte(line, ':')
		if colon == len(name) && bytes.EqualFold(line[:colon], []byte(name)) {
			return bytes.TrimSpace(line[colon+1:])
		}
	}
	return nil
}

// socks5 serves a SOCKS5 handshake and then the tunnelled request.
func (s *session) socks5() {
	hdr, err := s.readFull(2)
	if err != nil {
		return
	}
	methods, err := s.readFull(int(hdr[1]))
	if err != nil {
		return
	}
	offered := [256]bool{}
	for _, m := range methods {
		offered[m] = true
	}
	if !s.firstAnswer() {
		return
	}
	if s.b.kind == kindGarbage {
		s.write([]byte(garbage))
		return
	}
	method := byte(0xff)
	switch {
	case s.b.auth:
		if offered[2] {
			method = 2
		}
	case offered[0]:
		method = 0
	case offered[2]:
		method = 2
	}
	if !s.write([]byte{5, method}) || method == 0xff {
		return
	}
	if method == 2 {
		h, err := s.readFull(2)
		if err != nil {
			return
		}
		user, err := s.readFull(int(h[1]))
		if err != nil {
			return
		}
		userOK := string(user) == s.user
		plen, err := s.readFull(1)
		if err != nil {
			return
		}
		pass, err := s.readFull(int(plen[0]))
		if err != nil {
			return
		}
		ok := !s.b.auth || (s.hasCreds && userOK && string(pass) == s.pass)
		if !ok {
			s.write([]byte{1, 1})
			return
		}
		if !s.write([]byte{1, 0}) {
			return
		}
	}
	req, err := s.readFull(4)
	if err != nil {
		return
	}
	cmd, atyp := req[1], req[3]
	var alen int
	switch atyp {
	case 1:
		alen = 4
	case 4:
		alen = 16
	case 3:
		l, err := s.readFull(1)
		if err != nil {
			return
		}
		alen = int(l[0])
	default:
		s.write([]byte{5, 8, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	if _, err := s.readFull(alen + 2); err != nil {
		return
	}
	switch {
	case s.fail502:
		s.write([]byte{5, 1, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	case cmd != 1:
		s.write([]byte{5, 7, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	if s.write([]byte{5, 0, 0, 1, 127, 0, 0, 1, 0, 0}) {
		s.serveTarget()
	}
}

// socks4 serves a SOCKS4/4a request and then the tunnelled request.
func (s *session) socks4() {
	req, err := s.readFull(8)
	if err != nil {
		return
	}
	cmd := req[1]
	remoteName := req[4] == 0 && req[5] == 0 && req[6] == 0 && req[7] != 0
	uid, err := s.readCString()
	if err != nil {
		return
	}
	userOK := s.hasCreds && string(uid) == s.user
	if remoteName {
		if _, err := s.readCString(); err != nil {
			return
		}
	}
	if !s.firstAnswer() {
		return
	}
	switch {
	case s.b.kind == kindGarbage:
		s.write([]byte(garbage))
		return
	case s.fail502 || cmd != 1:
		s.write([]byte{0, 0x5b, 0, 0, 0, 0, 0, 0})
		return
	case s.b.auth && !userOK:
		s.write([]byte{0, 0x5d, 0, 0, 0, 0, 0, 0})
		return
	}
	if s.write([]byte{0, 0x5a, 0, 0, 0, 0, 0, 0}) {
		s.serveTarget()
	}
}
