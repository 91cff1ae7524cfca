package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// TestRealEngine serves a real engine checking a fake proxy farm, with the
// live status fed from the engine's journal like the daemon does.
func TestRealEngine(t *testing.T) {
	ctx := t.Context()
	farm, err := fakeproxy.Start(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer farm.Close()
	if err := farm.Set(3, fakeproxy.Refuse()); err != nil {
		t.Fatal(err)
	}
	health := proxyhealth.DefaultHealthConfig()
	health.Interval, health.SuspectInterval, health.RecoveryCooldown = 200*time.Millisecond, 100*time.Millisecond, time.Hour
	health.UnhealthyThreshold = 2
	src := proxyhealth.SourceConfig{
		Name: "farm", Health: health,
		Probe:   proxyhealth.ProbeConfig{TargetURL: "http://target.proxyhealth.test/", Timeout: 2 * time.Second},
		Proxies: []string{farm.URL(0), farm.URL(1), farm.URL(3)},
	}
	eng, err := proxyhealth.Open(ctx, proxyhealth.Config{Sources: []proxyhealth.SourceConfig{src}})
	if err != nil {
		t.Fatal(err)
	}
	// No Options.Status: the server serves the engine's own live status
	// (Engine.Status), as the daemon does.
	srv, err := httpapi.New(eng, httpapi.Options{})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer func() {
		srv.Close()
		hs.Close()
		if err := eng.Close(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	f := &fixture{t: t, http: hs, srv: srv}

	waitPool := func(what string, ok func(httpapi.Pool) bool) httpapi.Pool {
		t.Helper()
		var p httpapi.Pool
		testutil.EventuallyExplain(t, 15*time.Second, func() bool {
			p = httpapi.Pool{}
			f.getJSON("/v1/pool", &p)
			return ok(p)
		}, func() string { return fmt.Sprintf("the pool to be %s: %+v", what, p) })
		return p
	}
	p := waitPool("2 healthy and 1 unhealthy", func(p httpapi.Pool) bool { return p.Healthy == 2 && p.Unhealthy == 1 && p.Total == 3 })
	// The real engine reports its health: /healthz, the pool and the
	// metrics show it.
	if p.Journal == nil || p.Journal.Status != "ok" || p.Journal.Head == 0 || len(p.Projections) == 0 {
		t.Fatalf("pool health of a real engine: %+v %+v", p.Journal, p.Projections)
	}
	var hz httpapi.Healthz
	f.getJSON("/healthz", &hz)
	if hz.Status != "ok" || hz.Journal == nil || len(hz.Projections) != len(p.Projections) {
		t.Errorf("/healthz of a real engine: %+v", hz)
	}
	for _, pr := range hz.Projections {
		if pr.State != "running" {
			t.Errorf("projection %+v is not running", pr)
		}
	}
	f.scrapeUntil(`proxyhealth_journal_failing 0`, `proxyhealth_journal_commit_failures_total 0`, `proxyhealth_journal_first_seq 1`,
		`proxyhealth_live_checkpoint_failing 0`, `proxyhealth_live_checkpoint_failures_total 0`,
		fmt.Sprintf(`proxyhealth_projection_up{projection=%q} 1`, p.Projections[0].Name))

	code, body := f.do("POST", "/v1/proxies", `{"url":"`+farm.URLWith(2, "socks5h", "", "")+`","source":"farm"}`)
	if code != http.StatusCreated {
		t.Fatalf("add: %d %s", code, body)
	}
	code, body = f.do("POST", "/v1/proxies", `{"url":"`+farm.URL(0)+`","source":"farm"}`)
	wantError(t, "duplicate", code, body, http.StatusConflict, "already monitored")
	code, body = f.do("POST", "/v1/proxies", `{"url":"10.1.1.1:1","source":"nope"}`)
	wantError(t, "unknown source", code, body, http.StatusNotFound, "nope")
	waitPool("3 healthy", func(p httpapi.Pool) bool { return p.Healthy == 3 && p.Total == 4 })

	dead := proxyID(t, farm.URL(3))
	code, body = f.do("POST", "/v1/proxies/"+dead+"/revive", "")
	if code != http.StatusOK {
		t.Fatalf("revive: %d %s", code, body)
	}
	healthyID := proxyID(t, farm.URL(0))
	code, body = f.do("POST", "/v1/proxies/"+healthyID+"/revive", "")
	wantError(t, "revive a healthy proxy", code, body, http.StatusConflict, "nothing to revive")

	if code, body = f.do("POST", "/v1/pause?source=farm", ""); code != http.StatusOK {
		t.Fatalf("pause: %d %s", code, body)
	}
	waitPool("paused", func(p httpapi.Pool) bool { return p.Paused == 4 })
	code, body = f.do("POST", "/v1/pause?source=zz", "")
	wantError(t, "pause unknown source", code, body, http.StatusNotFound, "zz")
	if code, body = f.do("POST", "/v1/resume", ""); code != http.StatusOK {
		t.Fatalf("resume: %d %s", code, body)
	}
	if code, body = f.do("DELETE", "/v1/proxies/"+url0(farm), ""); code != http.StatusOK {
		t.Fatalf("delete by URL: %d %s", code, body)
	}
	waitPool("3 proxies after the delete", func(p httpapi.Pool) bool { return p.Total == 3 && p.Paused == 0 })
	code, body = f.do("DELETE", "/v1/proxies/"+healthyID, "")
	wantError(t, "delete twice", code, body, http.StatusNotFound, healthyID)

	var d httpapi.ProxyDetail
	id2 := proxyID(t, farm.URL(1))
	f.getJSON("/v1/proxies/"+id2, &d)
	if d.State != "healthy" || len(d.History) == 0 || len(d.StateChanges) == 0 || d.LatencyMS <= 0 {
		t.Errorf("proxy detail %+v", d)
	}
	raw, _ := json.Marshal(d)
	if strings.Contains(string(raw), "user") {
		t.Errorf("detail leaks something: %s", raw)
	}

	// One proxy paused and resumed: journaled for that proxy only, and
	// read back through GET /v1/journal like `journal replay` prints it.
	head := eng.JournalHead()
	if code, body := f.do("POST", "/v1/proxies/"+id2+"/pause", ""); code != http.StatusOK {
		t.Fatalf("pause one: %d %s", code, body)
	}
	waitPool("one paused", func(p httpapi.Pool) bool { return p.Paused == 1 })
	f.getJSON("/v1/proxies/"+id2, &d)
	if !d.Paused {
		t.Errorf("%s is not paused: %+v", id2, d.Proxy)
	}
	if code, body := f.do("POST", "/v1/proxies/"+id2+"/resume", ""); code != http.StatusOK {
		t.Fatalf("resume one: %d %s", code, body)
	}
	waitPool("none paused", func(p httpapi.Pool) bool { return p.Paused == 0 })
	lines, _ := f.journalPage(fmt.Sprintf("?type=proxy_paused,proxy_resumed&since=1h&after=%d", head))
	var want []string
	for env, err := range eng.ReadJournal(ctx, proxyhealth.JournalFilter{Types: []string{"proxy_paused", "proxy_resumed"}, After: head}) {
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(proxyhealth.RecordOf(env))
		want = append(want, string(b))
	}
	if len(lines) != 2 || !reflect.DeepEqual(lines, want) || !strings.Contains(lines[0], id2) || !strings.Contains(lines[1], id2) {
		t.Errorf("GET /v1/journal gave\n%s\nwant the pause and the resume of %s:\n%s", strings.Join(lines, "\n"), id2, strings.Join(want, "\n"))
	}
	code, body = f.do("POST", "/v1/proxies/0000000000000000/pause", "")
	wantError(t, "pause an unknown proxy", code, body, http.StatusNotFound, "0000000000000000")

	// The engine's notifications reach the event stream: proxy 1 starts
	// refusing and goes down.
	c := f.stream("?type=state_changed&notify=proxy_down")
	c.next() // greeting
	if err := farm.Set(1, fakeproxy.Refuse()); err != nil {
		t.Fatal(err)
	}
	m, last := c.nextNamed()
	var n proxyhealth.Notification
	if err := json.Unmarshal([]byte(m.data), &n); err != nil || m.event != "proxy_down" || n.ProxyID != id2 || last < n.Seq {
		t.Errorf("notification %+v (%v), after event %d", m, err, last)
	}
}

// url0 is the farm's proxy 0 URL, path-escaped.
func url0(farm *fakeproxy.Farm) string {
	return strings.ReplaceAll(strings.ReplaceAll(farm.URL(0), ":", "%3A"), "/", "%2F")
}

// proxyID is the ID of the proxy at rawURL.
func proxyID(t testing.TB, rawURL string) string {
	t.Helper()
	p, err := proxyhealth.ParseProxy(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return p.ID
}
