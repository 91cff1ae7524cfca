package probe

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

const (
	cOK        = pb.FailureClass_FAILURE_CLASS_UNSPECIFIED
	cDNS       = pb.FailureClass_FAILURE_CLASS_DNS
	cRefused   = pb.FailureClass_FAILURE_CLASS_REFUSED
	cTimeout   = pb.FailureClass_FAILURE_CLASS_TIMEOUT
	cTLS       = pb.FailureClass_FAILURE_CLASS_TLS
	cAuth      = pb.FailureClass_FAILURE_CLASS_PROXY_AUTH_REQUIRED
	cStatus    = pb.FailureClass_FAILURE_CLASS_BAD_STATUS
	cContent   = pb.FailureClass_FAILURE_CLASS_CONTENT_MISMATCH
	cReset     = pb.FailureClass_FAILURE_CLASS_RESET
	cProtocol  = pb.FailureClass_FAILURE_CLASS_PROTOCOL
	cTooSlow   = pb.FailureClass_FAILURE_CLASS_TOO_SLOW
	cOther     = pb.FailureClass_FAILURE_CLASS_OTHER
	secretPass = "Sup3rSecretPw"
)

func startFarm(t testing.TB, n int, opts ...fakeproxy.Option) *fakeproxy.Farm {
	t.Helper()
	f, err := fakeproxy.Start(context.Background(), n, opts...)
	if err != nil {
		t.Fatalf("fakeproxy.Start: %v", err)
	}
	t.Cleanup(f.Close)
	return f
}

func newChecker(t testing.TB, cfg Config, opts ...Option) *Checker {
	t.Helper()
	c, err := NewChecker(cfg, opts...)
	if err != nil {
		t.Fatalf("NewChecker: %v", err)
	}
	return c
}

// checkURL checks proxy URL s and verifies invariants every result must
// satisfy.
func checkURL(t testing.TB, c *Checker, s string) Result {
	t.Helper()
	p, err := ParseProxyURL(s)
	if err != nil {
		t.Fatalf("ParseProxyURL: %v", err)
	}
	r := c.Check(context.Background(), p)
	verifyResult(t, r)
	return r
}

func verifyResult(t testing.TB, r Result) {
	t.Helper()
	if strings.Contains(r.Message, secretPass) || len(r.Message) > MaxMessageBytes {
		t.Errorf("bad message %q", r.Message)
	}
	if r.OK() != (r.Message == "") || r.Total <= 0 || r.Connect > r.Total || r.FirstByte > r.Total {
		t.Errorf("inconsistent result %+v", r)
	}
}

func want(t testing.TB, what string, r Result, class pb.FailureClass, status int) {
	t.Helper()
	if r.Class != class || (status >= 0 && r.StatusCode != status) {
		t.Errorf("%s: got class %v status %d (%q), want %v status %d", what, r.Class, r.StatusCode, r.Message, class, status)
	}
}

func TestAllSchemesOK(t *testing.T) {
	f := startFarm(t, 1, fakeproxy.WithCredentials("user", secretPass))
	tlsCfg := f.ClientTLSConfig()
	cases := []struct{ scheme, target string }{
		{"http", "http://target.proxyhealth.test/generate_204"},
		{"http", "https://target.proxyhealth.test/"},
		{"https", "http://target.proxyhealth.test/"},
		{"https", "https://target.proxyhealth.test:443/x?y=1"},
		{"socks5", "http://127.0.0.1:8080/"},
		{"socks5", "https://127.0.0.1/"},
		{"socks5h", "https://target.proxyhealth.test/"},
		{"socks5h", "http://[::1]/"},
		{"socks4", "http://127.0.0.1/"},
		{"socks4a", "http://target.proxyhealth.test/"},
		{"socks4a", "https://127.0.0.1/"},
	}
	for _, b := range []fakeproxy.Behavior{fakeproxy.OK(), fakeproxy.AuthRequired(), fakeproxy.OK().Trickle().Chunked().Interim()} {
		if err := f.Set(0, b); err != nil {
			t.Fatal(err)
		}
		auth := b == fakeproxy.AuthRequired()
		for _, tc := range cases {
			c := newChecker(t, Config{TargetURL: tc.target, TLSConfig: tlsCfg, BodyPattern: "^ok$"})
			user, pass := "", ""
			if auth {
				user, pass = "user", secretPass
				if strings.HasPrefix(tc.scheme, "socks4") {
					pass = ""
				}
			}
			r := checkURL(t, c, f.URLWith(0, tc.scheme, user, pass))
			want(t, b.String()+" "+tc.scheme+" -> "+tc.target, r, cOK, 200)
			if r.OK() && (r.Connect <= 0 || r.FirstByte <= 0) {
				t.Errorf("%s -> %s: timings %+v", tc.scheme, tc.target, r)
			}
		}
	}
}

