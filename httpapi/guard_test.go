package httpapi_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/proxyhealth/proxyhealth/httpapi"
)

// TestHostCheck: a request whose Host is not a loopback name, the listen
// address or an allowed name is refused on every endpoint (DNS rebinding:
// a web page whose name resolves to 127.0.0.1 must not reach the API).
func TestHostCheck(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	f.seedPool()
	for _, p := range []string{"/", "/healthz", "/metrics", "/v1/pool", "/v1/proxies", "/v1/proxies/" + p1, "/v1/events", "/nope"} {
		code, body := f.doNoStream("GET", p, "Host", "evil.example")
		wantError(t, "GET "+p+" with Host evil.example", code, body, http.StatusMisdirectedRequest, "AllowedHosts")
		code, body = f.doNoStream("GET", p, "Host", "evil.example:"+port(f))
		wantError(t, "GET "+p+" with Host evil.example:port", code, body, http.StatusMisdirectedRequest, `"evil.example`)
	}
	// The reported attack: a page of evil.example, rebound to 127.0.0.1.
	code, body := f.do("POST", "/v1/pause", "", "Host", "evil.example", "Origin", "http://evil.example")
	wantError(t, "pause from a rebound name", code, body, http.StatusMisdirectedRequest, "evil.example")
	if calls := f.eng.calls(); len(calls) != 0 {
		t.Errorf("the engine was called: %q", calls)
	}
	for _, h := range []string{"localhost", "localhost:" + port(f), "LocalHost.", "127.0.0.1", "127.3.4.5:80", "[::1]", "[::1]:" + port(f)} {
		if code, body := f.do("GET", "/v1/pool", "", "Host", h); code != http.StatusOK {
			t.Errorf("Host %q: %d %s, want 200 (a loopback name)", h, code, body)
		}
	}
	// Names that merely start like loopback ones are not loopback.
	for _, h := range []string{"localhost.evil.example", "127.0.0.1.evil.example", "0x7f000001", "[::ffff:10.0.0.1]"} {
		code, body := f.do("GET", "/v1/pool", "", "Host", h)
		wantError(t, "Host "+h, code, body, http.StatusMisdirectedRequest, "not")
	}
}

// doNoStream is do for a request that must not open an event stream: an
// event stream's body is not read.
func (f *fixture) doNoStream(method, path string, hdr ...string) (int, string) {
	f.t.Helper()
	resp := f.doResp(method, path, "", hdr...)
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct == "text/event-stream" {
		return resp.StatusCode, "(an event stream)"
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func port(f *fixture) string {
	_, p, _ := net.SplitHostPort(strings.TrimPrefix(f.http.URL, "http://"))
	return p
}

// TestAllowedHosts: configured names (exact, or a domain with its
// subdomains when written with a leading dot) are accepted, others not.
func TestAllowedHosts(t *testing.T) {
	f := newFixture(t, httpapi.Options{AllowedHosts: []string{"Proxyhealth.Internal", ".example.net", "10.1.2.3:9480", "[2001:db8::1]"}})
	for _, h := range []string{"proxyhealth.internal", "proxyhealth.internal:9480", "example.net", "a.b.example.net:1", "10.1.2.3", "[2001:db8::1]:9480", "localhost"} {
		if code, body := f.do("GET", "/v1/pool", "", "Host", h); code != http.StatusOK {
			t.Errorf("Host %q: %d %s, want 200", h, code, body)
		}
	}
	for _, h := range []string{"evil.example", "notexample.net", "proxyhealth.internal.evil.example", "10.1.2.4"} {
		code, body := f.do("GET", "/v1/pool", "", "Host", h)
		wantError(t, "Host "+h, code, body, http.StatusMisdirectedRequest, h)
	}
}

// TestHostCheckListenAddress: the address the request came in on (the
// listener's, from http.LocalAddrContextKey) is accepted, so a daemon
// listening on 0.0.0.0 answers to http://<its IP>:port/ without config.
func TestHostCheckListenAddress(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	local := &net.TCPAddr{IP: net.ParseIP("192.0.2.10"), Port: 9480}
	for _, c := range []struct {
		host string
		code int
	}{{"192.0.2.10:9480", 200}, {"192.0.2.10", 200}, {"192.0.2.11:9480", 421}, {"evil.example:9480", 421}} {
		req := httptest.NewRequest("GET", "/v1/pool", nil)
		req.Host = c.host
		req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, net.Addr(local)))
		w := httptest.NewRecorder()
		f.srv.ServeHTTP(w, req)
		if w.Code != c.code {
			t.Errorf("Host %q on listener %s: %d %s, want %d", c.host, local, w.Code, w.Body, c.code)
		}
	}
}

