package probe

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

const (
	aNone        = pb.Anonymity_ANONYMITY_UNSPECIFIED
	aTransparent = pb.Anonymity_ANONYMITY_TRANSPARENT
	aAnonymous   = pb.Anonymity_ANONYMITY_ANONYMOUS
	aElite       = pb.Anonymity_ANONYMITY_ELITE
)

// httpsEcho turns the farm's http echo URL into its https form (same port:
// the direct echo server speaks both).
func httpsEcho(f *fakeproxy.Farm) string { return strings.Replace(f.EchoURL(), "http:", "https:", 1) }

// TestEchoAnonymityLevels: each level through every kind of proxy path
// (absolute form, CONNECT + TLS, https proxy, SOCKS5 with local and remote
// DNS, SOCKS4a), with credentials; the exit IP is the proxy's.
func TestEchoAnonymityLevels(t *testing.T) {
	f := startFarm(t, 3, fakeproxy.WithCredentials("user", secretPass), fakeproxy.WithBehavior(fakeproxy.AuthRequired()))
	modes := []struct {
		mode fakeproxy.Anonymity
		want pb.Anonymity
	}{{fakeproxy.Elite, aElite}, {fakeproxy.Anonymous, aAnonymous}, {fakeproxy.Transparent, aTransparent}}
	for i, m := range modes {
		if err := f.SetExit(i, fakeproxy.DefaultExit(i), m.mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ scheme, target, echo string }{
		{"http", "http://target.proxyhealth.test/", f.EchoURL()},
		{"http", "https://target.proxyhealth.test/", httpsEcho(f)},
		{"https", "http://target.proxyhealth.test/", f.EchoURL()},
		{"socks5", "http://127.0.0.1/", f.EchoURL()},
		{"socks5h", "https://target.proxyhealth.test/", httpsEcho(f)},
		{"socks4a", "http://target.proxyhealth.test/", f.EchoURL()},
	} {
		c := newChecker(t, Config{TargetURL: tc.target, EchoURL: tc.echo, TLSConfig: f.ClientTLSConfig()})
		for i, m := range modes {
			pass := secretPass
			if tc.scheme == "socks4a" {
				pass = ""
			}
			r := checkURL(t, c, f.URLWith(i, tc.scheme, "user", pass))
			what := fmt.Sprintf("%v via %s -> %s, echo %s", m.mode, tc.scheme, tc.target, tc.echo)
			want(t, what, r, cOK, 200)
			if r.ExitIP != fakeproxy.DefaultExit(i) || r.Anonymity != m.want || r.EchoMessage != "" || r.Echo <= 0 {
				t.Errorf("%s: exit %q %v (%q, echo %v), want %s %v", what, r.ExitIP, r.Anonymity, r.EchoMessage, r.Echo, fakeproxy.DefaultExit(i), m.want)
			}
		}
	}
	for i := range modes {
		if got := f.Stats(i).Echoes; got != 6 {
			t.Errorf("proxy %d answered %d echoes, want 6 (one per checked path)", i, got)
		}
	}
	// The own IP is fetched once per Checker (six checkers), not per check.
	if got := f.EchoAnswers(); got != 6 {
		t.Errorf("direct echo answers = %d, want 6", got)
	}
}

// TestEchoExitChanges: a new exit IP or level shows in the next check.
func TestEchoExitChanges(t *testing.T) {
	f := startFarm(t, 1)
	c := newChecker(t, Config{TargetURL: "http://target.proxyhealth.test/", EchoURL: f.EchoURL()})
	steps := []struct {
		ip   string
		mode fakeproxy.Anonymity
		want pb.Anonymity
	}{
		{"203.0.113.1", fakeproxy.Elite, aElite},
		{"203.0.113.2", fakeproxy.Elite, aElite},
		{"203.0.113.2", fakeproxy.Anonymous, aAnonymous},
		{"2001:db8::7", fakeproxy.Transparent, aTransparent},
	}
	for _, s := range steps {
		if err := f.SetExit(0, s.ip, s.mode); err != nil {
			t.Fatal(err)
		}
		r := checkURL(t, c, f.URL(0))
		if !r.OK() || r.ExitIP != s.ip || r.Anonymity != s.want {
			t.Errorf("exit %s %v: got %+v", s.ip, s.mode, r)
		}
	}
}

// TestEchoOnlyAfterPassedCheck: a failed check (or a TCP-connect check,
// which Validate refuses with EchoURL) sends no echo.
func TestEchoOnlyAfterPassedCheck(t *testing.T) {
	f := startFarm(t, 1, fakeproxy.WithBehavior(fakeproxy.Status(503)))
	c := newChecker(t, Config{TargetURL: "http://target.proxyhealth.test/", EchoURL: f.EchoURL()})
	r := checkURL(t, c, f.URL(0))
	want(t, "503", r, cStatus, 503)
	if r.ExitIP != "" || r.Anonymity != aNone || r.Echo != 0 || r.EchoMessage != "" || f.Stats(0).Echoes != 0 || f.Checks(0) != 1 {
		t.Errorf("failed check: %+v, %d echoes, %d connections", r, f.Stats(0).Echoes, f.Checks(0))
	}
	// Latency ceiling: TOO_SLOW is not a pass either.
	if err := f.Set(0, fakeproxy.Slow(20*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	c = newChecker(t, Config{TargetURL: "http://target.proxyhealth.test/", EchoURL: f.EchoURL(), LatencyCeiling: time.Millisecond})
	if r := checkURL(t, c, f.URL(0)); r.Class != cTooSlow || r.ExitIP != "" || f.Stats(0).Echoes != 0 {
		t.Errorf("too slow: %+v, %d echoes", r, f.Stats(0).Echoes)
	}
}

// TestEchoTimeoutKeepsVerdict: the echo shares the check's deadline; when
// it runs out, the check still passes, without an exit IP, within Timeout.
func TestEchoTimeoutKeepsVerdict(t *testing.T) {
	const delay, timeout = 300 * time.Millisecond, 500 * time.Millisecond
	f := startFarm(t, 1, fakeproxy.WithBehavior(fakeproxy.Slow(delay)))
	c := newChecker(t, Config{TargetURL: "http://target.proxyhealth.test/", EchoURL: f.EchoURL(), Timeout: timeout})
	start := time.Now()
	r := checkURL(t, c, f.URL(0))
	elapsed := time.Since(start)
	want(t, "slow echo", r, cOK, 200)
	if r.ExitIP != "" || r.Anonymity != aNone || !strings.Contains(r.EchoMessage, "timeout") {
		t.Errorf("echo past the deadline: %+v", r)
	}
	// Total and Echo are disjoint parts of the call.
	if r.Echo <= 0 || r.Total+r.Echo > elapsed {
		t.Errorf("Total %v + Echo %v > elapsed %v: Total must not include the echo", r.Total, r.Echo, elapsed)
	}
	if f.Checks(0) != 2 {
		t.Errorf("connections = %d, want 2 (check, echo)", f.Checks(0))
	}
}

// TestEchoCancelKeepsVerdict: canceling during the echo leaves the passed
// check passed (not Canceled) and the exit empty.
func TestEchoCancelKeepsVerdict(t *testing.T) {
	f := startFarm(t, 1)
	c := newChecker(t, Config{TargetURL: "http://target.proxyhealth.test/", EchoURL: f.EchoURL()})
	// Learn the own IP first, so the echo is the only thing left to cancel.
	if r := checkURL(t, c, f.URL(0)); r.ExitIP == "" {
		t.Fatalf("first check: %+v", r)
	}
	// A proxy that answers the check and never answers the echo.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var echoSeen atomic.Bool
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				buf := make([]byte, 4096)
				n, _ := conn.Read(buf)
				if strings.Contains(string(buf[:n]), "/get") {
					echoSeen.Store(true)
					<-stop
					return
				}
				_, _ = conn.Write([]byte("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"))
			}()
		}
	}()
	defer func() { ln.Close(); close(stop); wg.Wait() }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan Result, 1)
	go func() { done <- c.Check(ctx, MustParseProxyURL("http://"+ln.Addr().String())) }()
	testutil.Eventually(t, 5*time.Second, "the echo request to reach the proxy", echoSeen.Load)
	cancel()
	r := <-done
	verifyResult(t, r)
	if !r.OK() || r.Canceled || r.ExitIP != "" || !strings.Contains(r.EchoMessage, "echo:") {
		t.Errorf("canceled during the echo: %+v", r)
	}
}