func TestFailureClasses(t *testing.T) {
	f := startFarm(t, 1, fakeproxy.WithCredentials("user", secretPass))
	tlsCfg := f.ClientTLSConfig()
	httpT, httpsT := "http://target.proxyhealth.test/", "https://target.proxyhealth.test/"
	cases := []struct {
		name     string
		b        fakeproxy.Behavior
		cfg      Config
		schemes  []string
		user     string
		class    pb.FailureClass
		status   int
		altClass pb.FailureClass // accepted as well (races inherent in the scenario)
	}{
		{"refused", fakeproxy.Refuse(), Config{}, nil, "", cRefused, 0, cRefused},
		{"reset", fakeproxy.Reset(), Config{}, nil, "", cReset, 0, cReset},
		{"blackhole", fakeproxy.Blackhole(), Config{Timeout: 200 * time.Millisecond}, nil, "", cTimeout, 0, cTimeout},
		{"garbage", fakeproxy.Garbage(), Config{}, nil, "", cProtocol, -1, cProtocol},
		{"status", fakeproxy.Status(503), Config{}, nil, "", cStatus, 503, cStatus},
		{"status chunked trickle", fakeproxy.Status(500).Chunked().Trickle(), Config{}, nil, "", cStatus, 500, cStatus},
		{"wrong content", fakeproxy.WrongContent(), Config{BodyPattern: "^ok$"}, nil, "", cContent, 200, cContent},
		{"wrong content chunked", fakeproxy.WrongContent().Chunked().Interim(), Config{BodyPattern: "^ok$"}, nil, "", cContent, 200, cContent},
		{"auth none", fakeproxy.AuthRequired(), Config{}, []string{"http", "https", "socks5", "socks5h"}, "", cAuth, -1, cAuth},
		{"auth wrong", fakeproxy.AuthRequired(), Config{}, []string{"http", "https", "socks5", "socks5h"}, "user:wrong" + secretPass, cAuth, -1, cAuth},
		{"auth socks4", fakeproxy.AuthRequired(), Config{}, []string{"socks4", "socks4a"}, "nobody", cAuth, 0, cAuth},
		{"too slow", fakeproxy.Slow(30 * time.Millisecond), Config{LatencyCeiling: time.Millisecond}, nil, "", cTooSlow, 200, cTooSlow},
		{"flaky", fakeproxy.Flaky(1), Config{}, []string{"http", "socks5h", "socks4a"}, "", cReset, -1, cStatus},
		{"TLS unknown CA", fakeproxy.OK(), Config{TLSConfig: nil}, []string{"https"}, "", cTLS, 0, cTLS},
	}
	for _, tc := range cases {
		if err := f.Set(0, tc.b); err != nil {
			t.Fatal(err)
		}
		schemes := tc.schemes
		if schemes == nil {
			schemes = []string{"http", "https", "socks5", "socks5h", "socks4", "socks4a"}
		}
		// The checks of one case run concurrently (the blackhole ones each
		// wait for their timeout).
		var wg sync.WaitGroup
		for _, scheme := range schemes {
			for _, target := range []string{httpT, httpsT} {
				cfg := tc.cfg
				cfg.TargetURL = target
				if tc.name != "TLS unknown CA" {
					cfg.TLSConfig = tlsCfg
				}
				if scheme == "socks5" || scheme == "socks4" {
					cfg.TargetURL = strings.Replace(target, "target.proxyhealth.test", "127.0.0.1", 1)
				}
				u := scheme + "://" + f.Addr(0)
				if tc.user != "" {
					u = scheme + "://" + tc.user + "@" + f.Addr(0)
				}
				c := newChecker(t, cfg)
				p := MustParseProxyURL(u)
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := c.Check(context.Background(), p)
					verifyResult(t, r)
					if r.Class != tc.altClass {
						want(t, tc.name+" "+p.String()+" -> "+cfg.TargetURL, r, tc.class, tc.status)
					}
				}()
			}
		}
		wg.Wait()
	}
}

