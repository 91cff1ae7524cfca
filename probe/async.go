package probe

import (
	"context"
	"net/netip"
	"time"
)

// Done receives the Result of a check that CheckAsync started. A type
// with a Done method lets a caller hand over, as done, the object it would
// allocate for the check anyway (the message carrying the result on), so
// that starting a check allocates no closure; DoneFunc adapts a function.
type Done interface {
	// Done is called exactly once with the check's Result; see CheckAsync
	// for the goroutine it runs on and what it must not do.
	Done(Result)
}

// DoneFunc is a function used as a Done.
type DoneFunc func(Result)

// Done calls f(r).
func (f DoneFunc) Done(r Result) { f(r) }

// CheckAsync runs the same check as Check and calls done.Done exactly once
// with the Result that Check would have returned for the same network
// behaviour: same Class, StatusCode, Message, Canceled and the same
// meaning of Connect, FirstByte and Total. It returns at once; it never
// blocks on the network and never calls done before it returns.
//
// done.Done runs on an internal goroutine (on Linux, usually the event loop
// that serves many checks at once), so it must not block, must be cheap
// and must not call back into the Checker synchronously: hand the Result
// on (an actor message, a buffered channel send that cannot block) and
// return.
//
// On Linux, the common checks (an IP-literal proxy; http, socks4, socks4a,
// socks5 or socks5h with an http:// target and no BodyPattern; or
// ModeTCPConnect; no EchoURL; no WithDialContext; a Config.SourceIP, if
// any, of the proxy's family and without a zone) run as state machines on
// a shared epoll event loop, without a goroutine of their own, bind their
// socket to Config.SourceIP and close their connection as Check does
// (Config.Close). Everything else runs Check on a goroutine,
// transparently. The event loop starts with the first check and stops by
// itself shortly after the last check in flight ended, so a Checker needs
// no Close.
//
// Canceling ctx aborts the check promptly (Canceled is set, as Check does);
// its deadline, if earlier than Config.Timeout, bounds the check.
func (c *Checker) CheckAsync(ctx context.Context, proxy ProxyURL, done Done) {
	if c.fastPath(proxy) && ctx.Err() == nil && startAsync(c, ctx, proxy, done) {
		return
	}
	go c.checkTo(ctx, proxy, done)
}

// checkTo is CheckAsync's fallback: Check on the caller's goroutine (a new
// one), then done. (A function of its own, so that CheckAsync's arguments
// stay on the stack on the fast path.)
func (c *Checker) checkTo(ctx context.Context, proxy ProxyURL, done Done) {
	done.Done(c.Check(ctx, proxy))
}

// fastPath reports whether a check of proxy can run on the event loop: its
// result is then computed by the same parsing and judging code as Check's,
// without TLS, host name resolution or a custom dialer.
func (c *Checker) fastPath(proxy ProxyURL) bool {
	if proxy.IsZero() || c.echo != nil || !c.ownDial {
		return false
	}
	addr, ok := proxyAddr(proxy)
	if !ok {
		return false
	}
	if src := c.source; src.IsValid() && (src.Zone() != "" || src.Is4() != addr.Addr().Is4()) {
		// A zoned source needs an interface index, and a proxy of the
		// other family fails in net.Dialer's own words: Check's.
		return false
	}
	if c.cfg.Mode == ModeTCPConnect {
		return true
	}
	if c.t.https || c.wantBody {
		return false
	}
	switch proxy.scheme {
	case SchemeHTTP, SchemeSOCKS5H, SchemeSOCKS4A:
		return true
	case SchemeSOCKS5, SchemeSOCKS4:
		if c.targetIP.IsValid() {
			return true
		}
		// The target is resolved locally: only when the cache holds it
		// for longer than the check can take (the loop must not block on
		// a lookup). Check fills the cache.
		rt := c.resolved.Load()
		return rt != nil && time.Now().Add(c.cfg.Timeout+time.Second).Before(rt.expires)
	}
	return false
}

// proxyAddr returns the proxy's address when its host is an IP literal
// that the event loop dials exactly as net.Dialer would (no zone, no
// IPv4-mapped IPv6 form): parsed once, by ParseProxyURL.
func proxyAddr(p ProxyURL) (netip.AddrPort, bool) { return p.addr, p.addrOK }

// parseProxyAddr is proxyAddr's parse of host and port.
func parseProxyAddr(host, port string) (netip.AddrPort, bool) {
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" || ip.Is4In6() {
		return netip.AddrPort{}, false
	}
	n := 0
	for i := 0; i < len(port); i++ {
		n = n*10 + int(port[i]-'0')
	}
	if n < 1 || n > 65535 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip, uint16(n)), true
}
