package fakeproxy

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

type echoAnswer struct {
	Headers map[string]string `json:"headers"`
	Origin  string            `json:"origin"`
	URL     string            `json:"url"`
}

func decodeEcho(t *testing.T, body string) echoAnswer {
	t.Helper()
	var e echoAnswer
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("echo answer is not JSON: %v: %q", err, body)
	}
	return e
}

func TestDefaultExit(t *testing.T) {
	for i, want := range map[int]string{0: "198.18.0.1", 1: "198.18.0.2", 254: "198.18.0.255", 255: "198.18.1.0", 1<<16 - 1: "198.19.0.0", 1<<17 - 3: "198.19.255.254", 1<<17 - 2: "198.18.0.1"} {
		if got := DefaultExit(i); got != want {
			t.Errorf("DefaultExit(%d) = %s, want %s", i, got, want)
		}
	}
}

func TestDirectEcho(t *testing.T) {
	f := startFarm(t, 1)
	for _, u := range []string{f.EchoURL() + "?x=1", strings.Replace(f.EchoURL(), "http:", "https:", 1)} {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: f.ClientTLSConfig(), DisableKeepAlives: true}, Timeout: 10 * time.Second}
		req, _ := http.NewRequest("GET", u, nil)
		req.Header.Set("User-Agent", "echo-test")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		var e echoAnswer
		err = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("GET %s: %d %q %v", u, resp.StatusCode, resp.Header.Get("Content-Type"), err)
		}
		if e.Origin != "127.0.0.1" || e.Headers["User-Agent"] != "echo-test" || e.Headers["Via"] != "" || e.Headers["X-Forwarded-For"] != "" {
			t.Errorf("GET %s: %+v, want origin 127.0.0.1, the request's headers only", u, e)
		}
	}
	if got := f.EchoAnswers(); got != 2 {
		t.Errorf("EchoAnswers = %d, want 2", got)
	}
	if got := f.TotalChecks(); got != 0 {
		t.Errorf("TotalChecks = %d, want 0 (the direct echo server is not a proxy)", got)
	}
}

// TestEchoThroughProxy: each anonymity mode through absolute form, CONNECT
// + TLS and SOCKS5; Proxy-Authorization never reaches the echo.
func TestEchoThroughProxy(t *testing.T) {
	f := startFarm(t, 1, WithCredentials("user", "s3cret"), WithBehavior(AuthRequired()))
	const exit = "203.0.113.9"
	for _, mode := range []Anonymity{Elite, Anonymous, Transparent} {
		if err := f.SetExit(0, exit, mode); err != nil {
			t.Fatal(err)
		}
		for _, via := range []struct{ scheme, target string }{
			{"http", "http://echo.proxyhealth.test/get"},
			{"http", "https://echo.proxyhealth.test/get?show_env=1"},
			{"socks5", "http://echo.proxyhealth.test/get"},
		} {
			u, _ := url.Parse(f.URLWith(0, via.scheme, "user", "s3cret"))
			c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(u), TLSClientConfig: f.ClientTLSConfig(), DisableKeepAlives: true}, Timeout: 10 * time.Second}
			code, body := get(t, c, via.target)
			e := decodeEcho(t, body)
			what := mode.String() + " via " + via.scheme + " to " + via.target
			if code != 200 || strings.Contains(body, "s3cret") || strings.Contains(strings.ToLower(body), "proxy-authorization") {
				t.Errorf("%s: %d %s", what, code, body)
			}
			wantOrigin, wantVia, wantXFF := exit, "", ""
			switch mode {
			case Anonymous:
				wantVia = "1.1 fakeproxy"
			case Transparent:
				wantOrigin, wantVia, wantXFF = "127.0.0.1, "+exit, "1.1 fakeproxy", "127.0.0.1"
			}
			if e.Origin != wantOrigin || e.Headers["Via"] != wantVia || e.Headers["X-Forwarded-For"] != wantXFF {
				t.Errorf("%s: origin %q Via %q X-Forwarded-For %q, want %q %q %q", what, e.Origin, e.Headers["Via"], e.Headers["X-Forwarded-For"], wantOrigin, wantVia, wantXFF)
			}
			if e.Headers["Host"] != "echo.proxyhealth.test" || !strings.HasSuffix(e.URL, "/get") && !strings.HasSuffix(e.URL, "?show_env=1") {
				t.Errorf("%s: host %q url %q", what, e.Headers["Host"], e.URL)
			}
		}
	}
	if got, want := f.Stats(0).Echoes, uint64(9); got != want {
		t.Errorf("Echoes = %d, want %d", got, want)
	}
	if ip, a := f.Exit(0); ip != exit || a != Transparent {
		t.Errorf("Exit(0) = %s %v", ip, a)
	}
}

func TestEchoKeepsBehaviors(t *testing.T) {
	f := startFarm(t, 1, WithAnonymity(Anonymous))
	c := httpClient(f, 0, "", "")
	defer c.CloseIdleConnections()
	if ip, a := f.Exit(0); ip != DefaultExit(0) || a != Anonymous {
		t.Fatalf("Exit(0) = %s %v, want the default exit and WithAnonymity's mode", ip, a)
	}
	if code, body := get(t, c, "http://t.proxyhealth.test/getx"); code != 200 || body != "ok" {
		t.Errorf("other paths keep the farm's body: %d %q", code, body)
	}
	if err := f.Set(0, WrongContent()); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, c, "http://t.proxyhealth.test/get"); code != 200 || body != "fakeproxy: wrong content" {
		t.Errorf("WrongContent on the echo path: %d %q", code, body)
	}
	if err := f.Set(0, Status(503).Chunked()); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, c, "http://t.proxyhealth.test/get"); code != 503 || decodeEcho(t, body).Origin != DefaultExit(0) {
		t.Errorf("Status(503)+Chunked on the echo path: %d %q", code, body)
	}
}

func TestSetExitErrors(t *testing.T) {
	f := startFarm(t, 1)
	if err := f.SetExit(0, "not-an-ip", Elite); !errors.Is(err, ErrBadExit) {
		t.Errorf("bad IP: %v", err)
	}
	if err := f.SetExit(0, "192.0.2.1", Transparent+1); !errors.Is(err, ErrBadExit) {
		t.Errorf("bad mode: %v", err)
	}
	if err := f.SetExit(1, "192.0.2.1", Elite); !errors.Is(err, ErrBadIndex) {
		t.Errorf("bad index: %v", err)
	}
	if err := f.SetExit(0, "2001:db8::1", Elite); err != nil {
		t.Errorf("IPv6: %v", err)
	}
	f.Close()
	if err := f.SetExit(0, "192.0.2.1", Elite); !errors.Is(err, ErrClosed) {
		t.Errorf("closed: %v", err)
	}
}