func TestDNS(t *testing.T) {
	dnsErr := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no such host", Name: "proxy.invalid", IsNotFound: true}}
	}
	c := newChecker(t, Config{TargetURL: "http://t.proxyhealth.test/"}, WithDialContext(dnsErr))
	want(t, "proxy DNS", checkURL(t, c, "http://proxy.invalid:8080"), cDNS, 0)

	// socks5 resolves the target locally; make the resolver fail without
	// touching the network.
	f := startFarm(t, 1)
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
		return nil, errors.New("no DNS in tests")
	}}
	c = newChecker(t, Config{TargetURL: "http://t.proxyhealth.test/"}, WithResolver(res))
	want(t, "target DNS", checkURL(t, c, f.URLWith(0, "socks5", "", "")), cDNS, 0)
	want(t, "target DNS socks4", checkURL(t, c, f.URLWith(0, "socks4", "", "")), cDNS, 0)
	want(t, "socks5h does not resolve", checkURL(t, c, f.URLWith(0, "socks5h", "", "")), cOK, 200)

	// Local resolution of "localhost" (from /etc/hosts), twice: the second
	// check uses the cache.
	c = newChecker(t, Config{TargetURL: "http://localhost/"})
	for range 2 {
		want(t, "socks5 local resolve", checkURL(t, c, f.URLWith(0, "socks5", "", "")), cOK, 200)
		want(t, "socks4 local resolve", checkURL(t, c, f.URLWith(0, "socks4", "", "")), cOK, 200)
	}

	// socks4 cannot reach an IPv6 target.
	c = newChecker(t, Config{TargetURL: "http://[::1]/"})
	want(t, "socks4 IPv6", checkURL(t, c, f.URLWith(0, "socks4", "", "")), cOther, 0)
}

func TestTCPConnectMode(t *testing.T) {
	f := startFarm(t, 2)
	f.Set(1, fakeproxy.Refuse())
	c := newChecker(t, Config{Mode: ModeTCPConnect})
	want(t, "tcp ok", checkURL(t, c, f.URL(0)), cOK, 0)
	want(t, "tcp refused", checkURL(t, c, f.URL(1)), cRefused, 0)
	waitFor(t, func() bool { return f.Checks(0) == 1 })
}

