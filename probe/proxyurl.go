package probe

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
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
	scheme string // one of the Scheme* constants (never the input's bytes)
	// redacted is the URL without credentials: scheme://[~tag@]host:port.
	// host:port ends it, so Host, Port and HostPort are slices of it (hp:
	// where host:port starts; pc: the colon before the port) rather than
	// strings of their own: the engine keeps a ProxyURL per proxy, and
	// three strings took 48 bytes of it, and an allocation, each.
	redacted string
	id       string // ID(), computed by ParseProxyURL
	// creds are the credentials; nil without (most proxies: 40 bytes
	// less for each of them, and a ProxyURL is kept per proxy).
	creds *proxyCreds
	// addr is the host's IP literal and the port, for the event loop
	// (proxyAddr; addrOK false: not an IP literal it dials)
	addr   netip.AddrPort
	hp, pc uint16 // see redacted (a host is at most maxHostLen bytes)
	addrOK bool
	// display: parsed from a redacted form ("http://~1a2b3c4d@host:port"):
	// it names a proxy (its ID) but carries no credentials to use.
	display bool
}

// proxyCreds are a proxy URL's credentials.
type proxyCreds struct {
	user, pass string // decoded
	// basicAuth is "Basic base64(user:pass)" for HTTP proxies, computed
	// once at parse time.
	basicAuth string
}

// user returns the decoded user name ("" without credentials).
func (p *ProxyURL) user() string {
	if p.creds == nil {
		return ""
	}
	return p.creds.user
}

// pass returns the decoded password ("" without credentials).
func (p *ProxyURL) pass() string {
	if p.creds == nil {
		return ""
	}
	return p.creds.pass
}

// basicAuth returns the Proxy-Authorization value of an HTTP proxy with
// credentials ("" otherwise).
func (p *ProxyURL) basicAuth() string {
	if p.creds == nil {
		return ""
	}
	return p.creds.basicAuth
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
// passwords containing unescaped '@', '/', '?', '#' or even "://" still
// parse.
//
// Errors wrap ErrBadProxyURL and never contain the credentials nor more of
// the input than a short excerpt (at most MaxErrorExcerpt characters) of the
// form scheme://REDACTED@host:port, without path, query or fragment. When the
// input does not look like a proxy URL at all (say, a line of a file that is
// not a proxy list), no excerpt is shown.
func ParseProxyURL(s string) (ProxyURL, error) {
	in := strings.TrimSpace(s)
	scheme, rest, hasScheme := SchemeHTTP, in, false
	// Only a scheme-like prefix counts as a scheme: "user:pa://ss@h:1"
	// (no scheme, a password containing "://") must not show "user:pa".
	if i := strings.Index(in, "://"); i >= 0 && schemeLike(in[:i]) {
		scheme, rest, hasScheme = in[:i], in[i+3:], true
	}
	var userinfo string
	hasUserinfo := false
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		userinfo, rest, hasUserinfo = rest[:at], rest[at+1:], true
	}
	authority, tail := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority, tail = rest[:i], rest[i:]
	}
	written := scheme // as written: scheme becomes its constant below
	bad := func(format string, args ...any) (ProxyURL, error) {
		// The excerpt only when there is an error: on the accepted path it
		// was half of the parse (a list of 100,000 proxies is parsed three
		// times at a daemon's start).
		shown := excerpt(written, hasScheme, hasUserinfo, authority, tail)
		if shown == "" {
			return ProxyURL{}, fmt.Errorf("%w (input not shown: it does not look like a proxy URL): %s; %s", ErrBadProxyURL, fmt.Sprintf(format, args...), allowedProxyForm)
		}
		return ProxyURL{}, fmt.Errorf("%w %q: %s; %s", ErrBadProxyURL, shown, fmt.Sprintf(format, args...), allowedProxyForm)
	}
	if in == "" {
		return bad("empty")
	}
	known, ok := schemes[strings.ToLower(scheme)]
	if !ok {
		return bad("unsupported scheme %q", strings.ToLower(scheme))
	}
	scheme = known // the constant: a ProxyURL keeps none of the input's bytes
	switch {
	case tail == "", tail == "/":
	case strings.ContainsRune(tail, '#'):
		return bad("fragments are not allowed")
	case strings.ContainsRune(tail, '?'):
		return bad("queries are not allowed")
	default:
		return bad("a path is not allowed (only an empty path or \"/\")")
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
	p := ProxyURL{scheme: scheme}
	p.addr, p.addrOK = parseProxyAddr(host, port)
	if hasUserinfo && userTagRE.MatchString(userinfo) {
		// A redacted URL, as the API and the logs show it: it names the
		// proxy, it cannot be used to reach it.
		p.setRedacted(scheme+"://"+userinfo+"@", host, port)
		p.display = true
		p.id = idOf(p.redacted)
		return p, nil
	}
	prefix := scheme + "://"
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
		p.creds = &proxyCreds{user: user, pass: pass}
		prefix += UserTag(user) + "@"
		if scheme == SchemeHTTP || scheme == SchemeHTTPS {
			p.creds.basicAuth = "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
		}
	}
	p.setRedacted(prefix, host, port)
	p.id = idOf(p.redacted)
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

