package endpoint

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/fwdproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/rotation"
	"github.com/proxyhealth/proxyhealth/transport"
	"go.uber.org/goleak"
)

const upstreamSecret = "s3cret-upstream-pw"

// syncBuffer is a goroutine-safe buffer (a log sink, a running process's
// output).
type syncBuffer = testutil.SyncBuffer

func debugLogger() (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// Absolute-form requests reach the origin through the picked upstreams in
// turn; the upstream with credentials gets them, the origin and the client
// never see them, and each request is reported OK.
func TestHTTPForwardThroughPickedUpstream(t *testing.T) {
	o := newOrigin(t, false)
	a := fwdproxy.Start(t, fwdproxy.Options{})
	b := fwdproxy.Start(t, fwdproxy.Options{User: "user", Pass: upstreamSecret})
	r := newRotator(t, a.URL(), b.URL())
	logger, logs := debugLogger()
	srv, addr := startServer(t, r, Config{Logger: logger})
	c := proxyClient(t, "http://"+addr, nil)
	for i := range 4 {
		resp, body := get(t, c, o.URL+fmt.Sprintf("/r%d", i), "Proxy-Authorization", "Basic Zm9vOmJhcg==")
		if resp.StatusCode != 200 || !strings.Contains(body, fmt.Sprintf("GET /r%d", i)) {
			t.Fatalf("request %d: %s %q", i, resp.Status, body)
		}
		if strings.Contains(dumpResponse(resp, body), upstreamSecret) {
			t.Fatalf("the client received the upstream's password: %s", dumpResponse(resp, body))
		}
	}
	if a.Requests() != 2 || b.Requests() != 2 {
		t.Errorf("upstream requests a=%d b=%d, want 2 each (round-robin)", a.Requests(), b.Requests())
	}
	wantAuth := "Basic " + encodeBasic("user", upstreamSecret)
	for _, v := range b.AuthSeen() {
		if v != wantAuth {
			t.Errorf("upstream b saw Proxy-Authorization %q, want its own credentials", v)
		}
	}
	for _, v := range a.AuthSeen() {
		if v != "" {
			t.Errorf("upstream a saw Proxy-Authorization %q: the client's must be stripped", v)
		}
	}
	reqs := o.Requests()
	if len(reqs) != 4 {
		t.Fatalf("origin got %d requests, want 4", len(reqs))
	}
	for _, q := range reqs {
		if q.Header.Get("Proxy-Authorization") != "" || q.Header.Get("Proxy-Connection") != "" {
			t.Errorf("origin saw proxy headers: %v", q.Header)
		}
	}
	outs := r.Outcomes()
	if len(outs) != 4 {
		t.Fatalf("outcomes %+v, want 4", outs)
	}
	for _, out := range outs {
		if !out.OK || out.Latency <= 0 {
			t.Errorf("outcome %+v, want OK with a latency", out)
		}
	}
	if st := srv.Stats(); st.OK != 4 || st.BytesDown == 0 {
		t.Errorf("stats %+v, want OK=4 and bytes down", st)
	}
	if strings.Contains(logs.String(), upstreamSecret) {
		t.Errorf("log contains the upstream password:\n%s", logs)
	}
}

func encodeBasic(u, p string) string {
	req, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
	req.SetBasicAuth(u, p)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

// A target's 404 passes through and reports the upstream OK.
func TestTargetErrorIsNotTheProxys(t *testing.T) {
	o := newOrigin(t, false)
	a := fwdproxy.Start(t, fwdproxy.Options{})
	r := newRotator(t, a.URL())
	_, addr := startServer(t, r, Config{})
	resp, _ := get(t, proxyClient(t, "http://"+addr, nil), o.URL+"/404")
	if resp.StatusCode != 404 || resp.Header.Get("X-Origin") != "yes" {
		t.Fatalf("got %s %v, want the origin's 404", resp.Status, resp.Header)
	}
	if outs := r.Outcomes(); len(outs) != 1 || !outs[0].OK {
		t.Fatalf("outcomes %+v, want one OK", outs)
	}
}

// https targets through CONNECT, and http and https through SOCKS5 (Go's
// own SOCKS5 client), reach the TLS origin through the upstream.
func TestConnectAndSOCKS5ReachOrigin(t *testing.T) {
	plain := newOrigin(t, false)
	secure := newOrigin(t, true)
	up := fwdproxy.Start(t, fwdproxy.Options{User: "user", Pass: upstreamSecret})
	r := newRotator(t, up.URL())
	_, addr := startServer(t, r, Config{})
	roots := secure.Client().Transport.(*http.Transport).TLSClientConfig
	for _, proxy := range []string{"http://" + addr, "socks5://" + addr, "socks5h://u-session-k1:x@" + addr} {
		c := proxyClient(t, proxy, roots)
		for _, target := range []string{secure.URL + "/s", plain.URL + "/p"} {
			resp, body := get(t, c, target)
			if resp.StatusCode != 200 || !strings.Contains(body, "origin says hi") {
				t.Fatalf("%s via %s: %s %q", target, proxy, resp.Status, body)
			}
			if strings.Contains(dumpResponse(resp, body), upstreamSecret) {
				t.Fatal("upstream password reached the client")
			}
		}
	}
	if n := up.Connects(); n < 5 { // https via http, and all four SOCKS requests
		t.Errorf("upstream tunnels = %d, want at least 5", n)
	}
	if len(secure.Requests()) != 3 || len(plain.Requests()) != 3 {
		t.Errorf("origins got %d https and %d http requests, want 3 each", len(secure.Requests()), len(plain.Requests()))
	}
	var sticky int
	for _, p := range r.Picks() {
		if p.Strategy == rotation.Sticky && p.Key == "k1" {
			sticky++
		}
	}
	if sticky != 2 {
		t.Errorf("picks with SOCKS5 username key k1 = %d, want 2: %+v", sticky, r.Picks())
	}
}

// Every upstream scheme the farm speaks carries absolute-form requests,
// CONNECT and SOCKS5 tunnels; the farm counts the connections it got.
func TestFarmUpstreamSchemes(t *testing.T) {
	ctx := context.Background()
	farm, err := fakeproxy.Start(ctx, 1, fakeproxy.WithBody("farm-body"))
	if err != nil {
		t.Fatal(err)
	}
	defer farm.Close()
	for _, scheme := range []string{"http", "https", "socks5", "socks5h", "socks4", "socks4a"} {
		t.Run(scheme, func(t *testing.T) {
			r := newRotator(t, farm.URLWith(0, scheme, "", ""))
			_, addr := startServer(t, r, Config{UpstreamTLS: farm.ClientTLSConfig()})
			before := farm.Checks(0)
			targets := []string{"http://127.0.0.1/", "https://127.0.0.1/"}
			if scheme != "socks5" && scheme != "socks4" { // these resolve locally
				targets = append(targets, "https://target.proxyhealth.test/")
			}
			for _, proxy := range []string{"http://" + addr, "socks5h://" + addr} {
				c := proxyClient(t, proxy, farm.ClientTLSConfig())
				for _, target := range targets {
					resp, body := get(t, c, target)
					if resp.StatusCode != 200 || body != "farm-body" {
						t.Fatalf("%s via %s: %s %q", target, proxy, resp.Status, body)
					}
				}
			}
			if got, want := farm.Checks(0)-before, uint64(2*len(targets)); got != want {
				t.Errorf("farm saw %d connections, want %d", got, want)
			}
		})
	}
}

// A dead upstream is retried on another for GET and CONNECT (and for a
// POST, since nothing was sent); the dead one is reported with its class.
func TestDeadUpstreamRetried(t *testing.T) {
	ctx := context.Background()
	farm, err := fakeproxy.Start(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer farm.Close()
	if err := farm.Set(0, fakeproxy.Refuse()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, target, method string }{
		{"GET", "http://127.0.0.1/", http.MethodGet},
		{"POST", "http://127.0.0.1/", http.MethodPost},
		{"CONNECT", "https://127.0.0.1/", http.MethodGet},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRotator(t, farm.URLWith(0, "http", "u", upstreamSecret), farm.URL(1))
			logger, logs := debugLogger()
			srv, addr := startServer(t, r, Config{Logger: logger})
			defer func() {
				if strings.Contains(logs.String(), upstreamSecret) {
					t.Errorf("log contains the upstream password:\n%s", logs)
				}
			}()
			c := proxyClient(t, "http://"+addr, farm.ClientTLSConfig())
			req, _ := http.NewRequest(tc.method, tc.target, strings.NewReader("payload"))
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("got %s, want 200 via the live upstream", resp.Status)
			}
			outs := r.Outcomes()
			if len(outs) != 2 || outs[0].ProxyID != "p0" || outs[0].OK || outs[0].Class != transport.ClassRefused ||
				outs[1].ProxyID != "p1" || !outs[1].OK {
				t.Fatalf("outcomes %+v, want p0 refused then p1 OK", outs)
			}
			if picks := r.Picks(); len(picks) != 2 || len(picks[1].Exclude) != 1 || picks[1].Exclude[0] != "p0" {
				t.Fatalf("picks %+v, want the retry to exclude p0", picks)
			}
			if st := srv.Stats(); st.Retries != 1 || st.OK != 1 {
				t.Errorf("stats %+v, want 1 retry, 1 OK", st)
			}
		})
	}
}

