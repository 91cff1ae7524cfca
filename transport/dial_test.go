package transport

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/fwdproxy"
)

// Test credentials: distinctive, so that a leak into an error message is
// found by a plain substring search.
const (
	testUser = "sekretuser"
	testPass = "sekretpass"
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

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("url.Parse(%q): %v", s, err)
	}
	return u
}

// getOverConn sends one GET on a tunnelled connection and returns the
// status and body the far end (the farm playing the target) answers.
func getOverConn(t *testing.T, c net.Conn) (int, string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: target.proxyhealth.test\r\n\r\n"); err != nil {
		t.Fatalf("write request through the tunnel: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response through the tunnel: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body through the tunnel: %v", err)
	}
	return resp.StatusCode, string(b)
}

// TestDialThroughEverySchemeReachesTheTarget opens a tunnel through each
// kind of proxy, with and without credentials the proxy demands, and
// exchanges a request with the far end.
func TestDialThroughEverySchemeReachesTheTarget(t *testing.T) {
	f := startFarm(t, 2, fakeproxy.WithBody("through the tunnel"))
	if err := f.Set(1, fakeproxy.AuthRequired()); err != nil {
		t.Fatal(err)
	}
	if err := f.SetCredentials(1, testUser, testPass); err != nil {
		t.Fatal(err)
	}
	d := &Dialer{ProxyTLSConfig: f.ClientTLSConfig()}
	cases := []struct {
		scheme, target string
		proxy          int
		creds          bool
	}{
		{"http", "target.proxyhealth.test:80", 0, false},
		{"http", "127.0.0.1:443", 1, true},
		{"https", "target.proxyhealth.test:443", 0, false},
		{"https", "127.0.0.1:80", 1, true},
		{"socks5", "127.0.0.1:80", 0, false},
		{"socks5", "[::1]:80", 0, false},
		{"socks5", "127.0.0.1:80", 1, true},
		{"socks5h", "target.proxyhealth.test:80", 0, false},
		{"socks5h", "target.proxyhealth.test:80", 1, true},
		{"socks4", "127.0.0.1:80", 0, false},
		{"socks4", "localhost:80", 0, false},
		{"socks4a", "target.proxyhealth.test:80", 0, false},
	}
	for _, c := range cases {
		name := c.scheme + " " + c.target
		if c.creds {
			name += " with credentials"
		}
		t.Run(name, func(t *testing.T) {
			user, pass := "", ""
			if c.creds {
				user, pass = testUser, testPass
			}
			u := mustURL(t, f.URLWith(c.proxy, c.scheme, user, pass))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			before := f.Checks(c.proxy)
			conn, err := d.DialThrough(ctx, u, "tcp", c.target)
			if err != nil {
				t.Fatalf("DialThrough: %v", err)
			}
			defer conn.Close()
			code, body := getOverConn(t, conn)
			if code != 200 || body != "through the tunnel" {
				t.Fatalf("through the tunnel: status %d body %q, want 200 %q", code, body, "through the tunnel")
			}
			if got := f.Checks(c.proxy) - before; got != 1 {
				t.Fatalf("proxy %d accepted %d connections, want 1", c.proxy, got)
			}
		})
	}
}

// TestDialThroughFailureClasses checks the class each kind of proxy
// failure gets, and that no error message carries the credentials.
func TestDialThroughFailureClasses(t *testing.T) {
	f := startFarm(t, 1)
	cases := []struct {
		name     string
		b        fakeproxy.Behavior
		scheme   string
		creds    bool
		proxyTLS bool
		timeout  time.Duration
		class    string
	}{
		{"refused", fakeproxy.Refuse(), "http", true, true, 0, ClassRefused},
		{"reset", fakeproxy.Reset(), "http", true, true, 0, ClassReset},
		{"reset socks5", fakeproxy.Reset(), "socks5", true, true, 0, ClassReset},
		{"blackhole", fakeproxy.Blackhole(), "http", true, true, 200 * time.Millisecond, ClassTimeout},
		{"blackhole socks4", fakeproxy.Blackhole(), "socks4", true, true, 200 * time.Millisecond, ClassTimeout},
		{"407 without credentials", fakeproxy.AuthRequired(), "http", false, true, 0, ClassProxyAuthRequired},
		{"407 with wrong credentials", fakeproxy.AuthRequired(), "https", true, true, 0, ClassProxyAuthRequired},
		{"socks5 wrong credentials", fakeproxy.AuthRequired(), "socks5h", true, true, 0, ClassProxyAuthRequired},
		{"socks5 auth without credentials", fakeproxy.AuthRequired(), "socks5h", false, true, 0, ClassProxyAuthRequired},
		{"garbage http", fakeproxy.Garbage(), "http", true, true, 0, ClassProtocol},
		{"garbage socks5", fakeproxy.Garbage(), "socks5", true, true, 0, ClassProtocol},
		{"untrusted proxy certificate", fakeproxy.OK(), "https", true, false, 0, ClassTLS},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := f.Set(0, c.b); err != nil {
				t.Fatal(err)
			}
			if err := f.SetCredentials(0, "someoneelse", "otherpass"); err != nil {
				t.Fatal(err)
			}
			user, pass := "", ""
			if c.creds {
				user, pass = testUser, testPass
			}
			d := &Dialer{}
			if c.proxyTLS {
				d.ProxyTLSConfig = f.ClientTLSConfig()
			}
			timeout := c.timeout
			if timeout == 0 {
				timeout = 10 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			conn, err := d.DialThrough(ctx, mustURL(t, f.URLWith(0, c.scheme, user, pass)), "tcp", "127.0.0.1:80")
			if err == nil {
				conn.Close()
				t.Fatalf("DialThrough succeeded, want a %s failure", c.class)
			}
			var de *DialError
			if !errors.As(err, &de) {
				t.Fatalf("error %v (%T) is not a *DialError", err, err)
			}
			if got := Classify(err); got != c.class {
				t.Fatalf("Classify(%v) = %q, want %q", err, got, c.class)
			}
			if msg := err.Error(); strings.Contains(msg, testUser) || strings.Contains(msg, testPass) {
				t.Fatalf("error message carries the credentials: %s", msg)
			}
			if want := c.scheme + "://" + f.Addr(0); de.Proxy != want {
				t.Fatalf("DialError.Proxy = %q, want %q", de.Proxy, want)
			}
		})
	}
}

