package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/proxyhealth/proxyhealth/probe"
)

// The failure classes a DialError (and an Outcome) carries: the names of
// the probe's failure classes (proxyhealth.ClassName).
const (
	ClassRefused           = "refused"
	ClassTimeout           = "timeout"
	ClassReset             = "reset"
	ClassTLS               = "tls"
	ClassDNS               = "dns"
	ClassProxyAuthRequired = "proxy_auth_required"
	ClassBadStatus         = "bad_status"
	ClassProtocol          = "protocol"
	ClassOther             = "other"
)

// ErrBadProxyURL is wrapped by DialThrough's errors when the proxy URL
// cannot be used: nil, an unknown scheme, no host, a bad port.
var ErrBadProxyURL = errors.New("transport: bad proxy URL")

// ErrBadAddress is wrapped by DialThrough's errors when the target network
// or address cannot be dialed through the proxy (not TCP, not host:port, an
// IPv6 target through SOCKS4).
var ErrBadAddress = errors.New("transport: bad target address")

// DialError is a failure to open a connection through a proxy. Class is
// one of the Class* constants; Proxy is the proxy's URL without
// credentials (scheme://host:port); Op says which step failed. Its message
// never contains the proxy's credentials.
type DialError struct {
	// Class is the failure class (ClassRefused, ClassTimeout, …).
	Class string
	// Proxy is the proxy as scheme://host:port, never with credentials.
	Proxy string
	// Op is the step that failed ("dial proxy", "CONNECT host:port",
	// "SOCKS5 authentication", …). "resolve target" is a failure to
	// resolve the target's name locally (socks5://, socks4://), which is
	// not the proxy's.
	Op string
	// Err is the cause.
	Err error
}

// Error returns "transport: <op> via <proxy>: <cause> (class <class>)".
func (e *DialError) Error() string {
	return "transport: " + e.Op + " via " + e.Proxy + ": " + e.Err.Error() + " (class " + e.Class + ")"
}

// Unwrap returns the cause.
func (e *DialError) Unwrap() error { return e.Err }

// Classify names the failure class of an error from DialThrough or from a
// request through a proxy: a DialError's Class, else the class of the
// network error ("dns", "refused", "timeout", "reset", "tls"), else
// "other". It returns "" for nil.
func Classify(err error) string {
	if err == nil {
		return ""
	}
	var de *DialError
	if errors.As(err, &de) {
		return de.Class
	}
	return classifyNet(err)
}

func classifyNet(err error) string {
	var dnsErr *net.DNSError
	var ne net.Error
	var recErr tls.RecordHeaderError
	var certErr *tls.CertificateVerificationError
	var alert tls.AlertError
	switch {
	case errors.As(err, &dnsErr):
		return ClassDNS
	case errors.Is(err, syscall.ECONNREFUSED):
		return ClassRefused
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return ClassTimeout
	case errors.As(err, &recErr), errors.As(err, &certErr), errors.As(err, &alert):
		return ClassTLS
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, net.ErrClosed): // net/http closed it after the peer hung up
		return ClassReset
	}
	return ClassOther
}

// Dialer opens connections through upstream proxies. The zero value is
// ready to use: it dials proxies with a net.Dialer, trusts the system
// roots for https:// proxies and resolves names with net.DefaultResolver.
// A Dialer is safe for concurrent use; do not change its fields while it
// is in use.
type Dialer struct {
	// DialContext dials the proxy itself; nil means a net.Dialer.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// ProxyTLSConfig is the TLS configuration for https:// proxies; nil
	// means the system roots. ServerName defaults to the proxy's host.
	ProxyTLSConfig *tls.Config
	// Resolver resolves target names for socks5:// and socks4:// proxies
	// (the others let the proxy resolve them); nil means
	// net.DefaultResolver.
	Resolver *net.Resolver
}

var defaultDialer Dialer

