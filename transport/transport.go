package transport

import (
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/proxyhealth/proxyhealth/rotation"
)

// Rotator is what the transport needs from the engine; *proxyhealth.Engine
// implements it. Both methods must not block.
type Rotator interface {
	Pick(req rotation.Request) (rotation.Pick, error)
	ReportOutcome(o rotation.Outcome) error
}

var (
	// ErrClosed is returned by RoundTrip after Close.
	ErrClosed = errors.New("transport: closed")
	// ErrBadRequest wraps a request the transport cannot send: no URL, a
	// scheme other than http or https, no host.
	ErrBadRequest = errors.New("transport: bad request")
	// ErrAttemptTimeout is the cause of an attempt that ran past
	// Options.PerAttemptTimeout before the response headers arrived.
	ErrAttemptTimeout = errors.New("transport: attempt timed out")
)

// Transport is an http.RoundTripper that sends each request through a
// proxy picked by a Rotator (the engine) and reports every attempt's
// outcome back to it.
//
// http:// targets go through http and https proxies in absolute form;
// https:// targets through a CONNECT tunnel; every target goes through
// SOCKS proxies in a SOCKS tunnel (DialThrough). Each proxy has its own
// keep-alive connection pool (a *http.Transport), created at its first
// use and dropped, least recently used first, beyond Options.MaxProxies.
// HTTP/1.1 only.
//
// # Retries
//
// An attempt that fails at the connection level (the proxy refused,
// reset, timed out, failed TLS, answered CONNECT or the SOCKS handshake
// with an error, or, in absolute form, answered 407 or a 5xx it marks as
// its own) is retried on a proxy not tried yet, up to
// Options.MaxAttempts, when it is safe:
//   - nothing was sent yet (no connection was obtained) and the body can
//     be sent again (no body, http.NoBody or GetBody set); or
//   - the request is idempotent: GET, HEAD, OPTIONS, TRACE, PUT or DELETE,
//     or it carries an Idempotency-Key or X-Idempotency-Key header, and its
//     body can be sent again.
//
// A non-idempotent request whose body may have been sent is never
// retried. Failures that are not the proxy's (the caller's context ended,
// the request body failed to read, the target's TLS certificate was
// refused, the target name did not resolve locally, an invalid request)
// are neither retried nor reported.
//
// # Outcomes
//
// Every attempt that reached a verdict on the proxy is reported with
// Rotator.ReportOutcome, with its latency (dial to response headers): a
// connection-level failure with its class (refused, timeout, reset, tls,
// dns, proxy_auth_required, bad_status, protocol, other); any response
// from the target, whatever its status (a 404 or a 500 through a working
// proxy), as OK. A 5xx in absolute form counts as the proxy's own only
// when the proxy marks it: an RFC 9209 Proxy-Status header with an error,
// or an X-Squid-Error header.
//
// A Transport is safe for concurrent use. Close it when done.
type Transport struct {
	r      Rotator
	o      Options
	dialer Dialer

	mu     sync.Mutex
	pools  map[string]*proxyPool // by proxy ID
	lru    list.List             // of *proxyPool, most recently used first
	closed bool

	// connMu guards conns, every open connection of every pool (also of
	// dropped pools), so that Close reaches them all.
	connMu     sync.Mutex
	conns      map[*trackedConn]struct{}
	connClosed bool
}

// New returns a Transport over r with the options (Options.Validate;
// zero fields take their defaults).
func New(r Rotator, o Options) (*Transport, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: the Rotator is nil: pass the engine (*proxyhealth.Engine)", ErrBadOptions)
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	t := &Transport{r: r, o: o.withDefaults(), pools: make(map[string]*proxyPool), conns: make(map[*trackedConn]struct{})}
	t.dialer.ProxyTLSConfig = t.o.ProxyTLSConfig
	return t, nil
}

func (t *Transport) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// CloseIdleConnections closes the idle keep-alive connections of every
// proxy's pool.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	pools := make([]*proxyPool, 0, len(t.pools))
	for _, p := range t.pools {
		pools = append(pools, p)
	}
	t.mu.Unlock()
	for _, p := range pools {
		p.closeIdle()
	}
}

