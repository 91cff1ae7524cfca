package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

const testTarget = "http://target.proxyhealth.test/"

// runArgs are the daemon flags of the tests: fast checks against the farm.
func runArgs(data string, extra ...string) []string {
	return append([]string{"run", "--data", data, "--listen", "127.0.0.1:0", "--log-format", "json",
		"--interval", "200ms", "--timeout", "1s", "--check-url", testTarget, "--unhealthy-threshold", "2"}, extra...)
}

func proxyIDs(t *testing.T, base, query string) map[string]httpapi.Proxy {
	t.Helper()
	var l httpapi.ProxyList
	getJSON(t, base+"/v1/proxies?limit=1000&"+query, &l)
	out := map[string]httpapi.Proxy{}
	for _, p := range l.Proxies {
		out[p.ID] = p
	}
	return out
}

// redacted is how proxyhealth shows a proxy URL (credentials never shown,
// the user name as a tag).
func redacted(raw string) string {
	u, err := proxyhealth.ParseProxy(raw)
	if err != nil {
		panic(err)
	}
	return u.Redacted
}

func id(raw string) string {
	id, err := proxyhealth.ResolveProxyID(raw)
	if err != nil {
		panic(err)
	}
	return id
}

func TestRunBadProxyLineStartsNothing(t *testing.T) {
	dir := t.TempDir()
	list := writeFile(t, dir, "list.txt", "# pool\n10.0.0.1:3128\nsocks5://u:topsecret@10.0.0.2\n10.0.0.3\n")
	data := filepath.Join(dir, "data")
	r := runBin(t, "run", "--proxies", list, "--data", data, "--listen", "127.0.0.1:0")
	if r.code != 2 {
		t.Fatalf("exit %d, want 2; stderr %q", r.code, r.stderr)
	}
	oneLine(t, "bad proxy line", r.stderr)
	if !strings.Contains(r.stderr, list+":4: ") || strings.Contains(r.stderr, "topsecret") {
		t.Errorf("stderr %q, want %s:4: reason, without credentials", r.stderr, list)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("the data directory was created (%v): start-up must not begin before the config is valid", err)
	}
	r = runBin(t, "run", "--listen", "0.0.0.0:0", "--data", data)
	if r.code != 2 || !strings.Contains(r.stderr, "PROXYHEALTH_TOKEN") {
		t.Errorf("non-loopback listen without token: %d %q", r.code, r.stderr)
	}
}

