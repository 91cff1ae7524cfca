package httpapi

import (
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// hostHint tells the operator how to allow a host name; it names the
// Options field and the daemon flag that sets it.
const hostHint = "Options.AllowedHosts, the daemon's --allow-host flag"

// hostPolicy decides which Host headers the server answers (see
// Options.AllowedHosts and the package documentation).
type hostPolicy struct {
	any     bool                // "*"
	exact   map[string]struct{} // normalized names and addresses
	domains []string            // ".example.net" entries, with the dot
}

func newHostPolicy(allowed []string) hostPolicy {
	p := hostPolicy{exact: map[string]struct{}{}}
	for _, a := range allowed {
		a = strings.TrimSpace(a)
		switch {
		case a == "":
		case a == "*":
			p.any = true
		case strings.HasPrefix(a, "."):
			d := normalizeHost(a[1:])
			p.domains = append(p.domains, "."+d)
			p.exact[d] = struct{}{}
		default:
			p.exact[normalizeHost(a)] = struct{}{}
		}
	}
	return p
}

// normalizeHost lowercases a Host header or an allowed name and drops its
// port, the brackets of an IPv6 address and a trailing dot.
func normalizeHost(h string) string {
	h = strings.ToLower(h)
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	h = strings.TrimSuffix(h, ".")
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap().String()
	}
	return h
}

// allows reports whether the server answers requests for host, received
// on local (nil when unknown).
func (p hostPolicy) allows(host string, local net.Addr) bool {
	if p.any || host == "" { // no Host: HTTP/1.0, never a browser
		return true
	}
	h := normalizeHost(host)
	if h == "localhost" {
		return true
	}
	if a, err := netip.ParseAddr(h); err == nil {
		if a.IsLoopback() {
			return true
		}
		if tcp, ok := local.(*net.TCPAddr); ok {
			if l, ok := netip.AddrFromSlice(tcp.IP); ok && l.Unmap() == a.WithZone("") {
				return true
			}
		}
	}
	if _, ok := p.exact[h]; ok {
		return true
	}
	for _, d := range p.domains {
		if strings.HasSuffix(h, d) {
			return true
		}
	}
	return false
}

// check answers 421 when the request is for a host p refuses; false means
// the request was answered.
func (p hostPolicy) check(w http.ResponseWriter, r *http.Request) bool {
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if p.allows(r.Host, local) {
		return true
	}
	name := normalizeHost(r.Host)
	writeError(w, http.StatusMisdirectedRequest, fmt.Sprintf(
		"host %q is not a name of this server: it answers to its listen address, localhost, 127.0.0.0/8 and [::1], "+
			"and refuses other names so that a web page whose name points here (DNS rebinding) cannot reach it; "+
			"if you reach proxyhealth as %q, allow that name (%s)", limit(r.Host), limit(name), hostHint))
	return false
}

// safeMethod reports whether a method changes nothing.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// checkCrossOrigin answers a state-changing request that a browser sends
// for a page of another origin (403), and one that a page could send
// without a CORS preflight (415); false means the request was answered.
// GET, HEAD and OPTIONS pass: they change nothing, and without CORS
// headers (the API sends none) no other page can read their answers.
func (s *Server) checkCrossOrigin(w http.ResponseWriter, r *http.Request) bool {
	if safeMethod(r.Method) {
		return true
	}
	origin := r.Header.Get("Origin")
	if origin != "" && !sameOrigin(origin, r.Host) {
		writeError(w, http.StatusForbidden, fmt.Sprintf(
			"cross-origin request refused: the Origin %q is not this server (Host %q); "+
				"the API does not take commands from other web pages. Use the dashboard this server serves, "+
				"or a client that sends no Origin (curl, scripts)", limit(origin), limit(r.Host)))
		return false
	}
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "", "same-origin", "none":
	default:
		writeError(w, http.StatusForbidden, fmt.Sprintf(
			"cross-origin request refused: the browser says it comes from a %q page (Sec-Fetch-Site); "+
				"the API does not take commands from other web pages", limit(site)))
		return false
	}
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err == nil && mt == "application/json" {
		return true
	}
	// A command without a body (pause, resume, revive, delete) may omit
	// the Content-Type, but only from a client that is not a browser: a
	// browser sends Origin with every such request.
	if ct == "" && origin == "" && r.Header.Get("Sec-Fetch-Site") == "" && r.ContentLength == 0 {
		return true
	}
	msg := fmt.Sprintf("%s %s needs \"Content-Type: application/json\"", r.Method, r.URL.Path)
	if ct != "" {
		msg += fmt.Sprintf(" (got %q)", limit(ct))
	}
	writeError(w, http.StatusUnsupportedMediaType, msg+
		": the API refuses what a web page can send without asking (forms, text/plain); "+
		"a request without a body may omit the Content-Type when it carries no Origin header")
	return false
}

// sameOrigin reports whether origin ("scheme://host[:port]") names the
// host of the request's Host header (scheme aside: behind a TLS proxy the
// server cannot know it; browsers also send Sec-Fetch-Site).
func sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || u.Scheme == "" || host == "" {
		return false // includes "null" (sandboxed pages, file:)
	}
	if strings.EqualFold(u.Host, host) {
		return true
	}
	// The browser omits a default port from Origin; a client may still
	// send it in Host.
	def := map[string]string{"http": "80", "https": "443"}[strings.ToLower(u.Scheme)]
	h, p, err := net.SplitHostPort(host)
	return err == nil && u.Port() == "" && p == def && strings.EqualFold(u.Hostname(), strings.Trim(h, "[]"))
}

// limit shortens a client-supplied value quoted in an error message.
func limit(s string) string {
	const n = 200
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