// Close closes every connection, idle or in use (requests in flight fail),
// and makes later requests fail with ErrClosed. It returns nil; closing
// twice is harmless.
func (t *Transport) Close() error {
	t.mu.Lock()
	t.closed = true
	pools := t.pools
	t.pools = map[string]*proxyPool{}
	t.lru.Init()
	t.mu.Unlock()
	for _, p := range pools {
		p.closeIdle()
	}
	t.connMu.Lock()
	t.connClosed = true
	conns := t.conns
	t.conns = nil
	t.connMu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
	return nil
}

// RoundTrip sends req through a picked proxy, retrying on other proxies
// as the type's documentation says. Errors name the method, the target
// (scheme and host only) and the proxy without credentials; a Pick
// failure wraps rotation.ErrNoProxy when no proxy is usable.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil || (req.URL.Scheme != "http" && req.URL.Scheme != "https") || req.URL.Host == "" {
		closeBody(req)
		what := "<nil>"
		if req.URL != nil {
			what = req.URL.Scheme + "://" + req.URL.Host
		}
		return nil, fmt.Errorf("%w: URL %s: want http:// or https:// and a host", ErrBadRequest, what)
	}
	rewindable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	idempotent := rewindable && isIdempotent(req)
	pr := rotation.Request{Strategy: t.o.Strategy, Source: t.o.Source, Scheme: t.o.Scheme, Tag: t.o.Tag}
	if t.o.Key != nil {
		pr.Key = t.o.Key(req)
	}
	var last error
	// pending is a retried attempt's response (the proxy's own 407 or
	// 5xx): the caller gets it when no other proxy is left to try.
	var pending *http.Response
	for attempt := 1; ; attempt++ {
		picked, err := t.r.Pick(pr)
		if err != nil {
			switch {
			case pending != nil:
				return pending, nil
			case last != nil:
				return nil, fmt.Errorf("%w; no other proxy to retry on: %w", last, err)
			}
			closeBody(req)
			return nil, fmt.Errorf("transport: %s %s: pick a proxy: %w", req.Method, targetOf(req), err)
		}
		if pending != nil {
			pending.Body.Close()
			pending = nil
		}
		areq := req
		if attempt > 1 {
			areq = req.Clone(req.Context())
			if req.Body != nil && req.Body != http.NoBody {
				if areq.Body, err = req.GetBody(); err != nil {
					return nil, fmt.Errorf("%w; no retry: GetBody failed: %w", last, err)
				}
			}
		}
		a := t.attempt(areq, picked)
		if a.report {
			_ = t.r.ReportOutcome(a.out)
		}
		retry := attempt < t.o.MaxAttempts && a.connFailure && ((!a.sent && rewindable) || idempotent)
		if a.err != nil {
			a.err = fmt.Errorf("transport: %s %s, attempt %d of %d, proxy %s: %w",
				req.Method, targetOf(req), attempt, t.o.MaxAttempts, redact(picked.URL), a.err)
		}
		if !retry {
			return a.resp, a.err
		}
		if a.resp != nil {
			pending = a.resp
			a.err = fmt.Errorf("transport: %s %s, attempt %d of %d, proxy %s answered %s (%s)",
				req.Method, targetOf(req), attempt, t.o.MaxAttempts, redact(picked.URL), a.resp.Status, a.out.Class)
		}
		last = a.err
		pr.Exclude = append(pr.Exclude, picked.ID)
	}
}

// result is one attempt's result.
type result struct {
	resp *http.Response
	err  error
	// report: out is a verdict on the proxy, to report.
	report bool
	out    rotation.Outcome
	// sent: a connection was obtained, so the request may have been sent.
	sent bool
	// connFailure: the proxy failed at the connection level; another
	// proxy may do better.
	connFailure bool
}

