package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// dumpDOM loads url in headless Chromium for budget (virtual time) and
// returns the DOM.
func dumpDOM(t *testing.T, chrome, url string, budget time.Duration) []byte {
	t.Helper()
	profile := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chrome, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--user-data-dir="+profile, fmt.Sprintf("--virtual-time-budget=%d", budget.Milliseconds()), "--dump-dom", url)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, errb.String())
	}
	return out.Bytes()
}

// TestDashboardHistoryInBrowser: the pool-over-time chart opens with the
// server's recent samples (GET /v1/pool/history) instead of empty. In 2 s
// of the page's time it samples the pool itself at most 3 times.
func TestDashboardHistoryInBrowser(t *testing.T) {
	chrome := testutil.Chromium(t, "the dashboard is not checked in a browser")
	f := newFixture(t, httpapi.Options{Now: time.Now, PoolHistoryInterval: 5 * time.Millisecond})
	f.seedPool()
	var h httpapi.PoolHistory
	testutil.Eventually(t, 10*time.Second, "50 samples of the pool", func() bool {
		h = httpapi.PoolHistory{}
		f.getJSON("/v1/pool/history", &h)
		return len(h.Samples) >= 50
	})
	dom := dumpDOM(t, chrome, f.http.URL+"/", 2*time.Second)
	m := regexp.MustCompile(`<canvas id="chart-health"[^>]* data-samples="(\d+)"`).FindSubmatch(dom)
	if m == nil {
		t.Fatalf("the chart has no data-samples: %s", regexp.MustCompile(`<canvas[^>]*>`).FindAll(dom, -1))
	}
	if n, _ := strconv.Atoi(string(m[1])); n < 50 {
		t.Errorf("the chart drew %d samples on open, want the server's %d and more", n, len(h.Samples))
	}
}

// TestDashboardHistorySamples runs the dashboard's history code in Node:
// samples become chart points (unhealthy + recovering drawn together),
// oldest first, only those before the first live point and within the
// hour.
func TestDashboardHistorySamples(t *testing.T) {
	node := testutil.Program(t, "the dashboard's history code is not run", "node")
	f := newFixture(t, httpapi.Options{})
	code, page := f.do("GET", "/", "")
	if code != 200 {
		t.Fatalf("GET /: %d", code)
	}
	script := regexp.MustCompile(`(?s)// -- pool history --.*?// -- end pool history --`).FindString(page)
	hist := regexp.MustCompile(`const HISTORY_MS = [^;]*;`).FindString(page)
	if script == "" || hist == "" {
		t.Fatal("the dashboard has no pool history code between its markers")
	}
	now := time.Date(2025, 3, 4, 6, 0, 0, 0, time.UTC)
	body, _ := json.Marshal(httpapi.PoolHistory{Samples: []httpapi.PoolSample{
		{At: now.Add(-2 * time.Hour), Counts: httpapi.Counts{Total: 9, Healthy: 9}},                                 // too old
		{At: now.Add(-20 * time.Minute), Counts: httpapi.Counts{Total: 4, Healthy: 2, Unhealthy: 1, Recovering: 1}}, // kept
		{At: now.Add(-30 * time.Minute), Counts: httpapi.Counts{Total: 4, Healthy: 3, Degraded: 1}},                 // kept, first
		{At: now.Add(-5 * time.Second), Counts: httpapi.Counts{Total: 4, Failed: 4}},                                // after the first live point
	}})
	js := hist + script + fmt.Sprintf(`
process.stdout.write(JSON.stringify(historySamples(%s, %d, %d)));`, body, now.Add(-10*time.Second).UnixMilli(), now.UnixMilli())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	raw, err := exec.CommandContext(ctx, node, "-e", js).Output()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	type point struct{ T, Healthy, Degraded, Bad, Failed, Total int64 }
	var got []point
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("node printed %q: %v", raw, err)
	}
	want := []point{
		{T: now.Add(-30 * time.Minute).UnixMilli(), Healthy: 3, Degraded: 1, Total: 4},
		{T: now.Add(-20 * time.Minute).UnixMilli(), Healthy: 2, Bad: 2, Total: 4},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("historySamples gave %+v, want %+v", got, want)
	}
}

