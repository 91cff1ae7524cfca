package fakeproxy

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

func startFarm(t testing.TB, n int, opts ...Option) *Farm {
	t.Helper()
	f, err := Start(context.Background(), n, opts...)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(f.Close)
	return f
}

func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// rawHTTP writes req and returns the whole response (until close).
func rawHTTP(t testing.TB, c net.Conn, req string) string {
	t.Helper()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatalf("write: %v", err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func httpClient(f *Farm, i int, user, pass string) *http.Client {
	u, _ := url.Parse(f.URL(i))
	if user != "" {
		u.User = url.UserPassword(user, pass)
	}
	return &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyURL(u), TLSClientConfig: f.ClientTLSConfig(), DisableKeepAlives: true},
		Timeout:   10 * time.Second,
	}
}

func get(t testing.TB, c *http.Client, target string) (int, string) {
	t.Helper()
	resp, err := c.Get(target)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp.StatusCode, string(b)
}

func TestHTTPAbsoluteAndCONNECT(t *testing.T) {
	f := startFarm(t, 2, WithBody("hello"))
	c := httpClient(f, 1, "", "")
	defer c.CloseIdleConnections()
	if code, body := get(t, c, "http://example.proxyhealth.test/x"); code != 200 || body != "hello" {
		t.Fatalf("absolute-form: got %d %q, want 200 \"hello\"", code, body)
	}
	if code, body := get(t, c, "https://target.proxyhealth.test/"); code != 200 || body != "hello" {
		t.Fatalf("CONNECT+TLS: got %d %q, want 200 \"hello\"", code, body)
	}
	if got := f.Checks(1); got != 2 {
		t.Fatalf("Checks(1) = %d, want 2", got)
	}
	if got := f.Checks(0); got != 0 {
		t.Fatalf("Checks(0) = %d, want 0", got)
	}
	if got := f.TotalChecks(); got != 2 {
		t.Fatalf("TotalChecks = %d, want 2", got)
	}
}

func TestHTTPSProxy(t *testing.T) {
	f := startFarm(t, 1)
	u, _ := url.Parse(f.URLWith(0, "https", "", ""))
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(u), TLSClientConfig: f.ClientTLSConfig(), DisableKeepAlives: true}}
	defer c.CloseIdleConnections()
	if code, body := get(t, c, "http://target.proxyhealth.test/"); code != 200 || body != "ok" {
		t.Fatalf("TLS proxy: got %d %q", code, body)
	}
}

func TestStatusWrongContentInterimChunkedTrickle(t *testing.T) {
	f := startFarm(t, 1)
	c := httpClient(f, 0, "", "")
	defer c.CloseIdleConnections()
	cases := []struct {
		b    Behavior
		code int
		body string
	}{
		{Status(503), 503, "ok"},
		{WrongContent(), 200, "fakeproxy: wrong content"},
		{OK().Chunked(), 200, "ok"},
		{OK().Trickle().Interim(), 200, "ok"},
		{Status(404).Chunked().Trickle(), 404, "ok"},
	}
	for _, tc := range cases {
		if err := f.Set(0, tc.b); err != nil {
			t.Fatal(err)
		}
		if code, body := get(t, c, "http://t.proxyhealth.test/"); code != tc.code || body != tc.body {
			t.Errorf("%v: got %d %q, want %d %q", tc.b, code, body, tc.code, tc.body)
		}
	}
	// Chunked wire format and interim response, checked raw.
	if err := f.Set(0, OK().Chunked().Interim()); err != nil {
		t.Fatal(err)
	}
	got := rawHTTP(t, dial(t, f.Addr(0)), "GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n") || !strings.HasSuffix(got, "1\r\no\r\n1\r\nk\r\n0\r\n\r\n") {
		t.Errorf("raw chunked+interim response:\n%q", got)
	}
}

