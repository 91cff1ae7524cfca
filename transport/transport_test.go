package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/fwdproxy"
	"github.com/proxyhealth/proxyhealth/rotation"
)

// TestRequestsGoThroughThePickedProxy: each request reaches the origin
// through the proxy the rotator picked (absolute form, with the proxy's
// credentials), and every attempt is reported as OK with a latency.
func TestRequestsGoThroughThePickedProxy(t *testing.T) {
	o := startOrigin(t, false)
	a := fwdproxy.Start(t, fwdproxy.Options{Name: "proxy-a"})
	b := fwdproxy.Start(t, fwdproxy.Options{Name: "proxy-b", User: testUser, Pass: testPass})
	r := newRotator(t, a.URL(), b.URL())
	tr := newTransport(t, r, Options{})
	for i := range 4 {
		if code, body := get(t, tr, o.srv.URL+"/x?i=1"); code != 200 || body != "hello" {
			t.Fatalf("request %d: %d %q, want 200 \"hello\"", i, code, body)
		}
	}
	seen := o.Seen()
	want := []string{"proxy-a", "proxy-b", "proxy-a", "proxy-b"}
	if len(seen) != len(want) {
		t.Fatalf("origin saw %d requests, want %d", len(seen), len(want))
	}
	for i, s := range seen {
		if s.via != want[i] {
			t.Errorf("request %d arrived via %q, want %q", i, s.via, want[i])
		}
		p := a
		if want[i] == "proxy-b" {
			p = b
		}
		if !p.Forwarded(s.remoteAddr) {
			t.Errorf("request %d came from %s, not a connection of %s", i, s.remoteAddr, want[i])
		}
		if s.proxyAuth != "" {
			t.Errorf("request %d reached the origin with Proxy-Authorization", i)
		}
	}
	outs := r.Outcomes()
	if len(outs) != 4 {
		t.Fatalf("%d outcomes reported, want 4: %+v", len(outs), outs)
	}
	for i, out := range outs {
		if wantID := []string{"p0", "p1"}[i%2]; !out.OK || out.Class != "" || out.ProxyID != wantID || out.Latency <= 0 {
			t.Errorf("outcome %d = %+v, want OK from %s with a latency", i, out, wantID)
		}
	}
}

// TestHTTPSGoesThroughCONNECT: an https:// target is reached through a
// CONNECT tunnel of an http:// proxy and of an https:// proxy (TLS to the
// proxy, then CONNECT), with credentials; and an http:// target through
// an https:// proxy in absolute form.
func TestHTTPSGoesThroughCONNECT(t *testing.T) {
	pool := fwdproxy.CertPool(t)
	tlsOrigin := startOrigin(t, true)
	plainOrigin := startOrigin(t, false)
	for _, proxyTLS := range []bool{false, true} {
		name := "http proxy"
		if proxyTLS {
			name = "https proxy"
		}
		t.Run(name, func(t *testing.T) {
			p := fwdproxy.Start(t, fwdproxy.Options{Name: "proxy", TLS: proxyTLS, User: testUser, Pass: testPass})
			r := newRotator(t, p.URL())
			tr := newTransport(t, r, Options{TLSClientConfig: &tls.Config{RootCAs: pool}, ProxyTLSConfig: &tls.Config{RootCAs: pool}})
			if code, body := get(t, tr, tlsOrigin.srv.URL+"/"); code != 200 || body != "hello" {
				t.Fatalf("https target: %d %q, want 200 \"hello\"", code, body)
			}
			if got := p.Connects(); got != 1 {
				t.Fatalf("proxy saw %d CONNECTs, want 1", got)
			}
			seen := tlsOrigin.Seen()
			if last := seen[len(seen)-1]; !p.Forwarded(last.remoteAddr) {
				t.Fatalf("the https request came from %s, not through the proxy's tunnel", last.remoteAddr)
			}
			if code, body := get(t, tr, plainOrigin.srv.URL+"/"); code != 200 || body != "hello" {
				t.Fatalf("http target: %d %q, want 200 \"hello\"", code, body)
			}
			if seen := plainOrigin.Seen(); seen[len(seen)-1].via != "proxy" {
				t.Fatalf("the http request did not come through the proxy: %+v", seen[len(seen)-1])
			}
			for _, out := range r.Outcomes() {
				if !out.OK {
					t.Fatalf("outcome %+v, want OK", out)
				}
			}
		})
	}
}

