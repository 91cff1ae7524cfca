// Package probe checks proxies: one Check is one connection to the proxy,
// one request through it to a target URL, and a classified Result.
//
// # Proxy URLs
//
// ParseProxyURL accepts http://, https:// (TLS to the proxy, then HTTP
// proxying), socks5://, socks5h:// (remote DNS), socks4:// and socks4a://
// (remote DNS) URLs with optional percent-encoded user:pass@ credentials; a
// bare host:port means http://host:port. The port may be omitted only when a
// scheme is given (defaults: http 80, https 443, socks 1080). A ProxyURL
// never prints, logs or marshals its credentials: String, GoString,
// LogValue and MarshalText all return Redacted(). ID() is the first 16 hex
// digits of the SHA-256 of Redacted(), so changing credentials keeps the ID.
//
// # Checks
//
// Build a Checker once per configuration with NewChecker(Config) and share
// it; (*Checker).Check(ctx, proxy) is safe for concurrent use. Per proxy
// scheme and target scheme:
//
//	http/https proxy, http target   absolute-form request ("HEAD http://host/path HTTP/1.1")
//	http/https proxy, https target  CONNECT host:443, then TLS, then origin-form request
//	socks5/socks5h proxy            RFC 1928 (+ RFC 1929 user/password), then [TLS,] request
//	socks4/socks4a proxy            SOCKS4 (user ID from the URL), then [TLS,] request
//	ModeTCPConnect                  only the TCP connect to the proxy
//
// Requests are pre-built per Checker (only the Proxy-Authorization header
// varies per proxy) and written with one write; responses are parsed by a
// small purpose-built reader (no net/http): status line and headers (at
// most MaxHeaderBytes, 1xx interim responses skipped) and, only when a
// BodyPattern is set, up to MaxBodyBytes of the body (Content-Length,
// chunked or until close). Each check sends "Connection: close" and closes
// its connection; connection reuse is not supported (Config.ReuseConnections
// is rejected). The SOCKS handshakes are implemented here (no extra
// goroutines). socks5 and socks4 resolve the target locally (cached for 30
// s); socks5h and socks4a let the proxy resolve it.
//
// # Failure classes
//
//	DNS                  the proxy's (or, for socks5/socks4, the target's) name did not resolve
//	REFUSED              connection to the proxy refused
//	TIMEOUT              Config.Timeout or the context's deadline passed
//	TLS                  TLS handshake with an https proxy or an https target failed
//	PROXY_AUTH_REQUIRED  407, or SOCKS authentication rejected / no acceptable method
//	BAD_STATUS           unexpected status; also a proxy refusing CONNECT (its status
//	                     code in StatusCode) and SOCKS "could not connect" replies
//	CONTENT_MISMATCH     BodyPattern did not match the first MaxBodyBytes of the body
//	RESET                connection reset, broken pipe, or closed before a complete response
//	PROTOCOL             malformed or oversized status line, headers, chunking or SOCKS reply
//	TOO_SLOW             otherwise successful, but Total exceeded Config.LatencyCeiling
//	OTHER                anything else, including canceled checks (Result.Canceled)
//
// Result.Message is at most MaxMessageBytes and never contains credentials.
//
// # Deadlines and cancellation
//
// A check sets one deadline, min(ctx deadline, start+Timeout), for the dial
// and on the connection; cancelling ctx closes the connection at once (via
// context.AfterFunc). Check never blocks past its deadline.
//
// # TLS
//
// Config.TLSConfig (nil = system roots) verifies both https targets
// (ServerName = target host) and https proxies (ServerName = proxy host);
// tests pass a config with the test CA in RootCAs. A small client session
// cache is added so repeated checks of the same target can resume sessions.
//
// # Exit IP and anonymity (Config.EchoURL)
//
// With Config.EchoURL set (an httpbin-like /get: {"origin": "IP[, IP...]",
// "headers": {"Name": "value" or ["value", ...]}}), a check that passed
// (not TOO_SLOW, not failed) is followed by "GET EchoURL" through the same
// proxy on a second connection (the check's is closed first), in the same
// protocol path as a check of that URL, within what is left of the check's
// deadline. It sends only Host, the User-Agent, "Accept:
// application/json" and "Connection: close" (not Config.Headers, which are
// meant for the target). Up to MaxBodyBytes of the answer are parsed;
// anything else (not JSON, no origin, an origin entry that is not an IP,
// headers of the wrong shape, a truncated body, a non-2xx status, a
// timeout, a reset) leaves ExitIP empty, says why in Result.EchoMessage
// and never changes the check's class, Message or timings: the echo's
// time is Result.Echo, outside Total and the latency ceiling.
//
// Result.ExitIP is the origin's last entry (httpbin lists the
// X-Forwarded-For chain first and its peer, the exit, last). The checker's
// own addresses are the origin of a direct (no proxy) GET of EchoURL,
// shared by all checks of a Checker, refreshed every OwnIPRefresh (one
// check fetches, the others use the last known value, or wait for the
// first fetch within their deadline; a failure is retried after
// OwnIPRetry), plus the local address of the echo's connection to the
// proxy (what a proxy on the same network sees). Result.Anonymity:
//
//	TRANSPARENT  an own address appears in the origin or in any header value
//	             (tokens that parse as IP or IP:port; the headers the echo
//	             request sent itself are skipped)
//	ANONYMOUS    the origin lists more than one address, or a proxy header is
//	             present: Via, Proxy-Connection, X-Proxy-Id, X-Bluecoat-Via, or an
//	             address header (X-Forwarded-For, Forwarded, X-Real-Ip, Client-Ip,
//	             True-Client-Ip, ...) naming something other than the exit
//	             (an echo's own front end records its peer, the exit, there)
//	ELITE        neither
//	UNSPECIFIED  no ExitIP, or the answer has no "headers" object
//
// When the own address is unknown (the direct GET failed), only the local
// address can reveal a transparent proxy; the others are judged anonymous
// or elite and EchoMessage says so. Through CONNECT and SOCKS tunnels a
// real proxy cannot add headers, so use an http:// EchoURL to judge HTTP
// proxies' headers. An echo that adds proxy headers of its own makes every
// proxy look anonymous: a direct request to it should show none.
//
// # Latency
//
// Result.Connect covers the dial and all handshakes up to the point where
// the request can be written (TLS to the proxy, CONNECT or SOCKS, TLS to the
// target); FirstByte is from the request written to the first response byte;
// Total is the whole check.
//
// # Source address
//
// Config.SourceIP binds every connection of a check (and of its echo) to
// one local address, port 0: checks leave a multi-homed host through the
// interface of that address, and on loopback each checker can have its
// own 127.0.0.x, which a farm counts apart. On Linux the bind uses
// IP_BIND_ADDRESS_NO_PORT, so the port is still picked per destination at
// connect(2) and bound sockets do not drain the ephemeral range. Check
// sets it through net.Dialer (LocalAddr and Control), the event loop with
// bind(2) before connect(2); dial errors name the source as net.Dialer
// does ("dial tcp 127.0.0.7:0->127.0.0.1:8080: ..."). NewChecker refuses
// an address that is not one of the host's, and SourceIP together with
// WithDialContext.
//
// # Checks without a goroutine each (CheckAsync)
//
// CheckAsync(ctx, proxy, done) gives the Result Check would give and calls
// done.Done once, on an internal goroutine (done is an interface, Done, so
// that a caller can pass the object it allocates for the check anyway
// instead of a closure; DoneFunc adapts a function). On Linux the common
// checks (an IP-literal proxy; http, socks4, socks4a, socks5 or socks5h
// with an http:// target and no BodyPattern; ModeTCPConnect; no EchoURL or
// WithDialContext) run as state machines on one shared epoll event loop:
// socket, non-blocking connect, handshake, request, reads, close, with a
// deadline heap and cancellation posted through an eventfd. The loop judges
// the bytes with Check's own code (the SOCKS handshakes, readResponse,
// judge, finish), replayed over everything received so far each time bytes
// arrive, through a reader that reports "need more" at their end; writes
// are deduplicated. Classes and messages are therefore Check's: the tests
// run every fakeproxy behaviour through both, and FuzzReplay checks that
// a replay concluding on a prefix gives the whole stream's result. The
// loop goroutine stops 100 ms after its last check and restarts on demand;
// a Checker needs no Close. Everything else runs Check on a goroutine.
package probe