func TestTimeoutFromContext(t *testing.T) {
	f := startFarm(t, 1, fakeproxy.WithBehavior(fakeproxy.Blackhole()))
	c := newChecker(t, Config{TargetURL: "http://t.proxyhealth.test/", Timeout: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	r := c.Check(ctx, MustParseProxyURL(f.URL(0)))
	verifyResult(t, r)
	want(t, "ctx deadline", r, cTimeout, 0)
	if r.Canceled {
		t.Error("timeout reported as canceled")
	}
}

func TestCancel(t *testing.T) {
	f := startFarm(t, 1, fakeproxy.WithBehavior(fakeproxy.Blackhole()))
	c := newChecker(t, Config{TargetURL: "http://t.proxyhealth.test/", Timeout: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Result)
	go func() { done <- c.Check(ctx, MustParseProxyURL(f.URL(0))) }()
	waitFor(t, func() bool { return f.Checks(0) == 1 })
	cancel()
	r := <-done
	verifyResult(t, r)
	if !r.Canceled || r.Class != cOther {
		t.Errorf("canceled check: %+v", r)
	}
	// Already canceled: no connection at all.
	r = c.Check(ctx, MustParseProxyURL(f.URL(0)))
	if !r.Canceled || f.Checks(0) != 1 {
		t.Errorf("pre-canceled check: %+v, farm saw %d", r, f.Checks(0))
	}
}

func TestZeroProxy(t *testing.T) {
	c := newChecker(t, Config{})
	r := c.Check(context.Background(), ProxyURL{})
	want(t, "zero proxy", r, cOther, 0)
}

func TestConcurrentChecks(t *testing.T) {
	f := startFarm(t, 8)
	c := newChecker(t, Config{TargetURL: "http://t.proxyhealth.test/", BodyPattern: "ok"})
	var wg sync.WaitGroup
	var fails atomic.Int64
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				p := MustParseProxyURL(f.URLWith((g+i)%8, []string{"http", "socks5h", "socks4a"}[i%3], "", ""))
				if r := c.Check(context.Background(), p); !r.OK() {
					fails.Add(1)
					t.Errorf("check %s: %+v", p, r)
				}
			}
		}()
	}
	wg.Wait()
	if f.TotalChecks() != 320 || fails.Load() != 0 {
		t.Errorf("farm saw %d checks, %d failed", f.TotalChecks(), fails.Load())
	}
}

func TestInjectedDialer(t *testing.T) {
	f := startFarm(t, 1)
	var calls atomic.Int64
	d := &net.Dialer{}
	c := newChecker(t, Config{TargetURL: "http://t.proxyhealth.test/"}, WithDialContext(func(ctx context.Context, n, a string) (net.Conn, error) {
		calls.Add(1)
		if _, ok := ctx.Deadline(); !ok {
			t.Error("dial context has no deadline")
		}
		return d.DialContext(ctx, n, a)
	}))
	want(t, "injected", checkURL(t, c, f.URL(0)), cOK, 200)
	if calls.Load() != 1 {
		t.Errorf("dialer called %d times", calls.Load())
	}
}

