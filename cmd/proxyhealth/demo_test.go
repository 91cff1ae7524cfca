package main

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

var dashboardRE = regexp.MustCompile(`dashboard: (http://127\.0\.0\.1:\d+)/\n`)

var endpointRE = regexp.MustCompile(`rotating endpoint: (127\.0\.0\.1:\d+) `)

// startDemo runs `proxyhealth demo` and returns it with its base URL.
func startDemo(t *testing.T, args ...string) (*proc, string) {
	t.Helper()
	p := startBin(t, nil, append([]string{"demo", "--listen", "127.0.0.1:0"}, args...)...)
	base := p.waitOutput("dashboard URL", false, func(s string) (string, bool) {
		m := dashboardRE.FindStringSubmatch(s)
		if m == nil {
			return "", false
		}
		return m[1], true
	})
	return p, base
}

func TestDemo(t *testing.T) {
	p, base := startDemo(t, "--proxies", "40")
	pool := waitPool(t, base, "live with problems", func(p httpapi.Pool) bool {
		return p.Total == 40 && p.Healthy > 0 && p.Unhealthy+p.Failed+p.Recovering > 0 && len(p.Sources) == 3
	})
	t.Logf("demo pool: %+v", pool.Counts)

	// POST /v1/proxies without a source: the documented default source is
	// created on first use (the demo configures none).
	resp, err := http.Post(base+"/v1/proxies", "application/json", strings.NewReader(`{"url":"http://127.0.0.1:1"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/proxies without a source: %s %s", resp.Status, body)
	}
	if added := proxyIDs(t, base, "source=default"); len(added) != 1 || added[id("http://127.0.0.1:1")].Source != "default" {
		t.Errorf("the default source holds %v", added)
	}
	// The rotating endpoint is printed and forwards through the farm.
	addr := p.waitOutput("endpoint line", false, func(s string) (string, bool) {
		m := endpointRE.FindStringSubmatch(s)
		if m == nil {
			return "", false
		}
		return m[1], true
	})
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: addr})}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	testutil.Eventually(t, 15*time.Second, "a request through the demo's rotating endpoint", func() bool {
		resp, err := client.Get(demoTarget)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	// The demo has no configuration to reload.
	if code, body := postReload(t, base); code != http.StatusNotImplemented {
		t.Errorf("POST /v1/reload in the demo: %d %s", code, body)
	}
	p.waitOutput("summary lines", false, func(s string) (string, bool) {
		return "", strings.Count(s, "% healthy · seq ") >= 2
	})
	p.signal(syscall.SIGINT)
	if code := p.wait(30 * time.Second); code != 0 {
		t.Fatalf("SIGINT: exit %d\n%s\n%s", code, p.stdout, p.stderr)
	}
	if !strings.HasSuffix(p.stdout.String(), "demo stopped\n") {
		t.Errorf("stdout does not end with the stop line:\n%s", p.stdout)
	}
	if p.stderr.String() != "" {
		t.Errorf("stderr: %s", p.stderr)
	}
}

func TestDemoDuration(t *testing.T) {
	data := t.TempDir()
	r := runBin(t, "demo", "--listen", "127.0.0.1:0", "--proxies", "10", "--duration", "1500ms", "--data", data, "--quiet")
	if r.code != 0 || !strings.Contains(r.stdout, "dashboard: http://127.0.0.1:") || strings.Contains(r.stdout, "% healthy") {
		t.Fatalf("demo --duration: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := runBin(t, "journal", "verify", "--data", data); r.code != 0 {
		t.Errorf("the demo's journal: %d %q", r.code, r.stderr)
	}
}