// DialThrough opens a TCP connection to addr (host:port) through the
// proxy with a zero Dialer; see Dialer.DialThrough.
func DialThrough(ctx context.Context, proxy *url.URL, network, addr string) (net.Conn, error) {
	return defaultDialer.DialThrough(ctx, proxy, network, addr)
}

// DialThrough opens a TCP connection to addr (host:port) through the
// proxy and returns it once the tunnel is up. Schemes: http (CONNECT),
// https (TLS to the proxy, then CONNECT), socks5 and socks4 (the target
// name is resolved here), socks5h and socks4a (the proxy resolves it).
// Credentials come from the URL's userinfo: Proxy-Authorization Basic for
// http(s), RFC 1929 username/password for SOCKS5, the user ID for SOCKS4.
// network must be "tcp", "tcp4" or "tcp6".
//
// ctx bounds the whole setup (dial and handshake); cancelling it later
// does not affect the returned connection. Failures are *DialError
// (Classify names their class) or wrap ErrBadProxyURL / ErrBadAddress;
// none of them contains the proxy's credentials.
func (d *Dialer) DialThrough(ctx context.Context, proxy *url.URL, network, addr string) (net.Conn, error) {
	p, err := parseProxy(proxy)
	if err != nil {
		return nil, err
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, badf(ErrBadAddress, "network "+strconv.Quote(network)+" cannot go through a proxy: use tcp")
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, badf(ErrBadAddress, "target "+strconv.Quote(addr)+" is not host:port: "+err.Error())
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return nil, badf(ErrBadAddress, "target "+strconv.Quote(addr)+" has a bad port: want 1-65535")
	}
	t := target{host: host, port: uint16(port), hostPort: addr}

	conn, err := d.dialProxy(ctx, p)
	if err != nil {
		return nil, err
	}
	// The handshake is bounded by ctx: its deadline as the connection's,
	// and a cancellation unblocks pending reads and writes.
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	c, err := d.handshake(ctx, conn, p, t)
	fired := !stop()
	if err != nil || fired {
		conn.Close()
		if ctxErr := ctx.Err(); ctxErr != nil && (err == nil || errors.Is(err, os.ErrDeadlineExceeded)) {
			class := ClassOther // cancelled by the caller: not the proxy's doing
			if errors.Is(ctxErr, context.DeadlineExceeded) {
				class = ClassTimeout
			}
			err = p.fail(class, "handshake", context.Cause(ctx))
		}
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return c, nil
}

// badf wraps a sentinel with a message.
func badf(sentinel error, msg string) error { return &wrapped{sentinel, msg} }

type wrapped struct {
	sentinel error
	msg      string
}

func (w *wrapped) Error() string { return w.sentinel.Error() + ": " + w.msg }
func (w *wrapped) Unwrap() error { return w.sentinel }

// proxySpec is a proxy URL taken apart.
type proxySpec struct {
	scheme   string
	hostPort string
	host     string
	name     string // scheme://host:port, for errors
	user     string
	pass     string
	hasCreds bool
}

func (p *proxySpec) fail(class, op string, err error) *DialError {
	return &DialError{Class: class, Proxy: p.name, Op: op, Err: err}
}

// redact returns scheme://host:port of a proxy URL, or "" when it has no
// host.
func redact(u *url.URL) string {
	if u == nil {
		return "<nil>"
	}
	return strings.ToLower(u.Scheme) + "://" + u.Host
}

func parseProxy(u *url.URL) (*proxySpec, error) {
	if u == nil {
		return nil, badf(ErrBadProxyURL, "nil proxy URL")
	}
	p := &proxySpec{scheme: strings.ToLower(u.Scheme), host: u.Hostname()}
	def := "1080"
	switch p.scheme {
	case "http":
		def = "80"
	case "https":
		def = "443"
	case "socks5", "socks5h", "socks4", "socks4a":
	default:
		return nil, badf(ErrBadProxyURL, "scheme "+strconv.Quote(p.scheme)+" of proxy "+strconv.Quote(redact(u))+
			" is not supported: want http, https, socks5, socks5h, socks4 or socks4a")
	}
	if p.host == "" {
		return nil, badf(ErrBadProxyURL, "proxy "+strconv.Quote(redact(u))+" has no host")
	}
	port := u.Port()
	if port == "" {
		port = def
	} else if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return nil, badf(ErrBadProxyURL, "proxy "+strconv.Quote(redact(u))+" has a bad port: want 1-65535")
	}
	p.hostPort = net.JoinHostPort(p.host, port)
	p.name = p.scheme + "://" + p.hostPort
	if u.User != nil {
		p.hasCreds = true
		p.user = u.User.Username()
		p.pass, _ = u.User.Password()
	}
	return p, nil
}

