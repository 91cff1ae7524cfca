package probe

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ErrBadConfig is wrapped by every error Config.Validate, ParseStatusRanges,
// ParseMode and NewChecker return for an invalid configuration.
var ErrBadConfig = errors.New("probe: bad check config")

// Defaults applied by Config.WithDefaults.
const (
	// DefaultTargetURL is fetched through the proxy when TargetURL is empty;
	// it answers 204 No Content.
	DefaultTargetURL = "http://www.gstatic.com/generate_204"
	// DefaultTimeout bounds one whole check.
	DefaultTimeout = 5 * time.Second
	// MaxBodyBytes is how much of the response body is read and matched
	// against BodyPattern.
	MaxBodyBytes = 64 << 10
	// MaxHeaderBytes bounds the status line plus headers of one response;
	// larger responses fail with class PROTOCOL.
	MaxHeaderBytes = 16 << 10
	// UserAgent is sent unless Headers sets one.
	UserAgent = "proxyhealth/0.1"
)

// Mode selects what a check does.
type Mode int

const (
	// ModeAuto speaks the proxy's protocol (from its URL scheme) and fetches
	// TargetURL through it.
	ModeAuto Mode = iota
	// ModeTCPConnect only opens (and closes) a TCP connection to the proxy.
	ModeTCPConnect
)

// String returns "auto" or "tcp-connect".
func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeTCPConnect:
		return "tcp-connect"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// ParseMode parses "auto" (or "") and "tcp-connect".
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto":
		return ModeAuto, nil
	case "tcp-connect", "tcp":
		return ModeTCPConnect, nil
	}
	return 0, fmt.Errorf("%w: Mode %q: want \"auto\" or \"tcp-connect\"", ErrBadConfig, s)
}

// CloseMode says how a check closes its connections: with a FIN (the
// usual close) or with a RST (SO_LINGER 0, as HAProxy and keepalived close
// theirs).
//
// A RST spares the checker the TIME_WAIT socket the side that closes first
// keeps for 60 s (Linux), and spares the proxy its own when the proxy
// closed first; at 10,000 proxies checked every 10 s that would be up to
// 60,000 sockets, each holding its 4-tuple (local port). It costs the proxy a
// reset instead of a FIN, which some proxies and servers log as an error
// ("connection reset by peer"). It saves no measurable CPU: in
// BenchmarkCheckClose the checker's CPU per check is the same with either
// close within the benchmark's noise (about 10%).
type CloseMode int

const (
	// CloseAuto resets in ModeTCPConnect and sends a FIN otherwise. A
	// tcp-connect check closes first every time, so the checker kept one
	// TIME_WAIT socket per check (0.99 per check measured), and the proxy
	// sees a connection without a request either way. A full check sends
	// "Connection: close" and the proxy usually closes first, so the
	// checker kept one in 0.14-0.25 checks and the TIME_WAIT socket is
	// mostly the proxy's: not worth resetting a third party's connection
	// by default.
	CloseAuto CloseMode = iota
	// CloseFIN always closes with a FIN.
	CloseFIN
	// CloseReset always closes with a RST (SO_LINGER 0).
	CloseReset
)

// String returns "auto", "fin" or "reset".
func (m CloseMode) String() string {
	switch m {
	case CloseAuto:
		return "auto"
	case CloseFIN:
		return "fin"
	case CloseReset:
		return "reset"
	}
	return "CloseMode(" + strconv.Itoa(int(m)) + ")"
}

// ParseCloseMode parses "auto" (or ""), "fin" and "reset" (or "rst").
func ParseCloseMode(s string) (CloseMode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto":
		return CloseAuto, nil
	case "fin":
		return CloseFIN, nil
	case "reset", "rst":
		return CloseReset, nil
	}
	return 0, fmt.Errorf("%w: Close %q: want \"auto\", \"fin\" or \"reset\"", ErrBadConfig, s)
}

// resets reports whether a check in mode closes with a RST.
func (m CloseMode) resets(mode Mode) bool {
	return m == CloseReset || m == CloseAuto && mode == ModeTCPConnect
}

// StatusRange is an inclusive range of HTTP status codes.
type StatusRange struct{ Min, Max int }

// Contains reports whether code is in the range.
func (r StatusRange) Contains(code int) bool { return code >= r.Min && code <= r.Max }