// TestSOCKSProxies: http and https targets through SOCKS5, SOCKS5h,
// SOCKS4 and SOCKS4a proxies of the fake farm (which plays the target at
// the end of the tunnel).
func TestSOCKSProxies(t *testing.T) {
	f := startFarm(t, 1, fakeproxy.WithBody("farm target"), fakeproxy.WithCredentials(testUser, testPass),
		fakeproxy.WithBehavior(fakeproxy.OK()))
	cases := []struct{ scheme, target string }{
		{"socks5", "http://127.0.0.1/"},
		{"socks5", "https://127.0.0.1/"},
		{"socks5h", "http://target.proxyhealth.test/"},
		{"socks5h", "https://target.proxyhealth.test/"},
		{"socks4", "http://127.0.0.1/"},
		{"socks4a", "https://target.proxyhealth.test/"},
	}
	for _, c := range cases {
		t.Run(c.scheme+" "+c.target, func(t *testing.T) {
			r := newRotator(t, f.URLWith(0, c.scheme, testUser, testPass))
			tr := newTransport(t, r, Options{TLSClientConfig: f.ClientTLSConfig()})
			before := f.Checks(0)
			if code, body := get(t, tr, c.target); code != 200 || body != "farm target" {
				t.Fatalf("%d %q, want 200 \"farm target\"", code, body)
			}
			if got := f.Checks(0) - before; got != 1 {
				t.Fatalf("the proxy accepted %d connections, want 1", got)
			}
			if outs := r.Outcomes(); len(outs) != 1 || !outs[0].OK {
				t.Fatalf("outcomes %+v, want one OK", outs)
			}
		})
	}
	// SOCKS5 with credentials the proxy demands.
	if err := f.Set(0, fakeproxy.AuthRequired()); err != nil {
		t.Fatal(err)
	}
	r := newRotator(t, f.URLWith(0, "socks5h", testUser, testPass))
	tr := newTransport(t, r, Options{})
	if code, body := get(t, tr, "http://target.proxyhealth.test/"); code != 200 || body != "farm target" {
		t.Fatalf("socks5h with credentials: %d %q, want 200 \"farm target\"", code, body)
	}
}

