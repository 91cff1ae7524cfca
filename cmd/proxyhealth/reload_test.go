package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// startTestDaemon loads run's flags, opens the daemon in this process and
// serves it on loopback; the test's cleanup stops it, unless stop did.
func startTestDaemon(t *testing.T, logs *syncBuffer, env map[string]string, args ...string) (d *daemon, stop func()) {
	t.Helper()
	rs := parseRunSettings(t, args...)
	getenv := func(k string) string { return env[k] }
	dc, err := rs.load(getenv)
	if err != nil {
		t.Fatal(err)
	}
	return serveTestDaemon(t, rs, getenv, dc, slog.New(slog.NewJSONHandler(logs, nil)))
}

// parseRunSettings parses run's flags.
func parseRunSettings(tb testing.TB, args ...string) *runSettings {
	tb.Helper()
	fs := newFlagSet("run", runUsage, runExamples, nil, nil)
	rs := &runSettings{}
	rs.register(fs)
	if _, code, ok := fs.parse(args); !ok {
		tb.Fatalf("parse %q: exit %d", args, code)
	}
	return rs
}

// serveTestDaemon opens the daemon of dc (loaded from rs with getenv), as
// runDaemon does, logging to log, and serves it on loopback; the test's
// cleanup stops it, unless stop did.
func serveTestDaemon(tb testing.TB, rs *runSettings, getenv func(string) string, dc daemonConfig, log *slog.Logger) (d *daemon, stop func()) {
	tb.Helper()
	dc.engine.Logger = log
	d, err := openDaemon(tb.Context(), dc.engine, httpapi.Options{}, log, &reloadable{settings: rs, getenv: getenv, running: dc}, false)
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	d.serve(ln)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := d.stop(ctx); err != nil {
				tb.Errorf("stop: %v", err)
			}
		})
	}
	tb.Cleanup(stop)
	return d, stop
}

// sourceOf returns the source of a monitored proxy ("" when it is not
// monitored).
func sourceOf(t *testing.T, d *daemon, proxyID string) string {
	t.Helper()
	if !slices.Contains(d.eng.ProxyIDs(), proxyID) {
		return ""
	}
	ps, err := d.eng.Proxy(t.Context(), proxyID)
	if err != nil {
		t.Fatal(err)
	}
	return ps.Source
}

