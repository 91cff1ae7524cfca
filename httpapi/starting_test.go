package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/proxyhealth/proxyhealth/httpapi"
)

// TestStarting: while a daemon's engine opens, every request is answered
// at once with 503 and Retry-After; /healthz says "starting" with the
// version; a host the API would refuse gets its 421.
func TestStarting(t *testing.T) {
	srv := httptest.NewServer(httpapi.Starting(httpapi.Options{Version: "1.2.3", Token: "secret", AllowedHosts: []string{"proxyhealth.example"}}))
	defer srv.Close()
	do := func(method, path, host string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(""))
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}

	for _, host := range []string{"", "proxyhealth.example"} {
		resp, body := do("GET", "/healthz", host)
		var h httpapi.Healthz
		if err := json.Unmarshal([]byte(body), &h); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("GET /healthz (Host %q): %d %s (%v), want 503 and a Healthz body", host, resp.StatusCode, body, err)
		}
		if h.Status != "starting" || h.Version != "1.2.3" || h.Journal != nil || h.Projections != nil || h.Causes != nil {
			t.Errorf("GET /healthz while starting: %s", body)
		}
		if got := resp.Header.Get("Retry-After"); got != httpapi.StartingRetryAfter {
			t.Errorf("GET /healthz: Retry-After %q, want %q", got, httpapi.StartingRetryAfter)
		}
	}
	for _, r := range []struct{ method, path string }{
		{"GET", "/v1/pool"}, {"GET", "/metrics"}, {"GET", "/"}, {"POST", "/v1/proxies"}, {"GET", "/v1/events"}, {"GET", "/nope"},
	} {
		resp, body := do(r.method, r.path, "")
		wantError(t, r.method+" "+r.path+" while starting", resp.StatusCode, body, http.StatusServiceUnavailable, "starting")
		if got := resp.Header.Get("Retry-After"); got != httpapi.StartingRetryAfter {
			t.Errorf("%s %s: Retry-After %q, want %q", r.method, r.path, got, httpapi.StartingRetryAfter)
		}
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s %s: X-Content-Type-Options %q", r.method, r.path, got)
		}
	}
	resp, body := do("GET", "/healthz", "evil.example")
	wantError(t, "GET /healthz with Host evil.example while starting", resp.StatusCode, body, http.StatusMisdirectedRequest, "AllowedHosts")
}