// TestDeadProxyIsReportedAndTheRequestSucceedsElsewhere: a GET through a
// failing proxy is reported with the failure's class and retried on
// another proxy, where it succeeds.
func TestDeadProxyIsReportedAndTheRequestSucceedsElsewhere(t *testing.T) {
	pool := fwdproxy.CertPool(t)
	o := startOrigin(t, false)
	tlsOrigin := startOrigin(t, true)
	good := fwdproxy.Start(t, fwdproxy.Options{Name: "good"})
	f := startFarm(t, 1)
	cases := []struct {
		name   string
		b      fakeproxy.Behavior
		scheme string
		target string
		class  string
	}{
		{"refused", fakeproxy.Refuse(), "http", o.srv.URL, ClassRefused},
		{"refused socks5", fakeproxy.Refuse(), "socks5", o.srv.URL, ClassRefused},
		{"reset", fakeproxy.Reset(), "http", o.srv.URL, ClassReset},
		{"reset on CONNECT", fakeproxy.Reset(), "http", tlsOrigin.srv.URL, ClassReset},
		{"blackhole", fakeproxy.Blackhole(), "http", o.srv.URL, ClassTimeout},
		{"blackhole socks5", fakeproxy.Blackhole(), "socks5", tlsOrigin.srv.URL, ClassTimeout},
		{"407 in absolute form", fakeproxy.AuthRequired(), "http", o.srv.URL, ClassProxyAuthRequired},
		{"407 on CONNECT", fakeproxy.AuthRequired(), "http", tlsOrigin.srv.URL, ClassProxyAuthRequired},
		{"garbage in absolute form", fakeproxy.Garbage(), "http", o.srv.URL, ClassProtocol},
		{"garbage socks5", fakeproxy.Garbage(), "socks5", o.srv.URL, ClassProtocol},
		{"untrusted https proxy", fakeproxy.OK(), "https", o.srv.URL, ClassTLS},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := f.Set(0, c.b); err != nil {
				t.Fatal(err)
			}
			r := newRotator(t, f.URLWith(0, c.scheme, testUser, testPass), good.URL())
			tr := newTransport(t, r, Options{PerAttemptTimeout: 300 * time.Millisecond, TLSClientConfig: &tls.Config{RootCAs: pool}})
			if code, body := get(t, tr, c.target+"/"); code != 200 || body != "hello" {
				t.Fatalf("%d %q, want 200 \"hello\" from the second proxy", code, body)
			}
			outs := r.Outcomes()
			if len(outs) != 2 {
				t.Fatalf("outcomes %+v, want two", outs)
			}
			if outs[0].ProxyID != "p0" || outs[0].OK || outs[0].Class != c.class {
				t.Errorf("first outcome %+v, want p0 failed with %q", outs[0], c.class)
			}
			if outs[1].ProxyID != "p1" || !outs[1].OK {
				t.Errorf("second outcome %+v, want p1 OK", outs[1])
			}
			if picks := r.Picks(); len(picks) != 2 || len(picks[1].Exclude) != 1 || picks[1].Exclude[0] != "p0" {
				t.Errorf("pick requests %+v, want the retry to exclude p0", picks)
			}
		})
	}
	t.Run("502 on CONNECT", func(t *testing.T) {
		bad := fwdproxy.Start(t, fwdproxy.Options{Name: "bad"})
		bad.RefuseConnect(true)
		good := fwdproxy.Start(t, fwdproxy.Options{Name: "good"})
		r := newRotator(t, bad.URL(), good.URL())
		tr := newTransport(t, r, Options{TLSClientConfig: &tls.Config{RootCAs: pool}})
		if code, body := get(t, tr, tlsOrigin.srv.URL+"/"); code != 200 || body != "hello" {
			t.Fatalf("%d %q, want 200 \"hello\" from the second proxy", code, body)
		}
		if outs := r.Outcomes(); len(outs) != 2 || outs[0].OK || outs[0].Class != ClassBadStatus || !outs[1].OK {
			t.Fatalf("outcomes %+v, want bad_status then OK", outs)
		}
	})
}

// TestAllProxiesFailing: the attempts stop at MaxAttempts, every one is
// reported, and the error names the last failure without credentials.
func TestAllProxiesFailing(t *testing.T) {
	f := startFarm(t, 4)
	behaviors := []fakeproxy.Behavior{fakeproxy.Refuse(), fakeproxy.Reset(), fakeproxy.AuthRequired(), fakeproxy.Garbage()}
	var urls []string
	for i, b := range behaviors {
		if err := f.Set(i, b); err != nil {
			t.Fatal(err)
		}
		urls = append(urls, f.URLWith(i, "http", testUser, testPass))
	}
	r := newRotator(t, urls...)
	tr := newTransport(t, r, Options{MaxAttempts: 3})
	req, _ := http.NewRequest(http.MethodGet, "https://127.0.0.1:1/secret-path?token=x", nil)
	resp, err := tr.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
		t.Fatal("RoundTrip succeeded through failing proxies")
	}
	for _, leak := range []string{testUser, testPass, "secret-path", "token"} {
		if strings.Contains(err.Error(), leak) {
			t.Errorf("error carries %q: %v", leak, err)
		}
	}
	if got := Classify(err); got != ClassProxyAuthRequired {
		t.Errorf("Classify(final error) = %q, want the third proxy's %q: %v", got, ClassProxyAuthRequired, err)
	}
	outs := r.Outcomes()
	wantClasses := []string{ClassRefused, ClassReset, ClassProxyAuthRequired}
	if len(outs) != len(wantClasses) {
		t.Fatalf("outcomes %+v, want %d", outs, len(wantClasses))
	}
	for i, out := range outs {
		if out.OK || out.Class != wantClasses[i] {
			t.Errorf("outcome %d = %+v, want failed with %q", i, out, wantClasses[i])
		}
	}
	if f.Checks(3) != 0 {
		t.Errorf("the fourth proxy was tried beyond MaxAttempts 3")
	}
}

