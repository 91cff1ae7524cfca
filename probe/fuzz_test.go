package probe

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// replayConn is an in-memory proxy connection: writes are discarded, reads
// return the fuzzed bytes (at most chunk bytes per read when chunk > 0),
// then EOF. It never blocks, so a check on it ends as soon as the bytes
// run out.
type replayConn struct {
	r     *bytes.Reader
	chunk int
}

func (c *replayConn) Read(p []byte) (int, error) {
	if c.chunk > 0 && len(p) > c.chunk {
		p = p[:c.chunk]
	}
	return c.r.Read(p)
}
func (c *replayConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *replayConn) Close() error                { return nil }
func (c *replayConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (c *replayConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1080}
}
func (c *replayConn) SetDeadline(time.Time) error      { return nil }
func (c *replayConn) SetReadDeadline(time.Time) error  { return nil }
func (c *replayConn) SetWriteDeadline(time.Time) error { return nil }

// socksFuzzCase is one proxy scheme/target pairing the fuzzer can pick.
type socksFuzzCase struct{ proxy, target string }

// socksFuzzCases cover every SOCKS request form that needs no DNS: an IPv4
// or IPv6 literal target, a host name sent to the proxy (socks5h,
// socks4a), with and without credentials, and an https target (the TLS
// handshake then runs on the bytes after the SOCKS reply).
var socksFuzzCases = []socksFuzzCase{
	{"socks5://127.0.0.1:1080", "http://127.0.0.1:8080/"},
	{"socks5://user:" + secretPass + "@127.0.0.1:1080", "http://127.0.0.1:8080/"},
	{"socks5h://127.0.0.1:1080", "http://target.proxyhealth.test/"},
	{"socks5h://user:" + secretPass + "@127.0.0.1:1080", "http://[::1]/"},
	{"socks4://127.0.0.1:1080", "http://127.0.0.1/"},
	{"socks4a://" + secretPass + "@127.0.0.1:1080", "http://target.proxyhealth.test/"},
	{"socks5://127.0.0.1:1080", "https://127.0.0.1/"},
}

// FuzzSOCKSReply drives the Checker through a SOCKS4/4a/5/5h handshake
// whose replies (and whatever follows: the HTTP response, or the target's
// TLS handshake) are the fuzzed bytes. The check must end without a panic,
// with a consistent Result: success, or a failure class with a bounded,
// credential-free message. The fake connection ends in EOF, so every input
// finishes at once; the 5 s timeout is only a backstop against a hang.
func FuzzSOCKSReply(f *testing.F) {
	http204 := "HTTP/1.1 204 No Content\r\n\r\n"
	seeds := []struct {
		in    string
		which uint8
	}{
		{"\x05\x00" + "\x05\x00\x00\x01\x7f\x00\x00\x01\x1f\x90" + http204, 0},      // socks5 no auth, IPv4 bound address
		{"\x05\x02\x01\x00" + "\x05\x00\x00\x03\x09localhost\x1f\x90" + http204, 1}, // socks5 user/pass accepted, domain bound address
		{"\x05\x02\x01\x01", 1}, // socks5 user/pass rejected
		{"\x05\x00" + "\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00", 2},                // socks5h: connection refused
		{"\x05\x00" + "\x05\x00\x00\x04" + strings.Repeat("\x00", 18) + http204, 3}, // socks5h IPv6 bound address
		{"\x05\x00" + "\x05\x00\x00\x03\xff\x00", 2},                                // domain longer than what follows
		{"\x05\xff", 0}, // no acceptable method
		{"\x05\x02", 0}, // user/pass chosen, not offered
		{"\x00\x5a\x00\x00\x00\x00\x00\x00" + http204, 4}, // socks4 granted
		{"\x00\x5b\x00\x00\x00\x00\x00\x00", 5},           // socks4a rejected
		{"\x00\x5d\x00\x00", 5},                           // socks4 short reply
		{"\x05\x00" + "\x05\x00\x00\x01\x7f\x00\x00\x01\x01\xbb" + "\x16\x03\x01\x00\x05hello", 6}, // https target: garbage TLS
		{"HTTP/1.1 200 OK\r\n\r\n", 0}, // an HTTP proxy answering SOCKS
		{"", 4},
	}
	for i, s := range seeds {
		f.Add([]byte(s.in), s.which, uint8(i%3))
	}
	checkers := make([]*Checker, len(socksFuzzCases))
	proxies := make([]ProxyURL, len(socksFuzzCases))
	for i, fc := range socksFuzzCases {
		p, err := ParseProxyURL(fc.proxy)
		if err != nil {
			f.Fatalf("ParseProxyURL(%d): %v", i, err)
		}
		proxies[i] = p
		// Dialing is the only way in; every dial gets a new replay of the
		// bytes in the context (the fuzz function sets them per input).
		checkers[i] = newChecker(f, Config{TargetURL: fc.target, Timeout: 5 * time.Second},
			WithDialContext(func(ctx context.Context, network, addr string) (net.Conn, error) {
				in := ctx.Value(replayKey{}).(replayInput)
				return &replayConn{r: bytes.NewReader(in.b), chunk: in.chunk}, nil
			}))
	}
	f.Fuzz(func(t *testing.T, in []byte, which, chunk uint8) {
		i := int(which) % len(checkers)
		ctx := context.WithValue(context.Background(), replayKey{}, replayInput{b: in, chunk: int(chunk % 4)})
		start := time.Now()
		r := checkers[i].Check(ctx, proxies[i])
		if d := time.Since(start); d > 4*time.Second {
			t.Fatalf("case %d: check on an in-memory connection took %v (%+v)", i, d, r)
		}
		verifyResult(t, r)
		if r.Canceled {
			t.Fatalf("case %d: canceled without a cancel: %+v", i, r)
		}
		if !r.OK() {
			switch r.Class {
			case cTimeout, cDNS, cRefused, cOther, cTooSlow:
				// The connection never times out, resolves, refuses or
				// is canceled; no ceiling is set.
				t.Fatalf("case %d: class %v (%q) cannot come from the proxy's bytes", i, r.Class, r.Message)
			}
		}
	})
}

type replayKey struct{}

type replayInput struct {
	b     []byte
	chunk int
}