// TestReloadConfigReconciles: the daemon's reload is one Engine.Reconcile
// call that answers with the diff (POST /v1/reload's answer): a proxy
// moves between sources, a source disappears, a changed setting marks the
// source's kept proxies changed, proxies added through the API stay, and a
// bad file changes nothing and names FILE:LINE.
func TestReloadConfigReconciles(t *testing.T) {
	farm, err := fakeproxy.Start(t.Context(), 6)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(farm.Close)
	dir := t.TempDir()
	yaml := func(srcs string) string {
		return "data: data\nlisten: 127.0.0.1:0\ndefaults:\n  interval: 200ms\n  check_url: " + testTarget + "\nsources:\n" + srcs
	}
	cfg := writeFile(t, dir, "ph.yaml", yaml("  - name: a\n    proxies: ['"+farm.URL(0)+"', '"+farm.URL(1)+"']\n  - name: b\n    proxies: ['"+farm.URL(2)+"']\n"))
	var logs syncBuffer
	d, _ := startTestDaemon(t, &logs, nil, "--config", cfg)
	ctx := t.Context()
	if _, err := d.api.AddProxy(ctx, "a", farm.URL(3)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.api.AddProxy(ctx, "", farm.URL(4)); err != nil {
		t.Fatal(err)
	}

	// farm 1 moves from a to c, b goes away with farm 2, a's checks change.
	writeFile(t, dir, "ph.yaml", yaml("  - name: a\n    proxies: ['"+farm.URL(0)+"']\n    latency_ceiling: 1ns\n  - name: c\n    proxies: ['"+farm.URL(1)+"']\n"))
	diff, err := d.reloadConfig(ctx)
	if err != nil {
		t.Fatalf("reload: %v\n%s", err, logs.String())
	}
	sorted := func(ids ...string) []string { slices.Sort(ids); return ids }
	want := proxyhealth.ReconcileDiff{
		Added:   []string{id(farm.URL(1))},
		Removed: sorted(id(farm.URL(1)), id(farm.URL(2))),
		Changed: sorted(id(farm.URL(0)), id(farm.URL(3))),
	}
	if !slices.Equal(diff.Added, want.Added) || !slices.Equal(diff.Removed, want.Removed) || !slices.Equal(diff.Changed, want.Changed) {
		t.Errorf("diff %+v\nwant %+v", diff, want)
	}
	for i, src := range map[int]string{0: "a", 1: "c", 2: "", 3: "a", 4: proxyhealth.DefaultSource} {
		if got := sourceOf(t, d, id(farm.URL(i))); got != src {
			t.Errorf("farm %d: source %q, want %q", i, got, src)
		}
	}
	if !strings.Contains(logs.String(), `"msg":"configuration reloaded"`) || !strings.Contains(logs.String(), `"added":1,"removed":2,"changed":2`) {
		t.Errorf("no reload log line with the diff:\n%s", logs.String())
	}

	// A bad file: nothing changes, the error names FILE:LINE.
	before := d.eng.ProxyIDs()
	writeFile(t, dir, "ph.yaml", yaml("  - name: a\n    proxies: ['"+farm.URL(0)+"', 'gopher://10.0.0.1:70']\n"))
	diff, err = d.reloadConfig(ctx)
	if !errors.Is(err, proxyhealth.ErrBadConfig) || !strings.Contains(err.Error(), cfg+":8: ") {
		t.Errorf("bad file: %v, want ErrBadConfig naming %s:8", err, cfg)
	}
	if len(diff.Added)+len(diff.Removed)+len(diff.Changed) != 0 || !slices.Equal(d.eng.ProxyIDs(), before) {
		t.Errorf("a bad file changed something: %+v, proxies %v, were %v", diff, d.eng.ProxyIDs(), before)
	}

	// A restart-only setting is reported and kept.
	writeFile(t, dir, "ph.yaml", "concurrency: 7\npool:\n  recovery_margin: 0\n"+yaml("  - name: a\n    proxies: ['"+farm.URL(0)+"']\n    latency_ceiling: 1ns\n  - name: c\n    proxies: ['"+farm.URL(1)+"', '"+farm.URL(5)+"']\n"))
	diff, err = d.reloadConfig(ctx)
	if err != nil || !slices.Equal(diff.Added, []string{id(farm.URL(5))}) || len(diff.Removed)+len(diff.Changed) != 0 {
		t.Errorf("third reload: %+v %v", diff, err)
	}
	if !strings.Contains(logs.String(), `"setting":"concurrency","running":"1000","configured":"7"`) || d.cur.engine.Concurrency != 1000 ||
		!strings.Contains(logs.String(), `"setting":"pool.recovery_margin","running":"10","configured":"0"`) || d.cur.engine.PoolMargin != 0 {
		t.Errorf("restart-only setting: concurrency %d\n%s", d.cur.engine.Concurrency, logs.String())
	}
	testutil.Eventually(t, 20*time.Second, "the moved proxy to be checked in its new source", func() bool {
		v, ok := d.status.Proxy(id(farm.URL(1)))
		return ok && v.Source == "c" && v.State == "healthy"
	})
}

// TestReloadConfigWithoutConfig: the demo has nothing to reload.
func TestReloadConfigWithoutConfig(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	d, err := openDaemon(t.Context(), proxyhealth.Config{DataDir: filepath.Join(t.TempDir(), "data")}, httpapi.Options{}, log, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d.serve(ln)
	if _, err := d.reloadConfig(t.Context()); !errors.Is(err, errNoConfig) {
		t.Errorf("reload without a config: %v", err)
	}
	if err := d.stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestRunWebhooksFromYAML: a webhook and the pool threshold of the config
// file reach the engine: with degraded_threshold 60, one of two proxies
// down degrades the pool (the default 50 would not), and the webhook gets
// proxy_down and pool_degraded, signed with the secret from secret_env.
func TestRunWebhooksFromYAML(t *testing.T) {
	farm, err := fakeproxy.Start(t.Context(), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(farm.Close)
	type delivery struct {
		body      []byte
		signature string
	}
	got := make(chan delivery, 16)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		select {
		case got <- delivery{body, r.Header.Get("X-Proxyhealth-Signature")}:
		default:
		}
	}))
	t.Cleanup(hook.Close)
	dir := t.TempDir()
	cfg := writeFile(t, dir, "ph.yaml", "data: data\ndefaults:\n  interval: 200ms\n  unhealthy_threshold: 2\n  check_url: "+testTarget+
		"\nsources:\n  - name: a\n    proxies: ['"+farm.URL(0)+"', '"+farm.URL(1)+"']\n"+
		"pool:\n  degraded_threshold: 60\nwebhooks:\n  - url: "+hook.URL+"/hook?token=abc\n    events: [proxy_down, pool_degraded]\n    secret_env: HOOK_SECRET\n    timeout: 2s\n")
	var logs syncBuffer
	d, _ := startTestDaemon(t, &logs, map[string]string{"HOOK_SECRET": "s3cret-hook"}, "--config", cfg)
	testutil.Eventually(t, 20*time.Second, "two healthy proxies", func() bool { return d.status.Summary().Healthy == 2 })
	if err := farm.Set(0, fakeproxy.Refuse()); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	deadline := time.After(30 * time.Second)
	for !seen["proxy_down"] || !seen["pool_degraded"] {
		select {
		case dl := <-got:
			var n struct {
				Type    string `json:"type"`
				ProxyID string `json:"proxy_id"`
			}
			if err := json.Unmarshal(dl.body, &n); err != nil {
				t.Fatalf("webhook body %q: %v", dl.body, err)
			}
			mac := hmac.New(sha256.New, []byte("s3cret-hook"))
			mac.Write(dl.body)
			if want := "sha256=" + hex.EncodeToString(mac.Sum(nil)); dl.signature != want {
				t.Errorf("%s: signature %q, want %q", n.Type, dl.signature, want)
			}
			if n.Type != "proxy_down" && n.Type != "pool_degraded" {
				t.Errorf("webhook got %s, which its events do not list", n.Type)
			}
			seen[n.Type] = true
		case <-deadline:
			t.Fatalf("webhook deliveries: %v\n%s", seen, logs.String())
		}
	}
	for _, secret := range []string{"s3cret-hook", "token=abc"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log shows %q:\n%s", secret, logs.String())
		}
	}
}