// TestCrossOrigin: state-changing requests from other web pages are
// refused (403) before they reach the engine, with or without a token;
// the API's own page and non-browser clients are served.
func TestCrossOrigin(t *testing.T) {
	for _, token := range []string{"", "s3cret"} {
		f := newFixture(t, httpapi.Options{Token: token})
		auth := []string{"Authorization", "Bearer " + token}
		if token == "" {
			auth = nil
		}
		with := func(h ...string) []string { return append(append([]string(nil), auth...), h...) }
		self := f.http.URL // http://127.0.0.1:port: the dashboard's own origin

		for _, c := range []struct {
			name, method, path, body string
			hdr                      []string
			code                     int
			substr                   string
		}{
			{"pause from another origin", "POST", "/v1/pause", "", []string{"Origin", "http://evil.example"}, 403, "evil.example"},
			{"add as a text/plain form from another origin", "POST", "/v1/proxies", `{"url":"10.66.66.66:80"}`,
				[]string{"Origin", "http://evil.example", "Content-Type", "text/plain"}, 403, "Origin"},
			{"JSON add from another origin", "POST", "/v1/proxies", `{"url":"10.66.66.66:80"}`, []string{"Origin", "http://evil.example"}, 403, "Origin"},
			{"another port of localhost", "POST", "/v1/resume", "", []string{"Origin", "http://localhost:8080", "Sec-Fetch-Site", "same-site"}, 403, "localhost:8080"},
			{"opaque origin", "DELETE", "/v1/proxies/" + p1, "", []string{"Origin", "null"}, 403, "null"},
			{"cross-site without Origin", "POST", "/v1/proxies/" + p1 + "/revive", "", []string{"Sec-Fetch-Site", "cross-site"}, 403, "cross-site"},
			{"text/plain without Origin", "POST", "/v1/proxies", `{"url":"10.66.66.66:80"}`, []string{"Content-Type", "text/plain"}, 415, "application/json"},
			{"form without Origin", "POST", "/v1/pause", "a=b", []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "application/json"},
			{"body without Content-Type", "POST", "/v1/proxies", `{"url":"10.66.66.66:80"}`, []string{"Content-Type", ""}, 415, "Content-Type"},
			{"same-origin page without Content-Type", "POST", "/v1/pause", "", []string{"Origin", self, "Sec-Fetch-Site", "same-origin"}, 415, "application/json"},
		} {
			code, body := f.do(c.method, c.path, c.body, with(c.hdr...)...)
			wantError(t, c.name+" (token "+token+")", code, body, c.code, c.substr)
		}
		if calls := f.eng.calls(); len(calls) != 0 {
			t.Fatalf("token %q: refused requests reached the engine: %q", token, calls)
		}

		for _, c := range []struct {
			name, method, path, body string
			hdr                      []string
		}{
			{"the dashboard's revive", "POST", "/v1/proxies/" + p1 + "/revive", "", []string{"Origin", self, "Sec-Fetch-Site", "same-origin", "Content-Type", "application/json"}},
			{"same-origin add", "POST", "/v1/proxies", `{"url":"10.0.0.7:80"}`, []string{"Origin", self, "Content-Type", "application/json; charset=utf-8"}},
			{"curl pause without a body", "POST", "/v1/pause", "", nil},
			{"CLI delete", "DELETE", "/v1/proxies/" + p1, "", nil},
			{"JSON add without Origin", "POST", "/v1/proxies", `{"url":"10.0.0.8:80"}`, nil},
			{"typed in the address bar", "POST", "/v1/resume", "", []string{"Sec-Fetch-Site", "none", "Content-Type", "application/json"}},
		} {
			if code, body := f.do(c.method, c.path, c.body, with(c.hdr...)...); code/100 != 2 {
				t.Errorf("%s (token %q): %d %s, want 2xx", c.name, token, code, body)
			}
		}
		if n := len(f.eng.calls()); n != 6 {
			t.Errorf("token %q: %d engine calls, want 6: %q", token, n, f.eng.calls())
		}
	}
}

// TestCrossOriginReadsAreServed: GETs carry no cross-origin check (a
// browser cannot read the answer without CORS, which the API never
// grants) and OPTIONS preflights are not approved.
func TestCrossOriginReadsAreServed(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	if code, body := f.do("GET", "/v1/pool", "", "Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site"); code != 200 {
		t.Errorf("GET with a foreign Origin: %d %s", code, body)
	}
	resp := f.doResp("OPTIONS", "/v1/pause", "", "Origin", "http://evil.example", "Access-Control-Request-Method", "POST")
	resp.Body.Close()
	if resp.StatusCode/100 == 2 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight answered %d with Access-Control-Allow-Origin %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
}