// TestEchoOwnIPUnknown: when the direct GET fails, transparent proxies are
// still found by the address of the connection to the proxy, the others
// get anonymous/elite with a note, and the direct GET is retried only
// after OwnIPRetry.
func TestEchoOwnIPUnknown(t *testing.T) {
	f := startFarm(t, 3)
	for i, m := range []fakeproxy.Anonymity{fakeproxy.Elite, fakeproxy.Anonymous, fakeproxy.Transparent} {
		if err := f.SetExit(i, fakeproxy.DefaultExit(i), m); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing listens at the echo URL itself; the farm's proxies answer it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	echoURL := "http://" + ln.Addr().String() + "/get"
	ln.Close()
	var direct atomic.Int32
	d := &net.Dialer{}
	c := newChecker(t, Config{TargetURL: "http://target.proxyhealth.test/", EchoURL: echoURL},
		WithDialContext(func(ctx context.Context, network, addr string) (net.Conn, error) {
			if "http://"+addr+"/get" == echoURL {
				direct.Add(1)
			}
			return d.DialContext(ctx, network, addr)
		}))
	for round := range 2 {
		for i, want := range []pb.Anonymity{aElite, aAnonymous, aTransparent} {
			r := checkURL(t, c, f.URL(i))
			if !r.OK() || r.ExitIP != fakeproxy.DefaultExit(i) || r.Anonymity != want {
				t.Errorf("round %d proxy %d: %+v, want %v", round, i, r, want)
			}
			if note := strings.Contains(r.EchoMessage, "own IP unknown"); note != (want != aTransparent) {
				t.Errorf("round %d proxy %d: message %q", round, i, r.EchoMessage)
			}
		}
	}
	if got := direct.Load(); got != 1 {
		t.Errorf("direct GETs = %d, want 1 (a failure is remembered for %v)", got, OwnIPRetry)
	}
	// After OwnIPRetry the next check tries again.
	c.echo.own.mu.Lock()
	c.echo.own.expires = time.Now().Add(-time.Second)
	c.echo.own.mu.Unlock()
	checkURL(t, c, f.URL(0))
	if got := direct.Load(); got != 2 {
		t.Errorf("direct GETs after expiry = %d, want 2", got)
	}
}

// TestEchoOwnIPShared: concurrent first checks share one direct GET.
func TestEchoOwnIPShared(t *testing.T) {
	f := startFarm(t, 8, fakeproxy.WithAnonymity(fakeproxy.Transparent))
	c := newChecker(t, Config{TargetURL: "http://target.proxyhealth.test/", EchoURL: f.EchoURL()})
	var wg sync.WaitGroup
	results := make([]Result, 32)
	for k := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[k] = c.Check(context.Background(), MustParseProxyURL(f.URL(k%8)))
		}()
	}
	wg.Wait()
	for k, r := range results {
		if !r.OK() || r.ExitIP != fakeproxy.DefaultExit(k%8) || r.Anonymity != aTransparent || r.EchoMessage != "" {
			t.Errorf("check %d: %+v", k, r)
		}
	}
	if got := f.EchoAnswers(); got != 1 {
		t.Errorf("direct GETs = %d, want 1", got)
	}
	// Refreshed after OwnIPRefresh, once.
	c.echo.own.mu.Lock()
	c.echo.own.expires = time.Now().Add(-time.Second)
	c.echo.own.mu.Unlock()
	checkURL(t, c, f.URL(0))
	checkURL(t, c, f.URL(1))
	if got := f.EchoAnswers(); got != 2 {
		t.Errorf("direct GETs after expiry = %d, want 2", got)
	}
}

