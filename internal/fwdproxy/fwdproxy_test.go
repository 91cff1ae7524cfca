package fwdproxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// origin answers "hello <via>" and remembers the remote address and the
// proxy headers of the last request.
type origin struct {
	*httptest.Server
	last chan *http.Request
}

func startOrigin(t *testing.T, useTLS bool) *origin {
	t.Helper()
	o := &origin{last: make(chan *http.Request, 16)}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.last <- r.Clone(r.Context())
		fmt.Fprintf(w, "hello %s", r.Header.Get(ViaHeader))
	})
	if useTLS {
		o.Server = httptest.NewTLSServer(h)
	} else {
		o.Server = httptest.NewServer(h)
	}
	t.Cleanup(o.Close)
	return o
}

func client(t *testing.T, proxyURL string) *http.Client {
	t.Helper()
	u, err := url.Parse(proxyURL)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{Proxy: http.ProxyURL(u), TLSClientConfig: &tls.Config{RootCAs: CertPool(t)}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func fetch(t *testing.T, c *http.Client, target string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Proxy-Connection", "keep-alive") // as old clients send
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", target, err)
	}
	return resp.StatusCode, string(b)
}

// Absolute-form requests reach the origin from one of the proxy's own
// connections, named, without proxy headers; https targets go through
// CONNECT; both over an http:// and an https:// proxy.
func TestProxyForwardsAndTunnels(t *testing.T) {
	plain, secure := startOrigin(t, false), startOrigin(t, true)
	for _, useTLS := range []bool{false, true} {
		p := Start(t, Options{Name: "px", TLS: useTLS, User: "u", Pass: "pw"})
		if got := strings.HasPrefix(p.URL(), "https://"); got != useTLS {
			t.Fatalf("TLS %v: URL %s", useTLS, p.URL())
		}
		c := client(t, p.URL())
		if code, body := fetch(t, c, plain.URL+"/a"); code != 200 || body != "hello px" {
			t.Fatalf("TLS %v: absolute form: %d %q, want 200 \"hello px\"", useTLS, code, body)
		}
		r := <-plain.last
		if r.Header.Get("Proxy-Authorization") != "" || r.Header.Get("Proxy-Connection") != "" {
			t.Errorf("TLS %v: origin saw proxy headers %v", useTLS, r.Header)
		}
		if !p.Forwarded(r.RemoteAddr) {
			t.Errorf("TLS %v: origin's client %s is not the proxy's connection", useTLS, r.RemoteAddr)
		}
		if code, body := fetch(t, c, secure.URL+"/b"); code != 200 || body != "hello " {
			t.Fatalf("TLS %v: CONNECT: %d %q, want 200 \"hello \" (a tunnel adds no header)", useTLS, code, body)
		}
		if r := <-secure.last; !p.Forwarded(r.RemoteAddr) {
			t.Errorf("TLS %v: tunnelled client %s is not the proxy's connection", useTLS, r.RemoteAddr)
		}
		if p.Requests() != 2 || p.Connects() != 1 || p.NewConns() < 1 {
			t.Errorf("TLS %v: requests %d connects %d conns %d, want 2, 1, at least 1", useTLS, p.Requests(), p.Connects(), p.NewConns())
		}
		want := "Basic dTpwdw==" // u:pw
		for _, a := range p.AuthSeen() {
			if a != want {
				t.Errorf("TLS %v: AuthSeen %q, want %q", useTLS, a, want)
			}
		}
	}
}

// Wrong credentials get a 407 with Proxy-Authenticate, recorded in
// AuthSeen; the failure switches answer 502 instead of forwarding.
func TestProxyAuthAndFailures(t *testing.T) {
	o := startOrigin(t, false)
	p := Start(t, Options{User: "u", Pass: "pw"})
	resp, err := client(t, p.URLWith("u", "wrong")).Get(o.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusProxyAuthRequired || resp.Header.Get("Proxy-Authenticate") == "" {
		t.Fatalf("wrong credentials: %s %v, want 407 with Proxy-Authenticate", resp.Status, resp.Header)
	}
	if got := p.AuthSeen(); len(got) != 1 || got[0] != "Basic dTp3cm9uZw==" { // u:wrong
		t.Errorf("AuthSeen %q, want the wrong credentials once", got)
	}

	c := client(t, p.URL())
	p.Answer502(true)
	if code, _ := fetch(t, c, o.URL); code != http.StatusBadGateway {
		t.Errorf("Answer502: %d, want 502", code)
	}
	p.Answer502(false)
	if code, _ := fetch(t, c, o.URL); code != 200 {
		t.Errorf("Answer502 off: %d, want 200", code)
	}
	p.RefuseConnect(true)
	secure := startOrigin(t, true)
	if _, err := c.Get(secure.URL); err == nil || !strings.Contains(err.Error(), "Bad Gateway") {
		t.Errorf("RefuseConnect: %v, want a 502 Bad Gateway from CONNECT", err)
	}
	if len(o.last) != 1 {
		t.Errorf("origin got %d requests, want 1 (only with Answer502 off)", len(o.last))
	}
}

// Close ends a tunnel still open, and a second Close does nothing.
func TestProxyCloseEndsTunnels(t *testing.T) {
	o := startOrigin(t, false)
	p := Start(t, Options{})
	c, err := net.Dial("tcp", strings.TrimPrefix(p.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: x\r\n\r\n", o.Listener.Addr())
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	p.Close()
	p.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("read from the tunnel after Close succeeded, want it ended")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the tunnel is still open 5s after Close")
	}
}

// The SOCKS5 proxy connects by IPv4 address and by name, counts client
// connections, and answers a refused target with reply code 5.
func TestSOCKS5(t *testing.T) {
	o := startOrigin(t, false)
	s := StartSOCKS5(t)
	for scheme, target := range map[string]string{
		"socks5":  o.URL,                                               // an IPv4 address
		"socks5h": strings.Replace(o.URL, "127.0.0.1", "localhost", 1), // a name
	} {
		if code, body := fetch(t, client(t, s.URL(scheme)), target); code != 200 || body != "hello " {
			t.Errorf("%s: %d %q, want 200", scheme, code, body)
		}
	}
	if got := s.NewConns(); got != 2 {
		t.Errorf("NewConns %d, want 2", got)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().(*net.TCPAddr)
	ln.Close()
	c, err := net.Dial("tcp", strings.TrimPrefix(s.URL("socks5"), "socks5://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req := []byte{5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, byte(closed.Port >> 8), byte(closed.Port)}
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	var rep [12]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		t.Fatal(err)
	}
	if rep[1] != 0 || rep[3] != 5 {
		t.Errorf("reply %v, want method 0 then reply code 5 (refused)", rep)
	}
}