// TestDaemonKeepsNoReferenceToConfiguredProxies: once the daemon is open,
// neither it (the running configuration a reload compares with has no
// sources) nor its engine keeps the proxies its configuration listed: the
// proxies' records have what they need, and 100,000 of them would
// otherwise cost 7 MB for the whole run (BenchmarkConfigRetainedPerProxy).
func TestDaemonKeepsNoReferenceToConfiguredProxies(t *testing.T) {
	farm, err := fakeproxy.Start(t.Context(), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(farm.Close)
	dir := t.TempDir()
	writeFile(t, dir, "list.txt", farm.URL(0)+"\n"+farm.URL(1)+"\n")
	cfg := writeFile(t, dir, "ph.yaml", "data: data\nlisten: 127.0.0.1:0\ndefaults:\n  check_url: "+testTarget+"\nsources:\n  - name: a\n    proxy_files: [list.txt]\n")
	rs := parseRunSettings(t, "--config", cfg)
	getenv := func(string) string { return "" }
	released := make(chan struct{}, 1)
	// open loads the configuration, watches its entries and opens the
	// daemon, as runDaemon does; nothing of the configuration outlives it
	// here.
	open := func() *daemon {
		dc, err := rs.load(getenv)
		if err != nil {
			t.Fatal(err)
		}
		runtime.AddCleanup(&dc.engine.Sources[0].Entries[0], func(chan struct{}) { released <- struct{}{} }, released)
		d, _ := serveTestDaemon(t, rs, getenv, dc, slog.New(slog.DiscardHandler))
		return d
	}
	d := open()
	if n := len(d.eng.ProxyIDs()); n != 2 {
		t.Fatalf("%d proxies, want 2", n)
	}
	testutil.Eventually(t, 15*time.Second, "the configuration's entries unreachable once the daemon is open", func() bool {
		runtime.GC()
		select {
		case <-released:
			return true
		default:
			return false
		}
	})
	// A reload still finds the running settings to compare with.
	diff, err := d.reloadConfig(t.Context())
	if err != nil || len(diff.Added)+len(diff.Removed)+len(diff.Changed) != 0 || len(d.eng.ProxyIDs()) != 2 {
		t.Errorf("reload of the same files: %+v %v, %d proxies", diff, err, len(d.eng.ProxyIDs()))
	}
}