// After a reset from an upstream, a GET is retried; a POST whose body the
// upstream read before resetting is not (it was sent): 502.
func TestResetRetriesIdempotentOnly(t *testing.T) {
	ctx := context.Background()
	farm, err := fakeproxy.Start(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer farm.Close()
	if err := farm.Set(0, fakeproxy.Reset()); err != nil {
		t.Fatal(err)
	}
	r := newRotator(t, farm.URL(0), farm.URL(1))
	_, addr := startServer(t, r, Config{})
	c := proxyClient(t, "http://"+addr, nil)
	resp, _ := get(t, c, "http://127.0.0.1/")
	if resp.StatusCode != 200 {
		t.Fatalf("GET: %s, want 200 after a retry", resp.Status)
	}

	// An upstream that reads the whole request, body included, then
	// resets: the body was sent, so the POST must not go anywhere else.
	// (The farm's Reset resets right after accept, before the request
	// can be written: whether the body was sent is then a race, and a
	// retry may rightly happen.)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan struct{})
	go func() {
		defer close(served)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		if req, err := http.ReadRequest(bufio.NewReader(conn)); err == nil {
			_, _ = io.Copy(io.Discard, req.Body)
		}
		_ = conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
	}()
	r2 := newRotator(t, "http://"+ln.Addr().String(), farm.URL(1))
	_, addr2 := startServer(t, r2, Config{})
	c2 := proxyClient(t, "http://"+addr2, nil)
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1/", strings.NewReader(strings.Repeat("x", 100)))
	resp, err = c2.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	<-served
	outs := r2.Outcomes()
	if len(outs) == 0 || outs[0].OK || outs[0].ProxyID != "p0" {
		t.Fatalf("outcomes %+v, want p0 failed first", outs)
	}
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(ErrorHeader) == "" || len(outs) != 1 {
		t.Fatalf("POST: %s %v outcomes %+v, want 502 with a class and no retry", resp.Status, resp.Header, outs)
	}
}

// An upstream's 407 never reaches the client: it is a 502 naming
// proxy_auth_required, after trying another upstream.
func TestUpstream407Becomes502(t *testing.T) {
	ctx := context.Background()
	farm, err := fakeproxy.Start(ctx, 1, fakeproxy.WithBehavior(fakeproxy.AuthRequired()), fakeproxy.WithCredentials("right", "creds"))
	if err != nil {
		t.Fatal(err)
	}
	defer farm.Close()
	r := newRotator(t, farm.URLWith(0, "http", "wrong", upstreamSecret), farm.URLWith(0, "http", "wrong2", upstreamSecret))
	logger, logs := debugLogger()
	_, addr := startServer(t, r, Config{Logger: logger})
	for _, target := range []string{"http://127.0.0.1/", "https://127.0.0.1/"} {
		c := proxyClient(t, "http://"+addr, farm.ClientTLSConfig())
		resp, err := c.Get(target)
		var body []byte
		if err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if strings.HasPrefix(target, "https") {
			// Go's client turns a failed CONNECT into an error carrying the status.
			if err == nil || !strings.Contains(err.Error(), "Bad Gateway") {
				t.Fatalf("CONNECT: err %v, want a 502 Bad Gateway", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(ErrorHeader) != transport.ClassProxyAuthRequired ||
			resp.Header.Get("Proxy-Authenticate") != "" {
			t.Fatalf("got %s %v, want 502 %s", resp.Status, resp.Header, transport.ClassProxyAuthRequired)
		}
		if strings.Contains(dumpResponse(resp, string(body)), upstreamSecret) || strings.Contains(string(body), "wrong") {
			t.Fatalf("the client sees upstream credentials: %s", dumpResponse(resp, string(body)))
		}
	}
	outs := r.Outcomes()
	if len(outs) != 4 {
		t.Fatalf("outcomes %+v, want 4 (two upstreams, twice)", outs)
	}
	for _, o := range outs {
		if o.OK || o.Class != transport.ClassProxyAuthRequired {
			t.Errorf("outcome %+v, want proxy_auth_required", o)
		}
	}
	if strings.Contains(logs.String(), upstreamSecret) {
		t.Errorf("log contains the upstream password:\n%s", logs)
	}
}

// With Users, clients must authenticate: HTTP 407 without or with bad
// credentials, SOCKS5 refuses the method or the credentials, SOCKS4 is
// refused; the right credentials work for both.
func TestClientAuthentication(t *testing.T) {
	o := newOrigin(t, false)
	up := fwdproxy.Start(t, fwdproxy.Options{})
	r := newRotator(t, up.URL())
	srv, addr := startServer(t, r, Config{Users: map[string]string{"alice": "pw1"}})

	for _, tc := range []struct {
		name  string
		proxy string
		want  int
	}{
		{"none", "http://" + addr, http.StatusProxyAuthRequired},
		{"bad password", "http://alice:nope@" + addr, http.StatusProxyAuthRequired},
		{"unknown user", "http://bob:pw1@" + addr, http.StatusProxyAuthRequired},
		{"good", "http://alice:pw1@" + addr, http.StatusOK},
		{"good with session", "http://alice-session-s9:pw1@" + addr, http.StatusOK},
	} {
		resp, _ := get(t, proxyClient(t, tc.proxy, nil), o.URL+"/")
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %s, want %d", tc.name, resp.Status, tc.want)
		}
		if tc.want == http.StatusProxyAuthRequired && resp.Header.Get("Proxy-Authenticate") == "" {
			t.Errorf("%s: 407 without Proxy-Authenticate", tc.name)
		}
	}
	if _, _, err := socks5Dial(addr, "", "", "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "0xff") {
		t.Errorf("SOCKS5 without credentials: %v, want the server to refuse every method", err)
	}
	if _, _, err := socks5Dial(addr, "alice", "nope", "127.0.0.1:1"); !errors.Is(err, errSocksAuth) {
		t.Errorf("SOCKS5 bad password: %v, want an auth failure", err)
	}
	c, code, err := socks5Dial(addr, "alice", "pw1", o.Listener.Addr().String())
	if err != nil || code != 0 {
		t.Fatalf("SOCKS5 good credentials: code %d, err %v", code, err)
	}
	fmt.Fprintf(c, "GET /socks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("through the SOCKS5 tunnel: %v %v", resp, err)
	}
	resp.Body.Close()
	c.Close()
	// SOCKS4 has no password: refused.
	c4, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	c4.Write([]byte{4, 1, 0, 80, 127, 0, 0, 1, 'a', 0})
	var rep [8]byte
	if _, err := io.ReadFull(c4, rep[:]); err != nil || rep[1] != 0x5b {
		t.Errorf("SOCKS4 with Users: reply %v err %v, want 0x5b", rep, err)
	}
	// The server counts a refusal after answering it: wait for the count.
	testutil.EventuallyExplain(t, 5*time.Second, func() bool { return srv.Stats().AuthFailed == 6 }, func() string {
		return fmt.Sprintf("AuthFailed = %d, want 6 (3 HTTP, 2 SOCKS5, 1 SOCKS4)", srv.Stats().AuthFailed)
	})
}

// Off loopback, proxy authentication is required: by Validate for Addr,
// and by Serve for the listener's real address.
func TestOffLoopbackRequiresUsers(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:8899": true, "localhost:8899": true, "[::1]:8899": true, "127.0.0.2:1": true,
		"0.0.0.0:8899": false, ":8899": false, "[::]:8899": false, "192.0.2.1:8899": false, "proxy.example:8899": false,
	} {
		err := Config{Addr: addr}.Validate()
		if ok != (err == nil) {
			t.Errorf("Validate(Addr %q, no users) = %v, want ok=%v", addr, err, ok)
		}
		if err != nil && (!errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), "set users")) {
			t.Errorf("Validate(Addr %q): %v, want ErrBadConfig saying to set users", addr, err)
		}
		if err := (Config{Addr: addr, Users: map[string]string{"a": "b"}}).Validate(); err != nil {
			t.Errorf("Validate(Addr %q, users) = %v", addr, err)
		}
	}
	old := addrIsLoopback
	addrIsLoopback = func(net.Addr) bool { return false }
	defer func() { addrIsLoopback = old }()
	r := newRotator(t)
	s, err := New(r, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(context.Background(), ln); !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), "set users") {
		t.Fatalf("Serve off loopback without users: %v, want ErrBadConfig", err)
	}
	// With users it serves (and ctx stops it).
	s2, err := New(r, Config{Users: map[string]string{"a": "b"}})
	if err != nil {
		t.Fatal(err)
	}
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s2.Serve(ctx, ln2) }()
	testutil.Eventually(t, 5*time.Second, "the server to listen", func() bool { return s2.Addr() != nil })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve with users: %v", err)
	}
}