// String returns "200-299", or "301" for a single code.
func (r StatusRange) String() string {
	if r.Min == r.Max {
		return strconv.Itoa(r.Min)
	}
	return strconv.Itoa(r.Min) + "-" + strconv.Itoa(r.Max)
}

// ParseStatusRanges parses a comma-separated list of codes and inclusive
// ranges such as "200-299,301". Codes must be within 100-599.
func ParseStatusRanges(s string) ([]StatusRange, error) {
	var out []StatusRange
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		first, err1 := strconv.Atoi(strings.TrimSpace(lo))
		last, err2 := first, error(nil)
		if isRange {
			last, err2 = strconv.Atoi(strings.TrimSpace(hi))
		}
		if part == "" || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%w: ExpectedStatus %q: bad element %q; want codes or ranges like \"200-299,301\"", ErrBadConfig, s, part)
		}
		r := StatusRange{first, last}
		if err := r.validate(); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func (r StatusRange) validate() error {
	if r.Min < 100 || r.Max > 599 || r.Min > r.Max {
		return fmt.Errorf("%w: ExpectedStatus range %d-%d: want 100 <= min <= max <= 599", ErrBadConfig, r.Min, r.Max)
	}
	return nil
}

// Header is one extra request header sent to the target.
type Header struct{ Name, Value string }

// Config says how to check a proxy. The zero value is valid and means:
// HEAD DefaultTargetURL through the proxy, expect 2xx, 5 s timeout.
type Config struct {
	// TargetURL is fetched through the proxy; http or https. Default
	// DefaultTargetURL. It must not carry credentials or a fragment.
	TargetURL string
	// Method is HEAD or GET. Default HEAD, or GET when BodyPattern is set.
	Method string
	// ExpectedStatus lists the status codes that count as success.
	// Default 200-299.
	ExpectedStatus []StatusRange
	// BodyPattern, if set, is a regular expression (Go syntax) that must
	// match the first MaxBodyBytes of the response body; a miss is class
	// CONTENT_MISMATCH. Requires GET.
	BodyPattern string
	// LatencyCeiling, if positive, turns an otherwise successful check whose
	// Total exceeds it into class TOO_SLOW. Zero means no ceiling.
	LatencyCeiling time.Duration
	// Timeout bounds a whole check (dial, handshakes, request, response).
	// Default DefaultTimeout. The context passed to Check can shorten it.
	Timeout time.Duration
	// Headers are extra request headers sent to the target. Host,
	// Connection, Content-Length, Transfer-Encoding and Proxy-Authorization
	// are managed by the checker and may not be set; User-Agent may be
	// overridden.
	Headers []Header
	// ReuseConnections is reserved: connection reuse is not supported yet
	// and Validate rejects true. Every check opens a fresh connection and
	// sends "Connection: close".
	ReuseConnections bool
	// Mode selects the kind of check. Default ModeAuto.
	Mode Mode
	// EchoURL, if set, is an echo target (http or https, no credentials or
	// fragment) answering like httpbin's /get: {"origin": "IP", "headers":
	// {...}}. After a check passes, the checker GETs EchoURL through the
	// same proxy on a second connection, within what is left of the
	// check's Timeout, and fills Result.ExitIP and Result.Anonymity. The
	// echo never changes the check's verdict or timings. Empty (the
	// default) means no echo. Requires ModeAuto. See the package doc.
	EchoURL string
	// TLSConfig is the base TLS configuration used both to verify https
	// targets and to reach https:// (TLS-wrapped) proxies; ServerName is set
	// per connection. Nil means the system roots. Tests set RootCAs (or, for
	// a quick hack, InsecureSkipVerify). If it has no ClientSessionCache the
	// checker adds a small LRU cache so repeated checks can resume TLS
	// sessions with the target.
	TLSConfig *tls.Config
	// Close says how the check's connections (and the echo's) are closed:
	// CloseAuto (the default) closes a ModeTCPConnect check's with a RST
	// and the others with a FIN; CloseFIN and CloseReset force one. A RST
	// (SO_LINGER 0) leaves no TIME_WAIT socket on the checker (nor on the
	// proxy), which matters for ephemeral ports and the kernel's TIME_WAIT
	// table at 10,000+ proxies; the proxy sees a reset instead of a FIN,
	// and some proxies log it as an error. The option applies to
	// *net.TCPConn connections, also when a custom dialer wraps them in a
	// conn with a NetConn method (as crypto/tls.Conn has); other
	// connections close as they do. See CloseMode for the figures.
	Close CloseMode
	// SourceIP, if set, is the local address every connection of a check
	// (and of its echo) is bound to, so that checks leave this host from
	// it: a multi-homed host's egress interface, or one loopback address
	// per checker in tests. The local port stays the kernel's choice: on
	// Linux the socket is bound with IP_BIND_ADDRESS_NO_PORT, so the port
	// is picked at connect(2) per destination, as without a bind, and a
	// busy source address does not run out of ports at bind(2) time. Both
	// Check and CheckAsync (its event loop and its fallback) honour it.
	//
	// The zero value leaves the choice to the kernel (the default). It
	// must be an address of this host (NewChecker binds it once to make
	// sure) and not unspecified (0.0.0.0, ::), multicast or the IPv4
	// broadcast address; an IPv4-mapped IPv6 address means its IPv4
	// address. A proxy of the other address family cannot be reached from
	// it: such a check fails when it dials, and a proxy host name only
	// resolves to addresses of SourceIP's family. It cannot be combined
	// with WithDialContext (that dialer decides the local address).
	SourceIP netip.Addr
}