// target is the address to reach through the proxy.
type target struct {
	host     string
	port     uint16
	hostPort string
}

func (d *Dialer) dialProxy(ctx context.Context, p *proxySpec) (net.Conn, error) {
	dial := d.DialContext
	if dial == nil {
		var nd net.Dialer
		dial = nd.DialContext
	}
	conn, err := dial(ctx, "tcp", p.hostPort)
	if err != nil {
		return nil, p.fail(classifyNet(err), "dial proxy", err)
	}
	if p.scheme != "https" {
		return conn, nil
	}
	cfg := d.ProxyTLSConfig
	if cfg == nil {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" {
		cfg = cfg.Clone()
		cfg.ServerName = p.host
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		class := classifyNet(err)
		if class != ClassTimeout && (class != ClassReset || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
			class = ClassTLS
		}
		return nil, p.fail(class, "TLS handshake with proxy", err)
	}
	return tc, nil
}

func (d *Dialer) handshake(ctx context.Context, conn net.Conn, p *proxySpec, t target) (net.Conn, error) {
	switch p.scheme {
	case "http", "https":
		return connectTunnel(conn, p, t)
	case "socks5", "socks5h":
		return conn, d.socks5(ctx, conn, p, t)
	default:
		return conn, d.socks4(ctx, conn, p, t)
	}
}

// basicAuth is the Proxy-Authorization value for the proxy's credentials.
func (p *proxySpec) basicAuth() string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(p.user+":"+p.pass))
}

// connectTunnel sends CONNECT and reads the proxy's answer.
func connectTunnel(conn net.Conn, p *proxySpec, t target) (net.Conn, error) {
	var b strings.Builder
	b.WriteString("CONNECT ")
	b.WriteString(t.hostPort)
	b.WriteString(" HTTP/1.1\r\nHost: ")
	b.WriteString(t.hostPort)
	b.WriteString("\r\n")
	if p.hasCreds {
		b.WriteString("Proxy-Authorization: ")
		b.WriteString(p.basicAuth())
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return nil, p.fail(classifyNet(err), "write CONNECT", err)
	}
	br := bufio.NewReaderSize(conn, 1024)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		class := classifyNet(err)
		if class == ClassOther {
			class = ClassProtocol
		}
		return nil, p.fail(class, "read CONNECT response", err)
	}
	// A CONNECT response to a 2xx has no body; for the others the body is
	// not needed, the connection is dropped.
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode <= 299:
	case resp.StatusCode == http.StatusProxyAuthRequired:
		return nil, p.fail(ClassProxyAuthRequired, "CONNECT "+t.hostPort, authCause(p, "proxy answered 407 Proxy Authentication Required"))
	default:
		return nil, p.fail(ClassBadStatus, "CONNECT "+t.hostPort, errors.New("proxy answered "+resp.Status))
	}
	if br.Buffered() > 0 {
		buf, _ := br.Peek(br.Buffered())
		return &prefixConn{Conn: conn, prefix: append([]byte(nil), buf...)}, nil
	}
	return conn, nil
}

func authCause(p *proxySpec, msg string) error {
	if p.hasCreds {
		return errors.New(msg + " (credentials rejected)")
	}
	return errors.New(msg + " (no credentials in the proxy URL)")
}

