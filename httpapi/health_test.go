package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/httpapi"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// failingJournal is a health whose journal failed 3 commits since t0+20s.
func failingJournal() proxyhealth.Health {
	h := healthyHealth()
	h.OK = false
	h.Journal.Failing, h.Journal.Error, h.Journal.Since, h.Journal.FailedCommits =
		true, "write /data/journal.db: no space left on device", t0.Add(20*time.Second), 3
	return h
}

// stoppedView is a health whose SQLite view stopped 5 events behind.
func stoppedView() proxyhealth.Health {
	h := healthyHealth()
	h.OK = false
	h.Journal.Head = 16
	h.Projections[0].Seq = 16
	h.Projections[1] = proxyhealth.ProjectionHealth{Name: "sqlite view", State: proxyhealth.ProjectionStopped,
		Error: "sqlite: database disk image is malformed", Since: t0.Add(30 * time.Second), Seq: 11, Lag: 5}
	return h
}

func TestHealthz(t *testing.T) {
	f, he := newHealthFixture(t, httpapi.Options{Version: "1.2.3"})
	code, body := f.do("GET", "/healthz", "")
	var ok httpapi.Healthz
	if err := json.Unmarshal([]byte(body), &ok); err != nil || code != http.StatusOK {
		t.Fatalf("healthy: %d %s (%v)", code, body, err)
	}
	if ok.Status != "ok" || ok.Version != "1.2.3" || ok.Journal == nil || ok.Journal.Status != "ok" || len(ok.Projections) != 2 || len(ok.Causes) != 0 {
		t.Errorf("healthy body %s", body)
	}

	for _, c := range []struct {
		name    string
		h       proxyhealth.Health
		substrs []string
	}{
		{"failing journal", failingJournal(), []string{`"status":"failing"`, "no space left on device", `"failed_commits":3`, `"since":"2025-03-04T05:00:20Z"`}},
		{"stopped view", stoppedView(), []string{`"status":"failing"`, `"state":"stopped"`, "malformed", `"lag":5`, `projection \"sqlite view\" is stopped`}},
	} {
		he.setHealth(c.h)
		code, body := f.do("GET", "/healthz", "")
		if code != http.StatusServiceUnavailable {
			t.Errorf("%s: /healthz answered %d, want 503: %s", c.name, code, body)
		}
		for _, s := range c.substrs {
			if !strings.Contains(body, s) {
				t.Errorf("%s: /healthz body has no %s: %s", c.name, s, body)
			}
		}
		var raw map[string]any
		if err := json.Unmarshal([]byte(body), &raw); err != nil {
			t.Fatal(err)
		}
		want := sorted([]string{"status", "version", "causes", "journal", "projections"})
		if got := sortedKeys(raw); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: keys %v, want %v", c.name, got, want)
		}
		if causes, _ := raw["causes"].([]any); len(causes) == 0 {
			t.Errorf("%s: no causes in %s", c.name, body)
		}
	}
}

