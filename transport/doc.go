// Package transport sends HTTP traffic through the proxies the engine
// hands out.
//
// DialThrough (and Dialer.DialThrough) opens a TCP connection to a target
// through one upstream proxy: HTTP CONNECT (http://), CONNECT inside TLS to
// the proxy (https://), SOCKS5 (socks5://, socks5h://) and SOCKS4
// (socks4://, socks4a://), with the credentials of the proxy URL's
// userinfo. Its failures are *DialError values whose Class is one of the
// probe's failure-class names (Classify); their messages never contain
// the credentials.
package transport
