package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/endpoint"
	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// The credentials of the farm's proxy 0 (source "secret"); no answer may
// carry them unless asked for with a token.
const (
	secretUser = "alice"
	secretPass = "pw-s3cret-7f3a"
)

// rotationEngine is a real engine checking a fake farm of n proxies
// (n >= 2): proxy 0, with credentials, in source "secret", the others in
// source "farm". It waits until every proxy is healthy.
type rotationEngine struct {
	t    testing.TB
	farm *fakeproxy.Farm
	eng  *proxyhealth.Engine
	ids  []string // by farm index
}

func newRotationEngine(t testing.TB, n int) *rotationEngine {
	t.Helper()
	return newRotationEngineEvery(t, n, 200*time.Millisecond)
}

// newRotationEngineEvery is newRotationEngine checking every interval.
func newRotationEngineEvery(t testing.TB, n int, interval time.Duration) *rotationEngine {
	t.Helper()
	farm, err := fakeproxy.Start(t.Context(), n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(farm.Close)
	health := proxyhealth.DefaultHealthConfig()
	health.Interval, health.SuspectInterval, health.RecoveryCooldown = interval, 100*time.Millisecond, time.Hour
	health.UnhealthyThreshold = 2
	probe := proxyhealth.ProbeConfig{TargetURL: "http://target.proxyhealth.test/", Timeout: 2 * time.Second}
	secret := proxyhealth.SourceConfig{Name: "secret", Health: health, Probe: probe,
		Proxies: []string{farm.URLWith(0, "http", secretUser, secretPass)}}
	rest := proxyhealth.SourceConfig{Name: "farm", Health: health, Probe: probe}
	r := &rotationEngine{t: t, farm: farm, ids: []string{proxyID(t, farm.URLWith(0, "http", secretUser, secretPass))}}
	for i := 1; i < n; i++ {
		rest.Proxies = append(rest.Proxies, farm.URL(i))
		r.ids = append(r.ids, proxyID(t, farm.URL(i)))
	}
	eng, err := proxyhealth.Open(t.Context(), proxyhealth.Config{Sources: []proxyhealth.SourceConfig{secret, rest}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := eng.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	r.eng = eng
	testutil.EventuallyExplain(t, 15*time.Second, func() bool {
		s := eng.Status().Summary()
		return s.Healthy == n && eng.Panic().Usable == n
	}, func() string {
		return fmt.Sprintf("%d healthy proxies: %+v, picker %+v", n, eng.Status().Summary().Counts, eng.Panic())
	})
	return r
}

// serve starts an API server over the engine (closed at the end of the
// test, before the engine).
func (r *rotationEngine) serve(opts httpapi.Options) *fixture {
	r.t.Helper()
	srv, err := httpapi.New(r.eng, opts)
	if err != nil {
		r.t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	r.t.Cleanup(func() { srv.Close(); hs.Close() })
	return &fixture{t: r.t.(*testing.T), http: hs, srv: srv}
}

// leaksSecret reports whether an answer carries proxy 0's credentials in
// any form.
// redactedURL is how the API shows a proxy URL.
func redactedURL(t *testing.T, raw string) string {
	t.Helper()
	u, err := proxyhealth.ParseProxy(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Redacted
}

func leaksSecret(body string) bool {
	for _, s := range []string{secretUser, secretPass, url.QueryEscape(secretPass)} {
		if strings.Contains(body, s) {
			return true
		}
	}
	// Any userinfo but the user tag of a redacted URL ("~1a2b3c4d@").
	return userinfoRE.MatchString(body)
}

// userinfoRE matches a URL's userinfo that is not a redacted user tag.
var userinfoRE = regexp.MustCompile(`://(?:[^~/@\s"][^/@\s"]*|~[^/@\s"]*:[^/@\s"]*)@`)

func TestPick(t *testing.T) {
	r := newRotationEngine(t, 4)
	f := r.serve(httpapi.Options{})

	// One pick: exactly the documented fields, no credentials.
	code, body := f.do("GET", "/v1/pick", "")
	if code != http.StatusOK {
		t.Fatalf("GET /v1/pick: %d %s", code, body)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	if got, want := sortedKeys(raw), sorted([]string{"id", "scheme", "host", "port", "state", "source", "panic"}); !reflect.DeepEqual(got, want) {
		t.Errorf("pick keys %v, want %v", got, want)
	}
	var p httpapi.PickedProxy
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatal(err)
	}
	if p.State != "healthy" || p.Panic || p.Scheme != "http" || p.Host != "127.0.0.1" || p.Port == 0 || !containsStr(r.ids, p.ID) {
		t.Errorf("pick %+v", p)
	}

	// Round-robin hands every proxy out, the secret one included, and no
	// answer carries its credentials.
	seen := map[string]bool{}
	var all strings.Builder
	for range 3 * len(r.ids) {
		var p httpapi.PickedProxy
		_, body := f.do("GET", "/v1/pick?strategy=round-robin", "")
		all.WriteString(body)
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			t.Fatalf("%v in %s", err, body)
		}
		seen[p.ID] = true
	}
	if len(seen) != len(r.ids) {
		t.Errorf("round-robin handed out %v, want all of %v", seen, r.ids)
	}
	for _, q := range []string{"?source=secret", "?source=secret&n=2", "?source=secret&credentials=false", "?n=100", "?strategy=sticky&key=k1",
		"?strategy=least-latency&source=secret", "?strategy=weighted&n=4", "?strategy=random&scheme=http"} {
		code, body := f.do("GET", "/v1/pick"+q, "")
		if code != http.StatusOK {
			t.Errorf("GET /v1/pick%s: %d %s", q, code, body)
		}
		all.WriteString(body)
	}
	if leaksSecret(all.String()) || strings.Contains(all.String(), `"url"`) {
		t.Errorf("picks without credentials=true carry credentials or a url:\n%s", all.String())
	}

	// n > 1: an array of distinct proxies, up to n.
	var many []httpapi.PickedProxy
	f.getJSON("/v1/pick?n=3", &many)
	if len(many) != 3 || many[0].ID == many[1].ID || many[1].ID == many[2].ID || many[0].ID == many[2].ID {
		t.Errorf("n=3: %+v", many)
	}
	f.getJSON("/v1/pick?n=100&source=farm", &many)
	if len(many) != len(r.ids)-1 {
		t.Errorf("n=100 of %d in source farm: %d picks", len(r.ids)-1, len(many))
	}
	// n=1 given explicitly is the single object.
	if code, body := f.do("GET", "/v1/pick?n=1", ""); code != http.StatusOK || !strings.HasPrefix(body, "{") {
		t.Errorf("n=1: %d %s", code, body)
	}
	// Sticky: a key keeps its proxy.
	var s1, s2 httpapi.PickedProxy
	f.getJSON("/v1/pick?strategy=sticky&key=session-42", &s1)
	f.getJSON("/v1/pick?strategy=sticky&key=session-42", &s2)
	if s1.ID != s2.ID {
		t.Errorf("sticky key moved from %s to %s", s1.ID, s2.ID)
	}

	for _, c := range []struct {
		query string
		code  int
		msg   string
	}{
		{"?strategy=fastest", 400, "round-robin, random, least-latency, weighted, sticky"},
		{"?strategy=sticky", 400, "key="},
		{"?n=0", 400, "n="},
		{"?n=101", 400, "from 1 to 100"},
		{"?n=two", 400, "n="},
		{"?scheme=ftp", 400, "socks5h"},
		{"?credentials=yes", 400, "true or false"},
		{"?credentials=true", 403, "without a bearer token"},
		{"?source=nope", 503, "no usable proxy"},
		{"?source=nope&n=5", 503, "no usable proxy"},
		{"?tag=x", 503, "no usable proxy"},
		{"?anonymity=sneaky", 400, "transparent, anonymous or elite"},
		{"?anonymity=elite&tag=x", 400, "not both"},
		{"?color=red", 400, `"color"`},
	} {
		code, body := f.do("GET", "/v1/pick"+c.query, "")
		wantError(t, "GET /v1/pick"+c.query, code, body, c.code, c.msg)
		if leaksSecret(body) {
			t.Errorf("GET /v1/pick%s leaks credentials: %s", c.query, body)
		}
	}
	f.scrapeUntil(`proxyhealth_api_picks_total{result="no_proxy",strategy="default"} 3`,
		`proxyhealth_api_picks_total{result="ok",strategy="sticky"} 3`,
		`proxyhealth_api_picks_total{result="panic",strategy="default"} 0`,
		`proxyhealth_panic_mode 0`, fmt.Sprintf(`proxyhealth_rotation_usable %d`, len(r.ids)))
}

// TestPickCredentials: the full URL only with a token and
// ?credentials=true; with the token but without the parameter, none.
func TestPickCredentials(t *testing.T) {
	r := newRotationEngine(t, 2)
	f := r.serve(httpapi.Options{Token: "tok-1"})
	auth := []string{"Authorization", "Bearer tok-1"}
	code, body := f.do("GET", "/v1/pick?source=secret&credentials=true", "")
	wantError(t, "credentials without the token", code, body, http.StatusUnauthorized, "bearer token")

	var p httpapi.PickedProxy
	code, body = f.do("GET", "/v1/pick?source=secret&credentials=true", "", auth...)
	if err := json.Unmarshal([]byte(body), &p); code != http.StatusOK || err != nil {
		t.Fatalf("credentials=true with the token: %d %s", code, body)
	}
	if want := r.farm.URLWith(0, "http", secretUser, secretPass); p.URL != want || p.ID != r.ids[0] {
		t.Errorf("credentials=true: url %q id %s, want %q %s", p.URL, p.ID, want, r.ids[0])
	}
	var many []httpapi.PickedProxy
	code, body = f.do("GET", "/v1/pick?n=2&credentials=true", "", auth...)
	if err := json.Unmarshal([]byte(body), &many); code != http.StatusOK || err != nil || len(many) != 2 {
		t.Fatalf("n=2&credentials=true: %d %s", code, body)
	}
	for _, m := range many {
		if m.URL == "" || !strings.HasPrefix(m.URL, "http://") {
			t.Errorf("n=2&credentials=true: %+v has no url", m)
		}
	}
	for _, q := range []string{"?source=secret", "?source=secret&credentials=false", "?n=2"} {
		code, body := f.do("GET", "/v1/pick"+q, "", auth...)
		if code != http.StatusOK || leaksSecret(body) || strings.Contains(body, `"url"`) {
			t.Errorf("GET /v1/pick%s with the token: %d %s (want no url)", q, code, body)
		}
	}
}

func containsStr(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestReportOutcome(t *testing.T) {
	r := newRotationEngine(t, 3)
	f := r.serve(httpapi.Options{})
	id := r.ids[1]
	path := "/v1/proxies/" + id + "/outcome"

	code, body := f.do("POST", path, `{"ok": true, "latency_ms": 12.5}`)
	var a httpapi.ActionResponse
	if err := json.Unmarshal([]byte(body), &a); code != http.StatusAccepted || err != nil || a.Status != "reported" || a.ID != id {
		t.Fatalf("report a success: %d %s", code, body)
	}
	// By URL, like the other proxy endpoints.
	if code, body := f.do("POST", "/v1/proxies/"+url.PathEscape(r.farm.URL(2))+"/outcome", `{"ok": true}`); code != http.StatusAccepted {
		t.Errorf("report by URL: %d %s", code, body)
	}
	for _, c := range []struct {
		body string
		code int
		msg  string
	}{
		{`{}`, 400, `missing "ok"`},
		{`{"error_class": "timeout"}`, 400, `missing "ok"`},
		{`{"ok": true, "error_class": "timeout"}`, 400, `"ok" is true`},
		{`{"ok": false, "error_class": "bogus"}`, 400, strings.Join(proxyhealth.OutcomeClasses, ", ")},
		{`{"ok": false, "error_class": "too_slow"}`, 400, "refused, timeout"},
		{`{"ok": false, "latency_ms": -1}`, 400, "latency_ms"},
		{`{"ok": false, "class": "timeout"}`, 400, `unknown field "class"`},
		{`{"ok": "yes"}`, 400, "invalid JSON body"},
		{``, 400, "empty request body"},
	} {
		code, body := f.do("POST", path, c.body)
		wantError(t, "outcome "+c.body, code, body, c.code, c.msg)
	}
	code, body = f.do("POST", "/v1/proxies/0000000000000000/outcome", `{"ok": false, "error_class": "refused"}`)
	wantError(t, "outcome of an unknown proxy", code, body, http.StatusNotFound, "0000000000000000")

	// Three failures of the proxy's own eject it (the default passive
	// failure threshold): the API shows the ejection, the picker skips it.
	for range 3 {
		if code, body := f.do("POST", path, `{"ok": false, "error_class": "refused"}`); code != http.StatusAccepted {
			t.Fatalf("report a failure: %d %s", code, body)
		}
	}
	var d httpapi.ProxyDetail
	testutil.EventuallyExplain(t, 10*time.Second, func() bool {
		d = httpapi.ProxyDetail{}
		f.getJSON("/v1/proxies/"+id, &d)
		return d.Ejected
	}, func() string { return fmt.Sprintf("%s to be ejected: %+v", id, d.Proxy) })
	if d.EjectedUntil == nil || !d.EjectedUntil.After(time.Now()) || d.LastSuccessAt == nil {
		t.Errorf("ejected proxy %+v: want ejected_until in the future and last_success_at", d.Proxy)
	}
	// The picker follows the live status a moment later.
	var tr httpapi.Traffic
	testutil.EventuallyExplain(t, 10*time.Second, func() bool {
		tr = httpapi.Traffic{}
		f.getJSON("/v1/traffic", &tr)
		return tr.Ejected == 1 && tr.Usable == 2
	}, func() string { return fmt.Sprintf("traffic %+v: want 1 ejected, 2 usable", tr) })
	if tr.EjectionLimit < 1 || tr.Endpoint != nil || tr.PanicMode || tr.Candidates != 3 {
		t.Errorf("traffic %+v: want an ejection limit, no endpoint, 3 candidates", tr)
	}
	var p httpapi.Pool
	f.getJSON("/v1/pool", &p)
	if p.Ejected != 1 || p.Sources["farm"].Ejected != 1 || p.PanicMode {
		t.Errorf("pool %+v: want 1 ejected in farm", p)
	}
	for range 10 {
		var p httpapi.PickedProxy
		f.getJSON("/v1/pick", &p)
		if p.ID == id {
			t.Fatalf("the ejected proxy %s was picked", id)
		}
	}
	f.scrapeUntil(`proxyhealth_proxies_ejected 1`, `proxyhealth_ejections_total 1`,
		fmt.Sprintf(`proxyhealth_ejection_limit %d`, tr.EjectionLimit),
		`proxyhealth_api_outcomes_total{class="",ok="true"} 2`,
		`proxyhealth_api_outcomes_total{class="refused",ok="false"} 3`)
}

// TestPanicMode: when every proxy fails, picks are made among the
// least-bad ones and say so; the metrics and GET /v1/traffic show panic
// mode and the journaled episode.
func TestPanicMode(t *testing.T) {
	r := newRotationEngine(t, 2)
	f := r.serve(httpapi.Options{})
	if err := r.farm.SetAll(fakeproxy.Refuse()); err != nil {
		t.Fatal(err)
	}
	var tr httpapi.Traffic
	testutil.EventuallyExplain(t, 15*time.Second, func() bool {
		tr = httpapi.Traffic{}
		f.getJSON("/v1/traffic", &tr)
		return tr.PanicMode
	}, func() string { return fmt.Sprintf("panic mode: %+v", tr) })
	var p httpapi.PickedProxy
	f.getJSON("/v1/pick", &p)
	if !p.Panic || p.State == "healthy" {
		t.Errorf("a pick in panic mode: %+v", p)
	}
	f.scrapeUntil(`proxyhealth_panic_mode 1`, `proxyhealth_rotation_usable 0`, `proxyhealth_panic_episodes_total 1`,
		`proxyhealth_api_picks_total{result="panic",strategy="default"} 1`)
	var pool httpapi.Pool
	testutil.Eventually(t, 10*time.Second, "the journaled panic episode in the pool", func() bool {
		f.getJSON("/v1/pool", &pool)
		return pool.PanicMode
	})
}

// TestTraffic serves a real rotating endpoint's counters (wired as the
// daemon wires them) through GET /v1/traffic and /metrics; without
// Options.Traffic neither reports traffic.
func TestTraffic(t *testing.T) {
	r := newRotationEngine(t, 2)
	ep, err := endpoint.New(r.eng, endpoint.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- ep.Serve(context.Background(), ln) }()
	defer func() {
		if err := ep.Close(); err != nil {
			t.Error(err)
		}
		<-served
	}()
	f := r.serve(httpapi.Options{Traffic: func() httpapi.TrafficStats { return trafficOf(ep.Stats()) }})
	bare := r.serve(httpapi.Options{})

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: ln.Addr().String()})}}
	defer client.CloseIdleConnections()
	for range 5 {
		resp, err := client.Get("http://target.proxyhealth.test/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(b) == 0 {
			t.Fatalf("through the endpoint: %d %q", resp.StatusCode, b)
		}
	}
	var tr httpapi.Traffic
	f.getJSON("/v1/traffic", &tr)
	if e := tr.Endpoint; e == nil || e.OK != 5 || e.Failed != 0 || e.NoProxy != 0 || e.BytesDown == 0 || e.Conns == 0 {
		t.Errorf("traffic %+v %+v: want 5 ok requests", tr, e)
	}
	if tr.At.IsZero() || tr.Usable != 2 {
		t.Errorf("traffic %+v", tr)
	}
	f.scrapeUntil(`proxyhealth_endpoint_requests_total{outcome="ok"} 5`, `proxyhealth_endpoint_requests_total{outcome="no_proxy"} 0`,
		`proxyhealth_endpoint_retries_total 0`)

	var none map[string]any
	bare.getJSON("/v1/traffic", &none)
	if v, ok := none["endpoint"]; !ok || v != nil {
		t.Errorf("traffic without an endpoint: %v, want \"endpoint\": null", none)
	}
	if _, body := bare.do("GET", "/metrics", ""); strings.Contains(body, "proxyhealth_endpoint_") {
		t.Errorf("metrics without an endpoint report endpoint traffic")
	}
}

// trafficOf is the daemon's wiring of endpoint.Server.Stats into
// Options.Traffic.
func trafficOf(s endpoint.Stats) httpapi.TrafficStats {
	return httpapi.TrafficStats{OK: s.OK, Failed: s.UpstreamFailed, NoProxy: s.NoProxy, AuthFailed: s.AuthFailed, BadRequest: s.BadRequest,
		Retries: s.Retries, ActiveConns: s.ActiveConns, Conns: s.Conns, BytesUp: s.BytesUp, BytesDown: s.BytesDown}
}

// TestStory: a proxy's story in sentences (its ejection among them),
// without credentials; ?limit= keeps the newest lines.
func TestStory(t *testing.T) {
	r := newRotationEngine(t, 2)
	f := r.serve(httpapi.Options{})
	id := r.ids[0] // the proxy with credentials
	for range 3 {
		if code, body := f.do("POST", "/v1/proxies/"+id+"/outcome", `{"ok": false, "error_class": "timeout"}`); code != http.StatusAccepted {
			t.Fatalf("report: %d %s", code, body)
		}
	}
	var st httpapi.Story
	var body string
	testutil.EventuallyExplain(t, 10*time.Second, func() bool {
		var code int
		code, body = f.do("GET", "/v1/proxies/"+id+"/story", "")
		st = httpapi.Story{}
		return code == http.StatusOK && json.Unmarshal([]byte(body), &st) == nil && st.Ejected
	}, func() string { return "a story that ends ejected: " + body })
	text := ""
	for _, l := range st.Lines {
		text += l.Text + "\n"
		if l.Seq == 0 || l.At.IsZero() {
			t.Errorf("line without seq or time: %+v", l)
		}
	}
	if st.ID != id || st.Source != "secret" || st.URL != redactedURL(t, r.farm.URLWith(0, "http", secretUser, secretPass)) || st.State != "healthy" || st.LinesTotal != len(st.Lines) ||
		!strings.Contains(text, "eject") || !strings.Contains(st.Now, "ejected") {
		t.Errorf("story %+v\n%s", st, text)
	}
	if leaksSecret(body) {
		t.Errorf("the story carries credentials: %s", body)
	}
	var one httpapi.Story
	f.getJSON("/v1/proxies/"+id+"/story?limit=1", &one)
	if len(one.Lines) != 1 || one.LinesTotal != st.LinesTotal || one.Lines[0] != st.Lines[len(st.Lines)-1] {
		t.Errorf("limit=1: %+v, want the newest of %d lines", one, st.LinesTotal)
	}
	code, body := f.do("GET", "/v1/proxies/0000000000000000/story", "")
	wantError(t, "story of an unknown proxy", code, body, http.StatusNotFound, "0000000000000000")
	code, body = f.do("GET", "/v1/proxies/"+id+"/story?limit=0", "")
	wantError(t, "limit=0", code, body, http.StatusBadRequest, "limit")
}
