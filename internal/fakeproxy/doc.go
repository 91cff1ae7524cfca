// Package fakeproxy runs a farm of fake proxies on 127.0.0.1 (or another
// loopback address: WithHost) for tests, benchmarks and demos.
//
// Start(ctx, n, opts...) opens n listeners on random loopback ports. Every
// proxy speaks all protocols on its one port and tells them apart by the
// first byte a client sends:
//
//	0x05  SOCKS5 (no auth or RFC 1929 username/password), CONNECT only
//	0x04  SOCKS4 / SOCKS4a
//	0x16  TLS: an https:// proxy; TLS is terminated with the farm's test
//	      certificate, then HTTP proxying as below
//	else  HTTP proxying: absolute-form requests ("GET http://host/ HTTP/1.1")
//	      and CONNECT
//
// The farm never dials a real target: it answers absolute-form requests
// itself, and after granting a CONNECT or SOCKS tunnel it plays the target
// too, serving the one tunnelled HTTP request (terminating TLS first if the
// client starts a handshake). Its certificate is signed by a per-process
// test CA (RootCAs, ClientTLSConfig) and is valid for localhost, 127.0.0.1,
// ::1, proxyhealth.test and *.proxyhealth.test — use a target such as
// https://target.proxyhealth.test/ (with socks5h or an HTTP proxy, which
// never resolve it) or https://127.0.0.1/. Each connection carries exactly
// one request and the response says "Connection: close"; the body is the
// farm's (WithBody, default "ok").
//
// # Behaviors
//
// Each proxy has a Behavior that Set can change at any time (safe for
// concurrent use; connections in progress keep the behavior they were
// accepted with): OK, Refuse (listener closed, re-opened on the same port
// when the behavior changes back — Set fails in the unlikely case the port
// was taken meanwhile), Blackhole, Slow(d), Flaky(p) (reset or 502; seed with
// WithSeed for determinism), Status(code), AuthRequired (credentials from
// WithCredentials or SetCredentials), WrongContent, Reset (RST right after
// accept) and Garbage (neither HTTP nor SOCKS). Modifiers refine the final
// response: Chunked, Trickle (one byte per write, for partial reads),
// Interim (a 100 Continue first), Delay and RequireAuth.
//
// # Echo target
//
// A request for EchoPath ("/get", any host, query ignored) is answered like
// httpbin's /get: {"args": {}, "headers": {...}, "origin": "...", "url":
// "..."}, with the request's headers as the target received them (never
// Proxy-Authorization). Each proxy has an exit IP (DefaultExit(i), in
// 198.18.0.0/15) and an anonymity mode (WithAnonymity, SetExit): Elite adds
// nothing, Anonymous adds "Via: 1.1 fakeproxy", Transparent adds Via and
// "X-Forwarded-For: CLIENT" and reports origin "CLIENT, EXIT" as httpbin
// does. The mode applies through every protocol, tunnels included (a real
// proxy cannot add headers inside a CONNECT or SOCKS tunnel; the farm does,
// so that clients can be tested on every path). The behavior still applies:
// Status sets the echo's status, WrongContent replaces it, Delay, Chunked,
// Trickle and Interim shape it. EchoURL is a direct (no proxy) echo server
// on loopback, http or https on one port, answering origin 127.0.0.1: a
// checker's way to learn its own address. Stats(i).Echoes and EchoAnswers
// count echo answers; the direct server's connections are not checks.
//
// # Counting
//
// Every accepted connection counts as a check: Checks(i), Stats(i) (first
// and last accept time, shortest interval between two checks, for
// politeness assertions) and TotalChecks. Connections refused while a proxy
// is in Refuse never reach the farm and are not counted.
//
// Checks are also counted per source address, the client's IP: several
// checkers on one machine, each bound to its own loopback address
// (probe.Config.SourceIP: 127.0.0.2, 127.0.0.3, ...), are told apart.
// Stats(i).Sources has, per address, the checks and the first and last
// accept time; ChecksFrom(i, ip) and Sources (the whole farm) sum them.
// With WithOverlapWindow the farm also counts overlaps, the signature of
// two checkers both checking one proxy: a check from another address than
// the proxy's previous check, within the window of it; Stats(i).Overlaps,
// MaxOverlap (the longest run of them) and LastOverlap. The per-source
// counts are a small slice per proxy under the proxy's lock (no map, no
// allocation per check once an address has been seen).
//
// A farm in another process (a child serving WithHost addresses, as the
// daemon benchmarks run them) is read through ServeControl on the child's
// stdin and stdout: "count", "report" (one line of JSON: WriteReport, read
// back with ParseReport into a Report with every proxy's Stats) and
// "reset".
//
// # Cost and limits
//
// Each proxy costs one listening socket, one accept goroutine and a small
// struct; each open connection costs a goroutine and a pooled 4 KiB buffer.
// 10,000 proxies need 10,000 file descriptors plus two per connection in
// flight when the client is in the same process: Start raises the soft
// RLIMIT_NOFILE up to the hard limit if needed (Go already does this at
// start-up since 1.19) and fails with ErrFDLimit if the hard limit is too
// low. Note that the race detector allows at most 8128 live goroutines, so
// farms of more than ~8,000 proxies cannot run under -race.
//
// Close stops every listener, closes open connections (including
// blackholed ones and pending Slow delays) and waits for all goroutines.
package fakeproxy
