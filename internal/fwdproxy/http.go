package fwdproxy

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
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ViaHeader is the request header a Proxy with a Name sets on the
// absolute-form requests it forwards, so an origin can tell which proxy a
// request came through.
const ViaHeader = "X-Via-Proxy"

// dialTimeout bounds the proxy's dial to a target.
const dialTimeout = 5 * time.Second

// Options configure a Proxy; the zero value is a plain http:// proxy that
// demands no credentials.
type Options struct {
	// Name, when set, is put in ViaHeader on every forwarded absolute-form
	// request.
	Name string
	// TLS makes it an https:// proxy, with httptest's certificate.
	TLS bool
	// User and Pass, when User is set, are the Basic credentials the proxy
	// demands in Proxy-Authorization; without them it answers 407.
	User, Pass string
}

// Proxy is a real forwarding HTTP proxy on loopback: absolute-form
// requests are forwarded to their origin (without Proxy-Authorization and
// Proxy-Connection), CONNECT is tunnelled. It counts the connections
// clients open to it, the requests and CONNECTs it gets, records every
// Proxy-Authorization value it saw and the local addresses of its
// connections to targets.
type Proxy struct {
	opts     Options
	srv      *httptest.Server
	auth     string // wanted Proxy-Authorization; "" for none
	fwd      *http.Transport
	newConns atomic.Int64
	requests atomic.Int64
	connects atomic.Int64
	// answer502 and refuseConnect are the failure switches (Answer502,
	// RefuseConnect).
	answer502     atomic.Bool
	refuseConnect atomic.Bool

	mu       sync.Mutex
	closed   bool
	authSeen []string
	outAddr  map[string]bool
	tunnels  map[net.Conn]bool
	wg       sync.WaitGroup
	once     sync.Once
}

// Start runs a Proxy on a fresh 127.0.0.1 port; it is closed when the test
// ends. When forwarding to https origins in absolute form it trusts
// httptest's certificate.
func Start(t testing.TB, o Options) *Proxy {
	t.Helper()
	p := &Proxy{opts: o, outAddr: map[string]bool{}, tunnels: map[net.Conn]bool{}}
	if o.User != "" {
		p.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(o.User+":"+o.Pass))
	}
	p.fwd = &http.Transport{
		DialContext:     p.dialTarget,
		TLSClientConfig: &tls.Config{RootCAs: CertPool(t)},
	}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			p.newConns.Add(1)
		}
	}
	if o.TLS {
		p.srv.StartTLS()
	} else {
		p.srv.Start()
	}
	t.Cleanup(p.Close)
	return p
}

// CertPool trusts httptest's certificate (the same for every TLS test
// server: origins and https proxies).
func CertPool(t testing.TB) *x509.CertPool {
	t.Helper()
	s := httptest.NewUnstartedServer(http.NotFoundHandler())
	s.StartTLS()
	defer s.Close()
	pool := x509.NewCertPool()
	pool.AddCert(s.Certificate())
	return pool
}

// URL returns the proxy's URL (http:// or https://) with the credentials
// it demands, if any.
func (p *Proxy) URL() string { return p.URLWith(p.opts.User, p.opts.Pass) }

// URLWith returns the proxy's URL with the given credentials (none when
// user is "").
func (p *Proxy) URLWith(user, pass string) string {
	u, err := url.Parse(p.srv.URL)
	if err != nil {
		panic("fwdproxy: httptest gave an unparsable URL: " + err.Error())
	}
	if user != "" {
		u.User = url.UserPassword(user, pass)
	}
	return u.String()
}

// NewConns is how many connections clients have opened to the proxy.
func (p *Proxy) NewConns() int64 { return p.newConns.Load() }

// Requests is how many requests (absolute-form and CONNECT, authorised or
// not) the proxy got.
func (p *Proxy) Requests() int64 { return p.requests.Load() }

// Connects is how many authorised CONNECT requests the proxy got.
func (p *Proxy) Connects() int64 { return p.connects.Load() }

// AuthSeen returns the Proxy-Authorization value of every request, in
// order ("" where there was none).
func (p *Proxy) AuthSeen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.authSeen)
}

// Forwarded tells whether addr (an origin's view of a client) is one of
// this proxy's connections to a target.
func (p *Proxy) Forwarded(addr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.outAddr[addr]
}

// Answer502 makes the proxy answer every absolute-form request with its
// own 502, marked with Proxy-Status (on), or forward them again (off).
func (p *Proxy) Answer502(on bool) { p.answer502.Store(on) }

// RefuseConnect makes the proxy answer CONNECT with its own 502 (on), or
// tunnel again (off).
func (p *Proxy) RefuseConnect(on bool) { p.refuseConnect.Store(on) }

// CloseIdleConnections closes the proxy's idle keep-alive connections to
// origins (the ones it forwards absolute-form requests over), for tests
// that look for leaked goroutines while the proxy still runs.
func (p *Proxy) CloseIdleConnections() { p.fwd.CloseIdleConnections() }

// Close stops the proxy, ends its tunnels and waits for them; Start has
// it called when the test ends, and calling it again does nothing.
func (p *Proxy) Close() {
	p.once.Do(func() {
		p.srv.Close()
		p.mu.Lock()
		p.closed = true
		for c := range p.tunnels {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
		p.fwd.CloseIdleConnections()
	})
}

func (p *Proxy) dialTarget(ctx context.Context, network, addr string) (net.Conn, error) {
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

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	got := r.Header.Get("Proxy-Authorization")
	p.mu.Lock()
	p.authSeen = append(p.authSeen, got)
	p.mu.Unlock()
	if p.auth != "" && got != p.auth {
		w.Header().Set("Proxy-Authenticate", `Basic realm="fwdproxy"`)
		w.WriteHeader(http.StatusProxyAuthRequired)
		return
	}
	if r.Method == http.MethodConnect {
		p.connects.Add(1)
		if p.refuseConnect.Load() {
			http.Error(w, "fwdproxy: upstream unreachable", http.StatusBadGateway)
			return
		}
		p.tunnel(w, r)
		return
	}
	if p.answer502.Load() {
		w.Header().Set("Proxy-Status", `fwdproxy; error=destination_unavailable`)
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.Header.Del("Proxy-Authorization")
	out.Header.Del("Proxy-Connection")
	if p.opts.Name != "" {
		out.Header.Set(ViaHeader, p.opts.Name)
	}
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

// tunnel dials r.Host, hijacks the client's connection and copies both
// ways until either side ends; Close ends the tunnels still open.
func (p *Proxy) tunnel(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), dialTimeout)
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
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		up.Close()
		down.Close()
		return
	}
	p.tunnels[down] = true
	p.tunnels[up] = true
	p.wg.Add(2)
	p.mu.Unlock()
	if _, err := io.WriteString(down, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		up.Close()
		down.Close()
	}
	end := func() {
		up.Close()
		down.Close()
		p.mu.Lock()
		delete(p.tunnels, up)
		delete(p.tunnels, down)
		p.mu.Unlock()
	}
	go func() {
		defer p.wg.Done()
		_, _ = io.Copy(up, brw.Reader)
		end()
	}()
	go func() {
		defer p.wg.Done()
		_, _ = io.Copy(down, up)
		end()
	}()
}