// echoProxy is an HTTP proxy (absolute form only) that answers 204 to the
// check and body to the echo (path /get), and to a direct GET of /get
// (origin 127.0.0.1).
func echoProxy(t *testing.T, body func(r *http.Request) string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/get" && !r.URL.IsAbs():
			_, _ = fmt.Fprint(w, `{"origin": "127.0.0.1", "headers": {}}`)
		case r.URL.Path == "/get":
			_, _ = fmt.Fprint(w, body(r))
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// TestEchoAnswers: echo answers through the whole path, good and bad.
// Garbage never panics, leaves ExitIP empty and the check passed.
func TestEchoAnswers(t *testing.T) {
	var answer atomic.Value
	s := echoProxy(t, func(*http.Request) string { return answer.Load().(string) })
	c := newChecker(t, Config{TargetURL: "http://target.proxyhealth.test/", EchoURL: s.URL + "/get"})
	huge := `{"origin": "192.0.2.1", "headers": {"X": "` + strings.Repeat("a", MaxBodyBytes) + `"}}`
	for _, tc := range []struct {
		body   string
		exit   string
		level  pb.Anonymity
		errSub string
	}{
		{`{"origin": "192.0.2.1", "headers": {"User-Agent": "x"}}`, "192.0.2.1", aElite, ""},
		{`{"origin": "10.0.0.1, 192.0.2.1", "headers": {}}`, "192.0.2.1", aAnonymous, ""},
		{`{"origin": "127.0.0.1, 192.0.2.1", "headers": {}}`, "192.0.2.1", aTransparent, ""},
		{`{"origin": "192.0.2.1", "headers": {"Via": ["1.1 squid"]}}`, "192.0.2.1", aAnonymous, ""},
		{`{"origin": "192.0.2.1", "headers": {"X-Forwarded-For": "192.0.2.1"}}`, "192.0.2.1", aElite, ""},
		{`{"origin": "192.0.2.1", "headers": {"Forwarded": "for=\"[::ffff:127.0.0.1]:1234\""}}`, "192.0.2.1", aTransparent, ""},
		{`{"origin": "::ffff:192.0.2.1"}`, "192.0.2.1", aNone, "no \"headers\""},
		{`{"origin": "192.0.2.1", "headers": null}`, "192.0.2.1", aNone, "no \"headers\""},
		{``, "", aNone, "not a JSON object"},
		{`<html>hello</html>`, "", aNone, "not a JSON object"},
		{`[1, 2]`, "", aNone, "not a JSON object"},
		{`{"origin": "192.0.2.1", "headers": {"X": 1}`, "", aNone, "not a JSON object"},
		{`{"headers": {}}`, "", aNone, "no \"origin\""},
		{`{"origin": 7, "headers": {}}`, "", aNone, "not a JSON object"},
		{`{"origin": "", "headers": {}}`, "", aNone, "not a list of IP addresses"},
		{`{"origin": "192.0.2.1,", "headers": {}}`, "", aNone, "not a list of IP addresses"},
		{`{"origin": "example.com", "headers": {}}`, "", aNone, "not a list of IP addresses"},
		{`{"origin": "192.0.2.1", "headers": ["Via"]}`, "", aNone, "not an object"},
		{`{"origin": "192.0.2.1", "headers": {"X": {"y": 1}}}`, "", aNone, "neither a string"},
		{huge, "", aNone, "not a JSON object"},
	} {
		answer.Store(tc.body)
		r := checkURL(t, c, "http://"+s.Listener.Addr().String())
		if !r.OK() || r.ExitIP != tc.exit || r.Anonymity != tc.level || !strings.Contains(r.EchoMessage, tc.errSub) || (tc.errSub == "") != (r.EchoMessage == "") {
			t.Errorf("answer %.60q: got %q %v %q, want %q %v %q", tc.body, r.ExitIP, r.Anonymity, r.EchoMessage, tc.exit, tc.level, tc.errSub)
		}
	}
}

// TestEchoCredentialsNeverLeak: a proxy that forwards Proxy-Authorization
// to the echo, which puts it into every field it answers; the result
// carries neither the password nor the token.
func TestEchoCredentialsNeverLeak(t *testing.T) {
	s := echoProxy(t, func(r *http.Request) string {
		v := r.Header.Get("Proxy-Authorization")
		return `{"origin": "` + v + `", "headers": {"` + v + `": 1}}`
	})
	c := newChecker(t, Config{TargetURL: "http://target.proxyhealth.test/", EchoURL: s.URL + "/get"})
	r := checkURL(t, c, "http://user:"+secretPass+"@"+s.Listener.Addr().String())
	token := base64.StdEncoding.EncodeToString([]byte("user:" + secretPass))
	if !r.OK() || r.EchoMessage == "" || strings.Contains(fmt.Sprintf("%+v", r), secretPass) || strings.Contains(fmt.Sprintf("%+v", r), token) {
		t.Errorf("result %+v carries the credentials (or the echo did not fail)", r)
	}
	// And a proxy that refuses the echo's connection: the error names no
	// credentials either.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ec := newChecker(t, Config{TargetURL: "http://target.proxyhealth.test/", EchoURL: "http://" + addr + "/get"})
	calls := 0
	ec.echo.c.dial = func(ctx context.Context, network, address string) (net.Conn, error) {
		calls++
		return nil, errors.New("refused for user:" + secretPass)
	}
	r = checkURL(t, ec, "http://user:"+secretPass+"@"+s.Listener.Addr().String())
	if !r.OK() || calls != 1 || r.EchoMessage == "" || strings.Contains(r.EchoMessage, secretPass) {
		t.Errorf("echo dial failure: %+v (%d dials)", r, calls)
	}
}

func TestEchoConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		frag string
	}{
		{Config{EchoURL: "ftp://x/get"}, "scheme must be http or https"},
		{Config{EchoURL: "http://u:p@x/get"}, "must not contain credentials"},
		{Config{EchoURL: "http://x/get#f"}, "fragment"},
		{Config{EchoURL: "http:///get"}, "empty host"},
		{Config{EchoURL: "http://x/get", Mode: ModeTCPConnect}, "needs Mode auto"},
	} {
		err := tc.cfg.Validate()
		if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), "EchoURL") || !strings.Contains(err.Error(), tc.frag) {
			t.Errorf("%+v: %v, want ErrBadConfig naming EchoURL and %q", tc.cfg, err, tc.frag)
		}
		if strings.Contains(fmt.Sprint(err), ":p@") {
			t.Errorf("error shows the URL's password: %v", err)
		}
	}
	if err := (Config{EchoURL: "https://httpbin.org/get?show_env=1"}).Validate(); err != nil {
		t.Errorf("valid EchoURL: %v", err)
	}
}