// TestHealthzWithToken: /healthz needs no token, but without it a
// server with a token withholds the error texts (as Kubernetes' verbose
// health checks do); with the token it shows them.
func TestHealthzWithToken(t *testing.T) {
	f, he := newHealthFixture(t, httpapi.Options{Token: "s3cret"})
	he.setHealth(failingJournal())
	code, body := f.do("GET", "/healthz", "")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"status":"failing"`) || !strings.Contains(body, "withheld") {
		t.Errorf("without token: %d %s", code, body)
	}
	if strings.Contains(body, "no space left") || strings.Contains(body, "/data/") {
		t.Errorf("without token the error text is shown: %s", body)
	}
	code, body = f.do("GET", "/healthz", "", "Authorization", "Bearer s3cret")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "no space left on device") {
		t.Errorf("with token: %d %s", code, body)
	}
}

func TestPoolHealth(t *testing.T) {
	f, he := newHealthFixture(t, httpapi.Options{})
	f.seedPool()
	var p httpapi.Pool
	f.getJSON("/v1/pool", &p)
	if p.Journal == nil || p.Journal.Status != "ok" || p.Journal.Head != 11 || p.Journal.Since != nil || len(p.Projections) != 2 || p.Projections[0].State != "running" {
		t.Errorf("healthy pool: %+v %+v", p.Journal, p.Projections)
	}
	he.setHealth(failingJournal())
	_, body := f.do("GET", "/v1/pool", "")
	for _, s := range []string{`"journal":{"status":"failing","error":"write /data/journal.db: no space left on device","since":"2025-03-04T05:00:20Z","failed_commits":3`,
		`"projections":[{"name":"live status","state":"running"`} {
		if !strings.Contains(body, s) {
			t.Errorf("pool has no %s: %s", s, body)
		}
	}
	he.setHealth(stoppedView())
	p = httpapi.Pool{}
	f.getJSON("/v1/pool", &p)
	if len(p.Projections) != 2 {
		t.Fatalf("pool projections %+v, want 2", p.Projections)
	}
	v := p.Projections[1]
	if v.Name != "sqlite view" || v.State != "stopped" || v.Error == "" || v.Since == nil || v.Seq != 11 || v.Lag != 5 {
		t.Errorf("stopped view in the pool: %+v", v)
	}
	// A pool without an engine health (a fake engine) has no such keys.
	g := newFixture(t, httpapi.Options{})
	_, body = g.do("GET", "/v1/pool", "")
	if strings.Contains(body, `"journal"`) || strings.Contains(body, `"projections"`) {
		t.Errorf("engine without Health: %s", body)
	}
}

func TestHealthMetrics(t *testing.T) {
	f, he := newHealthFixture(t, httpapi.Options{})
	f.seedPool()
	f.scrapeUntil(
		`proxyhealth_journal_failing 0`,
		`proxyhealth_journal_commit_failures_total 0`,
		`proxyhealth_projection_up{projection="sqlite view"} 1`,
		`proxyhealth_projection_lag_events{projection="sqlite view"} 0`,
	)
	he.setHealth(failingJournal())
	f.scrapeUntil(`proxyhealth_journal_failing 1`, `proxyhealth_journal_commit_failures_total 3`)
	// A stopped projection: its lag comes from the engine, not from the
	// live status (which is up to date).
	he.setHealth(stoppedView())
	f.scrapeUntil(
		`proxyhealth_journal_failing 0`,
		`proxyhealth_projection_up{projection="sqlite view"} 0`,
		`proxyhealth_projection_up{projection="live status"} 1`,
		`proxyhealth_projection_lag_events{projection="sqlite view"} 5`,
		`proxyhealth_projection_lag_events{projection="live status"} 0`,
	)
}

// TestProxyPaused: a paused proxy says so in the list and the detail.
func TestProxyPaused(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	f.seedPool()
	pause := env(p2, "a")
	pause.Event = &pb.Envelope_ProxyPaused{ProxyPaused: &pb.ProxyPaused{}}
	f.append(pause)
	var l httpapi.ProxyList
	f.getJSON("/v1/proxies", &l)
	got := map[string]bool{}
	for _, p := range l.Proxies {
		got[p.ID] = p.Paused
	}
	if want := map[string]bool{p1: false, p2: true, p3: false}; !reflect.DeepEqual(got, want) {
		t.Errorf("paused flags %v, want %v", got, want)
	}
	_, body := f.do("GET", "/v1/proxies/"+p2, "")
	if !strings.Contains(body, `"paused":true`) {
		t.Errorf("detail of a paused proxy: %s", body)
	}
	_, body = f.do("GET", "/v1/proxies/"+p1, "")
	if !strings.Contains(body, `"paused":false`) {
		t.Errorf("detail of a running proxy: %s", body)
	}
}

// TestJournalErrors: a command the journal refused answers 503 with
// Retry-After (nothing applied, safe to retry); one whose outcome is
// unknown answers 504 and says how to find out.
func TestJournalErrors(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	var e httpapi.ErrorBody
	for _, c := range []struct{ method, path, body, want string }{
		{"POST", "/v1/proxies", `{"url":"10.0.0.9:3128"}`, "nothing was applied: the journal cannot write"},
		{"POST", "/v1/proxies/" + p1 + "/revive", "", "nothing was applied: the journal cannot write"},
		{"DELETE", "/v1/proxies/" + p1, "", "nothing was applied: the journal cannot write"},
		// A pause goes to many proxies: those the error names did not
		// take it, the others did.
		{"POST", "/v1/pause?source=a", "", "nothing was applied to the proxies named here, any other proxy took the command"},
	} {
		f.eng.err = fmt.Errorf("proxy %s: %w: write journal.db: no space left on device", p1, proxyhealth.ErrJournalFailing)
		resp := f.doResp(c.method, c.path, c.body)
		e = httpapi.ErrorBody{}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
			!strings.Contains(e.Error, c.want) || !strings.Contains(e.Error, "no space left") {
			t.Errorf("%s %s, journal failing: %d Retry-After %q %q", c.method, c.path, resp.StatusCode, resp.Header.Get("Retry-After"), e.Error)
		}
	}

	for _, c := range []struct{ method, path, body, hint string }{
		{"POST", "/v1/proxies", `{"url":"10.0.0.9:3128"}`, "GET /v1/proxies/" + proxyID(t, "10.0.0.9:3128")},
		{"DELETE", "/v1/proxies/" + p1, "", "GET /v1/proxies/" + p1},
		{"POST", "/v1/proxies/" + p1 + "/revive", "", "GET /v1/proxies/" + p1},
		{"POST", "/v1/pause?source=a", "", "GET /v1/proxies?source=a"},
		{"POST", "/v1/resume", "", "GET /v1/proxies"},
	} {
		f.eng.err = fmt.Errorf("%w: context deadline exceeded", proxyhealth.ErrOutcomeUnknown)
		resp := f.doResp(c.method, c.path, c.body)
		e = httpapi.ErrorBody{}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(e.Error, "outcome is unknown") || !strings.Contains(e.Error, c.hint) {
			t.Errorf("%s %s with unknown outcome: %d %q, want 504 naming %q", c.method, c.path, resp.StatusCode, e.Error, c.hint)
		}
		if resp.Header.Get("Retry-After") != "" {
			t.Errorf("%s %s: Retry-After on an unknown outcome (a blind retry may apply it twice)", c.method, c.path)
		}
	}
}