// scripted starts a one-shot loopback server running handle for every
// connection; it stops at cleanup.
func scripted(t *testing.T, handle func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// readRequestHead reads an HTTP request head.
func readRequestHead(c net.Conn) string {
	var b []byte
	buf := make([]byte, 1)
	for !strings.HasSuffix(string(b), "\r\n\r\n") {
		if _, err := c.Read(buf); err != nil {
			return string(b)
		}
		b = append(b, buf[0])
	}
	return string(b)
}

func TestWireFormat(t *testing.T) {
	got := make(chan string, 1)
	addr := scripted(t, func(c net.Conn) {
		got <- readRequestHead(c)
		io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
	})
	c := newChecker(t, Config{TargetURL: "http://t.proxyhealth.test/p", Headers: []Header{{"X-A", "b"}}})
	want(t, "wire", checkURL(t, c, "http://al%20ice:"+secretPass+"@"+addr), cOK, 204)
	wantReq := "HEAD http://t.proxyhealth.test/p HTTP/1.1\r\nHost: t.proxyhealth.test\r\nUser-Agent: proxyhealth/0.1\r\nX-A: b\r\nConnection: close\r\n" +
		"Proxy-Authorization: Basic YWwgaWNlOlN1cDNyU2VjcmV0UHc=\r\n\r\n" // base64("al ice:Sup3rSecretPw")
	if r := <-got; r != wantReq {
		t.Errorf("request:\n%q\nwant\n%q", r, wantReq)
	}
}

// scriptedReplies are malformed and unusual proxy replies with the class
// and status Check gives them (TestScriptedProxyReplies); the event loop's
// differential test replays those of fast-path schemes too.
var scriptedReplies = []struct {
	name, scheme, target string
	reply                []byte
	class                pb.FailureClass
	status               int
}{
	{"CONNECT 502", "http", "https://t.proxyhealth.test/", []byte("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"), cStatus, 502},
	{"CONNECT 407", "http", "https://t.proxyhealth.test/", []byte("HTTP/1.1 407 Auth\r\n\r\n"), cAuth, 407},
	{"CONNECT then junk", "http", "https://t.proxyhealth.test/", []byte("HTTP/1.1 200 OK\r\n\r\nJUNK"), cProtocol, 0},
	{"CONNECT garbage", "http", "https://t.proxyhealth.test/", []byte("garbage\r\n\r\n"), cProtocol, 0},
	{"close before status", "http", "http://t.proxyhealth.test/", nil, cReset, 0},
	{"407 absolute", "http", "http://t.proxyhealth.test/", []byte("HTTP/1.1 407 Auth\r\n\r\n"), cAuth, 407},
	{"socks5 rep 5", "socks5h", "http://t.proxyhealth.test/", []byte{5, 0, 5, 5, 0, 1, 0, 0, 0, 0, 0, 0}, cStatus, 0},
	{"socks5 no method", "socks5h", "http://t.proxyhealth.test/", []byte{5, 0xff}, cAuth, 0},
	{"socks5 odd method", "socks5h", "http://t.proxyhealth.test/", []byte{5, 9}, cProtocol, 0},
	{"socks5 unasked auth", "socks5h", "http://t.proxyhealth.test/", []byte{5, 2}, cProtocol, 0},
	{"socks5 bad atyp", "socks5h", "http://t.proxyhealth.test/", []byte{5, 0, 5, 0, 0, 9}, cProtocol, 0},
	{"socks5 short", "socks5h", "http://t.proxyhealth.test/", []byte{5}, cReset, 0},
	{"socks5 domain bnd", "socks5h", "http://t.proxyhealth.test/", append([]byte{5, 0, 5, 0, 0, 3, 3, 'a', 'b', 'c', 0, 80}, "HTTP/1.1 200 OK\r\n\r\n"...), cOK, 200},
	{"socks4 0x5b", "socks4a", "http://t.proxyhealth.test/", []byte{0, 0x5b, 0, 0, 0, 0, 0, 0}, cStatus, 0},
	{"socks4 bad version", "socks4a", "http://t.proxyhealth.test/", []byte{9, 0x5a, 0, 0, 0, 0, 0, 0}, cProtocol, 0},
	{"socks4 bad status", "socks4a", "http://t.proxyhealth.test/", []byte{0, 0x11, 0, 0, 0, 0, 0, 0}, cProtocol, 0},
}

// replyOnce is a scripted proxy that reads the first request, writes
// reply and, unless the reply is a single byte or none, reads until the
// client closes.
func replyOnce(reply []byte) func(net.Conn) {
	return func(c net.Conn) {
		buf := make([]byte, 512)
		c.Read(buf) // the first request
		c.Write(reply)
		if len(reply) > 1 {
			io.Copy(io.Discard, c) // until the client closes
		}
	}
}

func TestScriptedProxyReplies(t *testing.T) {
	for _, tc := range scriptedReplies {
		t.Run(tc.name, func(t *testing.T) {
			addr := scripted(t, replyOnce(tc.reply))
			c := newChecker(t, Config{TargetURL: tc.target})
			want(t, tc.name, checkURL(t, c, tc.scheme+"://"+addr), tc.class, tc.status)
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, "the condition", cond)
}
