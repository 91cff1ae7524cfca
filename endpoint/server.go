package endpoint

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proxyhealth/proxyhealth/rotation"
	"github.com/proxyhealth/proxyhealth/transport"
)

// Rotator is what the endpoint needs from the engine: a pick per request
// or tunnel, and the outcome of each attempt. *proxyhealth.Engine
// implements it. Both methods must not block.
type Rotator interface {
	Pick(req rotation.Request) (rotation.Pick, error)
	ReportOutcome(o rotation.Outcome) error
}

// Stats are a server's counters since New. Every client request (an
// absolute-form HTTP request, a CONNECT, a SOCKS CONNECT) ends in exactly
// one of OK, UpstreamFailed, NoProxy, AuthFailed or BadRequest.
type Stats struct {
	// ActiveConns is the number of client connections open now; Conns the
	// number accepted.
	ActiveConns int64
	Conns       uint64
	// OK counts requests forwarded (any status from the target) and
	// tunnels established.
	OK uint64
	// UpstreamFailed counts requests answered 502 (or a SOCKS failure)
	// because every attempted upstream failed.
	UpstreamFailed uint64
	// NoProxy counts requests answered 503 (or a SOCKS failure) because
	// no upstream was usable.
	NoProxy uint64
	// AuthFailed counts clients refused for missing or bad credentials
	// (407, SOCKS auth failure).
	AuthFailed uint64
	// BadRequest counts malformed or unsupported requests.
	BadRequest uint64
	// Retries counts attempts on another upstream after a failed one.
	Retries uint64
	// BytesUp counts bytes from clients to upstreams (request bodies and
	// tunnel traffic), BytesDown the bytes back (response bodies and
	// tunnel traffic); request and response heads are not counted.
	BytesUp, BytesDown uint64
}

type counters struct {
	active                                     atomic.Int64
	conns, ok, upFailed, noProxy, auth, badReq atomic.Uint64
	retries, bytesUp, bytesDown                atomic.Uint64
}

// Server is the rotating forward-proxy endpoint: an HTTP forward proxy
// (absolute-form requests and CONNECT) and a SOCKS5 (and SOCKS4/4a) proxy
// on one port, sending each request or tunnel through an upstream the
// Rotator picks. Create it with New; it serves one listener at a time.
type Server struct {
	r      Rotator
	cfg    Config
	log    *slog.Logger
	dialer *transport.Dialer

	ctx    context.Context // cancelled by Close: aborts dials and forwards
	cancel context.CancelFunc

	httpSrv *http.Server
	httpLn  *chanListener
	rt      *http.Transport // http, https, socks5 and socks5h upstreams
	rtNoKA  *http.Transport // socks4 and socks4a upstreams, dialed per request
	upPool  *upstreamPool   // the lean path's connections to http upstreams

	mu        sync.Mutex
	ln        net.Listener
	closed    bool
	conns     map[net.Conn]struct{} // client and upstream tunnel connections
	wg        sync.WaitGroup        // goroutines and tunnels Close waits for
	closeOnce sync.Once

	st counters
}

type upstreamKey struct{}

var errNoUpstream = errors.New("endpoint: no upstream in the request context")

// New returns a server for r configured by cfg (see Config.Validate). It
// does not listen yet: call Serve or ListenAndServe.
func New(r Rotator, cfg Config) (*Server, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: rotator is nil; pass the engine (or another Rotator)", ErrBadConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		r: r, cfg: cfg, log: cfg.Logger, dialer: cfg.dialer(),
		ctx: ctx, cancel: cancel,
		conns: make(map[net.Conn]struct{}),
	}
	s.httpLn = newChanListener()
	s.httpSrv = &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: cfg.HandshakeTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
		MaxHeaderBytes:    64 << 10,
	}
	netDialer := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	// The lean path's connections live at most upstreamIdleTime idle and
	// a dead one is replaced on use: no TCP keep-alive probes (which cost
	// four setsockopt calls per connection).
	s.upPool = newUpstreamPool(&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: -1})
	var tlsCfg = cfg.UpstreamTLS
	if tlsCfg != nil {
		tlsCfg = tlsCfg.Clone()
	}
	s.rt = &http.Transport{
		Proxy: func(req *http.Request) (*url.URL, error) {
			if u, ok := req.Context().Value(upstreamKey{}).(*url.URL); ok {
				return u, nil
			}
			return nil, errNoUpstream
		},
		DialContext:           netDialer.DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   cfg.DialTimeout,
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true, // a proxy passes the client's encoding through
	}
	s.rtNoKA = &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			u, ok := ctx.Value(upstreamKey{}).(*url.URL)
			if !ok {
				return nil, errNoUpstream
			}
			dctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
			defer cancel()
			return s.dialer.DialThrough(dctx, u, network, addr)
		},
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   cfg.DialTimeout,
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
		DisableKeepAlives:     true,
		DisableCompression:    true,
	}
	return s, nil
}

