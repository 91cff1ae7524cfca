package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

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