func TestAuthRequired(t *testing.T) {
	f := startFarm(t, 2, WithCredentials("alice", "s3cret"), WithBehavior(AuthRequired()))
	if err := f.SetCredentials(1, "bob", "other"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		i          int
		user, pass string
		want       int
	}{
		{0, "", "", 407}, {0, "alice", "wrong", 407}, {0, "alice", "s3cret", 200},
		{1, "alice", "s3cret", 407}, {1, "bob", "other", 200},
	} {
		c := httpClient(f, tc.i, tc.user, tc.pass)
		if code, _ := get(t, c, "http://t.proxyhealth.test/"); code != tc.want {
			t.Errorf("proxy %d user %q pass %q: status %d, want %d", tc.i, tc.user, tc.pass, code, tc.want)
		}
		c.CloseIdleConnections()
	}
}

// socks5Handshake runs a SOCKS5 handshake and returns the method and the
// final reply code (or -1 if the proxy closed first).
func socks5Handshake(t *testing.T, c net.Conn, user, pass, host string) (method byte, rep int) {
	t.Helper()
	if user != "" {
		c.Write([]byte{5, 1, 2})
	} else {
		c.Write([]byte{5, 1, 0})
	}
	b := make([]byte, 2)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("greeting reply: %v", err)
	}
	if b[1] == 0xff {
		return 0xff, -1
	}
	method = b[1]
	if method == 2 {
		msg := append([]byte{1, byte(len(user))}, user...)
		msg = append(append(msg, byte(len(pass))), pass...)
		c.Write(msg)
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatalf("auth reply: %v", err)
		}
		if b[1] != 0 {
			return 2, -1
		}
	}
	req := append([]byte{5, 1, 0, 3, byte(len(host))}, host...)
	req = binary.BigEndian.AppendUint16(req, 443)
	c.Write(req)
	reply := make([]byte, 10)
	if _, err := io.ReadFull(c, reply); err != nil {
		return method, -1
	}
	return method, int(reply[1])
}

func TestSOCKS5(t *testing.T) {
	f := startFarm(t, 1, WithCredentials("u", "p"))
	c := dial(t, f.Addr(0))
	if m, rep := socks5Handshake(t, c, "", "", "target.proxyhealth.test"); m != 0 || rep != 0 {
		t.Fatalf("no-auth handshake: method %d reply %d", m, rep)
	}
	// TLS to the "target" through the tunnel.
	tc := tls.Client(c, &tls.Config{RootCAs: f.RootCAs(), ServerName: "target.proxyhealth.test"})
	got := rawHTTP(t, tc, "GET / HTTP/1.1\r\nHost: target.proxyhealth.test\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 200 OK\r\n") || !strings.HasSuffix(got, "\r\n\r\nok") {
		t.Fatalf("tunnelled response: %q", got)
	}

	if err := f.Set(0, AuthRequired()); err != nil {
		t.Fatal(err)
	}
	if m, _ := socks5Handshake(t, dial(t, f.Addr(0)), "", "", "x"); m != 0xff {
		t.Errorf("auth required, no creds offered: method %#x, want 0xff", m)
	}
	if m, rep := socks5Handshake(t, dial(t, f.Addr(0)), "u", "bad", "x"); m != 2 || rep != -1 {
		t.Errorf("wrong password: method %d rep %d, want auth failure", m, rep)
	}
	if m, rep := socks5Handshake(t, dial(t, f.Addr(0)), "u", "p", "x"); m != 2 || rep != 0 {
		t.Errorf("right password: method %d rep %d, want success", m, rep)
	}
	if err := f.Set(0, Flaky(1)); err != nil {
		t.Fatal(err)
	}
}