// ListenAndServe listens on Config.Addr and serves until ctx is done or
// the server is closed; see Serve.
func (s *Server) ListenAndServe(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("endpoint: listen on %s (addr): %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve accepts client connections on ln until ctx is done or Close or
// Shutdown is called, then returns nil (after closing everything, like
// Close, when ctx ended it). It refuses (ErrBadConfig) a listener off
// loopback when no Users are configured, and returns ErrClosed on a closed
// server. Serve closes ln when it returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if len(s.cfg.Users) == 0 && !addrIsLoopback(ln.Addr()) {
		ln.Close()
		return offLoopbackError(ln.Addr().String())
	}
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		ln.Close()
		return ErrClosed
	case s.ln != nil:
		s.mu.Unlock()
		ln.Close()
		return fmt.Errorf("endpoint: Serve called twice; the server already serves %s", s.ln.Addr())
	}
	s.ln = ln
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		_ = s.httpSrv.Serve(s.httpLn)
	}()
	stop := context.AfterFunc(ctx, func() { _ = s.Close() })
	defer stop()
	s.log.Info("endpoint: serving", "addr", ln.Addr().String(), "auth", len(s.cfg.Users) > 0)
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("endpoint: accept failed; retrying", "err", err, "backoff", backoff)
				t := time.NewTimer(backoff)
				select {
				case <-t.C:
				case <-s.ctx.Done():
					t.Stop()
				}
				continue
			}
			_ = s.Close()
			return fmt.Errorf("endpoint: accept on %s: %w", ln.Addr(), err)
		}
		backoff = 0
		tc := s.track(c, true)
		if tc == nil {
			c.Close()
			continue
		}
		if !s.goTracked(func() { s.handleConn(tc) }) {
			tc.Close()
		}
	}
}

// isTemporary tells the accept errors worth retrying (EMFILE, ENFILE,
// ECONNABORTED: the ones net/http retries).
func isTemporary(err error) bool {
	type temporary interface{ Temporary() bool }
	var t temporary
	return errors.As(err, &t) && t.Temporary()
}

// Addr returns the address the server listens on, or nil before Serve.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		ActiveConns:    s.st.active.Load(),
		Conns:          s.st.conns.Load(),
		OK:             s.st.ok.Load(),
		UpstreamFailed: s.st.upFailed.Load(),
		NoProxy:        s.st.noProxy.Load(),
		AuthFailed:     s.st.auth.Load(),
		BadRequest:     s.st.badReq.Load(),
		Retries:        s.st.retries.Load(),
		BytesUp:        s.st.bytesUp.Load(),
		BytesDown:      s.st.bytesDown.Load(),
	}
}

// Close stops the server at once: it closes the listener and every client
// and upstream connection, aborts dials and forwards in flight, and
// returns when every goroutine the server started has ended. It is safe
// to call more than once and concurrently.
func (s *Server) Close() error {
	s.stopAccepting()
	s.closeOnce.Do(func() {
		s.cancel()
		_ = s.httpSrv.Close()
		s.closeConns()
		s.wg.Wait()
		s.closeConns() // none expected; for certainty
		s.rt.CloseIdleConnections()
		s.rtNoKA.CloseIdleConnections()
		s.upPool.close()
	})
	return nil
}

// Shutdown stops the server gracefully: it stops accepting, lets requests
// in flight finish and keep-alive connections go idle, waits for open
// tunnels to end, and then closes what is left like Close. When ctx ends
// first, it closes everything at once and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopAccepting()
	err := s.httpSrv.Shutdown(ctx)
	if err == nil {
		rest := make(chan struct{})
		go func() { s.wg.Wait(); close(rest) }()
		select {
		case <-rest:
		case <-ctx.Done():
			err = ctx.Err()
		}
		defer func() { <-rest }() // Close below ends what is left
	}
	_ = s.Close()
	return err
}

// stopAccepting marks the server closed (no new connections, goroutines or
// tunnels) and closes its listeners.
func (s *Server) stopAccepting() {
	s.mu.Lock()
	s.closed = true
	if s.ln != nil {
		s.ln.Close()
	}
	s.mu.Unlock()
	s.httpLn.Close()
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// goTracked runs f on a goroutine that Close waits for, unless the server
// is closed (then it returns false and does not run f).
func (s *Server) goTracked(f func()) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// enter registers work on the calling goroutine that Close must wait for
// (a tunnel); it returns false when the server is closed.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// track registers a connection so that Close closes it; the returned
// wrapper removes it when closed. It returns nil when the server is closed.
func (s *Server) track(c net.Conn, client bool) *trackedConn {
	tc := &trackedConn{Conn: c, s: s, client: client}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.conns[tc] = struct{}{}
	if client {
		s.st.conns.Add(1)
		s.st.active.Add(1)
	}
	return tc
}

func (s *Server) closeConns() {
	s.mu.Lock()
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// trackedConn is a connection Close knows about. A client connection may
// carry bytes read while sniffing the protocol, returned first by Read.
type trackedConn struct {
	net.Conn
	s      *Server
	client bool
	prefix []byte
	once   sync.Once
}

// Read returns the sniffed bytes first, then reads the connection.
func (c *trackedConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// Close closes the connection and forgets it.
func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
		if c.client {
			c.s.st.active.Add(-1)
		}
	})
	return err
}

// CloseWrite half-closes a TCP connection (a tunnel's end of stream).
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// handleConn tells the protocol by the first byte: 0x05 SOCKS5, 0x04
// SOCKS4, anything else HTTP (handed to the HTTP server).
func (s *Server) handleConn(c *trackedConn) {
	_ = c.SetReadDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	var first [1]byte
	if _, err := c.Conn.Read(first[:]); err != nil {
		c.Close()
		return
	}
	switch first[0] {
	case 5:
		s.socks5(c)
	case 4:
		s.socks4(c)
	default:
		_ = c.SetReadDeadline(time.Time{})
		c.prefix = []byte{first[0]}
		if !s.httpLn.push(c) {
			c.Close()
		}
	}
}

// chanListener hands sniffed HTTP connections to the HTTP server.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

// Accept returns the next HTTP connection.
func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept.
func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr is a placeholder: the real address is the server's listener's.
func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{} }
