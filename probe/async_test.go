package probe

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// checkAsync runs CheckAsync and waits for its result, failing the test if
// done is not called within 10 s. (TestCheckAsyncMany checks that done is
// called only once.)
func checkAsync(t testing.TB, c *Checker, ctx context.Context, p ProxyURL) Result {
	t.Helper()
	ch := make(chan Result, 2)
	c.CheckAsync(ctx, p, DoneFunc(func(r Result) { ch <- r }))
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatalf("CheckAsync %s: done not called within 10s", p)
	}
	return Result{}
}

// localAddrRE matches the local address in a net.OpError text
// ("read tcp 127.0.0.1:40312->127.0.0.1:8080: ..."), which differs from
// one connection to the next.
var localAddrRE = regexp.MustCompile(`(tcp )\S+->`)

// tookRE matches the measured time in a TOO_SLOW message.
var tookRE = regexp.MustCompile(`check took [^,]+,`)

// outcome is what must be equal between Check and CheckAsync.
type outcome struct {
	Class    pb.FailureClass
	Status   int
	Message  string
	Canceled bool
}

func outcomeOf(r Result) outcome {
	msg := localAddrRE.ReplaceAllString(r.Message, "${1}LOCAL->")
	msg = tookRE.ReplaceAllString(msg, "check took T,")
	return outcome{r.Class, r.StatusCode, msg, r.Canceled}
}

func (o outcome) String() string {
	return fmt.Sprintf("%v/%d/%q/canceled=%v", o.Class, o.Status, o.Message, o.Canceled)
}

// diffCase is one proxy behaviour checked with one scheme and config.
type diffCase struct {
	name   string
	b      fakeproxy.Behavior
	scheme string
	user   string // "user:pass" or "user"
	cfg    Config
	// racy: the behaviour races with the check in both paths (a reset
	// before or after the request is written; Flaky's coin), so one run
	// of each is not comparable: both run several times and every
	// asynchronous outcome must be one the synchronous path also gave.
	racy bool
}

func diffCases() []diffCase {
	httpT := "http://target.proxyhealth.test/"
	var cases []diffCase
	behaviors := []struct {
		name string
		b    fakeproxy.Behavior
		cfg  Config
		racy bool
	}{
		{"ok", fakeproxy.OK(), Config{}, false},
		{"refuse", fakeproxy.Refuse(), Config{}, false},
		{"blackhole", fakeproxy.Blackhole(), Config{Timeout: time.Second}, false},
		{"slow", fakeproxy.Slow(20 * time.Millisecond), Config{}, false},
		{"slow too slow", fakeproxy.Slow(20 * time.Millisecond), Config{LatencyCeiling: time.Millisecond}, false},
		{"slow timeout", fakeproxy.Slow(3 * time.Second), Config{Timeout: time.Second}, false},
		{"status 503", fakeproxy.Status(503), Config{}, false},
		{"status 404 trickle chunked interim", fakeproxy.Status(404).Trickle().Chunked().Interim(), Config{}, false},
		{"status 302 expected", fakeproxy.Status(302), Config{ExpectedStatus: []StatusRange{{300, 399}}}, false},
		{"ok trickle chunked interim GET", fakeproxy.OK().Trickle().Chunked().Interim(), Config{Method: "GET"}, false},
		{"wrong content no pattern", fakeproxy.WrongContent(), Config{}, false},
		{"garbage", fakeproxy.Garbage(), Config{}, false},
		{"reset", fakeproxy.Reset(), Config{}, true},
		{"flaky", fakeproxy.Flaky(0.7), Config{}, true},
		{"close reset", fakeproxy.OK(), Config{Close: CloseReset}, false},
	}
	schemes := []string{"http", "socks4", "socks4a", "socks5", "socks5h"}
	for _, b := range behaviors {
		for _, s := range schemes {
			cfg := b.cfg
			cfg.TargetURL = httpT
			if s == "socks4" || s == "socks5" {
				cfg.TargetURL = "http://127.0.0.1/"
			}
			cases = append(cases, diffCase{name: b.name, b: b.b, scheme: s, cfg: cfg, racy: b.racy})
		}
		if b.cfg.LatencyCeiling > 0 {
			continue // a tcp-connect check does not wait for Slow's delay: its time is its connect's
		}
		cfg := b.cfg
		cfg.Mode = ModeTCPConnect
		cases = append(cases, diffCase{name: b.name + " tcp-connect", b: b.b, scheme: "http", cfg: cfg, racy: b.racy})
	}
	for _, s := range schemes {
		cfg := Config{TargetURL: httpT}
		if s == "socks4" || s == "socks5" {
			cfg.TargetURL = "http://127.0.0.1/"
		}
		right, wrong := "user:"+secretPass, "user:wrong"
		if strings.HasPrefix(s, "socks4") {
			right, wrong = "user", "nobody"
		}
		for _, u := range []struct{ name, user string }{{"right", right}, {"wrong", wrong}, {"none", ""}} {
			cases = append(cases, diffCase{name: "auth " + u.name, b: fakeproxy.AuthRequired(), scheme: s, user: u.user, cfg: cfg})
		}
	}
	return cases
}