func TestClassify(t *testing.T) {
	own := []netip.Addr{netip.MustParseAddr("192.0.2.50"), netip.MustParseAddr("2001:db8::50")}
	sent := map[string]bool{"host": true, "user-agent": true, "accept": true, "connection": true}
	rep := func(origin string, kv ...string) echoReply {
		r := echoReply{hasHeaders: true}
		for s := range strings.SplitSeq(origin, ",") {
			r.origins = append(r.origins, netip.MustParseAddr(strings.TrimSpace(s)))
		}
		for i := 0; i+1 < len(kv); i += 2 {
			r.headers = append(r.headers, echoHeader{kv[i], kv[i+1]})
		}
		return r
	}
	for _, tc := range []struct {
		rep  echoReply
		own  []netip.Addr
		want pb.Anonymity
	}{
		{rep("203.0.113.1"), own, aElite},
		{rep("203.0.113.1", "Host", "192.0.2.50:8080", "User-Agent", "192.0.2.50"), own, aElite},
		{rep("203.0.113.1", "Via", "1.1 proxy"), own, aAnonymous},
		{rep("203.0.113.1", "proxy-connection", "keep-alive"), own, aAnonymous},
		{rep("203.0.113.1", "X-Forwarded-For", "unknown"), own, aAnonymous},
		{rep("203.0.113.1", "X-Forwarded-For", "10.1.1.1, 203.0.113.1"), own, aAnonymous},
		{rep("203.0.113.1", "X-Real-Ip", "203.0.113.1", "X-Forwarded-Port", "443"), own, aElite},
		{rep("203.0.113.1", "X-Forwarded-For", "192.0.2.50"), own, aTransparent},
		{rep("203.0.113.1", "X-Forwarded-For", "192.0.2.50"), nil, aAnonymous},
		{rep("203.0.113.1", "X-Anything", "a 192.0.2.50:1 b"), own, aTransparent},
		{rep("203.0.113.1", "Forwarded", `for="[2001:db8::50]:4711";proto=https`), own, aTransparent},
		{rep("203.0.113.1", "X-Note", "192.0.2.500 1.1 fa:ce"), own, aElite},
		{rep("192.0.2.50"), own, aTransparent},
		{rep("192.0.2.50, 203.0.113.1"), own, aTransparent},
		{rep("192.0.2.50, 203.0.113.1"), nil, aAnonymous},
	} {
		if got := classify(tc.rep, tc.own, sent); got != tc.want {
			t.Errorf("classify(%+v, own %v) = %v, want %v", tc.rep, tc.own, got, tc.want)
		}
	}
}

func FuzzParseEcho(f *testing.F) {
	f.Add([]byte(`{"origin": "1.2.3.4, 5.6.7.8", "headers": {"Via": "1.1 x", "X": ["a", "b"]}}`))
	f.Add([]byte(`{"origin": "::1"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		rep, err := parseEcho(body)
		if err != nil {
			return
		}
		if len(rep.origins) == 0 {
			t.Fatalf("no origins without an error: %q", body)
		}
		_ = classify(rep, []netip.Addr{netip.MustParseAddr("1.2.3.4")}, nil)
	})
}
