package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
)

// fakeRotator hands out its members round-robin, honouring Exclude, and
// records every pick request and every outcome.
type fakeRotator struct {
	mu       sync.Mutex
	members  []proxyhealth.Picked
	next     int
	picks    []proxyhealth.PickRequest
	outcomes []proxyhealth.Outcome
}

func newRotator(t testing.TB, urls ...string) *fakeRotator {
	t.Helper()
	r := &fakeRotator{}
	for i, s := range urls {
		u := mustURL(t, s)
		p := proxyhealth.Picked{}
		p.ID = "p" + strconv.Itoa(i)
		p.URL = u
		p.Scheme = u.Scheme
		r.members = append(r.members, p)
	}
	return r
}

func (r *fakeRotator) Pick(req proxyhealth.PickRequest) (proxyhealth.Picked, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	req.Exclude = slices.Clone(req.Exclude)
	r.picks = append(r.picks, req)
	for range r.members {
		m := r.members[r.next%len(r.members)]
		r.next++
		if !slices.Contains(req.Exclude, m.ID) {
			return m, nil
		}
	}
	return proxyhealth.Picked{}, proxyhealth.ErrNoProxy
}

func (r *fakeRotator) ReportOutcome(o proxyhealth.Outcome) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outcomes = append(r.outcomes, o)
	return nil
}

func (r *fakeRotator) Outcomes() []proxyhealth.Outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.outcomes)
}

func (r *fakeRotator) Picks() []proxyhealth.PickRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.picks)
}

// origin is an httptest server that records which proxy each request came
// through. Paths: /status/N answers N; anything else 200 "hello".
type origin struct {
	srv      *httptest.Server
	newConns atomic.Int64
	mu       sync.Mutex
	seen     []seenRequest
}

type seenRequest struct {
	via        string // X-Via-Proxy, set by testProxy in absolute form
	remoteAddr string
	proxyAuth  string
}

func startOrigin(t testing.TB, useTLS bool) *origin {
	t.Helper()
	o := &origin{}
	o.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.seen = append(o.seen, seenRequest{via: r.Header.Get("X-Via-Proxy"), remoteAddr: r.RemoteAddr, proxyAuth: r.Header.Get("Proxy-Authorization")})
		o.mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		if code, err := strconv.Atoi(r.URL.Path[min(len(r.URL.Path), len("/status/")):]); err == nil && len(r.URL.Path) > len("/status/") {
			w.WriteHeader(code)
			_, _ = io.WriteString(w, "status "+strconv.Itoa(code))
			return
		}
		_, _ = io.WriteString(w, "hello")
	}))
	o.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			o.newConns.Add(1)
		}
	}
	if useTLS {
		o.srv.StartTLS()
	} else {
		o.srv.Start()
	}
	t.Cleanup(o.srv.Close)
	return o
}

func (o *origin) Seen() []seenRequest {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.seen)
}

// testCertPool trusts httptest's certificate (the same for every TLS test
// server: origins and https proxies).
func testCertPool(t testing.TB) *x509.CertPool {
	t.Helper()
	s := httptest.NewUnstartedServer(http.NotFoundHandler())
	s.StartTLS()
	defer s.Close()
	pool := x509.NewCertPool()
	pool.AddCert(s.Certificate())
	return pool
}

// testProxy is a real forwarding proxy on loopback: absolute-form
// requests are forwarded to the origin with X-Via-Proxy set to its name,
// CONNECT is tunnelled. It counts the connections clients open to it and
// records the local addresses of its connections to targets.
type testProxy struct {
	name     string
	srv      *httptest.Server
	auth     string // wanted Proxy-Authorization; "" for none
	newConns atomic.Int64
	requests atomic.Int64 // absolute-form requests and CONNECTs
	connects atomic.Int64
	// answer502, when set, makes the proxy answer every absolute-form
	// request with its own 502 (marked with Proxy-Status).
	answer502 atomic.Bool
	// refuseConnect, when set, makes the proxy answer CONNECT with its own
	// 502.
	refuseConnect atomic.Bool

	fwd     *http.Transport
	mu      sync.Mutex
	outAddr map[string]bool
	tunnels map[net.Conn]bool
	wg      sync.WaitGroup
}

func startTestProxy(t testing.TB, name string, useTLS bool, user, pass string) *testProxy {
	t.Helper()
	p := &testProxy{name: name, outAddr: map[string]bool{}, tunnels: map[net.Conn]bool{}}
	if user != "" {
		p.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	p.fwd = &http.Transport{
		DialContext:     p.dialTarget,
		TLSClientConfig: &tls.Config{RootCAs: testCertPool(t)},
	}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			p.newConns.Add(1)
		}
	}
	if useTLS {
		p.srv.StartTLS()
	} else {
		p.srv.Start()
	}
	t.Cleanup(p.close)
	return p
}

// URL returns the proxy's URL with the credentials it wants.
func (p *testProxy) URL(user, pass string) string {
	u := mustURLNoT(p.srv.URL)
	if user != "" {
		u.User = url.UserPassword(user, pass)
	}
	return u.String()
}