// prefixConn returns bytes the proxy sent after its CONNECT answer before
// reading from the connection.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

func (d *Dialer) resolve(ctx context.Context, p *proxySpec, host string, v4only bool) (netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		if v4only && !ip.Is4() {
			return netip.Addr{}, badf(ErrBadAddress, "target "+host+" is IPv6, which "+p.scheme+" cannot carry: use socks5")
		}
		return ip, nil
	}
	r := d.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	ips, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.Addr{}, p.fail(ClassDNS, opResolveTarget, err)
	}
	for _, ip := range ips {
		if ip = ip.Unmap(); ip.Is4() {
			return ip, nil
		}
	}
	if v4only || len(ips) == 0 {
		return netip.Addr{}, p.fail(ClassDNS, opResolveTarget, errors.New(host+" has no IPv4 address"))
	}
	return ips[0], nil
}

// opResolveTarget is the Op of a DialError from resolving the target's
// name locally (socks5, socks4): a failure that is not the proxy's.
const opResolveTarget = "resolve target"

func socksRead(conn net.Conn, p *proxySpec, what string, buf []byte) error {
	if _, err := io.ReadFull(conn, buf); err != nil {
		return p.fail(classifyNet(err), "read "+what, err)
	}
	return nil
}

func socksWrite(conn net.Conn, p *proxySpec, what string, buf []byte) error {
	_, err := conn.Write(buf)
	if err != nil {
		return p.fail(classifyNet(err), "write "+what, err)
	}
	return nil
}

func protocolError(p *proxySpec, op, msg string) error {
	return p.fail(ClassProtocol, op, errors.New(msg))
}

func (d *Dialer) socks5(ctx context.Context, conn net.Conn, p *proxySpec, t target) error {
	greet := []byte{5, 1, 0}
	if p.hasCreds {
		greet = []byte{5, 2, 0, 2}
	}
	if err := socksWrite(conn, p, "SOCKS5 greeting", greet); err != nil {
		return err
	}
	var b [4]byte
	if err := socksRead(conn, p, "SOCKS5 greeting reply", b[:2]); err != nil {
		return err
	}
	if b[0] != 5 {
		return protocolError(p, "SOCKS5 greeting", "not a SOCKS5 reply (version byte 0x"+strconv.FormatUint(uint64(b[0]), 16)+")")
	}
	switch b[1] {
	case 0:
	case 2:
		if !p.hasCreds {
			return protocolError(p, "SOCKS5 greeting", "proxy chose username/password authentication, which was not offered")
		}
		if len(p.user) > 255 || len(p.pass) > 255 {
			return p.fail(ClassOther, "SOCKS5 authentication", errors.New("user name or password longer than 255 bytes"))
		}
		w := make([]byte, 0, 3+len(p.user)+len(p.pass))
		w = append(w, 1, byte(len(p.user)))
		w = append(w, p.user...)
		w = append(w, byte(len(p.pass)))
		w = append(w, p.pass...)
		err := socksWrite(conn, p, "SOCKS5 authentication", w)
		clear(w)
		if err != nil {
			return err
		}
		if err := socksRead(conn, p, "SOCKS5 authentication reply", b[:2]); err != nil {
			return err
		}
		if b[1] != 0 {
			return p.fail(ClassProxyAuthRequired, "SOCKS5 authentication", authCause(p, "proxy rejected username/password authentication"))
		}
	case 0xff:
		return p.fail(ClassProxyAuthRequired, "SOCKS5 greeting", authCause(p, "proxy accepts none of the offered authentication methods"))
	default:
		return protocolError(p, "SOCKS5 greeting", "proxy chose unknown authentication method 0x"+strconv.FormatUint(uint64(b[1]), 16))
	}

	w := []byte{5, 1, 0}
	ip, ipErr := netip.ParseAddr(t.host)
	switch {
	case ipErr == nil && ip.Unmap().Is4():
		a := ip.Unmap().As4()
		w = append(append(w, 1), a[:]...)
	case ipErr == nil:
		a := ip.As16()
		w = append(append(w, 4), a[:]...)
	case p.scheme == "socks5h":
		if len(t.host) > 255 {
			return badf(ErrBadAddress, "target host name longer than 255 bytes")
		}
		w = append(w, 3, byte(len(t.host)))
		w = append(w, t.host...)
	default:
		ip, err := d.resolve(ctx, p, t.host, false)
		if err != nil {
			return err
		}
		if ip.Is4() {
			a := ip.As4()
			w = append(append(w, 1), a[:]...)
		} else {
			a := ip.As16()
			w = append(append(w, 4), a[:]...)
		}
	}
	w = append(w, byte(t.port>>8), byte(t.port))
	if err := socksWrite(conn, p, "SOCKS5 request", w); err != nil {
		return err
	}
	if err := socksRead(conn, p, "SOCKS5 reply", b[:4]); err != nil {
		return err
	}
	if b[0] != 5 {
		return protocolError(p, "SOCKS5 request", "not a SOCKS5 reply (version byte 0x"+strconv.FormatUint(uint64(b[0]), 16)+")")
	}
	if rep := b[1]; rep != 0 {
		return p.fail(ClassBadStatus, "SOCKS5 CONNECT "+t.hostPort, errors.New("proxy could not connect: "+probe.SOCKS5ReplyText(rep)+" (reply "+strconv.Itoa(int(rep))+")"))
	}
	var rest int // BND.ADDR + BND.PORT
	switch b[3] {
	case 1:
		rest = 4 + 2
	case 4:
		rest = 16 + 2
	case 3:
		if err := socksRead(conn, p, "SOCKS5 reply", b[:1]); err != nil {
			return err
		}
		rest = int(b[0]) + 2
	default:
		return protocolError(p, "SOCKS5 request", "reply has unknown address type 0x"+strconv.FormatUint(uint64(b[3]), 16))
	}
	return socksRead(conn, p, "SOCKS5 reply", make([]byte, rest))
}