func (t *Transport) attempt(req *http.Request, picked rotation.Pick) result {
	pool, err := t.poolFor(picked)
	if err != nil {
		closeBody(req)
		return result{err: err}
	}
	rt, absolute := pool.tunnel, false
	if req.URL.Scheme == "http" && pool.plain != nil {
		rt, absolute = pool.plain, true
	}
	var body *bodyReader
	if req.Body != nil && req.Body != http.NoBody {
		body = &bodyReader{ReadCloser: req.Body}
	}
	parent := req.Context()
	ctx, cancel := context.WithCancelCause(parent)
	timer := time.AfterFunc(t.o.PerAttemptTimeout, func() { cancel(ErrAttemptTimeout) })
	var sent atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { sent.Store(true) }})
	areq := req.WithContext(ctx)
	if body != nil {
		areq.Body = body
	}
	start := time.Now()
	resp, err := rt.RoundTrip(areq)
	r := result{sent: sent.Load(), out: rotation.Outcome{ProxyID: picked.ID, Latency: time.Since(start)}}
	if fired := !timer.Stop(); fired && err == nil {
		resp.Body.Close()
		resp, err = nil, ErrAttemptTimeout
	}
	if err != nil {
		cancel(nil)
		r.err = err
		switch {
		case context.Cause(ctx) == ErrAttemptTimeout:
			r.err = fmt.Errorf("%w after %v: %w", ErrAttemptTimeout, t.o.PerAttemptTimeout, err)
			r.out.Class, r.report, r.connFailure = ClassTimeout, true, true
		case parent.Err() != nil, body != nil && body.failed.Load(), t.isClosed():
			// The caller gave up, the request body failed, or Close
			// closed the connection: not the proxy's doing.
		case !r.sent:
			if class, ok := dialFailure(err); ok {
				r.out.Class, r.report, r.connFailure = class, true, true
			}
		default:
			class := Classify(err)
			var ne net.Error
			if class == ClassOther && !errors.As(err, &ne) {
				class = ClassProtocol // the proxy answered something that is not HTTP
			}
			r.out.Class, r.report, r.connFailure = class, true, true
		}
		return r
	}
	r.report, r.out.OK = true, true
	if absolute {
		switch {
		case resp.StatusCode == http.StatusProxyAuthRequired:
			r.out.OK, r.out.Class, r.connFailure = false, ClassProxyAuthRequired, true
		case resp.StatusCode >= 500 && proxyGenerated(resp.Header):
			r.out.OK, r.out.Class, r.connFailure = false, ClassBadStatus, true
		}
	}
	resp.Body = wrapBody(resp.Body, cancel)
	r.resp = resp
	return r
}

// dialFailure classifies an error that happened before a connection was
// obtained. ok is false when it is not the proxy's: the target's name did
// not resolve locally, the target's TLS handshake was refused, or the
// request was invalid (net/http checks it before dialing).
func dialFailure(err error) (class string, ok bool) {
	var de *DialError
	if errors.As(err, &de) {
		if de.Op == opResolveTarget {
			return "", false
		}
		return de.Class, true
	}
	var recErr tls.RecordHeaderError
	if errors.As(err, &recErr) {
		return ClassProtocol, true // the tunnel carried something that is not TLS
	}
	var certErr *tls.CertificateVerificationError
	var alert tls.AlertError
	var ne net.Error
	switch {
	case errors.As(err, &certErr), errors.As(err, &alert):
		return "", false
	case errors.As(err, &ne), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return Classify(err), true
	}
	return "", false
}

// proxyGenerated tells a 5xx the proxy made itself (it says so) from the
// target's.
func proxyGenerated(h http.Header) bool {
	if h.Get("X-Squid-Error") != "" {
		return true
	}
	for _, v := range h.Values("Proxy-Status") {
		if strings.Contains(v, "error=") {
			return true
		}
	}
	return false
}

// isIdempotent is net/http's rule (Request.isReplayable) plus PUT and
// DELETE (RFC 9110 §9.2.2); the caller checks the body can be resent.
func isIdempotent(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	_, a := req.Header["Idempotency-Key"]
	_, b := req.Header["X-Idempotency-Key"]
	return a || b
}

// targetOf is the request's scheme://host, for errors (no path or query:
// they may carry secrets).
func targetOf(req *http.Request) string { return req.URL.Scheme + "://" + req.URL.Host }

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// bodyReader notes whether the request body failed to read.
type bodyReader struct {
	io.ReadCloser
	failed atomic.Bool
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.failed.Store(true)
	}
	return n, err
}

// wrapBody ends the attempt's context when the response body is closed.
func wrapBody(rc io.ReadCloser, cancel context.CancelCauseFunc) io.ReadCloser {
	if rwc, ok := rc.(io.ReadWriteCloser); ok { // 101 Switching Protocols
		return &rwcBody{ReadWriteCloser: rwc, cancel: cancel}
	}
	return &respBody{ReadCloser: rc, cancel: cancel}
}

type respBody struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (b *respBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel(nil)
	return err
}

type rwcBody struct {
	io.ReadWriteCloser
	cancel context.CancelCauseFunc
}

func (b *rwcBody) Close() error {
	err := b.ReadWriteCloser.Close()
	b.cancel(nil)
	return err
}