func mustURLNoT(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func (p *testProxy) dialTarget(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.outAddr[c.LocalAddr().String()] = true
	p.mu.Unlock()
	return c, nil
}

// Forwarded tells whether addr (an origin's view of a client) is one of
// this proxy's connections.
func (p *testProxy) Forwarded(addr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.outAddr[addr]
}

func (p *testProxy) serve(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	if p.auth != "" && r.Header.Get("Proxy-Authorization") != p.auth {
		w.Header().Set("Proxy-Authenticate", `Basic realm="test"`)
		w.WriteHeader(http.StatusProxyAuthRequired)
		return
	}
	if r.Method == http.MethodConnect {
		p.connects.Add(1)
		if p.refuseConnect.Load() {
			http.Error(w, "testproxy: upstream unreachable", http.StatusBadGateway)
			return
		}
		p.tunnel(w, r)
		return
	}
	if p.answer502.Load() {
		w.Header().Set("Proxy-Status", `testproxy; error=destination_unavailable`)
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.Header.Del("Proxy-Authorization")
	out.Header.Set("X-Via-Proxy", p.name)
	resp, err := p.fwd.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

func (p *testProxy) tunnel(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	up, err := p.dialTarget(ctx, "tcp", r.Host)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	down, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		up.Close()
		return
	}
	if _, err := io.WriteString(down, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		up.Close()
		down.Close()
		return
	}
	p.mu.Lock()
	p.tunnels[down] = true
	p.tunnels[up] = true
	p.wg.Add(2)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		_, _ = io.Copy(up, brw)
		up.Close()
		down.Close()
	}()
	go func() {
		defer p.wg.Done()
		_, _ = io.Copy(down, up)
		up.Close()
		down.Close()
	}()
}

func (p *testProxy) close() {
	p.srv.Close()
	p.mu.Lock()
	for c := range p.tunnels {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	p.fwd.CloseIdleConnections()
}

// newTransport starts a Transport over r and closes it at the end of the
// test.
func newTransport(t testing.TB, r Rotator, o Options) *Transport {
	t.Helper()
	tr, err := New(r, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// get sends a GET through tr and returns the status and body.
func get(t testing.TB, tr http.RoundTripper, target string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", target, err)
	}
	return resp.StatusCode, string(b)
}

// hangupProxy accepts connections, reads a request head and hangs up
// without answering: the request was sent, no answer came.
type hangupProxy struct {
	ln    net.Listener
	heads atomic.Int64
	wg    sync.WaitGroup
}

func startHangupProxy(t testing.TB) *hangupProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hangupProxy{ln: ln}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				var buf []byte
				b := make([]byte, 512)
				for !strings.Contains(string(buf), "\r\n\r\n") {
					n, err := c.Read(b)
					if err != nil {
						return
					}
					buf = append(buf, b[:n]...)
				}
				h.heads.Add(1)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); h.wg.Wait() })
	return h
}

func (h *hangupProxy) URL() string { return "http://" + h.ln.Addr().String() }

// socksForwarder is a real SOCKS5 proxy (no authentication, CONNECT to an
// IPv4 address or a name) that counts the connections clients open to it.
type socksForwarder struct {
	ln       net.Listener
	newConns atomic.Int64
	mu       sync.Mutex
	conns    map[net.Conn]bool
	wg       sync.WaitGroup
}

func startSOCKSForwarder(t testing.TB) *socksForwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &socksForwarder{ln: ln, conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.newConns.Add(1)
			s.track(c)
			s.wg.Add(1)
			go func() { defer s.wg.Done(); s.serve(c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *socksForwarder) track(c net.Conn) {
	s.mu.Lock()
	s.conns[c] = true
	s.mu.Unlock()
}

func (s *socksForwarder) serve(c net.Conn) {
	defer c.Close()
	b := make([]byte, 262)
	if _, err := io.ReadFull(c, b[:2]); err != nil {
		return
	}
	if _, err := io.ReadFull(c, b[:b[1]]); err != nil {
		return
	}
	if _, err := c.Write([]byte{5, 0}); err != nil {
		return
	}
	if _, err := io.ReadFull(c, b[:4]); err != nil {
		return
	}
	var host string
	switch b[3] {
	case 1:
		if _, err := io.ReadFull(c, b[:4]); err != nil {
			return
		}
		host = net.IP(b[:4]).String()
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
		return
	}
	if _, err := io.ReadFull(c, b[:2]); err != nil {
		return
	}
	port := int(b[0])<<8 | int(b[1])
	up, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		_, _ = c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	s.track(up)
	defer up.Close()
	if _, err := c.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0}); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, c)
		up.Close()
		close(done)
	}()
	_, _ = io.Copy(c, up)
	c.Close()
	<-done
}

func (s *socksForwarder) URL(scheme string) string { return scheme + "://" + s.ln.Addr().String() }