// TestDashboardProxyPageInBrowser clicks a proxy in the dashboard's
// proxies table (the page's own code: the test serves it with a script
// that clicks the row once it is listed) and checks the proxy page (its
// checks chart, transitions, ejection and story) and the traffic panel (panic
// mode, ejections, request rates from Options.Traffic). A server without
// Options.Traffic says it has no rotating endpoint.
func TestDashboardProxyPageInBrowser(t *testing.T) {
	chrome := testutil.Chromium(t, "the dashboard is not checked in a browser")
	r := newRotationEngine(t, 3)
	var calls atomic.Uint64
	srv, err := httpapi.New(r.eng, httpapi.Options{Traffic: func() httpapi.TrafficStats {
		n := calls.Add(1) // every poll sees 10 more requests
		return httpapi.TrafficStats{OK: 10 * n, Failed: n, ActiveConns: 2, Conns: n, BytesDown: 4096 * n}
	}})
	if err != nil {
		t.Fatal(err)
	}
	id := r.ids[1]
	for range 3 {
		if err := r.eng.ReportOutcome(proxyhealth.Outcome{ProxyID: id, Class: "refused"}); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 10*time.Second, "the proxy to be ejected", func() bool { v, _ := r.eng.Status().Proxy(id); return v.Ejected })

	page := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/", nil)
	req.Host = "127.0.0.1"
	srv.ServeHTTP(page, req)
	clicker := strings.Replace(page.Body.String(), "</body>", `<script>
(function clickWhenListed() {
  const cell = document.querySelector('#proxies-body tr.proxy-row[data-id="`+id+`"] td');
  if (cell) { cell.click(); return; }
  setTimeout(clickWhenListed, 50);
})();
</script>
</body>`, 1)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/click-proxy" {
			srv.ServeHTTP(w, req)
			return
		}
		for k, v := range page.Header() {
			w.Header()[k] = v
		}
		_, _ = io.WriteString(w, clicker)
	}))
	defer func() { hs.Close(); srv.Close() }()

	dom := string(dumpDOM(t, chrome, hs.URL+"/click-proxy", 4*time.Second))
	find := func(what, re string) string {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(dom)
		if m == nil {
			t.Errorf("%s: no %s in the page", what, re)
			return ""
		}
		return m[len(m)-1]
	}
	find("the proxy page is shown", `<body[^>]* data-view="proxy"`)
	find("the proxy page is not hidden", `<section class="panel" id="proxy-page">`)
	find("the title is the proxy's URL", `<h2 id="proxy-title">`+regexp.QuoteMeta(r.farm.URL(1))+`</h2>`)
	if n, _ := strconv.Atoi(find("the checks chart", `<canvas id="chart-proxy"[^>]* data-points="(\d+)"`)); n < 1 {
		t.Errorf("the checks chart drew %d checks", n)
	}
	find("a transition", `(?s)<ul class="changes" id="proxy-transitions"><li data-seq="\d+">.*?unknown</span> → <span class="st healthy">healthy`)
	find("the ejection", `(?s)id="proxy-ejections"><li data-seq="\d+">.*?ejected from rotation: real traffic through it failed`)
	find("the story", `(?s)id="proxy-story"><li data-seq="\d+">.*?eject.*?<b>Now: healthy since [^<]*, ejected from rotation</b>`)
	find("the traffic panel has an endpoint", `id="traffic-panel" data-endpoint="1"`)
	find("the ok rate", `id="traffic-ok">\d+(\.\d)?<`)
	find("rates were computed", `id="traffic-rates" class="traffic"[^>]* data-rated="1"`)
	find("panic mode", `id="panic-mode">off<`)
	find("the ejected count", `id="ejected-count">1 / \d+<`)
	find("the no-endpoint note is hidden", `<p id="traffic-none" class="empty" hidden="">`)
	if leaksSecret(dom) {
		t.Errorf("the page shows credentials")
	}

	bare := r.serve(httpapi.Options{})
	dom = string(dumpDOM(t, chrome, bare.http.URL+"/", 2*time.Second))
	find("no endpoint", `id="traffic-panel" data-endpoint="0"`)
	find("the no-endpoint note is shown", `<p id="traffic-none" class="empty">no rotating endpoint`)
	find("no rates", `<div id="traffic-rates" class="traffic" style="[^"]*" hidden="">`)
}
