package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// MaxMessageBytes bounds Result.Message.
const MaxMessageBytes = 200

// Result is the outcome of one check.
type Result struct {
	// Class is FAILURE_CLASS_UNSPECIFIED on success, else why it failed.
	Class pb.FailureClass
	// StatusCode is the last HTTP status received (from the target, or from
	// the proxy when it refused a CONNECT), else 0.
	StatusCode int
	// Connect is the time to dial the proxy plus the proxy handshake (TLS to
	// an https proxy, CONNECT or SOCKS) plus, for https targets, the TLS
	// handshake with the target: everything until the request can be sent.
	Connect time.Duration
	// FirstByte is the time from the request being written to the first
	// response byte.
	FirstByte time.Duration
	// Total is the whole check.
	Total time.Duration
	// Message is a short cause for failures (at most MaxMessageBytes, no
	// credentials); empty on success.
	Message string
	// Canceled is set when the check was abandoned because its context was
	// canceled (not timed out); the result then says nothing about the
	// proxy and Class is OTHER.
	Canceled bool
	// Gated is set when the checker's gate (WithGate) was closed when the
	// check was about to connect: no connection was made, the result
	// says nothing about the proxy, and Class is OTHER.
	Gated bool
	// ExitIP is the proxy's exit address as Config.EchoURL saw it (the last
	// entry of its "origin"), set only when the check passed and the echo
	// answered well; else empty.
	ExitIP string
	// Anonymity is the proxy's anonymity level from the echo answer
	// (TRANSPARENT, ANONYMOUS or ELITE); UNSPECIFIED without ExitIP, or
	// when the echo answer has no headers object.
	Anonymity pb.Anonymity
	// Echo is the time the echo took (zero without one); it is not part of
	// Total.
	Echo time.Duration
	// EchoMessage says why an attempted echo gave no ExitIP or only a
	// partial answer (at most MaxMessageBytes, no credentials); empty
	// when it worked or was not attempted.
	EchoMessage string
}

// OK reports whether the check succeeded.
func (r Result) OK() bool { return r.Class == pb.FailureClass_FAILURE_CLASS_UNSPECIFIED }

// Latency returns the timings as the journal's Latency message.
func (r Result) Latency() *pb.Latency {
	return &pb.Latency{ConnectNs: int64(r.Connect), FirstByteNs: int64(r.FirstByte), TotalNs: int64(r.Total)}
}

// DialFunc dials a TCP connection, like net.Dialer.DialContext.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// Option configures a Checker.
type Option func(*options)

type options struct {
	dial     DialFunc
	resolver *net.Resolver
	gate     func() bool
}

// WithDialContext replaces the dialer used to reach proxies (for tests, or
// to bind a local address). The context carries the check's deadline.
func WithDialContext(f DialFunc) Option { return func(o *options) { o.dial = f } }

// WithResolver sets the resolver used for targets of socks4 and socks5
// proxies (which resolve locally); default net.DefaultResolver. Results are
// cached for resolveTTL.
func WithResolver(r *net.Resolver) Option { return func(o *options) { o.resolver = r } }

// WithGate makes every check ask gate right before it connects to the
// proxy: false ends the check there, without a connection, with
// Result.Gated set (Class OTHER). A cluster member passes its fence: a
// check that passed it, then waited (for the event loop, or in a process
// that was stopped) while the membership lapsed, opens no connection.
// gate is called on the checking goroutine or the event loop; it must be
// cheap and must not block.
func WithGate(gate func() bool) Option { return func(o *options) { o.gate = gate } }

// resolveTTL is how long a locally resolved target address is reused.
const resolveTTL = 30 * time.Second

// Checker runs checks with one compiled Config. It is safe for concurrent
// use; create it once and share it.
type Checker struct {
	cfg      Config
	t        target
	targetIP netip.Addr // set when the target host is an IP literal
	re       *regexp.Regexp
	expected []StatusRange
	noBody   bool
	wantBody bool
	reset    bool // close connections with a RST (Config.Close)

	dial     DialFunc
	resolver *net.Resolver
	ownDial  bool        // dial is the checker's own net.Dialer (no WithDialContext)
	gate     func() bool // WithGate; nil: none
	// source is Config.SourceIP (unmapped); sourceAddr is it as the
	// dialer's LocalAddr, nil without one (the Source of dial errors).
	source     netip.Addr
	sourceAddr net.Addr

	absPrefix     []byte // absolute-form request without the final CRLF
	absReq        []byte // absPrefix + CRLF
	originReq     []byte // complete origin-form request
	connectPrefix []byte // CONNECT request without the final CRLF
	connectReq    []byte // connectPrefix + CRLF

	tlsBase   *tls.Config // for https proxies (ServerName set per proxy)
	tlsTarget *tls.Config // for https targets

	resolved atomic.Pointer[resolvedTarget]

	echo *echoer // nil without Config.EchoURL
}

