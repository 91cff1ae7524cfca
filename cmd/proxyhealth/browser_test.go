package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// runChromium runs headless Chromium with args and returns its stdout.
func runChromium(t *testing.T, chrome string, args ...string) []byte {
	t.Helper()
	profile, err := os.MkdirTemp("", "proxyhealth-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(profile)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--user-data-dir=" + profile}
	cmd := exec.CommandContext(ctx, chrome, append(base, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, errb.String())
	}
	return out.Bytes()
}

var countRE = regexp.MustCompile(`id="count-(\w+)">(\d+)<`)

// TestDashboardInBrowser loads the dashboard of `proxyhealth demo` in
// headless Chromium, checks that it shows live numbers and state changes,
// and saves a screenshot (copied to $PROXYHEALTH_SCREENSHOT_DIR if set).
func TestDashboardInBrowser(t *testing.T) {
	chrome := testutil.Chromium(t, "the dashboard is not checked in a browser")
	p, base := startDemo(t, "--proxies", "120", "--quiet")
	waitPool(t, base, "live", func(p httpapi.Pool) bool { return p.Healthy > 0 && p.Unhealthy+p.Degraded > 0 })

	dom := runChromium(t, chrome, "--virtual-time-budget=5000", "--dump-dom", base+"/")
	counts := map[string]int{}
	for _, m := range countRE.FindAllSubmatch(dom, -1) {
		n, _ := strconv.Atoi(string(m[2]))
		counts[string(m[1])] = n
	}
	if counts["total"] != 120 || counts["healthy"] == 0 {
		t.Errorf("the dashboard shows %v, want 120 proxies, some healthy\n%.3000s", counts, dom)
	}
	if !bytes.Contains(dom, []byte(`data-live="1"`)) {
		t.Error("the dashboard never got a pool summary (data-live is not 1)")
	}
	if !regexp.MustCompile(`<li data-seq="\d+">`).Match(dom) {
		t.Error("the dashboard lists no state change from /v1/events")
	}
	if !bytes.Contains(dom, []byte(`<tr data-source="datacenter">`)) {
		t.Error("the dashboard has no source table rows")
	}

	shot := filepath.Join(t.TempDir(), "dashboard.png")
	runChromium(t, chrome, "--virtual-time-budget=8000", "--window-size=1280,1000", "--hide-scrollbars", "--screenshot="+shot, base+"/")
	png, err := os.ReadFile(shot)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) || len(png) < 10000 {
		t.Fatalf("screenshot %s: %d bytes, %v", shot, len(png), err)
	}
	if dir := os.Getenv("PROXYHEALTH_SCREENSHOT_DIR"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, "dashboard.png")
		if err := copyFile(shot, dst); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot saved to %s", dst)
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(30 * time.Second); code != 0 {
		t.Errorf("demo exit %d", code)
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