func (d *Dialer) socks4(ctx context.Context, conn net.Conn, p *proxySpec, t target) error {
	w := []byte{4, 1, byte(t.port >> 8), byte(t.port)}
	remoteName := false
	if _, err := netip.ParseAddr(t.host); err == nil || p.scheme == "socks4" {
		ip, err := d.resolve(ctx, p, t.host, true)
		if err != nil {
			return err
		}
		a := ip.As4()
		w = append(w, a[:]...)
	} else {
		w = append(w, 0, 0, 0, 1)
		remoteName = true
	}
	w = append(w, p.user...)
	w = append(w, 0)
	if remoteName {
		w = append(w, t.host...)
		w = append(w, 0)
	}
	err := socksWrite(conn, p, "SOCKS4 request", w)
	clear(w)
	if err != nil {
		return err
	}
	var b [8]byte
	if err := socksRead(conn, p, "SOCKS4 reply", b[:]); err != nil {
		return err
	}
	if b[0] != 0 && b[0] != 4 {
		return protocolError(p, "SOCKS4 request", "not a SOCKS4 reply (version byte 0x"+strconv.FormatUint(uint64(b[0]), 16)+")")
	}
	switch b[1] {
	case 0x5a:
		return nil
	case 0x5b:
		return p.fail(ClassBadStatus, "SOCKS4 CONNECT "+t.hostPort, errors.New("proxy rejected or failed the request (reply 0x5b)"))
	case 0x5c, 0x5d:
		return p.fail(ClassProxyAuthRequired, "SOCKS4 CONNECT "+t.hostPort, authCause(p, "proxy rejected the user ID"))
	}
	return protocolError(p, "SOCKS4 request", "reply has unknown status 0x"+strconv.FormatUint(uint64(b[1]), 16))
}
