package probe

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// ErrBadProxyURL is wrapped by every error ParseProxyURL returns.
var ErrBadProxyURL = errors.New("probe: bad proxy URL")

// Proxy URL schemes understood by the checker.
const (
	// SchemeHTTP is a plain HTTP proxy (absolute-form requests, CONNECT for
	// https targets). Default port 80.
	SchemeHTTP = "http"
	// SchemeHTTPS is an HTTP proxy reached over TLS: TLS to the proxy, then
	// HTTP proxying inside it. Default port 443.
	SchemeHTTPS = "https"
	// SchemeSOCKS5 is a SOCKS5 proxy; target names are resolved locally.
	// Default port 1080.
	SchemeSOCKS5 = "socks5"
	// SchemeSOCKS5H is a SOCKS5 proxy that resolves target names itself
	// (remote DNS). Default port 1080.
	SchemeSOCKS5H = "socks5h"
	// SchemeSOCKS4 is a SOCKS4 proxy; target names are resolved locally to
	// IPv4. Default port 1080.
	SchemeSOCKS4 = "socks4"
	// SchemeSOCKS4A is a SOCKS4a proxy (remote DNS). Default port 1080.
	SchemeSOCKS4A = "socks4a"
)

const allowedProxyForm = "want [scheme://][user:pass@]host[:port] with scheme http, https, socks5, socks5h, socks4 or socks4a " +
	"(port required without a scheme; default ports: http 80, https 443, socks 1080)"

// ProxyURL is a parsed, validated proxy URL. It is immutable and safe to
// copy and share. Its String, GoString, LogValue and MarshalText methods all
// return the redacted form, so formatting or logging a ProxyURL never leaks
// its credentials. The zero value is an empty, unusable URL (IsZero).
type ProxyURL struct {
	scheme   string
	host     string // lowercase; IPv6 without brackets
	port     string
	hostPort string // net.JoinHostPort(host, port)
	redacted string
	user     string // decoded
	pass     string // decoded
	hasCreds bool
	// basicAuth is "Basic base64(user:pass)" for HTTP proxies with
	// credentials, computed once at parse time.
	basicAuth string
}

// ParseProxyURL parses and validates a proxy URL such as
// "socks5h://user:p%40ss@proxy.example:1080" or "10.0.0.7:3128" (a bare
// host:port means http://host:port). Accepted schemes are http, https,
// socks5, socks5h, socks4 and socks4a (case-insensitive). Credentials are
// optional and percent-decoded. Without a scheme the port is required; with
// a scheme it defaults to 80 (http), 443 (https) or 1080 (socks*). The path
// may be empty or "/"; queries and fragments are rejected.
//
// The last '@' in the input separates the credentials from the host, so
// passwords containing unescaped '@', '/', '?' or '#' still parse.
// Errors wrap ErrBadProxyURL and show the input with credentials replaced by
// "REDACTED".
func ParseProxyURL(s string) (ProxyURL, error) {
	in := strings.TrimSpace(s)
	scheme, rest, hasScheme := strings.Cut(in, "://")
	if !hasScheme {
		scheme, rest = SchemeHTTP, in
	}
	var userinfo string
	hasUserinfo := false
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		userinfo, rest, hasUserinfo = rest[:at], rest[at+1:], true
	}
	// shown is the input with credentials removed, for error messages.
	shown := rest
	if hasUserinfo {
		shown = "REDACTED@" + rest
	}
	if hasScheme {
		shown = scheme + "://" + shown
	}
	bad := func(format string, args ...any) (ProxyURL, error) {
		return ProxyURL{}, fmt.Errorf("%w %q: %s; %s", ErrBadProxyURL, shown, fmt.Sprintf(format, args...), allowedProxyForm)
	}
	if in == "" {
		return bad("empty")
	}
	scheme = strings.ToLower(scheme)
	switch scheme {
	case SchemeHTTP, SchemeHTTPS, SchemeSOCKS5, SchemeSOCKS5H, SchemeSOCKS4, SchemeSOCKS4A:
	default:
		return bad("unsupported scheme %q", scheme)
	}
	// Split authority from path, query and fragment.
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
		tail := rest[i:]
		switch {
		case strings.ContainsRune(tail, '#'):
			return bad("fragments are not allowed")
		case strings.ContainsRune(tail, '?'):
			return bad("queries are not allowed")
		case tail != "/":
			return bad("path %q is not allowed (only an empty path or \"/\")", tail)
		}
	}
	host, port, err := splitHostPort(authority)
	if err != nil {
		return bad("%v", err)
	}
	if port == "" {
		if !hasScheme {
			return bad("port required when no scheme is given")
		}
		port = defaultPort(scheme)
	}
	p := ProxyURL{scheme: scheme, host: host, port: port, hostPort: net.JoinHostPort(host, port)}
	p.redacted = scheme + "://" + p.hostPort
	if hasUserinfo {
		rawUser, rawPass, hasPass := strings.Cut(userinfo, ":")
		user, err1 := url.PathUnescape(rawUser)
		pass, err2 := url.PathUnescape(rawPass)
		if err1 != nil || err2 != nil {
			return bad("invalid percent-encoding in the credentials")
		}
		switch {
		case user == "":
			return bad("credentials given but the user name is empty")
		case (scheme == SchemeSOCKS4 || scheme == SchemeSOCKS4A) && hasPass:
			return bad("socks4 supports a user ID only, not a password")
		case (scheme == SchemeSOCKS5 || scheme == SchemeSOCKS5H) && (len(user) > 255 || len(pass) > 255):
			return bad("socks5 user name and password are limited to 255 bytes each")
		case (scheme == SchemeSOCKS4 || scheme == SchemeSOCKS4A) && strings.IndexByte(user, 0) >= 0:
			return bad("socks4 user ID must not contain NUL")
		}
		p.user, p.pass, p.hasCreds = user, pass, true
		if scheme == SchemeHTTP || scheme == SchemeHTTPS {
			p.basicAuth = "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
		}
	}
	return p, nil
}

