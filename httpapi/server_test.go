package httpapi_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/httpapi"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

func TestPool(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	var empty map[string]any
	f.getJSON("/v1/pool", &empty)
	if empty["total"] != 0.0 || empty["updated_at"] != nil || empty["sources"] == nil {
		t.Errorf("empty pool: %v", empty)
	}

	f.seedPool()
	_, body := f.do("GET", "/v1/pool", "")
	var raw map[string]any
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	keys := []string{"total", "healthy", "degraded", "unhealthy", "recovering", "failed", "unknown", "checking",
		"health_percentage", "paused", "ejected", "sources", "journal_seq", "updated_at", "panic_mode"}
	if got := sortedKeys(raw); !reflect.DeepEqual(got, sorted(keys)) {
		t.Errorf("pool keys %v, want %v", got, sorted(keys))
	}
	var p httpapi.Pool
	f.getJSON("/v1/pool", &p)
	if p.Total != 3 || p.Healthy != 2 || p.Degraded != 1 || p.HealthPercentage != 66.67 || p.JournalSeq != 11 || p.UpdatedAt == nil {
		t.Errorf("pool %+v", p)
	}
	a := p.Sources["a"]
	if a.Total != 2 || a.Healthy != 1 || a.Degraded != 1 || a.AvgLatencyMS != 20 {
		t.Errorf("source a %+v (avg latency of 10 ms and 30 ms is 20 ms)", a)
	}
	srcKeys := sortedKeys(raw["sources"].(map[string]any)["b"].(map[string]any))
	wantSrc := sorted(append(slices.Clone(keys[:11]), "avg_latency_ms", "last_refresh", "last_error"))
	if !reflect.DeepEqual(srcKeys, wantSrc) {
		t.Errorf("source keys %v, want %v", srcKeys, wantSrc)
	}
}

func TestListProxies(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	f.seedPool()

	_, body := f.do("GET", "/v1/proxies", "")
	var raw struct {
		Total   int              `json:"total"`
		Proxies []map[string]any `json:"proxies"`
	}
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	want := sorted([]string{"id", "url", "source", "state", "consecutive_failures", "consecutive_successes",
		"last_check_at", "last_error_class", "latency_ms", "success_rate_1h", "next_check_at", "paused",
		"ejected", "ejected_until", "last_success_at", "tags", "weight", "exit_ip", "anonymity"})
	if raw.Total != 3 || len(raw.Proxies) != 3 || !reflect.DeepEqual(sortedKeys(raw.Proxies[0]), want) {
		t.Fatalf("list: %s", body)
	}

	// next_check_at is the due time the engine reports for the proxy.
	due := t0.Add(42 * time.Second)
	f.live.SetNextCheck(p2, due)
	var l httpapi.ProxyList
	f.getJSON("/v1/proxies?state=degraded", &l)
	if l.Total != 1 || len(l.Proxies) != 1 {
		t.Fatalf("state=degraded: %+v", l)
	}
	p := l.Proxies[0]
	if p.ID != p2 || p.URL != "socks5://10.0.0.2:1080" || p.State != "degraded" || p.ConsecutiveFailures != 1 ||
		p.LastErrorClass != "timeout" || p.LatencyMS != 30 || p.SuccessRate1h != 0.5 || p.LastCheckAt == nil || p.NextCheckAt == nil || !p.NextCheckAt.Equal(due) {
		t.Errorf("p2 %+v", p)
	}
	f.getJSON("/v1/proxies?source=a&limit=1&offset=1", &l)
	if l.Total != 2 || len(l.Proxies) != 1 || l.Proxies[0].ID != p2 {
		t.Errorf("source=a page 2: %+v", l)
	}
	f.getJSON("/v1/proxies?source=nope", &l)
	if l.Total != 0 || l.Proxies == nil || len(l.Proxies) != 0 {
		t.Errorf("unknown source: %+v (want an empty list, not null)", l)
	}
	f.getJSON("/v1/proxies?limit=0", &l)
	if l.Total != 3 || len(l.Proxies) != 0 {
		t.Errorf("limit=0: %+v", l)
	}
	for _, q := range []string{"state=sick", "limit=-1", "limit=10001", "limit=x", "offset=-3"} {
		code, body := f.do("GET", "/v1/proxies?"+q, "")
		wantError(t, q, code, body, http.StatusBadRequest, strings.Split(q, "=")[0])
	}
}

