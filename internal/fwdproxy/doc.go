// Package fwdproxy runs real forwarding proxies on 127.0.0.1 for tests:
// unlike the fake farm in internal/fakeproxy, which plays the target
// itself, these proxies dial the target a client names and carry the
// bytes, so a request made through them reaches a real (httptest) origin.
//
// Start runs an HTTP proxy (http:// or, with Options.TLS, https://) that
// forwards absolute-form requests and tunnels CONNECT, may demand Basic
// credentials, and counts and records what it saw. StartSOCKS5 runs a
// SOCKS5 proxy (no authentication, CONNECT to an IPv4 address or a name).
//
// Both take a testing.TB and stop everything they started (listeners,
// tunnels, idle connections) when the test ends, so goleak stays quiet.
// The package is test support only: no production code may import it.
package fwdproxy
