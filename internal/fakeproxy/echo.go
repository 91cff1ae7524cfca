package fakeproxy

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// EchoPath is the path the farm answers as an echo target, like httpbin's
// /get: any request with this path (query ignored), absolute-form through
// a proxy, tunnelled through CONNECT or SOCKS, or sent to the direct echo
// server (EchoURL), gets a JSON body
//
//	{"args": {}, "headers": {"Name": "value", ...}, "origin": "IP[, IP]", "url": "..."}
//
// instead of the farm's body.
const EchoPath = "/get"

// ErrBadExit is returned by SetExit for an exit address that is not an IP.
var ErrBadExit = errors.New("fakeproxy: bad exit IP")

// Anonymity is what a fake proxy reveals of its client in echo answers.
type Anonymity uint8

const (
	// Elite adds nothing: the echo sees the proxy's exit IP and the
	// client's own request headers only.
	Elite Anonymity = iota
	// Anonymous adds "Via: 1.1 fakeproxy".
	Anonymous
	// Transparent adds Via and "X-Forwarded-For: CLIENT" (the proxy's
	// client's address), and the origin becomes "CLIENT, EXIT", as httpbin
	// builds it from X-Forwarded-For.
	Transparent
)

// String returns "elite", "anonymous" or "transparent".
func (a Anonymity) String() string {
	switch a {
	case Elite:
		return "elite"
	case Anonymous:
		return "anonymous"
	case Transparent:
		return "transparent"
	}
	return fmt.Sprintf("Anonymity(%d)", uint8(a))
}

// WithAnonymity sets every proxy's initial anonymity mode (default Elite);
// SetExit changes it per proxy.
func WithAnonymity(a Anonymity) Option { return func(o *options) { o.anonymity = a } }

// DefaultExit returns the exit IP proxy i has until SetExit changes it:
// address i+1 of the benchmarking range 198.18.0.0/15 (198.18.0.1 for
// proxy 0, 198.18.1.0 for proxy 255, ...), wrapping after 131,070 proxies.
func DefaultExit(i int) string {
	n := uint32(i)%(1<<17-2) + 1
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], 198<<24|18<<16+n)
	return netip.AddrFrom4(b).String()
}

// SetExit sets the exit IP proxy i reports in echo answers and its
// anonymity mode, for connections accepted from now on.
func (f *Farm) SetExit(i int, ip string, a Anonymity) error {
	if i < 0 || i >= len(f.proxies) {
		return fmt.Errorf("%w: %d (farm has %d)", ErrBadIndex, i, len(f.proxies))
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return fmt.Errorf("%w: SetExit(%d, %q): want an IPv4 or IPv6 address", ErrBadExit, i, ip)
	}
	if a > Transparent {
		return fmt.Errorf("%w: SetExit(%d): anonymity %v: want Elite, Anonymous or Transparent", ErrBadExit, i, a)
	}
	if f.closed.Load() {
		return ErrClosed
	}
	p := f.proxies[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	p.exit, p.anonymity = addr.String(), a
	return nil
}

// Exit returns proxy i's exit IP and anonymity mode.
func (f *Farm) Exit(i int) (string, Anonymity) {
	p := f.proxies[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exit, p.anonymity
}

// EchoURL returns the URL of the farm's direct echo server,
// "http://127.0.0.1:PORT/get": reached without a proxy, it answers like
// EchoPath with origin = the caller's address (127.0.0.1), which is how a
// checker learns its own IP. It speaks TLS too (https://127.0.0.1:PORT/get,
// the farm's certificate). Through a fake proxy the same URL is answered
// by the proxy, with its exit IP: the farm never dials targets.
func (f *Farm) EchoURL() string { return "http://" + f.echo.addr + EchoPath }

// EchoAnswers returns how many echo answers the direct echo server sent.
func (f *Farm) EchoAnswers() uint64 {
	f.echo.mu.Lock()
	defer f.echo.mu.Unlock()
	return f.echo.stats.echoes
}

// isEchoTarget reports whether a request target (absolute or origin form)
// has the path EchoPath.
func isEchoTarget(target []byte) bool {
	if i := bytes.Index(target, []byte("://")); i >= 0 {
		rest := target[i+3:]
		j := bytes.IndexAny(rest, "/?")
		if j < 0 {
			return false
		}
		target = rest[j:]
	}
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		target = target[:i]
	}
	return string(target) == EchoPath
}

// echoBody builds the echo answer for a request head (request line and
// headers) as a proxy in mode a with exit IP exit, whose client connected
// from client, would make an httpbin-like target see it. A direct echo
// (exit == "") reports the client itself. Proxy-Authorization never
// reaches the target.
func echoBody(head []byte, target []byte, client net.Addr, exit string, a Anonymity) []byte {
	clientIP := ""
	if ta, ok := client.(*net.TCPAddr); ok {
		clientIP = ta.AddrPort().Addr().Unmap().String()
	}
	headers := map[string]string{}
	lines := bytes.Split(head, []byte("\n"))
	for _, line := range lines[1:] {
		line = bytes.TrimRight(line, "\r")
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue
		}
		name := string(line[:colon])
		value := string(bytes.TrimSpace(line[colon+1:]))
		if bytes.EqualFold(line[:colon], []byte("proxy-authorization")) {
			continue
		}
		if old, ok := headers[name]; ok {
			value = old + ", " + value
		}
		headers[name] = value
	}
	origin := clientIP
	if exit != "" {
		origin = exit
		switch a {
		case Transparent:
			xff := clientIP
			if old, ok := headers["X-Forwarded-For"]; ok {
				xff = old + ", " + clientIP
			}
			headers["X-Forwarded-For"] = xff
			headers["Via"] = "1.1 fakeproxy"
			origin = xff + ", " + exit
		case Anonymous:
			headers["Via"] = "1.1 fakeproxy"
		}
	}
	url := string(target)
	if !bytes.Contains(target, []byte("://")) {
		url = "http://" + headers["Host"] + url
	}
	b, _ := json.Marshal(struct {
		Args    map[string]string `json:"args"`
		Headers map[string]string `json:"headers"`
		Origin  string            `json:"origin"`
		URL     string            `json:"url"`
	}{map[string]string{}, headers, origin, url})
	return b
}
