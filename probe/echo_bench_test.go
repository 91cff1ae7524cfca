package probe

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

// BenchmarkEcho measures what Config.EchoURL adds to a check: the same
// check with echo=off and echo=on, per proxy path, against a farm in this
// process or in a child process (cpu-µs/op is then the client side alone).
// The echo is answered by the fake proxy itself (any host, path /get); the
// own IP comes from a direct echo server in this process, fetched once
// before the timer starts (then cached for OwnIPRefresh).
//
//	go test -run '^$' -bench BenchmarkEcho -count 5 ./probe/
func BenchmarkEcho(b *testing.B) {
	direct := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, `{"origin": "127.0.0.1", "headers": {}}`)
	}))
	defer direct.Close()
	paths := []struct{ name, scheme, target, echo string }{
		{"HTTP", "http", "http://bench.proxyhealth.test/", direct.URL + "/get"},
		{"CONNECT", "http", "https://bench.proxyhealth.test/", "https://127.0.0.1/get"},
		{"SOCKS5", "socks5h", "http://bench.proxyhealth.test/", direct.URL + "/get"},
	}
	for _, p := range paths {
		for _, echo := range []bool{false, true} {
			for _, child := range []bool{false, true} {
				name := fmt.Sprintf("%s/echo=%v/farm=inproc", p.name, map[bool]string{false: "off", true: "on"}[echo])
				if child {
					name = name[:len(name)-len("inproc")] + "child"
				}
				b.Run(name, func(b *testing.B) {
					f := startBenchFarm(b, child)
					cfg := Config{TargetURL: p.target, TLSConfig: f.tls}
					if echo {
						cfg.EchoURL = p.echo
					}
					c := newChecker(b, cfg)
					if echo && p.name == "CONNECT" {
						// The https echo's own IP: no TLS server here, so
						// seed the cache as a direct GET would.
						c.echo.own.ips = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
						c.echo.own.expires = time.Now().Add(time.Hour)
					}
					px := MustParseProxyURL(p.scheme + "://" + f.addr)
					ctx := context.Background()
					if r := c.Check(ctx, px); !r.OK() || echo != (r.ExitIP != "") {
						b.Fatalf("warm-up check: %+v", r)
					}
					runBench(b, func() error {
						r := c.Check(ctx, px)
						if !r.OK() || echo != (r.ExitIP != "") {
							return fmt.Errorf("check: %+v", r)
						}
						return nil
					})
				})
			}
		}
	}
}