// schemes maps each scheme ParseProxyURL accepts to its constant.
var schemes = map[string]string{
	SchemeHTTP: SchemeHTTP, SchemeHTTPS: SchemeHTTPS, SchemeSOCKS5: SchemeSOCKS5,
	SchemeSOCKS5H: SchemeSOCKS5H, SchemeSOCKS4: SchemeSOCKS4, SchemeSOCKS4A: SchemeSOCKS4A,
}

// setRedacted sets the redacted URL to prefix (scheme://, and the user's
// tag) and host:port, IPv6 in brackets, in one string, and where its
// host:port starts.
func (p *ProxyURL) setRedacted(prefix, host, port string) {
	if strings.IndexByte(host, ':') >= 0 {
		p.redacted = prefix + "[" + host + "]:" + port
	} else {
		p.redacted = prefix + host + ":" + port
	}
	p.hp, p.pc = uint16(len(prefix)), uint16(len(p.redacted)-len(port)-1)
}

// maxHostLen is the longest host ParseProxyURL accepts: a DNS name's
// limit (RFC 1035), which also keeps host:port's offsets in 16 bits.
const maxHostLen = 253

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

// MaxErrorExcerpt bounds the excerpt of the input that ParseProxyURL's
// errors show.
const MaxErrorExcerpt = 60

