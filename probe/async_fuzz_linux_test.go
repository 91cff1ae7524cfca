//go:build linux

package probe

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// FuzzReplay checks the event loop's replay against Check without a
// network: the proxy's bytes (SOCKS replies and the HTTP response, or the
// HTTP response alone) are replayed by the loop's advance over every
// prefix of every step bytes, as if they had arrived in such pieces, on a
// connection that swallows writes. A replay that concludes on a prefix
// must give the result the whole stream (ended by EOF) gives, and that
// result must be Check's on a connection that returns the same bytes then
// EOF: same class, status and message.
func FuzzReplay(f *testing.F) {
	http204 := "HTTP/1.1 204 No Content\r\n\r\n"
	seeds := []struct {
		in    string
		which uint8
	}{
		{http204, 0},
		{"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Busy\r\nContent-Length: 3\r\n\r\nabc", 0},
		{"HTTP/1.1 407 Auth\r\nProxy-Authenticate: Basic\r\n\r\n", 1},
		{"HTTP/1.1 200 OK\r\nA: " + strings.Repeat("b", 5000) + "\r\n\r\n", 0},
		{"HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", 0},
		{"SSH-2.0-garbage\r\n\r\n", 0},
		{"\x05\x00" + "\x05\x00\x00\x01\x7f\x00\x00\x01\x1f\x90" + http204, 2},
		{"\x05\x02\x01\x00" + "\x05\x00\x00\x03\x09localhost\x1f\x90" + http204, 3},
		{"\x05\x02\x01\x01", 3},
		{"\x05\x00" + "\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00", 4},
		{"\x05\xff", 2},
		{"\x00\x5a\x00\x00\x00\x00\x00\x00" + http204, 5},
		{"\x00\x5b\x00\x00\x00\x00\x00\x00", 6},
		{"", 0},
	}
	for i, s := range seeds {
		f.Add([]byte(s.in), s.which, uint8(1+i%5))
	}
	cases := []struct{ proxy, target string }{
		{"http://127.0.0.1:3128", "http://target.proxyhealth.test/"},
		{"http://user:" + secretPass + "@127.0.0.1:3128", "http://target.proxyhealth.test/"},
		{"socks5://127.0.0.1:1080", "http://127.0.0.1:8080/"},
		{"socks5h://user:" + secretPass + "@127.0.0.1:1080", "http://target.proxyhealth.test/"},
		{"socks5h://127.0.0.1:1080", "http://[::1]/"},
		{"socks4://127.0.0.1:1080", "http://127.0.0.1/"},
		{"socks4a://" + secretPass + "@127.0.0.1:1080", "http://target.proxyhealth.test/"},
	}
	type fc struct {
		c *Checker
		p ProxyURL
	}
	var fcs []fc
	for _, tc := range cases {
		c := newChecker(f, Config{TargetURL: tc.target, Timeout: 5 * time.Second},
			WithDialContext(func(ctx context.Context, network, addr string) (net.Conn, error) {
				in := ctx.Value(replayKey{}).(replayInput)
				return &replayConn{r: bytes.NewReader(in.b), chunk: in.chunk}, nil
			}))
		fcs = append(fcs, fc{c, MustParseProxyURL(tc.proxy)})
	}
	f.Fuzz(func(t *testing.T, in []byte, which, step uint8) {
		k := fcs[int(which)%len(fcs)]
		st := max(int(step), 1, len(in)/256) // at most ~256 replays of a long input
		l := &evloop{st: getState(), rbuf: make([]byte, 512)}
		defer putState(l.st)
		// replay runs the loop's state machine over b (ended if eof).
		replay := func(b []byte, eof bool) (outcome, bool) {
			var got *Result
			a := &acheck{c: k.c, ctx: context.Background(), p: k.p, fd: -1, heapIdx: -1, dead: true,
				in: append([]byte(nil), b...), eof: eof, start: time.Now(),
				done: DoneFunc(func(r Result) { got = &r })}
			a.deadline = a.start.Add(time.Hour)
			a.phase = phHandshake
			if k.p.scheme == SchemeHTTP {
				l.sendRequest(a)
			}
			l.advance(a)
			if got == nil {
				return outcome{}, false
			}
			return outcomeOf(*got), true
		}
		full, ok := replay(in, true)
		if !ok {
			t.Fatalf("%s: no result with the whole stream and EOF", k.p)
		}
		ctx := context.WithValue(context.Background(), replayKey{}, replayInput{b: in, chunk: int(step % 4)})
		if want := outcomeOf(k.c.Check(ctx, k.p)); full != want {
			t.Fatalf("%s: replay %v\nCheck  %v", k.p, full, want)
		}
		for n := 0; n < len(in); n += st {
			if o, ok := replay(in[:n], false); ok && o != full {
				t.Fatalf("%s: replay of %d of %d bytes concluded %v\nwhole stream %v", k.p, n, len(in), o, full)
			}
		}
	})
}

// TestReplayTrickleBounded feeds responses to the loop's state machine one
// byte per arrival, the worst a proxy can trickle: the replays stay
// bounded (cheapReplays, then one per response head and one at the end)
// instead of one per byte, and the outcome is still Check's on the same
// bytes.
func TestReplayTrickleBounded(t *testing.T) {
	lines := func(n int) string { return strings.Repeat("X-A: b\r\n", n) }
	cases := []struct {
		name  string
		in    string
		heads int
	}{
		{"head too big", "HTTP/1.1 200 OK\r\n" + lines(3000) + "\r\n", 1},
		{"interim heads", strings.Repeat("HTTP/1.1 100 Continue\r\n"+lines(100)+"\r\n", 3) + "HTTP/1.1 503 Busy\r\n" + lines(100) + "\r\n", 4},
		{"endless line", "HTTP/1.1 200 OK\r\nX-A: " + strings.Repeat("b", 20000), 1},
		{"ok", "HTTP/1.1 204 No Content\r\n" + lines(1000) + "\r\n", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newChecker(t, Config{TargetURL: "http://t.proxyhealth.test/"},
				WithDialContext(func(ctx context.Context, network, addr string) (net.Conn, error) {
					return &replayConn{r: bytes.NewReader([]byte(tc.in))}, nil
				}))
			p := MustParseProxyURL("http://127.0.0.1:3128")
			want := outcomeOf(c.Check(context.Background(), p))

			l := &evloop{st: getState(), rbuf: make([]byte, 512)}
			defer putState(l.st)
			var got *Result
			a := &acheck{c: c, ctx: context.Background(), p: p, fd: -1, heapIdx: -1, dead: true,
				start: time.Now(), done: DoneFunc(func(r Result) { got = &r })}
			a.deadline = a.start.Add(time.Hour)
			l.sendRequest(a)
			for i := 0; i < len(tc.in) && got == nil; i++ {
				prev := len(a.in)
				a.in = append(a.in, tc.in[i])
				l.arrived(a, prev)
			}
			if got == nil {
				a.eof = true
				l.arrived(a, len(a.in))
			}
			if got == nil {
				t.Fatal("no result at EOF")
			}
			if o := outcomeOf(*got); o != want {
				t.Errorf("trickled: %v\nCheck:    %v", o, want)
			}
			if max := cheapReplays + tc.heads + 1; a.replays > max || a.replays*50 > len(tc.in) {
				t.Errorf("%d replays for %d bytes, want at most %d and far fewer than bytes", a.replays, len(tc.in), max)
			}
			t.Logf("%d bytes, %d replays: %v", len(tc.in), a.replays, want)
		})
	}
}
