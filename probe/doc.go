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
// # Latency
//
// Result.Connect covers the dial and all handshakes up to the point where
// the request can be written (TLS to the proxy, CONNECT or SOCKS, TLS to the
// target); FirstByte is from the request written to the first response byte;
// Total is the whole check.
package probe