func TestValidateNamesFields(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Strategy: "fastest"}, "strategy"},
		{Config{Strategy: rotation.Sticky}, "strategy sticky"},
		{Config{MaxAttempts: -1}, "max_attempts"},
		{Config{DialTimeout: -time.Second}, "dial_timeout"},
		{Config{StickyHeader: "bad header"}, "sticky_header"},
		{Config{Users: map[string]string{"a-session-b": "x"}}, "username"},
		{Config{Addr: "nonsense"}, "addr"},
	} {
		err := tc.cfg.Validate()
		if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want ErrBadConfig naming %s", tc.cfg, err, tc.want)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero Config: %v", err)
	}
	if _, err := New(nil, Config{}); !errors.Is(err, ErrBadConfig) {
		t.Errorf("New(nil): %v", err)
	}
}

// A sticky key from the header or the username suffix picks with the
// sticky strategy and keeps its upstream; the header is not forwarded.
func TestStickyKey(t *testing.T) {
	o := newOrigin(t, false)
	ups := []*fwdproxy.Proxy{fwdproxy.Start(t, fwdproxy.Options{}), fwdproxy.Start(t, fwdproxy.Options{}), fwdproxy.Start(t, fwdproxy.Options{})}
	r := newRotator(t, ups[0].URL(), ups[1].URL(), ups[2].URL())
	_, addr := startServer(t, r, Config{})
	plain := proxyClient(t, "http://"+addr, nil)
	byUser := proxyClient(t, "http://anyone-session-abc:x@"+addr, nil)
	counts := func() [3]int64 {
		return [3]int64{ups[0].Requests(), ups[1].Requests(), ups[2].Requests()}
	}
	for i := range 6 {
		get(t, plain, o.URL+"/", DefaultStickyHeader, "abc")
		get(t, byUser, o.URL+"/")
		_ = i
	}
	c := counts()
	nonzero := 0
	for _, n := range c {
		if n != 0 {
			nonzero++
			if n != 12 {
				t.Errorf("upstream counts %v: the key moved", c)
			}
		}
	}
	if nonzero != 1 {
		t.Errorf("upstream counts %v, want all 12 requests on one upstream", c)
	}
	for _, p := range r.Picks() {
		if p.Strategy != rotation.Sticky || p.Key != "abc" {
			t.Errorf("pick %+v, want sticky with key abc", p)
		}
	}
	for _, q := range o.Requests() {
		if q.Header.Get(DefaultStickyHeader) != "" {
			t.Errorf("origin saw the sticky header")
		}
	}
	// Without a key: the configured strategy.
	get(t, plain, o.URL+"/")
	if p := r.Picks(); p[len(p)-1].Strategy != rotation.RoundRobin || p[len(p)-1].Key != "" {
		t.Errorf("pick without a key: %+v", p[len(p)-1])
	}
	// CONNECT carries the header too.
	secure := newOrigin(t, true)
	tr := &http.Transport{
		Proxy:              http.ProxyURL(&url.URL{Scheme: "http", Host: addr}),
		ProxyConnectHeader: http.Header{DefaultStickyHeader: {"tunnel-key"}},
		TLSClientConfig:    secure.Client().Transport.(*http.Transport).TLSClientConfig,
	}
	defer tr.CloseIdleConnections()
	get(t, &http.Client{Transport: tr}, secure.URL+"/")
	if p := r.Picks(); p[len(p)-1].Key != "tunnel-key" {
		t.Errorf("CONNECT pick %+v, want key tunnel-key", p[len(p)-1])
	}
}

