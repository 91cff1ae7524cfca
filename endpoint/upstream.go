package endpoint

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"syscall"
	"time"
)

// The lean path: an idempotent request without a body, to an http://
// target through an http:// upstream, is written in absolute form by the
// endpoint itself over a kept-alive connection to the upstream, and the
// response read on the calling goroutine (http.ReadResponse). That is
// most of a forward proxy's traffic; http.Transport, which spends three
// goroutines and their hand-offs on each new connection, keeps the rest
// (bodies, https targets, https and SOCKS upstreams).

// Limits of the upstream connection pool.
const (
	maxIdlePerUpstream = 64
	upstreamIdleTime   = 90 * time.Second
)

// leanEligible tells whether out may take the lean path through up.
func leanEligible(out *http.Request, up *url.URL, hasBody bool) bool {
	if hasBody || up.Scheme != "http" || out.URL.Scheme != "http" {
		return false
	}
	switch out.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// upConn is a connection to an upstream proxy. It holds a read buffer
// only during an exchange (an idle connection has nothing buffered), so
// that the buffers, from pools, are not allocated per connection.
type upConn struct {
	net.Conn
	br     *bufio.Reader // during an exchange
	key    string        // the upstream's host:port
	idleAt time.Time     // when it went back to the pool
}

var (
	upReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	upWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

// releaseReader returns c's read buffer to its pool.
func (c *upConn) releaseReader() {
	if c.br != nil {
		c.br.Reset(nil)
		upReaders.Put(c.br)
		c.br = nil
	}
}

// upstreamPool keeps idle connections to upstream proxies, newest first
// out, at most maxIdlePerUpstream per upstream, none idle longer than
// upstreamIdleTime (swept when connections come back).
type upstreamPool struct {
	dialer *net.Dialer

	mu        sync.Mutex
	idle      map[string][]*upConn
	lastSweep time.Time
	closed    bool
}

func newUpstreamPool(d *net.Dialer) *upstreamPool {
	return &upstreamPool{dialer: d, idle: make(map[string][]*upConn), lastSweep: time.Now()}
}

// get returns an idle connection to key, or nil.
func (p *upstreamPool) get(key string) *upConn {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[key]
	for len(list) > 0 {
		c := list[len(list)-1]
		list[len(list)-1] = nil
		list = list[:len(list)-1]
		if now.Sub(c.idleAt) < upstreamIdleTime {
			p.idle[key] = list
			return c
		}
		c.Close()
	}
	delete(p.idle, key)
	return nil
}

// dial opens a new connection to key.
func (p *upstreamPool) dial(ctx context.Context, key string) (*upConn, error) {
	c, err := p.dialer.DialContext(ctx, "tcp", key)
	if err != nil {
		return nil, err
	}
	return &upConn{Conn: c, key: key}, nil
}

// put keeps c for reuse, or closes it when the pool is full or closed.
func (p *upstreamPool) put(c *upConn) {
	now := time.Now()
	c.idleAt = now
	p.mu.Lock()
	if p.closed || len(p.idle[c.key]) >= maxIdlePerUpstream {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.idle[c.key] = append(p.idle[c.key], c)
	var stale []*upConn
	if now.Sub(p.lastSweep) > upstreamIdleTime/4 {
		p.lastSweep = now
		for k, list := range p.idle {
			keep := list[:0]
			for _, ic := range list {
				if now.Sub(ic.idleAt) < upstreamIdleTime {
					keep = append(keep, ic)
				} else {
					stale = append(stale, ic)
				}
			}
			clear(list[len(keep):])
			if len(keep) == 0 {
				delete(p.idle, k)
			} else {
				p.idle[k] = keep
			}
		}
	}
	p.mu.Unlock()
	for _, ic := range stale {
		ic.Close()
	}
}

// close closes the idle connections and makes put close the others.
func (p *upstreamPool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = make(map[string][]*upConn)
	p.mu.Unlock()
	for _, list := range idle {
		for _, c := range list {
			c.Close()
		}
	}
}

// errUnexpected1xx: the upstream answered 101 to a request that asked for
// no upgrade (the endpoint never forwards Upgrade).
var errUnexpected1xx = errors.New("endpoint: upstream answered 101 Switching Protocols without an upgrade request")

// leanRoundTrip sends out (idempotent, no body, http:// target) through
// the http:// upstream u and returns the response head; its body returns
// the connection to the pool when read to the end and closed. A kept-alive
// connection that turns out closed by the upstream (end of stream or
// reset, typically its keep-alive timeout) is dropped and the request
// sent on the next idle one or a new one: the request is idempotent and
// such a failure is not the upstream's. reached tells whether a
// connection to the upstream was obtained.
func (s *Server) leanRoundTrip(ctx context.Context, out *http.Request, u *url.URL) (*http.Response, bool, error) {
	key := u.Host
	if u.Port() == "" {
		key = net.JoinHostPort(u.Hostname(), "80")
	}
	auth := ""
	if u.User != nil {
		pass, _ := u.User.Password()
		auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pass))
	}
	reached := false
	for {
		c := s.upPool.get(key)
		reused := c != nil
		if !reused {
			var err error
			if c, err = s.upPool.dial(ctx, key); err != nil { // the dialer's Timeout is DialTimeout
				return nil, reached, err
			}
		}
		reached = true
		resp, err := s.exchange(ctx, c, out, auth)
		if err == nil {
			return resp, true, nil
		}
		c.releaseReader()
		c.Close()
		if reused && ctx.Err() == nil && staleConnError(err) {
			continue // the upstream closed it while idle: nothing was answered
		}
		return nil, true, err
	}
}

// staleConnError tells the errors of a kept-alive connection the upstream
// closed: end of stream or reset, no timeout.
func staleConnError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isConnReset(err)
}

func isConnReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED)
}

// exchange writes out on c and reads the response head within
// ResponseHeaderTimeout; ctx ending (the client leaving, Close) aborts
// the exchange and the body's reading.
func (s *Server) exchange(ctx context.Context, c *upConn, out *http.Request, auth string) (*http.Response, error) {
	_ = c.SetDeadline(time.Now().Add(s.cfg.ResponseHeaderTimeout))
	if auth != "" {
		out.Header["Proxy-Authorization"] = []string{auth}
		defer delete(out.Header, "Proxy-Authorization")
	}
	bw := upWriters.Get().(*bufio.Writer)
	bw.Reset(c.Conn)
	err := out.WriteProxy(bw)
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	upWriters.Put(bw)
	if err != nil {
		return nil, err
	}
	c.br = upReaders.Get().(*bufio.Reader)
	c.br.Reset(c.Conn)
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	var resp *http.Response
	for {
		resp, err = http.ReadResponse(c.br, out)
		if err != nil {
			stop()
			return nil, err
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			stop()
			resp.Body.Close()
			return nil, errUnexpected1xx
		}
		if resp.StatusCode >= 200 {
			break
		}
		// 1xx interim responses (100 Continue, 103 Early Hints) are
		// dropped, as http.Transport does.
	}
	_ = c.SetDeadline(time.Time{})
	resp.Body = &leanBody{rc: resp.Body, c: c, s: s, stop: stop, reuse: !resp.Close && !out.Close}
	return resp, nil
}

// leanBody is a response body on the lean path: closed after the end of
// the body, it gives the connection back to the pool (unless either side
// asked to close it or the exchange was aborted); closed before, it
// closes the connection rather than read the rest.
type leanBody struct {
	rc    io.ReadCloser
	c     *upConn
	s     *Server
	stop  func() bool
	reuse bool
	eof   bool
	done  bool
}

func (b *leanBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *leanBody) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	live := b.stop() // false: the exchange was aborted, the deadline set
	if !b.eof || !b.reuse || !live {
		b.c.Close()
		_ = b.rc.Close()
		b.c.releaseReader()
		return nil
	}
	err := b.rc.Close()
	extra := b.c.br.Buffered() > 0 // the upstream sent more than the response
	b.c.releaseReader()
	if err != nil || extra {
		b.c.Close()
		return nil
	}
	b.s.upPool.put(b.c)
	return nil
}