// TestNonIdempotentRequests: a POST whose body may have been sent (the
// proxy read the request, then hung up) is not retried; a POST
// that never got a connection (refused) is; a POST with an
// Idempotency-Key is.
func TestNonIdempotentRequests(t *testing.T) {
	o := startOrigin(t, false)
	good := fwdproxy.Start(t, fwdproxy.Options{Name: "good"})
	hangup := startHangupProxy(t)
	f := startFarm(t, 2)
	if err := f.Set(1, fakeproxy.Refuse()); err != nil {
		t.Fatal(err)
	}
	post := func(tr http.RoundTripper, key string) (*http.Response, error) {
		req, err := http.NewRequest(http.MethodPost, o.srv.URL+"/", bytes.NewReader([]byte("the body")))
		if err != nil {
			t.Fatal(err)
		}
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		return tr.RoundTrip(req)
	}

	t.Run("hung up after the request: not retried", func(t *testing.T) {
		r := newRotator(t, hangup.URL(), good.URL())
		tr := newTransport(t, r, Options{})
		before := good.Requests()
		resp, err := post(tr, "")
		if err == nil {
			resp.Body.Close()
			t.Fatalf("POST succeeded; want the reset proxy's error, not a retry; outcomes %+v", r.Outcomes())
		}
		if got := good.Requests() - before; got != 0 {
			t.Fatalf("the second proxy got %d requests: the POST was retried", got)
		}
		if hangup.heads.Load() == 0 {
			t.Fatal("the first proxy never received the request head")
		}
		if outs := r.Outcomes(); len(outs) != 1 || outs[0].OK || outs[0].Class != ClassReset {
			t.Fatalf("outcomes %+v, want one reset (error %v)", outs, err)
		}
	})
	t.Run("refused: retried", func(t *testing.T) {
		r := newRotator(t, f.URL(1), good.URL())
		tr := newTransport(t, r, Options{})
		resp, err := post(tr, "")
		if err != nil {
			t.Fatalf("POST through a refusing proxy, then a good one: %v", err)
		}
		resp.Body.Close()
		if outs := r.Outcomes(); len(outs) != 2 || outs[0].Class != ClassRefused || !outs[1].OK {
			t.Fatalf("outcomes %+v, want refused then OK", outs)
		}
	})
	t.Run("idempotency key: retried after a hang-up", func(t *testing.T) {
		r := newRotator(t, hangup.URL(), good.URL())
		tr := newTransport(t, r, Options{})
		resp, err := post(tr, "k-1")
		if err != nil {
			t.Fatalf("POST with Idempotency-Key: %v", err)
		}
		resp.Body.Close()
		if outs := r.Outcomes(); len(outs) != 2 || outs[0].Class != ClassReset || !outs[1].OK {
			t.Fatalf("outcomes %+v, want reset then OK", outs)
		}
	})
	t.Run("body without GetBody: not retried even when refused", func(t *testing.T) {
		r := newRotator(t, f.URL(1), good.URL())
		tr := newTransport(t, r, Options{})
		req, err := http.NewRequest(http.MethodPut, o.srv.URL+"/", io.NopCloser(strings.NewReader("x")))
		if err != nil {
			t.Fatal(err)
		}
		req.GetBody = nil
		resp, err := tr.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
			t.Fatal("PUT with a one-shot body was retried")
		}
		if outs := r.Outcomes(); len(outs) != 1 || outs[0].Class != ClassRefused {
			t.Fatalf("outcomes %+v, want one refused", outs)
		}
	})
}