// TestCheckAsyncSameAsCheck checks every fakeproxy behaviour with every
// fast-path scheme and tcp-connect, once with Check and once with
// CheckAsync, and requires the same class, status, message and Canceled.
func TestCheckAsyncSameAsCheck(t *testing.T) { sameAsCheck(t, netip.Addr{}) }

// TestCheckAsyncSameAsCheckFromSourceIP is TestCheckAsyncSameAsCheck with
// Config.SourceIP: the event loop's bound sockets behave as Check's.
func TestCheckAsyncSameAsCheckFromSourceIP(t *testing.T) { sameAsCheck(t, source7) }

// sameAsCheck runs every diffCase through Check and CheckAsync, from src
// (none: the kernel's choice).
func sameAsCheck(t *testing.T, src netip.Addr) {
	cases := diffCases()
	f := startFarm(t, len(cases), fakeproxy.WithCredentials("user", secretPass))
	for i, tc := range cases {
		if err := f.Set(i, tc.b); err != nil {
			t.Fatal(err)
		}
	}
	// Timeouts are 1 s so that which step times out does not depend on
	// the machine's load (the race detector, parallel packages); at most
	// 16 cases run at once.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, tc := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			name := fmt.Sprintf("%s %s %s", tc.name, tc.scheme, tc.cfg.TargetURL)
			tc.cfg.SourceIP = src
			c, err := NewChecker(tc.cfg)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				return
			}
			u := f.URLWith(i, tc.scheme, "", "")
			if tc.user != "" {
				u = strings.Replace(u, "://", "://"+tc.user+"@", 1)
			}
			p := MustParseProxyURL(u)
			if !c.fastPath(p) {
				t.Errorf("%s: not on the fast path", name)
				return
			}
			runs := 1
			if tc.racy {
				runs = 12
			}
			syncSeen := map[outcome]bool{}
			var asyncOut []outcome
			for range runs {
				rs := c.Check(context.Background(), p)
				verifyResult(t, rs)
				syncSeen[outcomeOf(rs)] = true
				ra := checkAsync(t, c, context.Background(), p)
				verifyResult(t, ra)
				asyncOut = append(asyncOut, outcomeOf(ra))
				if ra.OK() && (ra.Connect <= 0 || ra.FirstByte <= 0 && tc.cfg.Mode != ModeTCPConnect) {
					t.Errorf("%s: async timings %+v", name, ra)
				}
			}
			for _, o := range asyncOut {
				// A racy outcome Check gives rarely: give it more runs.
				for extra := 0; tc.racy && !syncSeen[o] && extra < 100; extra++ {
					syncSeen[outcomeOf(c.Check(context.Background(), p))] = true
				}
				if !syncSeen[o] {
					var seen []string
					for s := range syncSeen {
						seen = append(seen, s.String())
					}
					sort.Strings(seen)
					t.Errorf("%s:\n async %v\n sync  %s", name, o, strings.Join(seen, "\n       "))
				}
			}
		}()
	}
	wg.Wait()
}

// TestCheckAsyncScriptedReplies runs TestScriptedProxyReplies' malformed
// and unusual replies (those of fast-path schemes: an http target) and a
// few more through both paths.
func TestCheckAsyncScriptedReplies(t *testing.T) {
	type replyCase struct {
		name, scheme string
		reply        []byte
	}
	cases := []replyCase{
		{"bad status line", "http", []byte("HTTP/1.1 2x0 OK\r\n\r\n")},
		{"folded header", "http", []byte("HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n")},
		{"huge header", "http", []byte("HTTP/1.1 200 OK\r\nA: " + strings.Repeat("b", 20000) + "\r\n\r\n")},
		{"truncated headers", "http", []byte("HTTP/1.1 200 OK\r\nA: b\r\n")},
		{"bad content-length", "http", []byte("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")},
		{"socks4 ok then 200", "socks4a", append([]byte{0, 0x5a, 0, 0, 0, 0, 0, 0}, "HTTP/1.0 200 OK\r\n\r\n"...)},
	}
	for _, sc := range scriptedReplies {
		if strings.HasPrefix(sc.target, "http://") {
			cases = append(cases, replyCase{sc.name, sc.scheme, sc.reply})
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := scripted(t, replyOnce(tc.reply))
			c := newChecker(t, Config{TargetURL: "http://t.proxyhealth.test/", Timeout: time.Second})
			p := MustParseProxyURL(tc.scheme + "://" + addr)
			if !c.fastPath(p) {
				t.Fatal("not on the fast path")
			}
			rs := c.Check(context.Background(), p)
			ra := checkAsync(t, c, context.Background(), p)
			verifyResult(t, ra)
			if outcomeOf(rs) != outcomeOf(ra) {
				t.Errorf("async %v\nsync  %v", outcomeOf(ra), outcomeOf(rs))
			}
		})
	}
}