// No usable upstream: 503 no_proxy; a request in origin-form: 400.
func TestNoProxyAndBadRequest(t *testing.T) {
	r := newRotator(t)
	srv, addr := startServer(t, r, Config{})
	resp, _ := get(t, proxyClient(t, "http://"+addr, nil), "http://127.0.0.1:1/")
	if resp.StatusCode != 503 || resp.Header.Get(ErrorHeader) != "no_proxy" {
		t.Errorf("no proxy: %s %v", resp.Status, resp.Header)
	}
	resp, _ = get(t, http.DefaultClient, "http://"+addr+"/")
	if resp.StatusCode != 400 || resp.Header.Get(ErrorHeader) != "bad_request" {
		t.Errorf("origin-form: %s %v", resp.Status, resp.Header)
	}
	c, code, err := socks5Dial(addr, "", "", "127.0.0.1:1")
	if err != nil || code != socksGeneralFailure {
		t.Errorf("SOCKS5 with no proxy: code %d err %v, want general failure", code, err)
	}
	if c != nil {
		c.Close()
	}
	http.DefaultClient.CloseIdleConnections()
	if st := srv.Stats(); st.NoProxy != 2 || st.BadRequest != 1 {
		t.Errorf("stats %+v, want NoProxy 2, BadRequest 1", st)
	}
}