// TestTargetErrorsAreNotTheProxys: a 404 or 500 from the target through
// a working proxy is OK; a 502 the proxy marks as its own is not, and a
// GET is then retried elsewhere.
func TestTargetErrorsAreNotTheProxys(t *testing.T) {
	pool := fwdproxy.CertPool(t)
	o := startOrigin(t, false)
	tlsOrigin := startOrigin(t, true)
	p := fwdproxy.Start(t, fwdproxy.Options{Name: "p"})
	for _, target := range []string{o.srv.URL, tlsOrigin.srv.URL} {
		for _, code := range []int{404, 500, 502} {
			r := newRotator(t, p.URL())
			tr := newTransport(t, r, Options{TLSClientConfig: &tls.Config{RootCAs: pool}})
			got, _ := get(t, tr, target+"/status/"+strconv.Itoa(code))
			if got != code {
				t.Fatalf("%s: status %d, want %d", target, got, code)
			}
			if outs := r.Outcomes(); len(outs) != 1 || !outs[0].OK || outs[0].Class != "" {
				t.Fatalf("%s answered %d: outcomes %+v, want one OK", target, code, outs)
			}
		}
	}

	bad := fwdproxy.Start(t, fwdproxy.Options{Name: "bad"})
	bad.Answer502(true)
	r := newRotator(t, bad.URL(), p.URL())
	tr := newTransport(t, r, Options{})
	if code, body := get(t, tr, o.srv.URL+"/"); code != 200 || body != "hello" {
		t.Fatalf("after the proxy's own 502: %d %q, want 200 \"hello\" from the next proxy", code, body)
	}
	if outs := r.Outcomes(); len(outs) != 2 || outs[0].OK || outs[0].Class != ClassBadStatus || !outs[1].OK {
		t.Fatalf("outcomes %+v, want bad_status then OK", outs)
	}
	// With no other proxy, the caller gets the proxy's 502.
	r = newRotator(t, bad.URL())
	tr = newTransport(t, r, Options{})
	if code, _ := get(t, tr, o.srv.URL+"/"); code != http.StatusBadGateway {
		t.Fatalf("status %d, want the proxy's 502", code)
	}
}

// TestConnectionsAreReused: sequential requests through one proxy use one
// connection to it, in absolute form and through a CONNECT tunnel.
func TestConnectionsAreReused(t *testing.T) {
	pool := fwdproxy.CertPool(t)
	for _, useTLS := range []bool{false, true} {
		o := startOrigin(t, useTLS)
		p := fwdproxy.Start(t, fwdproxy.Options{Name: "p"})
		r := newRotator(t, p.URL())
		tr := newTransport(t, r, Options{TLSClientConfig: &tls.Config{RootCAs: pool}})
		for range 20 {
			if code, _ := get(t, tr, o.srv.URL+"/"); code != 200 {
				t.Fatalf("status %d", code)
			}
		}
		if got := p.NewConns(); got != 1 {
			t.Errorf("TLS origin %v: 20 requests opened %d connections to the proxy, want 1", useTLS, got)
		}
		if got := o.newConns.Load(); got != 1 {
			t.Errorf("TLS origin %v: the origin saw %d connections, want 1", useTLS, got)
		}
	}
}

// TestNoUsableProxy: a Pick failure is returned wrapping ErrNoProxy and
// the request body is closed.
func TestNoUsableProxy(t *testing.T) {
	r := newRotator(t)
	tr := newTransport(t, r, Options{})
	body := &closeRecorder{Reader: strings.NewReader("x")}
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:1/", body)
	_, err := tr.RoundTrip(req)
	if !errors.Is(err, rotation.ErrNoProxy) {
		t.Fatalf("RoundTrip = %v, want ErrNoProxy", err)
	}
	if !body.closed {
		t.Fatal("the request body was not closed")
	}
}

type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

