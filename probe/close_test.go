package probe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// closeCases are the check kinds whose closing TestCloseWithResetTimeWait
// covers: every proxy protocol's path to the connection's Close, TLS to an
// https proxy included.
var closeCases = []struct {
	name, scheme, target string
	mode                 Mode
}{
	{"http", "http", "http://target.proxyhealth.test/", ModeAuto},
	{"https-proxy", "https", "http://target.proxyhealth.test/", ModeAuto},
	{"connect", "http", "https://target.proxyhealth.test/", ModeAuto},
	{"socks5h", "socks5h", "http://target.proxyhealth.test/", ModeAuto},
	{"tcp-connect", "http", "", ModeTCPConnect},
}

// TestCloseWithResetTimeWait checks n proxies through each kind of check
// with each CloseMode: when the checker closes with a RST (CloseReset, and
// CloseAuto in ModeTCPConnect) its side keeps no TIME_WAIT socket and the
// proxy's none either (a RST ends the connection on both sides); with a
// FIN, every connection leaves one TIME_WAIT socket on one side or the
// other, as before the option existed. The results are the same.
func TestCloseWithResetTimeWait(t *testing.T) {
	const n = 10
	for _, tc := range closeCases {
		for _, cm := range []CloseMode{CloseFIN, CloseReset, CloseAuto} {
			rst := cm.resets(tc.mode)
			t.Run(tc.name+"/close="+cm.String(), func(t *testing.T) {
				// One proxy a check: the kernel may recycle a TIME_WAIT
				// socket for a new connection to the same address from
				// the same port (loopback, tcp_tw_reuse), which would hide
				// one from the count.
				f := startFarm(t, n)
				addrs := make([]string, n)
				for i := range addrs {
					addrs[i] = f.Addr(i)
				}
				c := newChecker(t, Config{TargetURL: tc.target, Mode: tc.mode, TLSConfig: f.ClientTLSConfig(), Close: cm})
				before := timeWaitSet(t)
				for i := range n {
					r := checkURL(t, c, tc.scheme+"://"+f.Addr(i))
					status := 200
					if tc.mode == ModeTCPConnect {
						status = 0
					}
					want(t, "check", r, cOK, status)
				}
				if rst {
					// A socket closed with SO_LINGER 0 is gone at once and
					// its peer, reset, never sends the FIN that would put
					// either side into TIME_WAIT: the count cannot grow
					// later, so there is nothing to wait for.
					if client, proxy := newTimeWaits(t, before, addrs...); client != 0 || proxy != 0 {
						t.Errorf("%d checks left %d TIME_WAIT sockets on the checker's side and %d on the proxy's, want none", n, client, proxy)
					}
					return
				}
				var client, proxy int
				testutil.EventuallyExplain(t, 5*time.Second, func() bool {
					client, proxy = newTimeWaits(t, before, addrs...)
					return client+proxy >= n
				}, func() string {
					return fmt.Sprintf("%d checks closed with a FIN left %d TIME_WAIT sockets on the checker's side and %d on the proxy's, want %d in all", n, client, proxy, n)
				})
				if tc.mode == ModeTCPConnect && client < n {
					t.Errorf("tcp-connect: the checker closes first, so it should hold the %d TIME_WAIT sockets; it holds %d", n, client)
				}
			})
		}
	}
}

// serveOnce accepts one connection on ln; if answer is set it reads a
// request head and writes answer (without closing); then it waits for the
// checker to close and sends what its next read returned (nil for EOF).
func serveOnce(ln net.Listener, answer string) <-chan error {
	done := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- fmt.Errorf("accept: %w", err)
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(conn)
		if answer != "" {
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					done <- fmt.Errorf("read request: %w", err)
					return
				}
				if line == "\r\n" {
					break
				}
			}
			if _, err := io.WriteString(conn, answer); err != nil {
				done <- fmt.Errorf("write answer: %w", err)
				return
			}
		}
		_, err = br.ReadByte()
		if errors.Is(err, io.EOF) {
			err = nil
		} else if err == nil {
			err = errors.New("the checker sent more bytes")
		}
		done <- err
	}()
	return done
}

// wrappedConn hides a connection's type, as a custom dialer's conn may;
// NetConn exposes the connection below, as crypto/tls.Conn's does.
type wrappedConn struct{ net.Conn }

func (w wrappedConn) NetConn() net.Conn { return w.Conn }

// opaqueConn hides a connection's type with no way through.
type opaqueConn struct{ net.Conn }