// WithDefaults returns a copy of c with every zero field set to its default,
// Method upper-cased and SourceIP unmapped (an IPv4-mapped IPv6 address
// becomes the IPv4 address). It does not validate.
func (c Config) WithDefaults() Config {
	if c.TargetURL == "" {
		c.TargetURL = DefaultTargetURL
	}
	c.Method = strings.ToUpper(strings.TrimSpace(c.Method))
	if c.Method == "" {
		c.Method = "HEAD"
		if c.BodyPattern != "" {
			c.Method = "GET"
		}
	}
	if len(c.ExpectedStatus) == 0 {
		c.ExpectedStatus = []StatusRange{{200, 299}}
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	c.SourceIP = c.SourceIP.Unmap()
	return c
}

// Validate checks c (after WithDefaults) and returns an error wrapping
// ErrBadConfig that names the offending field and value.
func (c Config) Validate() error {
	_, err := c.compile()
	return err
}

// target is a parsed TargetURL.
type target struct {
	https    bool
	host     string // without brackets, lowercase
	port     uint16
	hostPort string // for CONNECT and Host
	hostHdr  string // Host header value (port omitted when default)
	absolute string // absolute-form request target
	origin   string // origin-form request target (path?query)
}

type compiled struct {
	cfg     Config
	target  target
	re      *regexp.Regexp
	headers []Header
	hasUA   bool
}

func (c Config) compile() (*compiled, error) {
	c = c.WithDefaults()
	bad := func(field string, value any, want string) error {
		return fmt.Errorf("%w: %s %v: %s", ErrBadConfig, field, value, want)
	}
	out := &compiled{cfg: c}
	t, err := parseTarget(c.TargetURL)
	if err != nil {
		return nil, bad("TargetURL", strconv.Quote(shownURL(c.TargetURL)), err.Error())
	}
	out.target = t
	switch c.Method {
	case "HEAD", "GET":
	default:
		return nil, bad("Method", strconv.Quote(c.Method), "want HEAD or GET")
	}
	for _, r := range c.ExpectedStatus {
		if err := r.validate(); err != nil {
			return nil, err
		}
	}
	if c.BodyPattern != "" {
		if c.Method != "GET" {
			return nil, bad("BodyPattern", strconv.Quote(c.BodyPattern), "needs Method GET (HEAD responses have no body)")
		}
		re, err := regexp.Compile(c.BodyPattern)
		if err != nil {
			return nil, bad("BodyPattern", strconv.Quote(c.BodyPattern), "not a valid regular expression: "+err.Error())
		}
		out.re = re
	}
	if c.LatencyCeiling < 0 {
		return nil, bad("LatencyCeiling", c.LatencyCeiling, "want >= 0 (0 = no ceiling)")
	}
	if c.Timeout < 0 {
		return nil, bad("Timeout", c.Timeout, "want > 0 (0 = default 5s)")
	}
	for _, h := range c.Headers {
		if !isToken(h.Name) {
			return nil, bad("Headers", strconv.Quote(h.Name), "header name must be a non-empty HTTP token")
		}
		if strings.ContainsAny(h.Value, "\r\n\x00") {
			return nil, bad("Headers", strconv.Quote(h.Name), "header value must not contain CR, LF or NUL")
		}
		switch strings.ToLower(h.Name) {
		case "host", "connection", "content-length", "transfer-encoding", "proxy-authorization":
			return nil, bad("Headers", strconv.Quote(h.Name), "managed by the checker; remove it")
		case "user-agent":
			out.hasUA = true
		}
		out.headers = append(out.headers, h)
	}
	if c.ReuseConnections {
		return nil, bad("ReuseConnections", true, "connection reuse is not supported yet; set it to false")
	}
	if c.Mode != ModeAuto && c.Mode != ModeTCPConnect {
		return nil, bad("Mode", c.Mode, "want ModeAuto or ModeTCPConnect")
	}
	if c.Close < CloseAuto || c.Close > CloseReset {
		return nil, bad("Close", c.Close, "want CloseAuto, CloseFIN or CloseReset")
	}
	if ip := c.SourceIP; ip.IsValid() {
		switch {
		case ip.IsUnspecified():
			return nil, bad("SourceIP", ip, "means any address: leave SourceIP empty for the kernel's choice, or give one of this host's addresses")
		case ip.IsMulticast():
			return nil, bad("SourceIP", ip, "is a multicast address: give one of this host's unicast addresses, or leave SourceIP empty")
		case ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
			return nil, bad("SourceIP", ip, "is the broadcast address: give one of this host's unicast addresses, or leave SourceIP empty")
		}
	}
	if c.EchoURL != "" {
		shown := shownURL(c.EchoURL)
		if _, err := parseTarget(c.EchoURL); err != nil {
			return nil, bad("EchoURL", strconv.Quote(shown), err.Error())
		}
		if c.Mode != ModeAuto {
			return nil, bad("EchoURL", strconv.Quote(shown), "needs Mode auto (a tcp-connect check sends no request); remove EchoURL or the Mode")
		}
	}
	return out, nil
}

func parseTarget(s string) (target, error) {
	u, err := url.Parse(s)
	if err != nil {
		return target{}, errors.New("not a URL: " + err.Error())
	}
	var t target
	switch u.Scheme {
	case "http":
	case "https":
		t.https = true
	default:
		return target{}, errors.New("scheme must be http or https")
	}
	if u.User != nil {
		return target{}, errors.New("must not contain credentials")
	}
	if u.Fragment != "" {
		return target{}, errors.New("must not contain a fragment")
	}
	if u.Hostname() == "" {
		return target{}, errors.New("empty host")
	}
	if u.Opaque != "" {
		return target{}, errors.New("must be an absolute URL like http://host/path")
	}
	t.host = strings.ToLower(u.Hostname())
	port := 80
	if t.https {
		port = 443
	}
	hostHdr := t.host
	if strings.IndexByte(t.host, ':') >= 0 {
		hostHdr = "[" + t.host + "]"
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return target{}, errors.New("bad port " + strconv.Quote(p))
		}
		if n != port {
			hostHdr = net.JoinHostPort(t.host, p)
		}
		port = n
	}
	t.port = uint16(port)
	t.hostPort = net.JoinHostPort(t.host, strconv.Itoa(port))
	t.hostHdr = hostHdr
	t.origin = u.EscapedPath()
	if t.origin == "" {
		t.origin = "/"
	}
	if u.RawQuery != "" || u.ForceQuery {
		t.origin += "?" + u.RawQuery
	}
	scheme := "http://"
	if t.https {
		scheme = "https://"
	}
	t.absolute = scheme + hostHdr + t.origin
	return t, nil
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenChar(s[i]) {
			return false
		}
	}
	return true
}

func tokenChar(c byte) bool {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// shownURL is a URL as an error may show it: its user info replaced by
// REDACTED. A URL that does not parse is not shown.
func shownURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(not shown: it does not parse)"
	}
	if u.User != nil {
		u.User = url.User("REDACTED")
	}
	return u.String()
}