// TestPickRequestCarriesTheOptions: strategy, sticky key and filters reach
// the rotator.
func TestPickRequestCarriesTheOptions(t *testing.T) {
	o := startOrigin(t, false)
	p := fwdproxy.Start(t, fwdproxy.Options{Name: "p"})
	r := newRotator(t, p.URL())
	tr := newTransport(t, r, Options{
		Strategy: rotation.Sticky, Key: func(req *http.Request) string { return req.URL.Host },
		Source: "src", Scheme: "http", Tag: "eu",
	})
	get(t, tr, o.srv.URL+"/")
	picks := r.Picks()
	want := rotation.Request{Strategy: rotation.Sticky, Key: o.srv.Listener.Addr().String(), Source: "src", Scheme: "http", Tag: "eu"}
	if len(picks) != 1 || picks[0].Strategy != want.Strategy || picks[0].Key != want.Key || picks[0].Source != want.Source ||
		picks[0].Scheme != want.Scheme || picks[0].Tag != want.Tag || len(picks[0].Exclude) != 0 {
		t.Fatalf("pick requests %+v, want [%+v]", picks, want)
	}
}

// TestCloseAndEviction: beyond MaxProxies the least recently used proxy's
// idle connection is closed; Close closes the rest and later requests
// fail with ErrClosed.
func TestCloseAndEviction(t *testing.T) {
	o := startOrigin(t, false)
	a := fwdproxy.Start(t, fwdproxy.Options{Name: "a"})
	b := fwdproxy.Start(t, fwdproxy.Options{Name: "b"})
	r := newRotator(t, a.URL(), b.URL())
	tr := newTransport(t, r, Options{MaxProxies: 1})
	get(t, tr, o.srv.URL+"/") // a
	get(t, tr, o.srv.URL+"/") // b: a's pool is dropped
	tr.mu.Lock()
	n := len(tr.pools)
	tr.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d pools kept, want MaxProxies = 1", n)
	}
	get(t, tr, o.srv.URL+"/") // a again: a new connection
	if got := a.NewConns(); got != 2 {
		t.Fatalf("proxy a saw %d connections, want 2 (its pool was dropped in between)", got)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	tr.connMu.Lock()
	open := len(tr.conns)
	tr.connMu.Unlock()
	if open != 0 {
		t.Fatalf("%d connections still tracked after Close", open)
	}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, o.srv.URL+"/", nil)
	if _, err := tr.RoundTrip(req); !errors.Is(err, ErrClosed) {
		t.Fatalf("RoundTrip after Close = %v, want ErrClosed", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	bad := []Options{
		{Strategy: "fastest"},
		{Strategy: rotation.Sticky},
		{MaxAttempts: -1},
		{PerAttemptTimeout: -time.Second},
		{MaxIdleConnsPerProxy: -1},
		{MaxConnsPerProxy: -1},
		{IdleConnTimeout: -1},
		{MaxProxies: -1},
	}
	for _, o := range bad {
		if err := o.Validate(); !errors.Is(err, ErrBadOptions) {
			t.Errorf("Validate(%+v) = %v, want ErrBadOptions", o, err)
		}
	}
	if err := (Options{}).Validate(); err != nil {
		t.Errorf("Validate(zero) = %v, want nil", err)
	}
	if _, err := New(nil, Options{}); !errors.Is(err, ErrBadOptions) {
		t.Errorf("New(nil rotator) = %v, want ErrBadOptions", err)
	}
	if _, err := New(newRotator(t), Options{Strategy: "fastest"}); !errors.Is(err, ErrBadOptions) {
		t.Errorf("New(bad strategy) = %v, want ErrBadOptions", err)
	}
}

// TestChangedMemberGetsANewPool: when the engine hands out a proxy ID with
// a different URL (new credentials), the old pool is not reused.
func TestChangedMemberGetsANewPool(t *testing.T) {
	o := startOrigin(t, false)
	p := fwdproxy.Start(t, fwdproxy.Options{Name: "p", User: testUser, Pass: testPass})
	r := newRotator(t, p.URLWith(testUser, "wrong"))
	tr := newTransport(t, r, Options{MaxAttempts: 1})
	if code, _ := get(t, tr, o.srv.URL+"/"); code != http.StatusProxyAuthRequired {
		t.Fatalf("with the wrong password: status %d, want 407", code)
	}
	r.mu.Lock()
	r.members[0].URL = mustURL(t, p.URL())
	r.mu.Unlock()
	if code, body := get(t, tr, o.srv.URL+"/"); code != 200 || body != "hello" {
		t.Fatalf("with the right password: %d %q, want 200 \"hello\"", code, body)
	}
	outs := r.Outcomes()
	if len(outs) != 2 || outs[0].Class != ClassProxyAuthRequired || !outs[1].OK {
		t.Fatalf("outcomes %+v, want proxy_auth_required then OK", outs)
	}
}

// TestSOCKSConnectionsAreReused: sequential requests to one target through
// a forwarding SOCKS5 proxy use one tunnel.
func TestSOCKSConnectionsAreReused(t *testing.T) {
	pool := fwdproxy.CertPool(t)
	for _, useTLS := range []bool{false, true} {
		o := startOrigin(t, useTLS)
		s := fwdproxy.StartSOCKS5(t)
		for _, scheme := range []string{"socks5", "socks5h"} {
			r := newRotator(t, s.URL(scheme))
			tr := newTransport(t, r, Options{TLSClientConfig: &tls.Config{RootCAs: pool}})
			before, originBefore := s.NewConns(), o.newConns.Load()
			for range 10 {
				if code, body := get(t, tr, o.srv.URL+"/"); code != 200 || body != "hello" {
					t.Fatalf("%s: %d %q", scheme, code, body)
				}
			}
			if got := s.NewConns() - before; got != 1 {
				t.Errorf("%s, TLS origin %v: 10 requests opened %d connections to the proxy, want 1", scheme, useTLS, got)
			}
			if got := o.newConns.Load() - originBefore; got != 1 {
				t.Errorf("%s, TLS origin %v: the origin saw %d connections, want 1", scheme, useTLS, got)
			}
			tr.Close()
		}
	}
}

// TestFailuresThatAreNotTheProxys are neither reported nor retried: the
// caller's context ends, the request body fails, the target's certificate
// is refused.
func TestFailuresThatAreNotTheProxys(t *testing.T) {
	tlsOrigin := startOrigin(t, true)
	o := startOrigin(t, false)
	f := startFarm(t, 1, fakeproxy.WithBehavior(fakeproxy.Blackhole()))
	good := fwdproxy.Start(t, fwdproxy.Options{Name: "good"})

	t.Run("caller's deadline", func(t *testing.T) {
		r := newRotator(t, f.URL(0), good.URL())
		tr := newTransport(t, r, Options{PerAttemptTimeout: time.Minute})
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, o.srv.URL+"/", nil)
		if resp, err := tr.RoundTrip(req); err == nil {
			resp.Body.Close()
			t.Fatal("RoundTrip succeeded after the caller's deadline")
		}
		if outs, picks := r.Outcomes(), r.Picks(); len(outs) != 0 || len(picks) != 1 {
			t.Fatalf("outcomes %+v, picks %d: want none reported and no retry", outs, len(picks))
		}
	})
	t.Run("request body fails", func(t *testing.T) {
		r := newRotator(t, good.URL(), good.URL())
		tr := newTransport(t, r, Options{})
		req, _ := http.NewRequest(http.MethodPut, o.srv.URL+"/", io.MultiReader(strings.NewReader("part"), failingReader{}))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(failingReader{}), nil }
		req.ContentLength = 100
		if resp, err := tr.RoundTrip(req); err == nil {
			resp.Body.Close()
			t.Fatal("RoundTrip succeeded with a failing body")
		}
		if outs, picks := r.Outcomes(), r.Picks(); len(outs) != 0 || len(picks) != 1 {
			t.Fatalf("outcomes %+v, picks %d: want none reported and no retry", outs, len(picks))
		}
	})
	t.Run("target certificate refused", func(t *testing.T) {
		r := newRotator(t, good.URL(), good.URL())
		tr := newTransport(t, r, Options{}) // the system roots do not trust httptest's certificate
		req, _ := http.NewRequest(http.MethodGet, tlsOrigin.srv.URL+"/", nil)
		resp, err := tr.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
			t.Fatal("RoundTrip trusted an unknown certificate")
		}
		if outs, picks := r.Outcomes(), r.Picks(); len(outs) != 0 || len(picks) != 1 {
			t.Fatalf("outcomes %+v, picks %d: want none reported and no retry (error %v)", outs, len(picks), err)
		}
	})
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }
