// Package endpoint is proxyhealth's rotating forward-proxy endpoint: one
// port that is both an HTTP forward proxy (absolute-form requests and
// CONNECT) and a SOCKS5 proxy (SOCKS4/4a too), sending each request or
// tunnel through an upstream proxy picked by the engine (a Rotator:
// *proxyhealth.Engine), retrying on another upstream, and reporting every
// attempt's outcome back (passive health). Programs reach it through
// the facade (proxyhealth.NewEndpoint, proxyhealth.EndpointConfig).
//
// The protocol is told by a connection's first byte, like glider's mixed
// listener: 0x05 SOCKS5, 0x04 SOCKS4, anything else HTTP.
//
//	srv, err := proxyhealth.NewEndpoint(engine, proxyhealth.EndpointConfig{Addr: "127.0.0.1:8899"})
//	...
//	go srv.ListenAndServe(ctx)      // curl -x http://127.0.0.1:8899 http://example.com/
//	...                             // curl --socks5-hostname 127.0.0.1:8899 https://example.com/
//	srv.Shutdown(ctx)
//
// # Authentication
//
// Without Config.Users the endpoint authenticates nobody, and it refuses
// to listen anywhere but loopback (Validate, Serve). With Users, every
// client authenticates: Proxy-Authorization Basic for HTTP, RFC 1929
// username/password for SOCKS5 (SOCKS4, which has no password, is then
// refused). Upstream credentials (the picked proxy's URL userinfo) are
// used towards the upstream only; clients never see them, nor an
// upstream's error text or 407.
//
// # Sticky sessions
//
// A request with a session key is picked with the sticky strategy (the key
// keeps its upstream while that upstream stays usable); the others use
// Config.Strategy. The key comes from the Config.StickyHeader request
// header (default X-Proxyhealth-Session, on absolute-form requests and
// CONNECT; never forwarded), or from the username: "alice-session-abc" is
// user "alice" (password checked as alice's) with key "abc" — the split is
// at the first "-session-". Without Users the username is not checked but
// its key is used (curl -x http://x-session-abc:@127.0.0.1:8899).
//
// # Retries and outcomes
//
// Each request or tunnel tries up to Config.MaxAttempts upstreams, each
// picked with the ones already tried excluded.
//
//   - CONNECT and SOCKS: the tunnel to the target is dialed through the
//     upstream (transport.DialThrough) before the client is answered, so a
//     failed dial is retried on another upstream whatever the client sends
//     next. Each dial is reported: success, or failure with its class. The
//     tunnel is then spliced; a reset later in a tunnel is ambiguous (the
//     target's or the proxy's) and is reported as a failure only when the
//     upstream side ends with an error before sending a single byte.
//   - Absolute-form requests: an idempotent request without a body (GET,
//     HEAD, OPTIONS, TRACE) to an http:// target through an http://
//     upstream, most of a forward proxy's traffic, takes the lean path:
//     the endpoint writes it in absolute form over a kept-alive
//     connection to the upstream (at most 64 idle per upstream, 90 s) and
//     reads the response on the handler's goroutine; a kept-alive
//     connection the upstream closed meanwhile is dropped and the request
//     sent on another, which is not counted as a failure. The others are sent by an http.Transport
//     (keep-alive per upstream; SOCKS4 upstreams dial per request). A
//     failure before a connection to the upstream was obtained,
//     or a 407 from the upstream, is retried when the request body was not
//     read yet; a connection failure after that only for idempotent
//     requests without a body (GET, HEAD, OPTIONS, TRACE, PUT, DELETE, or
//     an Idempotency-Key header). Any other response is the target's answer
//     and reports the upstream OK (a 502 from the upstream itself cannot be
//     told from a target's and passes through).
//
// When every attempt fails the client gets 502 (no usable upstream: 503)
// with the failure class in the X-Proxyhealth-Error header and a short
// text body; SOCKS clients get a general-failure reply.
//
// Stats returns counters for the dashboard and metrics. Close stops
// everything at once; Shutdown drains first.
package endpoint