// Close (and Shutdown past its deadline) ends every connection and
// goroutine: an open tunnel, an idle keep-alive connection, a client that
// sent nothing, a SOCKS handshake half done.
func TestShutdownLeavesNoGoroutine(t *testing.T) {
	for _, graceful := range []bool{false, true} {
		t.Run(fmt.Sprintf("graceful=%v", graceful), func(t *testing.T) {
			o := newOrigin(t, false)
			up := fwdproxy.Start(t, fwdproxy.Options{})
			r := newRotator(t, up.URL())
			before := goleak.IgnoreCurrent()
			s, err := New(r, Config{})
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			done := make(chan error, 1)
			go func() { done <- s.Serve(context.Background(), ln) }()

			// An open tunnel to the origin.
			tun, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer tun.Close()
			fmt.Fprintf(tun, "CONNECT %s HTTP/1.1\r\nHost: x\r\n\r\n", o.Listener.Addr())
			br := bufio.NewReader(tun)
			resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("CONNECT: %v %v", resp, err)
			}
			// An idle keep-alive connection.
			c := proxyClient(t, "http://"+addr, nil)
			get(t, c, o.URL+"/")
			// Silent clients.
			silent, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer silent.Close()
			half, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer half.Close()
			half.Write([]byte{5, 1})
			testutil.Eventually(t, 5*time.Second, "4 active connections", func() bool { return s.Stats().ActiveConns == 4 })

			if graceful {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				err := s.Shutdown(ctx)
				cancel()
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Shutdown with an open tunnel: %v, want the deadline", err)
				}
			} else if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			if n := s.Stats().ActiveConns; n != 0 {
				t.Errorf("ActiveConns after close = %d", n)
			}
			if _, err := io.ReadAll(br); err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
				t.Errorf("tunnel read after close: %v", err)
			}
			c.CloseIdleConnections()
			up.CloseIdleConnections() // the fixture's own keep-alive to the origin
			if err := goleak.Find(before); err != nil {
				t.Error(err)
			}
			if err := s.Serve(context.Background(), mustListen(t)); !errors.Is(err, ErrClosed) {
				t.Errorf("Serve after Close: %v, want ErrClosed", err)
			}
		})
	}
}

