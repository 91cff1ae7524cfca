package endpoint

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// keepAliveUpstream is an upstream HTTP proxy that answers absolute-form
// requests itself and keeps connections alive; it counts the connections
// it accepted and closed and records the requests' first lines and
// Proxy-Authorization values.
type keepAliveUpstream struct {
	*httptest.Server
	opened, closed atomic.Int64
	mu             sync.Mutex
	conns          []net.Conn
	lines, auth    []string
}

func newKeepAliveUpstream(t *testing.T) *keepAliveUpstream {
	u := &keepAliveUpstream{}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.lines = append(u.lines, r.Method+" "+r.RequestURI)
		u.auth = append(u.auth, r.Header.Get("Proxy-Authorization"))
		u.mu.Unlock()
		if r.URL.Path == "/chunked" {
			for i := range 3 {
				fmt.Fprintf(w, "part%d;", i)
				w.(http.Flusher).Flush()
			}
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len("hello "+r.URL.Path)))
		io.WriteString(w, "hello "+r.URL.Path)
	}))
	u.Config.ConnState = func(c net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			u.opened.Add(1)
			u.mu.Lock()
			u.conns = append(u.conns, c)
			u.mu.Unlock()
		case http.StateClosed, http.StateHijacked:
			u.closed.Add(1)
		}
	}
	u.Start()
	t.Cleanup(u.Close)
	return u
}

// closeAll closes every connection the upstream accepted, as an upstream
// whose keep-alive timeout expired does.
func (u *keepAliveUpstream) closeAll() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, c := range u.conns {
		c.Close()
	}
}

// TestLeanPathKeepsUpstreamConnectionsAlive: bodiless GETs and HEADs to
// http targets through an http upstream reuse one connection to it
// (Content-Length and chunked responses alike), send the upstream's
// credentials, and the server's Close closes the idle connection.
func TestLeanPathKeepsUpstreamConnectionsAlive(t *testing.T) {
	up := newKeepAliveUpstream(t)
	r := newRotator(t, "http://u1:s3cret@"+up.Listener.Addr().String())
	srv, addr := startServer(t, r, Config{})
	c := proxyClient(t, "http://"+addr, nil)
	for i := range 10 {
		resp, body := get(t, c, fmt.Sprintf("http://origin.test/p%d", i))
		if resp.StatusCode != 200 || body != fmt.Sprintf("hello /p%d", i) {
			t.Fatalf("GET %d: %s %q", i, resp.Status, body)
		}
	}
	resp, body := get(t, c, "http://origin.test/chunked")
	if resp.StatusCode != 200 || body != "part0;part1;part2;" {
		t.Fatalf("chunked: %s %q", resp.Status, body)
	}
	req, _ := http.NewRequest(http.MethodHead, "http://origin.test/head", nil)
	hr, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	hr.Body.Close()
	if hr.StatusCode != 200 {
		t.Fatalf("HEAD: %s", hr.Status)
	}
	resp, body = get(t, c, "http://origin.test/last")
	if resp.StatusCode != 200 || body != "hello /last" {
		t.Fatalf("GET after HEAD: %s %q", resp.Status, body)
	}
	if n := up.opened.Load(); n != 1 {
		t.Errorf("the upstream saw %d connections for 13 sequential requests, want 1 (kept alive)", n)
	}
	up.mu.Lock()
	lines, auth := up.lines, up.auth
	up.mu.Unlock()
	if len(lines) != 13 || lines[0] != "GET http://origin.test/p0" || lines[11] != "HEAD http://origin.test/head" {
		t.Errorf("upstream request lines %q", lines)
	}
	for _, a := range auth {
		if a != "Basic dTE6czNjcmV0" { // u1:s3cret
			t.Errorf("Proxy-Authorization upstream %q, want u1's", a)
			break
		}
	}
	for _, o := range r.Outcomes() {
		if !o.OK {
			t.Errorf("outcome %+v, want all OK", o)
		}
	}
	srv.Close()
	testutil.Eventually(t, 5*time.Second, "the upstream connection closed by Close", func() bool { return up.closed.Load() == 1 })
}