// proxyPool is one proxy's connections.
type proxyPool struct {
	id  string
	url string // the full URL, to notice a changed member
	// urlPtr is the last URL pointer seen for the member (never
	// dereferenced after the pool is created; only compared).
	urlPtr *url.URL
	elem   *list.Element
	plain  *http.Transport // http:// targets through http(s) proxies, absolute form; nil for SOCKS
	// tunnel: https:// targets through http(s) proxies (CONNECT), every
	// target through SOCKS.
	tunnel *http.Transport
}

// poolFor returns the picked proxy's pool, creating it at first use and
// dropping the least recently used one beyond MaxProxies.
func (t *Transport) poolFor(picked rotation.Pick) (*proxyPool, error) {
	if picked.URL == nil {
		return nil, fmt.Errorf("%w: proxy %s was picked without a URL", ErrBadProxyURL, picked.ID)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	p := t.pools[picked.ID]
	// The engine hands out a member's URL by pointer: the same pointer is
	// the same URL, without formatting it.
	if p != nil && p.urlPtr != picked.URL {
		if full := picked.URL.String(); full != p.url {
			t.dropLocked(p)
			p = nil
		} else {
			p.urlPtr = picked.URL
		}
	}
	if p != nil {
		t.lru.MoveToFront(p.elem)
		return p, nil
	}
	p, err := t.newPool(picked.ID, picked.URL)
	if err != nil {
		return nil, err
	}
	p.url, p.urlPtr = picked.URL.String(), picked.URL
	t.pools[picked.ID] = p
	p.elem = t.lru.PushFront(p)
	for len(t.pools) > t.o.MaxProxies {
		t.dropLocked(t.lru.Back().Value.(*proxyPool))
	}
	return p, nil
}

// dropLocked forgets a pool and closes its idle connections; the ones in
// use go idle when their responses are done and close after
// IdleConnTimeout (or at Close).
func (t *Transport) dropLocked(p *proxyPool) {
	delete(t.pools, p.id)
	t.lru.Remove(p.elem)
	p.closeIdle()
}

func (t *Transport) newPool(id string, u *url.URL) (*proxyPool, error) {
	spec, err := parseProxy(u)
	if err != nil {
		return nil, err
	}
	proxyURL := *u // not shared with the caller
	p := &proxyPool{id: id}
	p.tunnel = t.httpTransport(func(ctx context.Context, network, addr string) (net.Conn, error) {
		return t.track(t.dialer.DialThrough(ctx, &proxyURL, network, addr))
	})
	if spec.scheme == "http" || spec.scheme == "https" {
		// net/http writes absolute-form requests with Proxy-Authorization
		// from this URL's userinfo to the connection DialContext returns,
		// which is already TLS for an https proxy.
		plainURL := proxyURL
		plainURL.Scheme = "http"
		p.plain = t.httpTransport(func(ctx context.Context, _, _ string) (net.Conn, error) {
			return t.track(t.dialer.dialProxy(ctx, spec))
		})
		p.plain.Proxy = http.ProxyURL(&plainURL)
	}
	return p, nil
}

func (t *Transport) httpTransport(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Transport {
	tr := &http.Transport{
		DialContext:           dial,
		MaxIdleConnsPerHost:   t.o.MaxIdleConnsPerProxy,
		MaxConnsPerHost:       t.o.MaxConnsPerProxy,
		IdleConnTimeout:       t.o.IdleConnTimeout,
		ExpectContinueTimeout: time.Second,
	}
	if t.o.TLSClientConfig != nil {
		tr.TLSClientConfig = t.o.TLSClientConfig.Clone()
	}
	return tr
}

func (p *proxyPool) closeIdle() {
	if p.plain != nil {
		p.plain.CloseIdleConnections()
	}
	p.tunnel.CloseIdleConnections()
}

// track registers a new connection so that Close can reach it.
func (t *Transport) track(c net.Conn, err error) (net.Conn, error) {
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, t: t}
	t.connMu.Lock()
	defer t.connMu.Unlock()
	if t.connClosed {
		c.Close()
		return nil, ErrClosed
	}
	t.conns[tc] = struct{}{}
	return tc, nil
}

// trackedConn is a connection of a pool.
type trackedConn struct {
	net.Conn
	t *Transport
}

func (c *trackedConn) Close() error {
	c.t.connMu.Lock()
	delete(c.t.conns, c) // a no-op on the nil map after Close
	c.t.connMu.Unlock()
	return c.Conn.Close()
}