// MustParseProxyURL is ParseProxyURL for tests and constants; it panics on
// error.
func MustParseProxyURL(s string) ProxyURL {
	p, err := ParseProxyURL(s)
	if err != nil {
		panic(err)
	}
	return p
}

func defaultPort(scheme string) string {
	switch scheme {
	case SchemeHTTP:
		return "80"
	case SchemeHTTPS:
		return "443"
	default:
		return "1080"
	}
}

// splitHostPort splits and validates "host[:port]"; port may be empty.
func splitHostPort(a string) (host, port string, err error) {
	if a == "" {
		return "", "", errors.New("empty host")
	}
	if a[0] == '[' {
		end := strings.IndexByte(a, ']')
		if end < 0 {
			return "", "", errors.New("missing ']' in IPv6 address")
		}
		host = a[1:end]
		after := a[end+1:]
		if after != "" {
			if after[0] != ':' {
				return "", "", fmt.Errorf("unexpected %q after IPv6 address", after)
			}
			port = after[1:]
			if port == "" {
				return "", "", errors.New("empty port after ':'")
			}
		}
		addr, perr := netip.ParseAddr(strings.Replace(host, "%25", "%", 1))
		if perr != nil || !addr.Is6() {
			return "", "", fmt.Errorf("invalid IPv6 address %q", host)
		}
		host = strings.ToLower(addr.String())
	} else {
		host = a
		if i := strings.LastIndexByte(a, ':'); i >= 0 {
			host, port = a[:i], a[i+1:]
			if strings.IndexByte(host, ':') >= 0 {
				return "", "", errors.New("IPv6 addresses must be in brackets, e.g. [::1]:1080")
			}
			if port == "" {
				return "", "", errors.New("empty port after ':'")
			}
		}
		if host == "" {
			return "", "", errors.New("empty host")
		}
		for i := 0; i < len(host); i++ {
			c := host[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
				return "", "", fmt.Errorf("invalid character %q in host", c)
			}
		}
		host = strings.ToLower(host)
	}
	if port != "" {
		n, perr := strconv.Atoi(port)
		if perr != nil || n < 1 || n > 65535 || port[0] < '0' || port[0] > '9' {
			return "", "", fmt.Errorf("bad port %q (want 1-65535)", port)
		}
		port = strconv.Itoa(n) // normalise "08080" to "8080"
	}
	return host, port, nil
}

// IsZero reports whether p is the zero ProxyURL.
func (p ProxyURL) IsZero() bool { return p.scheme == "" }

// Redacted returns the normalised URL without credentials:
// lowercase scheme and host, explicit port, no trailing slash, e.g.
// "socks5://10.0.0.7:1080".
func (p ProxyURL) Redacted() string { return p.redacted }

// String returns Redacted, so that %v and %s never leak credentials.
func (p ProxyURL) String() string { return p.redacted }

// GoString returns a Go-syntax-like form without credentials, so that %#v
// never leaks them either.
func (p ProxyURL) GoString() string {
	return "probe.MustParseProxyURL(" + strconv.Quote(p.redacted) + ")"
}

// LogValue implements slog.LogValuer with the redacted URL.
func (p ProxyURL) LogValue() slog.Value { return slog.StringValue(p.redacted) }

// MarshalText implements encoding.TextMarshaler with the redacted URL, so
// JSON or YAML encoding never leaks credentials. (There is deliberately no
// UnmarshalText: parse with ParseProxyURL.)
func (p ProxyURL) MarshalText() ([]byte, error) { return []byte(p.redacted), nil }

// ID returns the proxy's stable ID: the first 16 hex digits of the SHA-256
// of Redacted(). Two URLs differing only in credentials have the same ID.
func (p ProxyURL) ID() string {
	sum := sha256.Sum256([]byte(p.redacted))
	return hex.EncodeToString(sum[:8])
}

// HasCredentials reports whether the URL carries a user name (and maybe a
// password).
func (p ProxyURL) HasCredentials() bool { return p.hasCreds }

// Scheme returns the lowercase scheme, one of the Scheme* constants.
func (p ProxyURL) Scheme() string { return p.scheme }

// Host returns the lowercase host name or IP address (IPv6 without
// brackets).
func (p ProxyURL) Host() string { return p.host }

// Port returns the port as a decimal string (always set).
func (p ProxyURL) Port() string { return p.port }

// HostPort returns "host:port" (IPv6 in brackets), ready to dial.
func (p ProxyURL) HostPort() string { return p.hostPort }

// RevealCredentials returns the decoded user name and password. The name is
// deliberately loud: whatever it returns must never be logged, journaled or
// shown.
func (p ProxyURL) RevealCredentials() (user, password string) { return p.user, p.pass }