// TestDialThroughCONNECTRefused: a proxy's own 502 to CONNECT is
// bad_status.
func TestDialThroughCONNECTRefused(t *testing.T) {
	p := fwdproxy.Start(t, fwdproxy.Options{Name: "p", User: testUser, Pass: testPass})
	p.RefuseConnect(true)
	_, err := DialThrough(context.Background(), mustURL(t, p.URL()), "tcp", "127.0.0.1:443")
	if got := Classify(err); got != ClassBadStatus {
		t.Fatalf("Classify(%v) = %q, want %q", err, got, ClassBadStatus)
	}
	if strings.Contains(err.Error(), testUser) || strings.Contains(err.Error(), testPass) {
		t.Fatalf("error message carries the credentials: %v", err)
	}
}

func TestDialThroughRefusesWhatItCannotDial(t *testing.T) {
	cases := []struct {
		proxy, network, addr string
		want                 error
	}{
		{"ftp://" + testUser + ":" + testPass + "@127.0.0.1:21", "tcp", "127.0.0.1:80", ErrBadProxyURL},
		{"http://" + testUser + ":" + testPass + "@:8080", "tcp", "127.0.0.1:80", ErrBadProxyURL},
		{"http://" + testUser + ":" + testPass + "@127.0.0.1:0", "tcp", "127.0.0.1:80", ErrBadProxyURL},
		{"http://127.0.0.1:1", "udp", "127.0.0.1:53", ErrBadAddress},
		{"http://127.0.0.1:1", "tcp", "no-port", ErrBadAddress},
		{"http://127.0.0.1:1", "tcp", "127.0.0.1:99999", ErrBadAddress},
	}
	for _, c := range cases {
		_, err := DialThrough(context.Background(), mustURL(t, c.proxy), c.network, c.addr)
		if !errors.Is(err, c.want) {
			t.Errorf("DialThrough(%s, %s, %s) = %v, want %v", redact(mustURL(t, c.proxy)), c.network, c.addr, err, c.want)
		}
		if err != nil && (strings.Contains(err.Error(), testUser) || strings.Contains(err.Error(), testPass)) {
			t.Errorf("error message carries the credentials: %v", err)
		}
	}
	if _, err := DialThrough(context.Background(), nil, "tcp", "127.0.0.1:80"); !errors.Is(err, ErrBadProxyURL) {
		t.Errorf("DialThrough(nil proxy) = %v, want ErrBadProxyURL", err)
	}
}

func TestClassify(t *testing.T) {
	if got := Classify(nil); got != "" {
		t.Errorf("Classify(nil) = %q, want empty", got)
	}
	if got := Classify(errors.New("something")); got != ClassOther {
		t.Errorf("Classify(plain error) = %q, want %q", got, ClassOther)
	}
	if got := Classify(&net.DNSError{Err: "no such host", Name: "x.invalid"}); got != ClassDNS {
		t.Errorf("Classify(DNS error) = %q, want %q", got, ClassDNS)
	}
	if got := Classify(context.DeadlineExceeded); got != ClassTimeout {
		t.Errorf("Classify(deadline) = %q, want %q", got, ClassTimeout)
	}
	wrapped := &net.OpError{Op: "proxyconnect", Net: "tcp", Err: &DialError{Class: ClassBadStatus, Proxy: "http://h:1", Op: "CONNECT", Err: errors.New("502")}}
	if got := Classify(wrapped); got != ClassBadStatus {
		t.Errorf("Classify(wrapped DialError) = %q, want %q", got, ClassBadStatus)
	}
}