// TestCheckAsyncCancelBeforeConnect: a context canceled before the loop
// picks the check up gives a canceled result without a connection.
func TestCheckAsyncCancelBeforeConnect(t *testing.T) {
	f := startFarm(t, 1)
	c := newChecker(t, Config{TargetURL: "http://t.proxyhealth.test/"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := checkAsync(t, c, ctx, MustParseProxyURL(f.URL(0)))
	if !r.Canceled || r.Class != cOther {
		t.Errorf("pre-canceled: %+v", r)
	}
	rs := c.Check(ctx, MustParseProxyURL(f.URL(0)))
	if outcomeOf(rs) != outcomeOf(r) {
		t.Errorf("async %v, sync %v", outcomeOf(r), outcomeOf(rs))
	}
	if f.Checks(0) != 0 {
		t.Errorf("farm saw %d connections", f.Checks(0))
	}
}

// A closed gate (WithGate) ends a check before it connects, on the event
// loop and in Check alike: Gated, Class OTHER, no connection; an open one
// changes nothing.
func TestGateHoldsChecksBackBeforeTheyConnect(t *testing.T) {
	f := startFarm(t, 1)
	var mu sync.Mutex
	open := false
	gate := func() bool { mu.Lock(); defer mu.Unlock(); return open }
	c := newChecker(t, Config{TargetURL: "http://t.proxyhealth.test/"}, WithGate(gate))
	p := MustParseProxyURL(f.URL(0))
	r := checkAsync(t, c, context.Background(), p)
	if !r.Gated || r.Canceled || r.Class != cOther || r.OK() {
		t.Errorf("async, gate closed: %+v", r)
	}
	rs := c.Check(context.Background(), p)
	if !rs.Gated || outcomeOf(rs) != outcomeOf(r) {
		t.Errorf("sync, gate closed: %+v; async %v", rs, outcomeOf(r))
	}
	if n := f.Checks(0); n != 0 {
		t.Fatalf("the farm saw %d connections through a closed gate", n)
	}
	mu.Lock()
	open = true
	mu.Unlock()
	if r := checkAsync(t, c, context.Background(), p); r.Gated || !r.OK() {
		t.Errorf("async, gate open: %+v", r)
	}
	if r := c.Check(context.Background(), p); r.Gated || !r.OK() {
		t.Errorf("sync, gate open: %+v", r)
	}
	if n := f.Checks(0); n != 2 {
		t.Errorf("the farm saw %d connections through an open gate, want 2", n)
	}
}

// TestCheckAsyncContextDeadline: a context deadline shorter than Timeout
// ends the check with Check's timeout result.
func TestCheckAsyncContextDeadline(t *testing.T) {
	f := startFarm(t, 1, fakeproxy.WithBehavior(fakeproxy.Blackhole()))
	c := newChecker(t, Config{TargetURL: "http://t.proxyhealth.test/", Timeout: time.Hour})
	p := MustParseProxyURL(f.URL(0))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	r := checkAsync(t, c, ctx, p)
	verifyResult(t, r)
	want(t, "ctx deadline", r, cTimeout, 0)
	if r.Canceled {
		t.Error("timeout reported as canceled")
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	rs := c.Check(ctx2, p)
	// Check races its context's deadline (the connection's deadline, the
	// context's AfterFunc closing the connection, finish looking at
	// ctx.Err()): its message is one of three; so is CheckAsync's.
	norm := func(r Result) outcome {
		o := outcomeOf(r)
		o.Message = strings.TrimPrefix(o.Message, "context deadline exceeded: ")
		o.Message = strings.Replace(o.Message, "use of closed network connection", "i/o timeout", 1)
		return o
	}
	if norm(rs) != norm(r) {
		t.Errorf("async %v, sync %v", outcomeOf(r), outcomeOf(rs))
	}
}

// TestCheckAsyncFallback: checks outside the fast path (https proxy, https
// target, host name, custom dialer, body pattern, echo) run Check on a
// goroutine and answer like it.
func TestCheckAsyncFallback(t *testing.T) {
	f := startFarm(t, 1)
	tlsCfg := f.ClientTLSConfig()
	port := f.Addr(0)[strings.LastIndexByte(f.Addr(0), ':')+1:]
	d := &net.Dialer{}
	cases := []struct {
		name  string
		cfg   Config
		opts  []Option
		proxy string
	}{
		{"https proxy", Config{TargetURL: "http://t.proxyhealth.test/", TLSConfig: tlsCfg}, nil, "https://" + f.Addr(0)},
		{"https target", Config{TargetURL: "https://t.proxyhealth.test/", TLSConfig: tlsCfg}, nil, "http://" + f.Addr(0)},
		{"host name", Config{TargetURL: "http://t.proxyhealth.test/"}, nil, "http://localhost:" + port},
		{"custom dialer", Config{TargetURL: "http://t.proxyhealth.test/"}, []Option{WithDialContext(d.DialContext)}, "http://" + f.Addr(0)},
		{"body pattern", Config{TargetURL: "http://t.proxyhealth.test/", BodyPattern: "^ok$"}, nil, "http://" + f.Addr(0)},
		{"echo", Config{TargetURL: "http://t.proxyhealth.test/", EchoURL: f.EchoURL()}, nil, "http://" + f.Addr(0)},
		{"socks5 host target uncached", Config{TargetURL: "http://localhost/"}, nil, "socks5://" + f.Addr(0)},
	}
	for _, tc := range cases {
		c := newChecker(t, tc.cfg, tc.opts...)
		p := MustParseProxyURL(tc.proxy)
		if c.fastPath(p) {
			t.Errorf("%s: on the fast path", tc.name)
		}
		r := checkAsync(t, c, context.Background(), p)
		verifyResult(t, r)
		want(t, tc.name, r, cOK, 200)
		if tc.name == "echo" && r.ExitIP == "" {
			t.Errorf("echo: no exit IP: %+v", r)
		}
	}
	// Once Check resolved the socks5 target, the fast path takes it.
	c := newChecker(t, Config{TargetURL: "http://localhost/"})
	p := MustParseProxyURL("socks5://" + f.Addr(0))
	want(t, "socks5 resolve", c.Check(context.Background(), p), cOK, 200)
	if !c.fastPath(p) {
		t.Error("socks5 with a cached target resolution: not on the fast path")
	}
	want(t, "socks5 cached", checkAsync(t, c, context.Background(), p), cOK, 200)
	want(t, "zero proxy", checkAsync(t, c, context.Background(), ProxyURL{}), cOther, 0)
}

// TestCheckAsyncIPv6 runs the differential check against a farm on ::1
// (an AF_INET6 socket on the event loop): OK, an HTTP status and a reset,
// through http and socks5h, without and with SourceIP ::1.
func TestCheckAsyncIPv6(t *testing.T) {
	f, err := fakeproxy.Start(context.Background(), 3, fakeproxy.WithHost("::1"))
	if err != nil {
		testutil.Unavailable(t, "no IPv6 loopback (::1), so the event loop's AF_INET6 path is not checked: %v", err)
	}
	t.Cleanup(f.Close)
	behaviors := []fakeproxy.Behavior{fakeproxy.OK(), fakeproxy.Status(502), fakeproxy.Garbage()}
	for i, b := range behaviors {
		if err := f.Set(i, b); err != nil {
			t.Fatal(err)
		}
	}
	// Also from SourceIP ::1: the event loop binds an AF_INET6 socket.
	for _, src := range []netip.Addr{{}, netip.IPv6Loopback()} {
		c := newChecker(t, Config{TargetURL: "http://t.proxyhealth.test/", SourceIP: src})
		for i, b := range behaviors {
			for _, scheme := range []string{"http", "socks5h"} {
				p := MustParseProxyURL(f.URLWith(i, scheme, "", ""))
				if !c.fastPath(p) {
					t.Fatalf("%s from %v: not on the fast path", p, src)
				}
				rs := c.Check(context.Background(), p)
				ra := checkAsync(t, c, context.Background(), p)
				verifyResult(t, ra)
				if outcomeOf(rs) != outcomeOf(ra) {
					t.Errorf("%v %s from %v: async %v\nsync %v", b, p, src, outcomeOf(ra), outcomeOf(rs))
				}
			}
		}
	}
}