// schemeLike reports whether s may be a URL scheme (RFC 3986: a letter,
// then letters, digits, '+', '.' or '-'), at most 16 bytes.
func schemeLike(s string) bool {
	if len(s) == 0 || len(s) > 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// hostPortRE matches an authority that may be shown in an error: host
// characters, an optional bracketed IPv6 address and an all-digit port.
// Anything else (a password without '@', a line of /etc/shadow) is not
// shown.
var hostPortRE = regexp.MustCompile(`^(?:\[[0-9A-Fa-f:.%]*\]?|[A-Za-z0-9._-]*)(?::[0-9]*)?$`)

// excerpt returns what an error may show of a proxy URL: at most
// MaxErrorExcerpt characters of scheme://REDACTED@host:port, or "" when the
// authority does not look like host:port.
func excerpt(scheme string, hasScheme, hasUserinfo bool, authority, tail string) string {
	if !hostPortRE.MatchString(authority) || (authority == "" && !hasScheme) {
		return ""
	}
	var b strings.Builder
	if hasScheme {
		b.WriteString(scheme + "://")
	}
	if hasUserinfo {
		b.WriteString("REDACTED@")
	}
	b.WriteString(authority)
	if tail != "" && tail != "/" {
		b.WriteString(tail[:1] + "…")
	}
	shown := b.String()
	if n := utf8.RuneCountInString(shown); n > MaxErrorExcerpt {
		r := []rune(shown)
		shown = string(r[:MaxErrorExcerpt-1]) + "…"
	}
	return shown
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
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
				return "", "", errors.New("unexpected characters after the IPv6 address")
			}
			port = after[1:]
			if port == "" {
				return "", "", errors.New("empty port after ':'")
			}
		}
		addr, perr := netip.ParseAddr(strings.Replace(host, "%25", "%", 1))
		if perr != nil || !addr.Is6() {
			return "", "", errors.New("invalid IPv6 address")
		}
		host = strings.ToLower(addr.String())
	} else {
		host = a
		if i := strings.LastIndexByte(a, ':'); i >= 0 {
			host, port = a[:i], a[i+1:]
			if strings.IndexByte(host, ':') >= 0 {
				if strings.Trim(host, "0123456789abcdefABCDEF:.") == "" {
					return "", "", errors.New("IPv6 addresses must be in brackets, e.g. [::1]:1080")
				}
				return "", "", errors.New("more than one ':' in host:port")
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
				return "", "", errors.New("invalid character in host (allowed: letters, digits, '.', '-', '_')")
			}
		}
		host = strings.ToLower(host)
	}
	if len(host) > maxHostLen {
		return "", "", fmt.Errorf("host too long (at most %d characters)", maxHostLen)
	}
	if port != "" {
		n, perr := strconv.Atoi(port)
		if perr != nil || n < 1 || n > 65535 || !allDigits(port) {
			if allDigits(port) && len(port) <= 10 {
				return "", "", fmt.Errorf("bad port %q (want 1-65535)", port)
			}
			return "", "", errors.New("bad port (want a number from 1 to 65535)")
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
// of Redacted(). The user name is part of the identity (a gateway's
// "user-session-1" and "user-session-2" are two proxies), the password is
// not: two URLs differing only in the password are the same proxy with
// changed credentials. A URL without a user name has the ID it always had.
func (p ProxyURL) ID() string {
	if p.id != "" {
		return p.id
	}
	return idOf(p.redacted) // the zero ProxyURL
}

// idOf is the ID of the proxy whose redacted URL is redacted. ParseProxyURL
// computes it once: the engine asks a proxy's ID at every add, reconfigure
// and lookup by URL, and each call hashed and allocated anew.
func idOf(redacted string) string {
	sum := sha256.Sum256([]byte(redacted))
	return hex.EncodeToString(sum[:8])
}

// HasCredentials reports whether the URL carries a user name (and maybe a
// password).
func (p ProxyURL) HasCredentials() bool { return p.creds != nil }

// IsRedactedForm reports whether the URL was parsed from a redacted form
// (scheme://~TAG@host:port, as Redacted returns it): it names a proxy that
// has credentials but carries none, so it can be used to find the proxy,
// not to reach it.
func (p ProxyURL) IsRedactedForm() bool { return p.display }

// userTagRE matches a user tag as UserTag makes it.
var userTagRE = regexp.MustCompile(`^~[0-9a-f]{8}$`)

// UserTag is how a redacted URL shows a user name: "~" and 8 hex digits of
// its SHA-256, so that two proxies that differ only in the user name (a
// rotating gateway's sessions) are told apart without showing the name.
// (User names are not secrets the way passwords are, but they often carry
// an account ID; a guessable one can be recovered from its tag.)
func UserTag(user string) string {
	sum := sha256.Sum256([]byte("proxyhealth user\x00" + user))
	return "~" + hex.EncodeToString(sum[:4])
}

// Scheme returns the lowercase scheme, one of the Scheme* constants.
func (p ProxyURL) Scheme() string { return p.scheme }

// Host returns the lowercase host name or IP address (IPv6 without
// brackets).
func (p ProxyURL) Host() string {
	h := p.redacted[p.hp:p.pc]
	if len(h) > 0 && h[0] == '[' {
		return h[1 : len(h)-1]
	}
	return h
}

// Port returns the port as a decimal string (always set, except in the
// zero ProxyURL).
func (p ProxyURL) Port() string {
	if p.redacted == "" {
		return ""
	}
	return p.redacted[p.pc+1:]
}

// HostPort returns "host:port" (IPv6 in brackets), ready to dial.
func (p ProxyURL) HostPort() string { return p.redacted[p.hp:] }

// RevealCredentials returns the decoded user name and password. The name is
// deliberately loud: whatever it returns must never be logged, journaled or
// shown.
func (p ProxyURL) RevealCredentials() (user, password string) { return p.user(), p.pass() }