type resolvedTarget struct {
	v4, any netip.Addr
	expires time.Time
}

// NewChecker validates cfg, applies defaults and prepares everything that
// does not depend on the proxy (request bytes, regexp, TLS config). With
// Config.SourceIP it makes sure the address is one of this host's (it
// binds a UDP socket to it once). Errors wrap ErrBadConfig.
func NewChecker(cfg Config, opts ...Option) (*Checker, error) {
	cp, err := cfg.compile()
	if err != nil {
		return nil, err
	}
	o := options{resolver: net.DefaultResolver}
	for _, opt := range opts {
		opt(&o)
	}
	ownDial := o.dial == nil
	src := cp.cfg.SourceIP
	if src.IsValid() {
		if !ownDial {
			return nil, fmt.Errorf("%w: SourceIP %v with WithDialContext: that dialer replaces the one that binds SourceIP; bind in it (net.Dialer.LocalAddr) and leave SourceIP empty, or drop WithDialContext", ErrBadConfig, src)
		}
		if err := checkSourceIP(src); err != nil {
			return nil, err
		}
	}
	if ownDial {
		o.dial = sourceDialer(src).DialContext
	}
	c := &Checker{
		cfg: cp.cfg, t: cp.target, re: cp.re, expected: cp.cfg.ExpectedStatus,
		noBody: cp.cfg.Method == "HEAD", wantBody: cp.re != nil,
		reset: cp.cfg.Close.resets(cp.cfg.Mode),
		dial:  o.dial, resolver: o.resolver, ownDial: ownDial, gate: o.gate,
		source: src,
	}
	if src.IsValid() {
		c.sourceAddr = sourceTCPAddr(src)
	}
	if ip, err := netip.ParseAddr(c.t.host); err == nil {
		c.targetIP = ip.Unmap()
	}
	var hdrs strings.Builder
	hdrs.WriteString("Host: " + c.t.hostHdr + "\r\n")
	if !cp.hasUA {
		hdrs.WriteString("User-Agent: " + UserAgent + "\r\n")
	}
	for _, h := range cp.headers {
		hdrs.WriteString(h.Name + ": " + h.Value + "\r\n")
	}
	hdrs.WriteString("Connection: close\r\n")
	c.absPrefix = []byte(c.cfg.Method + " " + c.t.absolute + " HTTP/1.1\r\n" + hdrs.String())
	c.absReq = append(append([]byte(nil), c.absPrefix...), "\r\n"...)
	c.originReq = []byte(c.cfg.Method + " " + c.t.origin + " HTTP/1.1\r\n" + hdrs.String() + "\r\n")
	c.connectPrefix = []byte("CONNECT " + c.t.hostPort + " HTTP/1.1\r\nHost: " + c.t.hostPort + "\r\nUser-Agent: " + UserAgent + "\r\n")
	c.connectReq = append(append([]byte(nil), c.connectPrefix...), "\r\n"...)

	if cfg.TLSConfig != nil {
		c.tlsBase = cfg.TLSConfig.Clone()
	} else {
		c.tlsBase = &tls.Config{}
	}
	if c.tlsBase.ClientSessionCache == nil {
		c.tlsBase.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	}
	if c.tlsBase.CurvePreferences == nil {
		// A health check carries no secrets worth protecting against a
		// future quantum computer, and Go's default hybrid ML-KEM key
		// share roughly doubles the client's handshake CPU.
		c.tlsBase.CurvePreferences = []tls.CurveID{tls.X25519, tls.CurveP256}
	}
	c.tlsTarget = c.tlsBase.Clone()
	c.tlsTarget.ServerName = c.t.host
	if c.cfg.EchoURL != "" {
		if c.echo, err = newEchoer(c, cp, opts); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Config returns the effective configuration (defaults applied).
func (c *Checker) Config() Config { return c.cfg }

// state is the per-check scratch space, pooled.
type state struct {
	// deadline is the check's deadline (for work that takes a context).
	deadline time.Time
	rd       reader
	rbuf     [readBufSize]byte
	wbuf     []byte
	body     []byte
	// local is the local address of the last connection to a proxy.
	local netip.Addr
}

var statePool = sync.Pool{New: func() any { return &state{wbuf: make([]byte, 0, 512)} }}

func getState() *state {
	st := statePool.Get().(*state)
	st.rd = reader{buf: st.rbuf[:]}
	return st
}

func putState(st *state) {
	st.rd.src = nil
	if cap(st.wbuf) > 4096 {
		st.wbuf = make([]byte, 0, 512)
	}
	statePool.Put(st)
}

// failure is a classified check failure.
type failure struct {
	class pb.FailureClass
	msg   string
}

// errGated ends a check whose gate (WithGate) was closed: it did not
// connect.
var errGated = &failure{class: pb.FailureClass_FAILURE_CLASS_OTHER, msg: "not checked: the checker's gate was closed (a cluster member no longer sure of its membership)"}

func failuref(class pb.FailureClass, format string, args ...any) *failure {
	return &failure{class: class, msg: fmt.Sprintf(format, args...)}
}

// Check checks proxy once and returns the result; it never panics on
// network input and always returns within the configured Timeout (or the
// context's deadline, if earlier). Canceling ctx aborts the check at once.
// With Config.EchoURL, a passed check is followed by the echo request,
// within the same deadline.
func (c *Checker) Check(ctx context.Context, proxy ProxyURL) Result {
	start := time.Now()
	if proxy.IsZero() {
		return c.finish(ctx, proxy, start, Result{}, failuref(pb.FailureClass_FAILURE_CLASS_OTHER, "empty proxy URL"))
	}
	if ctx.Err() != nil {
		return c.finish(ctx, proxy, start, Result{}, &failure{class: pb.FailureClass_FAILURE_CLASS_OTHER, msg: "context done before the check"})
	}
	deadline := start.Add(c.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	st := getState()
	defer putState(st)
	var r Result
	f := c.attempt(ctx, st, proxy, start, deadline, &r)
	r = c.finish(ctx, proxy, start, r, f)
	if c.echo != nil && r.OK() {
		c.echo.run(ctx, st, proxy, deadline, &r)
	}
	return r
}

// attempt dials the proxy and, unless the mode is ModeTCPConnect, runs the
// exchange on the connection, which it closes before returning.
func (c *Checker) attempt(ctx context.Context, st *state, proxy ProxyURL, start, deadline time.Time, r *Result) *failure {
	st.rd = reader{buf: st.rbuf[:]}
	st.local = netip.Addr{}
	dctx := ctx
	cancel := context.CancelFunc(nil)
	if d, ok := ctx.Deadline(); !ok || !d.Equal(deadline) {
		dctx, cancel = context.WithDeadline(ctx, deadline)
	}
	if c.gate != nil && !c.gate() {
		if cancel != nil {
			cancel()
		}
		r.Gated = true
		return errGated
	}
	raw, err := c.dial(dctx, "tcp", proxy.HostPort())
	if cancel != nil {
		cancel()
	}
	if err != nil {
		return netFailure("connect to proxy", err)
	}
	if c.reset {
		setResetOnClose(raw)
	}
	defer raw.Close()
	if c.cfg.Mode == ModeTCPConnect {
		r.Connect = time.Since(start)
		return nil
	}
	if ta, ok := raw.LocalAddr().(*net.TCPAddr); ok {
		st.local = ta.AddrPort().Addr().Unmap()
	}
	_ = raw.SetDeadline(deadline)
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { raw.Close() })
		defer stop()
	}
	st.deadline = deadline
	return c.exchange(ctx, st, raw, proxy, start, r)
}

// finish fills Total, applies the latency ceiling and turns f into the
// result's class and message.
func (c *Checker) finish(ctx context.Context, p ProxyURL, start time.Time, r Result, f *failure) Result {
	r.Total = time.Since(start)
	if f == nil {
		if c.cfg.LatencyCeiling > 0 && r.Total > c.cfg.LatencyCeiling {
			f = failuref(pb.FailureClass_FAILURE_CLASS_TOO_SLOW, "check took %v, ceiling %v", r.Total.Round(time.Microsecond), c.cfg.LatencyCeiling)
		} else {
			return r
		}
	}
	if err := ctx.Err(); err != nil && f.class != pb.FailureClass_FAILURE_CLASS_TOO_SLOW {
		if errors.Is(err, context.DeadlineExceeded) {
			f = &failure{class: pb.FailureClass_FAILURE_CLASS_TIMEOUT, msg: "context deadline exceeded: " + f.msg}
		} else {
			r.Canceled = true
			f = &failure{class: pb.FailureClass_FAILURE_CLASS_OTHER, msg: "check canceled: " + f.msg}
		}
	}
	r.Class = f.class
	r.Message = sanitize(f.msg, p)
	return r
}

// sanitize removes the password and the Basic auth token (defence in
// depth: no code path puts them there) and bounds the message to
// MaxMessageBytes. User names are not replaced: they are not secret in
// most setups and replacing short ones would mangle ordinary words.
func sanitize(msg string, p ProxyURL) string {
	if p.HasCredentials() {
		if p.pass() != "" {
			msg = strings.ReplaceAll(msg, p.pass(), "REDACTED")
		}
		if p.basicAuth() != "" {
			msg = strings.ReplaceAll(msg, p.basicAuth(), "REDACTED")
		}
	}
	if len(msg) > MaxMessageBytes {
		cut := MaxMessageBytes - 3
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "..."
	}
	return msg
}

// exchange runs the proxy protocol and the HTTP request on an established
// connection.
func (c *Checker) exchange(ctx context.Context, st *state, raw net.Conn, p ProxyURL, start time.Time, r *Result) *failure {
	conn := raw
	st.rd.src = conn
	if p.scheme == SchemeHTTPS {
		cfg := c.tlsBase.Clone()
		cfg.ServerName = p.Host()
		tc := tls.Client(raw, cfg)
		if err := tc.Handshake(); err != nil {
			return tlsFailure("TLS handshake with proxy", err)
		}
		conn = tc
		st.rd.src = tc
	}
	absolute := false
	var f *failure
	switch p.scheme {
	case SchemeHTTP, SchemeHTTPS:
		if c.t.https {
			f = c.connect(st, conn, p, r)
		} else {
			absolute = true
		}
	case SchemeSOCKS5, SchemeSOCKS5H:
		f = c.socks5(ctx, st, conn, p)
	case SchemeSOCKS4, SchemeSOCKS4A:
		f = c.socks4(ctx, st, conn, p)
	default:
		f = failuref(pb.FailureClass_FAILURE_CLASS_OTHER, "unsupported proxy scheme %q", p.scheme)
	}
	if f != nil {
		return f
	}
	if c.t.https {
		if st.rd.buffered() > 0 {
			return protocolf("proxy sent unexpected data after opening the tunnel")
		}
		tc := tls.Client(conn, c.tlsTarget)
		if err := tc.Handshake(); err != nil {
			return tlsFailure("TLS handshake with target", err)
		}
		conn = tc
		st.rd.src = tc
	}
	r.Connect = time.Since(start)

	req := c.originReq
	if absolute {
		req = c.absReq
		if p.basicAuth() != "" {
			req = appendAuth(st.wbuf[:0], c.absPrefix, p.basicAuth())
			st.wbuf = req
		}
	}
	st.rd.first = time.Time{}
	_, err := conn.Write(req)
	clear(st.wbuf) // drop the Proxy-Authorization copy, if any
	if err != nil {
		return netFailure("write request", err)
	}
	wrote := time.Now()
	resp, f := readResponse(&st.rd, c.noBody, c.wantBody, &st.body)
	if !st.rd.first.IsZero() {
		r.FirstByte = st.rd.first.Sub(wrote)
	}
	r.StatusCode = resp.status
	if f != nil {
		return f
	}
	return c.judge(resp, p)
}

func appendAuth(dst, prefix []byte, basicAuth string) []byte {
	dst = append(dst, prefix...)
	dst = append(dst, "Proxy-Authorization: "...)
	dst = append(dst, basicAuth...)
	return append(dst, "\r\n\r\n"...)
}

// judge applies the expected status and body pattern.
func (c *Checker) judge(resp response, p ProxyURL) *failure {
	if !c.statusOK(resp.status) {
		if resp.status == 407 {
			return authFailure(p, "proxy answered 407 Proxy Authentication Required")
		}
		return failuref(pb.FailureClass_FAILURE_CLASS_BAD_STATUS, "status %d, want %s", resp.status, rangesString(c.expected))
	}
	if c.re != nil && !c.re.Match(resp.body) {
		return failuref(pb.FailureClass_FAILURE_CLASS_CONTENT_MISMATCH, "body (%d bytes read) does not match %q", len(resp.body), c.re.String())
	}
	return nil
}

func authFailure(p ProxyURL, msg string) *failure {
	if p.HasCredentials() {
		msg += " (credentials rejected)"
	} else {
		msg += " (no credentials in the proxy URL)"
	}
	return &failure{class: pb.FailureClass_FAILURE_CLASS_PROXY_AUTH_REQUIRED, msg: msg}
}

func (c *Checker) statusOK(code int) bool {
	for _, r := range c.expected {
		if r.Contains(code) {
			return true
		}
	}
	return false
}

func rangesString(rs []StatusRange) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

// connect opens a CONNECT tunnel through an HTTP proxy.
func (c *Checker) connect(st *state, conn net.Conn, p ProxyURL, r *Result) *failure {
	req := c.connectReq
	if p.basicAuth() != "" {
		req = appendAuth(st.wbuf[:0], c.connectPrefix, p.basicAuth())
		st.wbuf = req
	}
	_, err := conn.Write(req)
	clear(st.wbuf)
	if err != nil {
		return netFailure("write CONNECT", err)
	}
	resp, f := readResponse(&st.rd, true, false, &st.body)
	if f != nil {
		f.msg = "CONNECT: " + f.msg
		return f
	}
	if resp.status >= 200 && resp.status <= 299 {
		return nil
	}
	r.StatusCode = resp.status
	if resp.status == 407 {
		return authFailure(p, "proxy answered CONNECT with 407 Proxy Authentication Required")
	}
	return failuref(pb.FailureClass_FAILURE_CLASS_BAD_STATUS, "proxy refused CONNECT %s with status %d", c.t.hostPort, resp.status)
}

// resolveTarget resolves the target host locally (socks4/socks5), with a
// small cache, by the check's deadline.
func (c *Checker) resolveTarget(ctx context.Context, deadline time.Time, v4only bool) (netip.Addr, *failure) {
	if c.targetIP.IsValid() {
		if v4only && !c.targetIP.Is4() {
			return netip.Addr{}, failuref(pb.FailureClass_FAILURE_CLASS_OTHER, "socks4 cannot reach IPv6 target %s", c.t.host)
		}
		return c.targetIP, nil
	}
	now := time.Now()
	if rt := c.resolved.Load(); rt != nil && now.Before(rt.expires) {
		return pick(rt, v4only, c.t.host)
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	addrs, err := c.resolver.LookupNetIP(ctx, "ip", c.t.host)
	cancel()
	if err != nil {
		return netip.Addr{}, netFailure("resolve target", err)
	}
	rt := &resolvedTarget{expires: now.Add(resolveTTL)}
	for _, a := range addrs {
		a = a.Unmap()
		if !rt.any.IsValid() {
			rt.any = a
		}
		if a.Is4() && !rt.v4.IsValid() {
			rt.v4 = a
		}
	}
	if rt.v4.IsValid() {
		rt.any = rt.v4 // prefer IPv4
	}
	c.resolved.Store(rt)
	return pick(rt, v4only, c.t.host)
}

func pick(rt *resolvedTarget, v4only bool, host string) (netip.Addr, *failure) {
	if v4only {
		if !rt.v4.IsValid() {
			return netip.Addr{}, failuref(pb.FailureClass_FAILURE_CLASS_DNS, "target %s has no IPv4 address (needed by socks4)", host)
		}
		return rt.v4, nil
	}
	if !rt.any.IsValid() {
		return netip.Addr{}, failuref(pb.FailureClass_FAILURE_CLASS_DNS, "target %s has no address", host)
	}
	return rt.any, nil
}

// netFailure classifies a network error.
func netFailure(what string, err error) *failure {
	return &failure{class: classifyNet(err), msg: what + ": " + err.Error()}
}

func classifyNet(err error) pb.FailureClass {
	var dnsErr *net.DNSError
	var ne net.Error
	switch {
	case errors.As(err, &dnsErr):
		return pb.FailureClass_FAILURE_CLASS_DNS
	case errors.Is(err, syscall.ECONNREFUSED):
		return pb.FailureClass_FAILURE_CLASS_REFUSED
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return pb.FailureClass_FAILURE_CLASS_TIMEOUT
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return pb.FailureClass_FAILURE_CLASS_RESET
	}
	return pb.FailureClass_FAILURE_CLASS_OTHER
}

// tlsFailure classifies a TLS handshake error: timeouts and resets keep
// their class, everything else (bad certificate, alert, not TLS, EOF
// mid-handshake) is TLS.
func tlsFailure(what string, err error) *failure {
	class := classifyNet(err)
	switch class {
	case pb.FailureClass_FAILURE_CLASS_TIMEOUT:
	case pb.FailureClass_FAILURE_CLASS_RESET:
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			class = pb.FailureClass_FAILURE_CLASS_TLS
		}
	default:
		class = pb.FailureClass_FAILURE_CLASS_TLS
	}
	return &failure{class: class, msg: what + ": " + err.Error()}
}