// TestLeanPathReplacesAConnectionTheUpstreamClosed: an idle connection the
// upstream closed (its keep-alive timeout) is replaced by a new one and
// the request succeeds, with no failure reported against the upstream.
func TestLeanPathReplacesAConnectionTheUpstreamClosed(t *testing.T) {
	up := newKeepAliveUpstream(t)
	r := newRotator(t, "http://"+up.Listener.Addr().String())
	_, addr := startServer(t, r, Config{})
	c := proxyClient(t, "http://"+addr, nil)
	if resp, body := get(t, c, "http://origin.test/one"); resp.StatusCode != 200 || body != "hello /one" {
		t.Fatalf("first GET: %s %q", resp.Status, body)
	}
	up.closeAll()
	testutil.Eventually(t, 5*time.Second, "the upstream to close its connection", func() bool { return up.closed.Load() == 1 })
	for _, m := range []string{http.MethodGet, http.MethodOptions} {
		req, _ := http.NewRequest(m, "http://origin.test/two", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s after the upstream closed its connection: %v", m, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "hello /two" {
			t.Fatalf("%s after the upstream closed its connection: %s %q", m, resp.Status, body)
		}
		up.closeAll()
		testutil.Eventually(t, 5*time.Second, "the upstream to close its connection", func() bool { return up.closed.Load() == up.opened.Load() })
	}
	for _, o := range r.Outcomes() {
		if !o.OK {
			t.Errorf("outcome %+v: a connection closed while idle is not the upstream's failure", o)
		}
	}
	if n := up.opened.Load(); n != 3 {
		t.Errorf("upstream connections %d, want 3 (one per request: each was closed after use)", n)
	}
}

// TestLeanPathDropsInterimResponses: a 100 Continue before the final
// response is dropped, as http.Transport does, and the client gets the
// target's answer.
func TestLeanPathDropsInterimResponses(t *testing.T) {
	farm, err := fakeproxy.Start(context.Background(), 1, fakeproxy.WithBehavior(fakeproxy.OK().Interim()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(farm.Close)
	r := newRotator(t, farm.URL(0))
	_, addr := startServer(t, r, Config{})
	c := proxyClient(t, "http://"+addr, nil)
	resp, body := get(t, c, "http://target.proxyhealth.test/")
	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("through an upstream sending 100 Continue first: %s %q", resp.Status, body)
	}
}

// TestLeanPathClientLeavingClosesTheUpstreamConnection: a client that
// goes away while the upstream has not answered yet makes the endpoint
// close its connection to the upstream at once (the response header
// timeout is a minute), and nothing is reported against the upstream.
func TestLeanPathClientLeavingClosesTheUpstreamConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{})
	peerClosed := make(chan error, 1)
	go func() { // an upstream that reads the request and never answers
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			peerClosed <- err
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		if _, err := c.Read(buf); err != nil {
			peerClosed <- err
			return
		}
		close(got)
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		for {
			if _, err := c.Read(buf); err != nil {
				peerClosed <- err
				return
			}
		}
	}()
	r := newRotator(t, "http://"+ln.Addr().String())
	_, addr := startServer(t, r, Config{ResponseHeaderTimeout: time.Minute})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, "GET http://target.proxyhealth.test/ HTTP/1.1\r\nHost: target.proxyhealth.test\r\n\r\n")
	select {
	case <-got:
	case err := <-peerClosed:
		t.Fatalf("the upstream did not get the request: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not reach the upstream")
	}
	conn.Close()
	if err := <-peerClosed; err != io.EOF {
		t.Fatalf("the upstream's read ended with %v, want EOF (the endpoint closing the connection)", err)
	}
	if out := r.Outcomes(); len(out) != 0 {
		t.Errorf("outcomes %+v after the client left, want none", out)
	}
}