func TestSOCKS4(t *testing.T) {
	f := startFarm(t, 1, WithCredentials("uid", ""), WithBehavior(AuthRequired()))
	try := func(user string, a bool) byte {
		c := dial(t, f.Addr(0))
		req := []byte{4, 1, 0, 80, 127, 0, 0, 1}
		if a {
			req = []byte{4, 1, 0, 80, 0, 0, 0, 1}
		}
		req = append(append(req, user...), 0)
		if a {
			req = append(append(req, "t.proxyhealth.test"...), 0)
		}
		c.Write(req)
		reply := make([]byte, 8)
		if _, err := io.ReadFull(c, reply); err != nil {
			t.Fatalf("socks4 reply: %v", err)
		}
		if reply[1] == 0x5a {
			got := rawHTTP(t, c, "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
			if !strings.HasPrefix(got, "HTTP/1.1 200 OK\r\n") || !strings.HasSuffix(got, "\r\n\r\n") {
				t.Errorf("HEAD through socks4: %q", got)
			}
		}
		return reply[1]
	}
	if got := try("uid", false); got != 0x5a {
		t.Errorf("socks4 right uid: %#x", got)
	}
	if got := try("uid", true); got != 0x5a {
		t.Errorf("socks4a right uid: %#x", got)
	}
	if got := try("nope", false); got != 0x5d {
		t.Errorf("socks4 wrong uid: %#x, want 0x5d", got)
	}
}

func TestRefuseReopensSamePort(t *testing.T) {
	f := startFarm(t, 1)
	addr := f.Addr(0)
	if err := f.Set(0, Refuse()); err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp", addr); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial while refusing: %v, want ECONNREFUSED", err)
	}
	if err := f.Set(0, OK()); err != nil {
		t.Fatal(err)
	}
	if f.Addr(0) != addr {
		t.Fatalf("address changed: %s -> %s", addr, f.Addr(0))
	}
	got := rawHTTP(t, dial(t, addr), "HEAD http://x/ HTTP/1.1\r\nHost: x\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 200 OK") {
		t.Fatalf("after re-open: %q", got)
	}
	// Start in Refuse.
	g := startFarm(t, 1, WithBehavior(Refuse()))
	if _, err := net.Dial("tcp", g.Addr(0)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial initial refuse: %v", err)
	}
}

func TestResetGarbageBlackhole(t *testing.T) {
	f := startFarm(t, 3)
	f.Set(0, Reset())
	f.Set(1, Garbage())
	f.Set(2, Blackhole())

	// The RST can arrive before the client's connect completes, or before
	// its write (which then reports it, and the read sees EOF).
	if c, err := net.Dial("tcp", f.Addr(0)); err == nil {
		_, werr := io.WriteString(c, "HEAD http://x/ HTTP/1.1\r\n\r\n")
		data, rerr := io.ReadAll(c)
		reset := errors.Is(rerr, syscall.ECONNRESET) || errors.Is(werr, syscall.ECONNRESET) || errors.Is(werr, syscall.EPIPE)
		if !reset || len(data) != 0 {
			t.Errorf("Reset: write error %v, read %q and error %v; want ECONNRESET and no data", werr, data, rerr)
		}
		c.Close()
	} else if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("Reset: dial error %v, want ECONNRESET", err)
	}
	if got := rawHTTP(t, dial(t, f.Addr(1)), "HEAD http://x/ HTTP/1.1\r\n\r\n"); got != garbage {
		t.Errorf("Garbage: %q", got)
	}
	c := dial(t, f.Addr(2))
	io.WriteString(c, "HEAD http://x/ HTTP/1.1\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var ne net.Error
	if _, err := c.Read(make([]byte, 1)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("Blackhole: read %v, want timeout", err)
	}
	// Close with a blackholed connection still open must not hang or leak.
	f.Close()
}

func TestSlowAndCloseDuringDelay(t *testing.T) {
	f := startFarm(t, 1, WithBehavior(Slow(time.Hour)))
	c := dial(t, f.Addr(0))
	io.WriteString(c, "HEAD http://x/ HTTP/1.1\r\n\r\n")
	// Wait until the farm saw the connection, then close while delaying.
	waitFor(t, func() bool { return f.Checks(0) == 1 })
	f.Close()
	if _, err := io.ReadAll(c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after Close: %v", err)
	}
}