// Shutdown waits for an idle server and returns nil.
func TestShutdownIdle(t *testing.T) {
	o := newOrigin(t, false)
	up := fwdproxy.Start(t, fwdproxy.Options{})
	r := newRotator(t, up.URL())
	s, addr := startServer(t, r, Config{})
	c := proxyClient(t, "http://"+addr, nil)
	get(t, c, o.URL+"/")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func mustListen(t testing.TB) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// A tunnel idle for IdleTimeout is closed by the server.
func TestTunnelIdleTimeout(t *testing.T) {
	o := newOrigin(t, false)
	up := fwdproxy.Start(t, fwdproxy.Options{})
	r := newRotator(t, up.URL())
	srv, addr := startServer(t, r, Config{IdleTimeout: 300 * time.Millisecond})
	c, code, err := socks5Dial(addr, "", "", o.Listener.Addr().String())
	if err != nil || code != 0 {
		t.Fatalf("SOCKS5: %d %v", code, err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	// The tunnel works: three requests through it.
	for i := range 3 {
		fmt.Fprintf(c, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d in the tunnel: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// Idle: the server closes it (read returns EOF before our deadline).
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle tunnel: read %v, want EOF from the server closing it", err)
	}
	testutil.Eventually(t, 5*time.Second, "no active connection", func() bool { return srv.Stats().ActiveConns == 0 })
}