// TestListProxiesPagesAreTheirOwn: the list reuses its page buffers from
// request to request; every answer is exactly its own query's page, with
// nothing left of a larger page before it, also with requests at once.
func TestListProxiesPagesAreTheirOwn(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	f.seedPool()
	queries := []string{"", "state=degraded", "source=a&limit=1&offset=1", "source=nope", "limit=0", "state=healthy", "source=b", "limit=2"}
	want := map[string]string{}
	for _, q := range queries {
		vals, err := url.ParseQuery(q)
		if err != nil {
			t.Fatal(err)
		}
		limit := httpapi.DefaultListLimit
		if v := vals.Get("limit"); v != "" {
			limit, _ = strconv.Atoi(v)
		}
		offset, _ := strconv.Atoi(vals.Get("offset"))
		total, views := f.live.List(proxyhealth.ListFilter{State: vals.Get("state"), Source: vals.Get("source")}, offset, limit)
		l := httpapi.ProxyList{Total: total, Proxies: []httpapi.Proxy{}}
		for _, v := range views {
			l.Proxies = append(l.Proxies, httpapi.ProxyOf(v))
		}
		b, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		want[q] = string(b) + "\n"
	}
	get := func(q string) (string, error) {
		resp, err := http.Get(f.http.URL + "/v1/proxies?" + q)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 25 * len(queries) {
				q := queries[(g+i)%len(queries)]
				body, err := get(q)
				if err != nil || body != want[q] {
					t.Errorf("GET /v1/proxies?%s: %v\n%s\nwant\n%s", q, err, body, want[q])
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestGetProxy(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	f.seedPool()
	var d httpapi.ProxyDetail
	f.getJSON("/v1/proxies/"+p2, &d)
	if d.ID != p2 || d.State != "degraded" || len(d.History) != 2 || len(d.StateChanges) != 2 {
		t.Fatalf("detail %+v", d)
	}
	if h := d.History[0]; h.OK || h.ErrorClass != "timeout" || h.LatencyMS != 1000 {
		t.Errorf("newest history entry %+v, want the failed check", h)
	}
	if h := d.History[1]; !h.OK || h.StatusCode != 204 || h.LatencyMS != 30 {
		t.Errorf("oldest history entry %+v", h)
	}
	if c := d.StateChanges[0]; c.From != "healthy" || c.To != "degraded" || c.Seq != 8 {
		t.Errorf("newest state change %+v", c)
	}
	var raw map[string]any
	_, body := f.do("GET", "/v1/proxies/"+p1, "")
	_ = json.Unmarshal([]byte(body), &raw)
	if _, ok := raw["history"]; !ok {
		t.Errorf("no history key: %s", body)
	}
	if _, ok := raw["state_changes"]; !ok {
		t.Errorf("no state_changes key: %s", body)
	}

	code, body := f.do("GET", "/v1/proxies/nope", "")
	wantError(t, "unknown proxy", code, body, http.StatusNotFound, "nope")
}

func TestGetProxyByURL(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	u, err := proxyhealth.ParseProxy("http://user:secret@10.9.9.9:3128")
	if err != nil {
		t.Fatal(err)
	}
	f.append(addedEnv(u.ID, "a", u.Redacted))
	var d httpapi.ProxyDetail
	f.getJSON("/v1/proxies/"+url.PathEscape("http://user:secret@10.9.9.9:3128"), &d)
	if d.ID != u.ID || d.URL != u.Redacted || strings.Contains(d.URL, "user") {
		t.Errorf("by URL: %+v", d)
	}
	// The redacted URL, as the API shows it, names the proxy too.
	f.getJSON("/v1/proxies/"+url.PathEscape(u.Redacted), &d)
	if d.ID != u.ID {
		t.Errorf("by redacted URL: %+v", d)
	}
	v, err := proxyhealth.ParseProxy("10.9.9.8:3128")
	if err != nil {
		t.Fatal(err)
	}
	f.append(addedEnv(v.ID, "a", v.Redacted))
	f.getJSON("/v1/proxies/10.9.9.8:3128", &d)
	if d.ID != v.ID {
		t.Errorf("by bare host:port: %+v", d)
	}
}

func TestCommands(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	code, body := f.do("POST", "/v1/proxies", `{"url":"http://bob:hunter2@10.0.0.9:3128","source":"a"}`)
	if code != http.StatusCreated || strings.Contains(body, "hunter2") {
		t.Fatalf("add: %d %s", code, body)
	}
	var added httpapi.AddResponse
	_ = json.Unmarshal([]byte(body), &added)
	if added.ID != "0123456789abcdef" || !strings.HasSuffix(added.URL, "@10.0.0.9:3128") || strings.Contains(added.URL, "bob") || added.Source != "a" {
		t.Errorf("add response %+v", added)
	}
	for _, c := range []struct{ method, path, body, want string }{
		{"POST", "/v1/proxies", `{"url":"10.0.0.8:8080"}`, `"status"`},
		{"DELETE", "/v1/proxies/" + p1, "", `"status":"removed"`},
		{"POST", "/v1/proxies/" + p1 + "/revive", "", `"status":"revived"`},
		{"POST", "/v1/pause", "", `"status":"paused"`},
		{"POST", "/v1/pause?source=a", "", `"source":"a"`},
		{"POST", "/v1/resume?source=a", "", `"status":"resumed"`},
		{"POST", "/v1/resume", "", `"status":"resumed"`},
	} {
		code, body := f.do(c.method, c.path, c.body)
		if code/100 != 2 || (c.want != `"status"` && !strings.Contains(body, c.want)) {
			t.Errorf("%s %s: %d %s", c.method, c.path, code, body)
		}
	}
	want := []string{"add a http://bob:hunter2@10.0.0.9:3128", "add  10.0.0.8:8080", "remove " + p1, "revive " + p1, "pause ", "pause a", "resume a", "resume "}
	if got := f.eng.calls(); !reflect.DeepEqual(got, want) {
		t.Errorf("engine calls\n got %q\nwant %q", got, want)
	}
}

func TestCommandErrors(t *testing.T) {
	f := newFixture(t, httpapi.Options{MaxBodyBytes: 256})
	for _, c := range []struct {
		err  error
		code int
	}{
		{fmt.Errorf("%w: %q", proxyhealth.ErrUnknownProxy, p9), http.StatusNotFound},
		{fmt.Errorf("%w: %q", proxyhealth.ErrUnknownSource, "zz"), http.StatusNotFound},
		{fmt.Errorf("%w: x", proxyhealth.ErrDuplicate), http.StatusConflict},
		{fmt.Errorf("revive: %w", proxyhealth.ErrNotRevivable), http.StatusConflict},
		{proxyhealth.ErrClosed, http.StatusServiceUnavailable},
		{errors.New("disk on fire"), http.StatusInternalServerError},
	} {
		f.eng.err = c.err
		code, body := f.do("POST", "/v1/proxies/"+p9+"/revive", "")
		wantError(t, c.err.Error(), code, body, c.code, c.err.Error())
	}
	f.eng.err = nil
	for _, c := range []struct {
		name, body string
		code       int
		substr     string
	}{
		{"empty body", "", http.StatusBadRequest, "empty"},
		{"bad JSON", "{", http.StatusBadRequest, "invalid JSON"},
		{"unknown field", `{"url":"1.2.3.4:80","sauce":"a"}`, http.StatusBadRequest, "sauce"},
		{"trailing data", `{"url":"1.2.3.4:80"} {}`, http.StatusBadRequest, "trailing"},
		{"missing url", `{"source":"a"}`, http.StatusBadRequest, "url"},
		{"bad url", `{"url":"ftp://u:pw1234@1.2.3.4:21"}`, http.StatusBadRequest, "REDACTED"},
		{"too large", `{"url":"` + strings.Repeat("a", 300) + `"}`, http.StatusRequestEntityTooLarge, "256 bytes"},
	} {
		code, body := f.do("POST", "/v1/proxies", c.body)
		wantError(t, c.name, code, body, c.code, c.substr)
		if strings.Contains(body, "pw1234") {
			t.Errorf("%s: credentials in %s", c.name, body)
		}
	}
	if n := len(f.eng.calls()); n != 6 {
		t.Errorf("%d engine calls; invalid requests must not reach the engine", n)
	}
}

func TestRouting(t *testing.T) {
	f := newFixture(t, httpapi.Options{Version: "1.2.3"})
	code, body := f.do("GET", "/v2/nothing", "")
	wantError(t, "unknown path", code, body, http.StatusNotFound, "/v2/nothing")
	code, body = f.do("PUT", "/v1/pool", "")
	wantError(t, "wrong method", code, body, http.StatusMethodNotAllowed, "GET")
	code, body = f.do("GET", "/v1/pause", "")
	wantError(t, "GET on a POST endpoint", code, body, http.StatusMethodNotAllowed, "POST")
	code, body = f.do("GET", "/healthz", "")
	if code != http.StatusOK || !strings.Contains(body, `"version":"1.2.3"`) {
		t.Errorf("healthz: %d %s", code, body)
	}
}

func TestAuth(t *testing.T) {
	f := newFixture(t, httpapi.Options{Token: "s3cret"})
	for _, p := range []string{"/v1/pool", "/v1/proxies", "/v1/proxies/" + p1, "/metrics", "/v1/events"} {
		code, body := f.do("GET", p, "")
		wantError(t, p+" without token", code, body, http.StatusUnauthorized, "Authorization: Bearer")
		code, body = f.do("GET", p, "", "Authorization", "Bearer wrong")
		wantError(t, p+" wrong token", code, body, http.StatusUnauthorized, "invalid")
	}
	code, body := f.do("POST", "/v1/pause", "", "Authorization", "s3cret")
	wantError(t, "token without Bearer", code, body, http.StatusUnauthorized, "invalid")
	if code, _ := f.do("GET", "/v1/pool", "", "Authorization", "Bearer s3cret"); code != http.StatusOK {
		t.Errorf("with token: %d", code)
	}
	if code, _ := f.do("POST", "/v1/pause", "", "Authorization", "Bearer s3cret"); code != http.StatusOK {
		t.Errorf("pause with token: %d", code)
	}
	if code, _ := f.do("GET", "/healthz", ""); code != http.StatusOK {
		t.Errorf("healthz must not need the token: %d", code)
	}
	if code, _ := f.do("GET", "/", ""); code != http.StatusOK {
		t.Errorf("the dashboard page must not need the token: %d", code)
	}
}

func TestDashboardPage(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	resp, err := f.http.Client().Get(f.http.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("content type %q", ct)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}
	for _, id := range []string{"count-total", "count-healthy", "count-degraded", "count-unhealthy", "count-recovering",
		"count-failed", "count-unknown", "count-checking", "count-paused", "health-percentage", "chart-health",
		"chart-latency", "changes-list", "sources-body", "journal-seq", "health-banner", "traffic-panel", "panic-mode", "ejected-count",
		"traffic-none", "traffic-rates", "proxies-body", "proxy-page", "chart-proxy", "proxy-transitions", "proxy-ejections", "proxy-story"} {
		if !strings.Contains(page, `id="`+id+`"`) {
			t.Errorf("dashboard has no element id=%q", id)
		}
	}
	for _, ext := range []string{"src=\"http", "href=\"http", "@import", "//cdn"} {
		if strings.Contains(page, ext) {
			t.Errorf("dashboard references an external asset (%q)", ext)
		}
	}
	for _, api := range []string{"/v1/pool", "/v1/events", "/v1/proxies", "/v1/traffic", "/story", "/v1/journal?proxy="} {
		if !strings.Contains(page, api) {
			t.Errorf("dashboard does not use %s", api)
		}
	}
}

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestProxiesByTagAndAnonymity: /v1/proxies shows tags, weight, exit IP
// and anonymity, and filters by tag and anonymity; /v1/pool's sources show
// their last refresh and error.
func TestProxiesByTagAndAnonymity(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	a := addedEnv("00000000000000b1", "gw", "http://~1a2b3c4d@10.0.0.9:7777")
	a.GetProxyAdded().Tags, a.GetProxyAdded().Weight = []string{"de", "res"}, 2
	b := addedEnv("00000000000000b2", "gw", "http://10.0.0.8:7777")
	x := env("00000000000000b1", "gw")
	x.Event = &pb.Envelope_ExitObserved{ExitObserved: &pb.ExitObserved{ExitIp: "203.0.113.7", Anonymity: pb.Anonymity_ANONYMITY_ELITE}}
	fail := env("", "gw")
	fail.Event = &pb.Envelope_SourceRefreshFailed{SourceRefreshFailed: &pb.SourceRefreshFailed{Error: "the provider answered 503"}}
	f.append(a, b, x, fail)
	var l httpapi.ProxyList
	f.getJSON("/v1/proxies?tag=de", &l)
	if l.Total != 1 || l.Proxies[0].ID != "00000000000000b1" || strings.Join(l.Proxies[0].Tags, ",") != "de,res" || l.Proxies[0].Weight != 2 ||
		l.Proxies[0].ExitIP != "203.0.113.7" || l.Proxies[0].Anonymity != "elite" {
		t.Errorf("tag=de: %+v", l)
	}
	f.getJSON("/v1/proxies?anonymity=elite", &l)
	if l.Total != 1 {
		t.Errorf("anonymity=elite: %+v", l)
	}
	f.getJSON("/v1/proxies?source=gw&tag=nope", &l)
	if l.Total != 0 {
		t.Errorf("tag=nope: %+v", l)
	}
	code, body := f.do("GET", "/v1/proxies?anonymity=sneaky", "")
	wantError(t, "anonymity=sneaky", code, body, http.StatusBadRequest, "transparent, anonymous or elite")
	var p httpapi.Pool
	f.getJSON("/v1/pool", &p)
	if gw := p.Sources["gw"]; gw.LastError != "the provider answered 503" || gw.LastRefresh != nil {
		t.Errorf("source gw: %+v", gw)
	}
}

// TestSourceCommands: POST /v1/sources/{name}/confirm applies a held list
// (409 when none is held, 404 for an unknown source); /refresh reads a
// source's list now.
func TestSourceCommands(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	for _, c := range []struct {
		path, status string
	}{{"/v1/sources/gw/confirm", "confirmed"}, {"/v1/sources/gw/refresh", "refreshed"}} {
		code, body := f.do("POST", c.path, "")
		if code != http.StatusOK || !strings.Contains(body, `"status":"`+c.status+`"`) || !strings.Contains(body, `"source":"gw"`) {
			t.Errorf("POST %s: %d %s", c.path, code, body)
		}
	}
	if got := f.eng.calls(); !slices.Equal(got, []string{"confirm gw", "refresh gw"}) {
		t.Errorf("engine calls %v", got)
	}
	f.eng.err = fmt.Errorf("%w: source %q", proxyhealth.ErrNothingHeld, "gw")
	code, body := f.do("POST", "/v1/sources/gw/confirm", "")
	wantError(t, "confirm with nothing held", code, body, http.StatusConflict, "no shrunk list")
	f.eng.err = fmt.Errorf("%w: %q", proxyhealth.ErrUnknownSource, "nope")
	code, body = f.do("POST", "/v1/sources/nope/refresh", "")
	wantError(t, "refresh of an unknown source", code, body, http.StatusNotFound, "nope")
}