// TestRunLifecycle runs the daemon against a farm: API, SIGHUP reload
// (added, removed, API additions kept, bad file ignored), SIGTERM, journal
// verify and replay, and a restart that resumes the state from the journal.
func TestRunLifecycle(t *testing.T) {
	farm, err := fakeproxy.Start(t.Context(), 5)
	if err != nil {
		t.Fatal(err)
	}
	defer farm.Close()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	list := writeFile(t, dir, "pool.txt", farm.URL(0)+"\n"+farm.URL(1)+"\n"+farm.URL(2)+"\n")

	p := startBin(t, nil, runArgs(data, "--proxies", list)...)
	base := p.apiURL()
	waitPool(t, base, "3 healthy", func(p httpapi.Pool) bool { return p.Healthy == 3 && p.Sources["pool"].Total == 3 })

	// A proxy added through the API survives reloads.
	resp, err := http.Post(base+"/v1/proxies", "application/json", strings.NewReader(`{"url":"`+farm.URL(4)+`","source":"pool"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/proxies: %s", resp.Status)
	}

	// Reload: proxy 0 leaves, proxy 3 arrives.
	writeFile(t, dir, "pool.txt", farm.URL(1)+"\n"+farm.URL(2)+"\n"+farm.URL(3)+"\n")
	p.signal(syscall.SIGHUP)
	waitPool(t, base, "reloaded", func(pl httpapi.Pool) bool {
		ids := proxyIDs(t, base, "")
		_, has0 := ids[id(farm.URL(0))]
		_, has3 := ids[id(farm.URL(3))]
		_, has4 := ids[id(farm.URL(4))]
		// The states from the same read as the IDs: pl was read before
		// them, when proxy 0 could still be there and proxy 3 not yet.
		healthy := 0
		for _, p := range ids {
			if p.State == "healthy" {
				healthy++
			}
		}
		return !has0 && has3 && has4 && len(ids) == 4 && healthy == 4 && pl.Total == 4 && pl.Healthy == 4
	})

	// A bad file on reload is logged and the running config kept.
	writeFile(t, dir, "pool.txt", farm.URL(1)+"\nnot a proxy\n")
	p.signal(syscall.SIGHUP)
	p.waitOutput("reload failure", true, func(s string) (string, bool) {
		return "", strings.Contains(s, "reload failed") && strings.Contains(s, "pool.txt:2: ")
	})
	if pl := getPool(t, base); pl.Total != 4 {
		t.Errorf("after a bad reload: %+v", pl)
	}
	writeFile(t, dir, "pool.txt", farm.URL(1)+"\n"+farm.URL(2)+"\n"+farm.URL(3)+"\n")

	// Graceful stop.
	before := getPool(t, base)
	p.signal(syscall.SIGTERM)
	if code := p.wait(30 * time.Second); code != 0 {
		t.Fatalf("SIGTERM: exit %d\n%s", code, p.stderr)
	}
	if !strings.Contains(p.stderr.String(), `"msg":"stopped"`) {
		t.Errorf("no stop log line:\n%s", p.stderr)
	}

	r := runBin(t, "journal", "verify", "--data", data)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "journal OK") {
		t.Fatalf("journal verify after SIGTERM: %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = runBin(t, "journal", "replay", "--data", data, "--type", "proxy_removed", "--format", "json")
	var rec proxyhealth.Record
	if r.code != 0 || json.Unmarshal([]byte(strings.TrimSpace(r.stdout)), &rec) != nil || rec.ProxyID != id(farm.URL(0)) || rec.Source != "pool" {
		t.Errorf("replay of the removal: %d %q %q", r.code, r.stdout, r.stderr)
	}

	// Restart with a long interval: the states come from the journal,
	// before any new check.
	checks := farm.TotalChecks()
	p2 := startBin(t, nil, "run", "--data", data, "--listen", "127.0.0.1:0", "--log-format", "json",
		"--interval", "1h", "--check-url", testTarget, "--proxies", list)
	base2 := p2.apiURL()
	after := waitPool(t, base2, "caught up with the journal", func(pl httpapi.Pool) bool { return pl.JournalSeq >= before.JournalSeq && pl.Total == 4 })
	if after.Healthy != 4 {
		t.Errorf("after the restart: %+v, want the 4 proxies healthy from the journal", after)
	}
	if ids := proxyIDs(t, base2, ""); ids[id(farm.URL(4))].State != "healthy" {
		t.Errorf("the proxy added through the API was not resumed: %+v", ids)
	}
	if !strings.Contains(p2.stderr.String(), "resumed proxies added at run time before the restart") {
		t.Errorf("no resume log line:\n%s", p2.stderr)
	}
	if n := farm.TotalChecks(); n != checks {
		t.Errorf("%d checks after the restart, want none (interval 1h, state from the journal)", n-checks)
	}
	p2.signal(syscall.SIGINT)
	if code := p2.wait(30 * time.Second); code != 0 {
		t.Fatalf("SIGINT: exit %d\n%s", code, p2.stderr)
	}
}

func TestRunJournalLocked(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	p := startBin(t, nil, "run", "--data", data, "--listen", "127.0.0.1:0", "--log-format", "json")
	base := p.apiURL()
	for _, args := range [][]string{{"journal", "verify", "--data", data}, {"journal", "stats", "--data", data}, {"rebuild", "--data", data}} {
		r := runBin(t, args...)
		if r.code != 1 || !strings.Contains(r.stderr, "locked by a running proxyhealth") {
			t.Errorf("%v while the daemon runs: %d %q", args, r.code, r.stderr)
		}
		oneLine(t, args[0], r.stderr)
	}
	// A second daemon on the same data directory is refused.
	r := runBin(t, "run", "--data", data, "--listen", "127.0.0.1:0")
	if r.code != 1 || !strings.Contains(r.stderr, "another proxyhealth") {
		t.Errorf("second daemon: %d %q", r.code, r.stderr)
	}
	// status --data reads view.db, which the daemon keeps, and says that
	// the journal is locked (the figures are the view's).
	waitPool(t, base, "up", func(httpapi.Pool) bool { return true })
	testutil.EventuallyExplain(t, 20*time.Second, func() bool {
		r = runBin(t, "status", "--data", data, "--format", "json")
		return r.code == 0
	}, func() string { return fmt.Sprintf("status --data while the daemon runs: %d %q", r.code, r.stderr) })
	if !strings.Contains(r.stderr, "locked") || !strings.Contains(r.stderr, "status --server") {
		t.Errorf("status --data while the daemon runs says nothing of the locked journal: %q", r.stderr)
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// TestRunConfigReload reloads a YAML config on SIGHUP: a source
// disappears, another appears, a proxy moves between them, a check setting
// changes, a proxy added through the API stays; the log line gives the
// diff.
func TestRunConfigReload(t *testing.T) {
	farm, err := fakeproxy.Start(t.Context(), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer farm.Close()
	dir := t.TempDir()
	yaml := func(srcs string) string {
		return "data: data\nlisten: 127.0.0.1:0\nlog_format: json\ndefaults:\n  interval: 200ms\n  check_url: " + testTarget + "\nsources:\n" + srcs
	}
	cfg := writeFile(t, dir, "ph.yaml", yaml("  - name: a\n    proxies: ['"+farm.URL(0)+"']\n  - name: b\n    proxies: ['"+farm.URL(1)+"']\n"))
	p := startBin(t, nil, "run", "--config", cfg)
	base := p.apiURL()
	waitPool(t, base, "a and b healthy", func(pl httpapi.Pool) bool {
		return pl.Sources["a"].Healthy == 1 && pl.Sources["b"].Healthy == 1
	})
	if _, err := os.Stat(filepath.Join(dir, "data", "journal.db")); err != nil {
		t.Errorf("data is relative to the config file: %v", err)
	}
	resp, err := http.Post(base+"/v1/proxies", "application/json", strings.NewReader(`{"url":"`+farm.URL(3)+`","source":"a"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/proxies: %s", resp.Status)
	}
	writeFile(t, dir, "ph.yaml", yaml("  - name: a\n    proxies: ['"+farm.URL(0)+"']\n    latency_ceiling: 1ns\n  - name: c\n    proxies: ['"+farm.URL(2)+"', '"+farm.URL(1)+"']\n"))
	p.signal(syscall.SIGHUP)
	waitPool(t, base, "b gone, c with 2 healthy, a (with the API's proxy) degraded by the 1ns ceiling", func(pl httpapi.Pool) bool {
		_, hasB := pl.Sources["b"]
		return !hasB && pl.Sources["c"].Healthy == 2 && pl.Sources["a"].Degraded == 2 && pl.Total == 4
	})
	if src := proxyIDs(t, base, "")[id(farm.URL(3))].Source; src != "a" {
		t.Errorf("the proxy added through the API is in source %q after the reload, want a", src)
	}
	// farm 1 and 2 added to c, farm 1 removed from b, farm 0 and 3 changed.
	reloaded := logRecords(t, p.stderr.String(), "configuration reloaded")
	if len(reloaded) != 1 || reloaded[0]["added"] != 2.0 || reloaded[0]["removed"] != 1.0 || reloaded[0]["changed"] != 2.0 {
		t.Errorf("reload log lines %v", reloaded)
	}

	// POST /v1/reload does what SIGHUP does and answers the diff: farm 2
	// moves back to a (removed from c, added to a), a's setting is back
	// (farm 0 and 3 changed).
	writeFile(t, dir, "ph.yaml", yaml("  - name: a\n    proxies: ['"+farm.URL(0)+"', '"+farm.URL(2)+"']\n  - name: c\n    proxies: ['"+farm.URL(1)+"']\n"))
	code, body := postReload(t, base)
	var diff struct{ Added, Removed, Changed []string }
	if code != http.StatusOK || json.Unmarshal(body, &diff) != nil {
		t.Fatalf("POST /v1/reload: %d %s", code, body)
	}
	sorted := func(ids ...string) []string { slices.Sort(ids); return ids }
	if !slices.Equal(diff.Added, []string{id(farm.URL(2))}) || !slices.Equal(diff.Removed, []string{id(farm.URL(2))}) ||
		!slices.Equal(diff.Changed, sorted(id(farm.URL(0)), id(farm.URL(3)))) {
		t.Errorf("POST /v1/reload answered %s", body)
	}
	if src := proxyIDs(t, base, "")[id(farm.URL(2))].Source; src != "a" {
		t.Errorf("after POST /v1/reload farm 2 is in %q", src)
	}
	// A bad file: 400 naming FILE:LINE, nothing changes.
	before := proxyIDs(t, base, "")
	writeFile(t, dir, "ph.yaml", yaml("  - name: a\n    proxies: ['"+farm.URL(0)+"', 'gopher://10.0.0.1:70']\n"))
	code, body = postReload(t, base)
	if code != http.StatusBadRequest || !strings.Contains(string(body), cfg+":9: ") || !strings.Contains(string(body), "unchanged") {
		t.Errorf("POST /v1/reload of a bad file: %d %s", code, body)
	}
	if after := proxyIDs(t, base, ""); len(after) != len(before) {
		t.Errorf("a bad reload changed the proxies: %d, were %d", len(after), len(before))
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.stderr)
	}
}

// TestRunRefusesAnEmptyJournalUnlessStartingFresh: a 0-byte journal.db
// (10,582 events of history truncated away) was silently started over.
func TestRunRefusesAnEmptyJournalUnlessStartingFresh(t *testing.T) {
	farm, err := fakeproxy.Start(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(farm.Close)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	list := writeFile(t, dir, "list.txt", farm.URL(0)+"\n")
	p := startBin(t, nil, runArgs(data, "--proxies", list)...)
	waitPool(t, p.apiURL(), "a check", func(pl httpapi.Pool) bool { return pl.JournalSeq > 2 })
	p.signal(syscall.SIGTERM)
	if code := p.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if err := os.Truncate(filepath.Join(data, "journal.db"), 0); err != nil {
		t.Fatal(err)
	}
	r := runBin(t, runArgs(data, "--proxies", list)...)
	if r.code != 1 || !strings.Contains(r.stderr, "journal.db is empty") || !strings.Contains(r.stderr, "--start-fresh") {
		t.Fatalf("run on an empty journal: exit %d, stderr %q; want 1 and a message naming the file and --start-fresh", r.code, r.stderr)
	}
	v := runBin(t, "journal", "verify", "--data", data)
	if v.code == 0 || strings.Contains(v.stderr, "bad file descriptor") || !strings.Contains(v.stderr+v.stdout, "empty") {
		t.Fatalf("journal verify on an empty journal: exit %d, %q %q", v.code, v.stdout, v.stderr)
	}
	p = startBin(t, nil, runArgs(data, "--proxies", list, "--start-fresh")...)
	waitPool(t, p.apiURL(), "a fresh start", func(pl httpapi.Pool) bool { return pl.Total == 1 })
	p.signal(syscall.SIGTERM)
	if code := p.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// TestRunAllowHost: the daemon answers only to loopback names, its listen
// address and --allow-host names (a web page reaching it through DNS
// rebinding gets 421).
func TestRunAllowHost(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	p := startBin(t, nil, "run", "--data", data, "--listen", "127.0.0.1:0", "--log-format", "json", "--allow-host", "proxyhealth.internal")
	base := p.apiURL()
	for host, want := range map[string]int{"proxyhealth.internal:9480": 200, "evil.example": 421, "localhost": 200} {
		req, err := http.NewRequest("GET", base+"/healthz", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("Host %s: %d, want %d", host, res.StatusCode, want)
		}
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// postReload sends POST /v1/reload and returns the status and body.
func postReload(t *testing.T, base string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(base+"/v1/reload", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// logRecords returns the JSON log records of a daemon's stderr with the
// given message.
func logRecords(t *testing.T, stderr, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(stderr, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// TestRunLogLinesTellTheTruth: the "started" line is logged before the API
// answers (it came after /healthz already answered), and the "stopped"
// line reports the journal's head after the last commit (it reported the
// head from before the stop flushed the appends in flight: 23302 of 25494).
func TestRunLogLinesTellTheTruth(t *testing.T) {
	farm, err := fakeproxy.Start(t.Context(), 60)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(farm.Close)
	dir := t.TempDir()
	var lines strings.Builder
	for i := range farm.Len() {
		lines.WriteString(farm.URL(i) + "\n")
	}
	list := writeFile(t, dir, "list.txt", lines.String())
	data := filepath.Join(dir, "data")
	// A port free on a loopback address of the test's own: on 127.0.0.1
	// another connection could take it as its ephemeral port before the
	// daemon listens (or the first poll connect to itself).
	ln, err := net.Listen("tcp", "127.0.2.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	args := append(runArgs(data, "--proxies", list), "--listen", addr, "--interval", "100ms")
	p := startBin(t, nil, args...)
	// The "started" line is logged before /healthz first answers 200
	// (compared by time: the child's stderr reaches the test through a
	// pipe, later than the HTTP answer may); before, it answers 503
	// "starting".
	var answered time.Time
	testutil.EventuallyExplain(t, 30*time.Second, func() bool {
		res, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			var h httpapi.Healthz
			if err := json.NewDecoder(res.Body).Decode(&h); err != nil || res.StatusCode != http.StatusServiceUnavailable || h.Status != "starting" {
				t.Fatalf("/healthz before the API answers: %d %+v (%v), want 503 \"starting\"", res.StatusCode, h, err)
			}
			return false
		}
		answered = time.Now()
		return true
	}, func() string { return "the API to answer" })
	p.apiURL()
	started := logRecords(t, p.stderr.String(), "proxyhealth started")
	at, err := time.Parse(time.RFC3339Nano, started[0]["time"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if !at.Before(answered) {
		t.Fatalf("/healthz answered at %v, before the \"proxyhealth started\" line (%v)", answered.Format(time.RFC3339Nano), at.Format(time.RFC3339Nano))
	}
	waitPool(t, "http://"+addr, "checks recorded", func(pl httpapi.Pool) bool { return pl.JournalSeq > 500 })
	p.signal(syscall.SIGTERM)
	if code := p.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	stopped := logRecords(t, p.stderr.String(), "stopped")
	if len(stopped) != 1 {
		t.Fatalf("stopped lines: %v\n%s", stopped, p.stderr)
	}
	r := runBin(t, "journal", "stats", "--data", data, "--format", "json")
	var stats struct {
		Last uint64 `json:"head_seq"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &stats) != nil {
		t.Fatalf("journal stats: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if got := uint64(stopped[0]["journal_seq"].(float64)); got != stats.Last || got == 0 {
		t.Fatalf("the stopped line says journal_seq=%d; the journal's head is %d", got, stats.Last)
	}
}
