package endpoint

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/proxyhealth/proxyhealth/rotation"
	"github.com/proxyhealth/proxyhealth/transport"
)

// Errors of the package.
var (
	// ErrBadConfig wraps Config.Validate's errors (and New's and Serve's
	// refusals of a listener off loopback without Users).
	ErrBadConfig = errors.New("endpoint: invalid config")
	// ErrClosed is returned by Serve and ListenAndServe on a server that
	// was closed or shut down before they started.
	ErrClosed = errors.New("endpoint: server closed")
)

// Defaults of a Config (a zero field means the default).
const (
	// DefaultAddr is the listen address of ListenAndServe: loopback only.
	DefaultAddr = "127.0.0.1:8899"
	// DefaultStickyHeader is the request header that carries a sticky
	// session key on HTTP requests and CONNECT.
	DefaultStickyHeader = "X-Proxyhealth-Session"
	// SessionSeparator splits a proxy-auth username into user and sticky
	// key: "alice-session-abc" authenticates as "alice" with key "abc".
	SessionSeparator = "-session-"
	// DefaultMaxAttempts is how many upstream proxies one request or
	// tunnel tries at most.
	DefaultMaxAttempts = 3
	// DefaultHandshakeTimeout bounds reading a client's request head or
	// SOCKS handshake.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultDialTimeout bounds one attempt to open a tunnel through an
	// upstream proxy, or to connect to it for a forwarded request.
	DefaultDialTimeout = 10 * time.Second
	// DefaultResponseHeaderTimeout bounds the wait for the response head
	// of a forwarded request, per attempt.
	DefaultResponseHeaderTimeout = 30 * time.Second
	// DefaultIdleTimeout closes keep-alive client connections and tunnels
	// idle for this long.
	DefaultIdleTimeout = 2 * time.Minute
	// ErrorHeader is the response header naming why the endpoint answered
	// a request itself (502, 503, 407, 400): a failure class such as
	// "refused" or "proxy_auth_required", or "no_proxy", "auth",
	// "bad_request".
	ErrorHeader = "X-Proxyhealth-Error"
)

// Config configures a Server. The zero value serves on DefaultAddr with
// round-robin, no proxy authentication (allowed on loopback only) and the
// defaults above.
type Config struct {
	// Addr is the listen address of ListenAndServe ("" = DefaultAddr).
	// Serve uses its listener's address instead.
	Addr string
	// Strategy picks the upstream for requests without a sticky key (""
	// = rotation.RoundRobin). A request with a key always uses
	// rotation.Sticky.
	Strategy rotation.Strategy
	// Source, Scheme and Tag filter the upstream proxies ("" = any).
	Source, Scheme, Tag string
	// Users are the accepted proxy credentials, username → password, for
	// Proxy-Authorization (Basic) and SOCKS5 username/password. When
	// empty, clients are not authenticated, which is allowed only when
	// the listener is on loopback. When set, every client must
	// authenticate (SOCKS4, which has no password, is then refused).
	// Usernames must not contain SessionSeparator or ':'.
	Users map[string]string
	// StickyHeader names the request header carrying a sticky key (""
	// = DefaultStickyHeader); it is never forwarded upstream. A key can
	// also ride on the username: "alice-session-abc" authenticates as
	// "alice" (password checked as alice's) with key "abc". The header
	// wins when both are present.
	StickyHeader string
	// MaxAttempts bounds the upstream proxies tried per request or tunnel
	// (0 = DefaultMaxAttempts).
	MaxAttempts int
	// HandshakeTimeout, DialTimeout, ResponseHeaderTimeout and IdleTimeout:
	// see the Default* constants (0 = default).
	HandshakeTimeout      time.Duration
	DialTimeout           time.Duration
	ResponseHeaderTimeout time.Duration
	IdleTimeout           time.Duration
	// UpstreamTLS is the TLS configuration for https:// upstream proxies
	// (and for https:// targets of absolute-form requests); nil means the
	// system roots.
	UpstreamTLS *tls.Config
	// Logger receives debug and warning records (never credentials); nil
	// means silent.
	Logger *slog.Logger
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Strategy == "" {
		c.Strategy = rotation.RoundRobin
	}
	if c.StickyHeader == "" {
		c.StickyHeader = DefaultStickyHeader
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.ResponseHeaderTimeout == 0 {
		c.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate checks the configuration, naming the field at fault and what
// to do about it. An Addr off loopback requires Users.
func (c Config) Validate() error {
	d := c.withDefaults()
	if !slices.Contains(rotation.Strategies, d.Strategy) {
		return fmt.Errorf("%w: strategy %q is unknown; use one of %v", ErrBadConfig, c.Strategy, rotation.Strategies)
	}
	if d.Strategy == rotation.Sticky {
		return fmt.Errorf("%w: strategy sticky needs a key per request; choose another default strategy and send keys with the %s header or a %q username suffix", ErrBadConfig, d.StickyHeader, SessionSeparator)
	}
	if d.MaxAttempts < 1 {
		return fmt.Errorf("%w: max_attempts = %d; must be at least 1", ErrBadConfig, c.MaxAttempts)
	}
	for name, v := range map[string]time.Duration{
		"handshake_timeout": d.HandshakeTimeout, "dial_timeout": d.DialTimeout,
		"response_header_timeout": d.ResponseHeaderTimeout, "idle_timeout": d.IdleTimeout,
	} {
		if v < 0 {
			return fmt.Errorf("%w: %s = %v; must be positive (0 means the default)", ErrBadConfig, name, v)
		}
	}
	if !validHeaderName(d.StickyHeader) {
		return fmt.Errorf("%w: sticky_header %q is not a valid header name (letters, digits and '-')", ErrBadConfig, c.StickyHeader)
	}
	for user := range c.Users {
		if user == "" || strings.Contains(user, SessionSeparator) || strings.ContainsRune(user, ':') || len(user) > 255 {
			// The name is a username, not a secret; passwords never appear.
			return fmt.Errorf("%w: users: username %q must be 1-255 bytes without ':' or %q", ErrBadConfig, user, SessionSeparator)
		}
	}
	host, _, err := net.SplitHostPort(d.Addr)
	if err != nil {
		return fmt.Errorf("%w: addr %q is not host:port (e.g. 127.0.0.1:8899): %v", ErrBadConfig, c.Addr, err)
	}
	if len(c.Users) == 0 && !hostIsLoopback(host) {
		return offLoopbackError(d.Addr)
	}
	return nil
}

func offLoopbackError(addr string) error {
	return fmt.Errorf("%w: addr %s is not loopback-only and no users are configured: an open proxy would forward anyone's traffic; set users (proxy authentication) or listen on 127.0.0.1", ErrBadConfig, addr)
}

// hostIsLoopback: "localhost" and loopback IP literals. "", 0.0.0.0, ::
// and other names listen (or may resolve) beyond loopback.
func hostIsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// addrIsLoopback tells whether a listener's address is on loopback. A
// variable so that a test can pretend a loopback listener is not.
var addrIsLoopback = func(a net.Addr) bool {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.IsLoopback()
	}
	host, _, err := net.SplitHostPort(a.String())
	return err == nil && hostIsLoopback(host)
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// dialer is the upstream dialer of a config.
func (c Config) dialer() *transport.Dialer {
	return &transport.Dialer{ProxyTLSConfig: c.UpstreamTLS}
}