func TestFlakySeeded(t *testing.T) {
	run := func() []bool {
		f := startFarm(t, 1, WithSeed(42), WithBehavior(Flaky(0.5)))
		defer f.Close()
		var out []bool
		for range 40 {
			c, err := net.Dial("tcp", f.Addr(0))
			if err != nil { // reset before connect completed
				out = append(out, false)
				continue
			}
			io.WriteString(c, "HEAD http://x/ HTTP/1.1\r\n\r\n")
			b, err := io.ReadAll(c)
			c.Close()
			out = append(out, err == nil && strings.HasPrefix(string(b), "HTTP/1.1 200"))
		}
		return out
	}
	a, b := run(), run()
	oks := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed, different outcome at %d", i)
		}
		if a[i] {
			oks++
		}
	}
	if oks == 0 || oks == len(a) {
		t.Fatalf("Flaky(0.5): %d of %d OK, want a mix", oks, len(a))
	}
}

func TestStatsMinInterval(t *testing.T) {
	f := startFarm(t, 1)
	for range 3 {
		rawHTTP(t, dial(t, f.Addr(0)), "HEAD http://x/ HTTP/1.1\r\n\r\n")
	}
	s := f.Stats(0)
	if s.Checks != 3 || s.MinInterval <= 0 || s.Last.Before(s.First) || s.MinInterval > s.Last.Sub(s.First) {
		t.Fatalf("stats: %+v", s)
	}
	f.ResetStats()
	if s := f.Stats(0); s.Checks != 0 {
		t.Fatalf("after ResetStats: %+v", s)
	}
}

func TestSetErrors(t *testing.T) {
	f := startFarm(t, 1)
	if err := f.Set(1, OK()); !errors.Is(err, ErrBadIndex) {
		t.Errorf("Set(1): %v", err)
	}
	f.Close()
	if err := f.Set(0, Refuse()); !errors.Is(err, ErrClosed) {
		t.Errorf("Set after Close: %v", err)
	}
}

func TestBadRequests(t *testing.T) {
	f := startFarm(t, 1)
	if got := rawHTTP(t, dial(t, f.Addr(0)), "GET /origin-form HTTP/1.1\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 400") {
		t.Errorf("origin-form to proxy: %q", got)
	}
	if got := rawHTTP(t, dial(t, f.Addr(0)), "nonsense\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 400") {
		t.Errorf("bad request line: %q", got)
	}
	big := "GET http://x/ HTTP/1.1\r\nX: " + strings.Repeat("a", 5000) + "\r\n\r\n"
	if got := rawHTTP(t, dial(t, f.Addr(0)), big); !strings.HasPrefix(got, "HTTP/1.1 431") {
		t.Errorf("huge head: %q", got)
	}
}

func TestBehaviorString(t *testing.T) {
	if got := Status(503).Chunked().Delay(time.Second).String(); got != "Status(503)+Delay(1s)+Chunked" {
		t.Errorf("String = %q", got)
	}
	var zero Behavior
	if zero != OK() {
		t.Errorf("zero Behavior is not OK()")
	}
}

func TestManyProxies(t *testing.T) {
	n := 10000
	if raceEnabled {
		n = 2000 // the race detector allows at most 8128 goroutines
	}
	if testing.Short() {
		n = 500
	}
	f := startFarm(t, n)
	for _, i := range []int{0, n / 2, n - 1} {
		got := rawHTTP(t, dial(t, f.Addr(i)), "HEAD http://x/ HTTP/1.1\r\n\r\n")
		if !strings.HasPrefix(got, "HTTP/1.1 200 OK") {
			t.Fatalf("proxy %d: %q", i, got)
		}
	}
	// Per proxy, not TotalChecks: tests of other packages running at the
	// same time may dial a loopback port they believe closed that one of
	// these 2,000 proxies now holds.
	for _, i := range []int{0, n / 2, n - 1} {
		if c := f.Checks(i); c != 1 {
			t.Fatalf("proxy %d counted %d checks, want 1", i, c)
		}
	}
	if f.TotalChecks() < 3 {
		t.Fatalf("TotalChecks = %d, want at least the 3 made", f.TotalChecks())
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, "the condition", cond)
}