// TestCloseWithResetPeerSeesReset: a proxy that answers and leaves the
// connection open reads ECONNRESET after a check that closes with a RST
// (CloseReset; CloseAuto in ModeTCPConnect) and EOF (a FIN) after one with
// CloseFIN or CloseAuto in ModeAuto, whether the dialer returns the *net.TCPConn
// itself or a wrapper with a NetConn method; a wrapper the checker cannot
// see through gets the FIN. The check's result is the same in every case.
func TestCloseWithResetPeerSeesReset(t *testing.T) {
	dialers := []struct {
		name   string
		wrap   func(net.Conn) net.Conn
		opaque bool
	}{
		{"tcp", func(c net.Conn) net.Conn { return c }, false},
		{"wrapped", func(c net.Conn) net.Conn { return wrappedConn{wrappedConn{c}} }, false},
		{"opaque", func(c net.Conn) net.Conn { return opaqueConn{c} }, true},
	}
	modes := []struct {
		name   string
		mode   Mode
		answer string
		status int
	}{
		{"http", ModeAuto, "HTTP/1.1 204 No Content\r\n\r\n", 204},
		{"tcp-connect", ModeTCPConnect, "", 0},
	}
	for _, d := range dialers {
		for _, m := range modes {
			for _, cm := range []CloseMode{CloseFIN, CloseReset, CloseAuto} {
				rst := cm.resets(m.mode)
				t.Run(d.name+"/"+m.name+"/close="+cm.String(), func(t *testing.T) {
					ln, err := net.Listen("tcp", "127.0.0.1:0")
					if err != nil {
						t.Fatal(err)
					}
					defer ln.Close()
					served := serveOnce(ln, m.answer)
					var dialer net.Dialer
					dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
						conn, err := dialer.DialContext(ctx, network, addr)
						if err != nil {
							return nil, err
						}
						return d.wrap(conn), nil
					}
					c := newChecker(t, Config{TargetURL: "http://target.proxyhealth.test/", Mode: m.mode, Close: cm}, WithDialContext(dial))
					r := checkURL(t, c, "http://"+ln.Addr().String())
					want(t, "check", r, cOK, m.status)
					err = <-served
					if rst && !d.opaque {
						if !errors.Is(err, syscall.ECONNRESET) {
							t.Errorf("the proxy's read after the check: %v, want ECONNRESET", err)
						}
					} else if err != nil {
						t.Errorf("the proxy's read after the check: %v, want EOF", err)
					}
				})
			}
		}
	}
}

// TestCloseWithResetNonTCP: with a dialer whose connections are not TCP
// (net.Pipe), CloseReset changes nothing and the check passes.
func TestCloseWithResetNonTCP(t *testing.T) {
	for _, cm := range []CloseMode{CloseFIN, CloseReset} {
		served := make(chan error, 1)
		dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
			client, proxy := net.Pipe()
			go func() {
				defer proxy.Close()
				br := bufio.NewReader(proxy)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						served <- err
						return
					}
					if line == "\r\n" {
						break
					}
				}
				_, err := io.WriteString(proxy, "HTTP/1.1 204 No Content\r\n\r\n")
				served <- err
			}()
			return client, nil
		}
		c := newChecker(t, Config{TargetURL: "http://target.proxyhealth.test/", Close: cm}, WithDialContext(dial))
		r := checkURL(t, c, "http://proxy.proxyhealth.test:3128")
		want(t, "close="+cm.String(), r, cOK, 204)
		if err := <-served; err != nil {
			t.Errorf("close=%v: pipe proxy: %v", cm, err)
		}
	}
}

// TestCloseWithResetFakeproxyBehaviours: the failure classes a proxy's
// behaviour produces do not depend on how the checker closes.
func TestCloseWithResetFakeproxyBehaviours(t *testing.T) {
	f := startFarm(t, 1)
	for _, b := range []fakeproxy.Behavior{fakeproxy.OK(), fakeproxy.Status(503), fakeproxy.WrongContent(), fakeproxy.Reset(), fakeproxy.Garbage()} {
		if err := f.Set(0, b); err != nil {
			t.Fatal(err)
		}
		var got [2]Result
		for i, cm := range []CloseMode{CloseFIN, CloseReset} {
			c := newChecker(t, Config{TargetURL: "http://target.proxyhealth.test/", BodyPattern: "^ok$", Close: cm})
			got[i] = checkURL(t, c, f.URL(0))
		}
		if got[0].Class != got[1].Class || got[0].StatusCode != got[1].StatusCode {
			t.Errorf("%v: FIN gives class %v status %d, RST gives class %v status %d", b, got[0].Class, got[0].StatusCode, got[1].Class, got[1].StatusCode)
		}
	}
}
