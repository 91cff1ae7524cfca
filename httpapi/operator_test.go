package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// everyEndpoint is every endpoint of the API ({id} is filled in by the
// tests); TestEndpointsList keeps it equal to httpapi.Endpoints().
var everyEndpoint = []struct{ method, path string }{
	{"GET", "/healthz"}, {"GET", "/"}, {"GET", "/metrics"}, {"GET", "/v1/pool"}, {"GET", "/v1/pool/history"},
	{"GET", "/v1/proxies"}, {"GET", "/v1/proxies/{id}"}, {"GET", "/v1/proxies/{id}/story"}, {"POST", "/v1/proxies"}, {"DELETE", "/v1/proxies/{id}"},
	{"POST", "/v1/proxies/{id}/revive"}, {"POST", "/v1/proxies/{id}/pause"}, {"POST", "/v1/proxies/{id}/resume"},
	{"POST", "/v1/proxies/{id}/outcome"}, {"GET", "/v1/pick"}, {"GET", "/v1/traffic"},
	{"POST", "/v1/pause"}, {"POST", "/v1/resume"}, {"POST", "/v1/reload"},
	{"POST", "/v1/sources/{name}/confirm"}, {"POST", "/v1/sources/{name}/refresh"}, {"GET", "/v1/events"}, {"GET", "/v1/journal"},
}

func TestEndpointsList(t *testing.T) {
	var got []string
	for _, e := range httpapi.Endpoints() {
		got = append(got, e.Method+" "+e.Path)
	}
	var want []string
	for _, e := range everyEndpoint {
		want = append(want, e.method+" "+e.path)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Endpoints() = %v\nthe tests know %v: add the new endpoint to everyEndpoint", got, want)
	}
}

// TestUnknownQueryParameters: every endpoint refuses a query parameter it
// does not know with 400 naming it, before doing anything. POST
// /v1/pause?proxy=ID used to pause the whole pool.
func TestUnknownQueryParameters(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	f.seedPool()
	for _, e := range everyEndpoint {
		path := strings.ReplaceAll(e.path, "{id}", p1) + "?bogus_param=1"
		body := ""
		if e.method == "POST" && e.path == "/v1/proxies" {
			body = `{"url":"http://10.9.9.9:3128"}`
		}
		code, resp := f.do(e.method, path, body)
		wantError(t, e.method+" "+path, code, resp, http.StatusBadRequest, `"bogus_param"`)
	}
	code, resp := f.do("POST", "/v1/pause?proxy=p1", "")
	wantError(t, "POST /v1/pause?proxy=p1", code, resp, http.StatusBadRequest, `"proxy"`)
	wantError(t, "POST /v1/pause?proxy=p1", code, resp, http.StatusBadRequest, "/v1/proxies/{id}/pause")
	code, resp = f.do("POST", "/v1/resume?proxy=p1&source=a", "")
	wantError(t, "POST /v1/resume?proxy=p1&source=a", code, resp, http.StatusBadRequest, `"proxy"`)
	if calls := f.eng.calls(); len(calls) != 0 {
		t.Errorf("the engine was called for refused requests: %v", calls)
	}
	// Known parameters still work, and a parameter given twice is refused.
	if code, resp := f.do("POST", "/v1/pause?source=a", ""); code != http.StatusOK {
		t.Errorf("POST /v1/pause?source=a: %d %s", code, resp)
	}
	code, resp = f.do("GET", "/v1/proxies?limit=1&limit=2", "")
	wantError(t, "limit twice", code, resp, http.StatusBadRequest, `"limit" is given 2 times`)
	code, resp = f.do("GET", "/v1/proxies?state=%zz", "")
	wantError(t, "malformed query", code, resp, http.StatusBadRequest, "malformed query")
	// The 401 comes first: an unauthenticated client learns nothing.
	g := newFixture(t, httpapi.Options{Token: "s3cret"})
	code, resp = g.do("GET", "/v1/pool?bogus_param=1", "")
	wantError(t, "no token", code, resp, http.StatusUnauthorized, "token")
}

// TestUnknownBodyFields: endpoints that take no body refuse one with
// fields (naming them); an empty body or {} is fine.
func TestUnknownBodyFields(t *testing.T) {
	f := newFixture(t, httpapi.Options{Reload: func(context.Context) (proxyhealth.ReconcileDiff, error) {
		return proxyhealth.ReconcileDiff{}, nil
	}})
	f.seedPool()
	for _, e := range everyEndpoint {
		if e.method == "GET" || e.path == "/v1/proxies" {
			continue
		}
		path := strings.ReplaceAll(e.path, "{id}", p1)
		code, resp := f.do(e.method, path, `{"proxy":"p1"}`)
		wantError(t, e.method+" "+path+" with a field", code, resp, http.StatusBadRequest, `unknown field "proxy"`)
		code, resp = f.do(e.method, path, `{} {}`)
		wantError(t, e.method+" "+path+" with two objects", code, resp, http.StatusBadRequest, "trailing data")
	}
	if calls := f.eng.calls(); len(calls) != 0 {
		t.Errorf("the engine was called for refused requests: %v", calls)
	}
	for _, body := range []string{"{}", " {}\n", ""} {
		if code, resp := f.do("POST", "/v1/proxies/"+p1+"/pause", body); code != http.StatusOK {
			t.Errorf("pause with body %q: %d %s", body, code, resp)
		}
	}
	code, resp := f.do("POST", "/v1/proxies", `{"url":"http://10.9.9.9:3128","proxy":"x"}`)
	wantError(t, "add with an unknown field", code, resp, http.StatusBadRequest, `unknown field "proxy"`)
}

func TestPauseResumeOneProxy(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	f.seedPool()
	var a httpapi.ActionResponse
	for _, c := range []struct{ path, status, call string }{
		{"/v1/proxies/" + p1 + "/pause", "paused", "pause-proxy " + p1},
		{"/v1/proxies/" + p1 + "/resume", "resumed", "resume-proxy " + p1},
		{"/v1/proxies/" + url.PathEscape("http://10.0.0.1:3128") + "/pause", "paused", "pause-proxy " + probeID("http://10.0.0.1:3128")},
	} {
		code, body := f.do("POST", c.path, "")
		if code != http.StatusOK {
			t.Fatalf("POST %s: %d %s", c.path, code, body)
		}
		if err := json.Unmarshal([]byte(body), &a); err != nil || a.Status != c.status || a.Source != "" {
			t.Errorf("POST %s: %s", c.path, body)
		}
		if calls := f.eng.calls(); calls[len(calls)-1] != c.call {
			t.Errorf("POST %s: engine calls %v, want %q last", c.path, calls, c.call)
		}
	}
	for _, c := range []struct {
		err    error
		code   int
		substr string
	}{
		{fmt.Errorf("%w: %s", proxyhealth.ErrUnknownProxy, p9), http.StatusNotFound, p9},
		{fmt.Errorf("%w: disk full", proxyhealth.ErrJournalFailing), http.StatusServiceUnavailable, "nothing was applied"},
		{fmt.Errorf("%w: %w", proxyhealth.ErrOutcomeUnknown, context.Canceled), http.StatusGatewayTimeout, "GET /v1/proxies/" + p9},
	} {
		f.eng.mu.Lock()
		f.eng.err = c.err
		f.eng.mu.Unlock()
		code, body := f.do("POST", "/v1/proxies/"+p9+"/resume", "")
		wantError(t, c.err.Error(), code, body, c.code, c.substr)
	}
}

// probeID is the ID of a proxy URL, as the engine derives it.
func probeID(raw string) string {
	id, err := proxyhealth.ResolveProxyID(raw)
	if err != nil {
		panic(err)
	}
	return id
}

// journalPage GETs a page of /v1/journal and returns its lines and its
// X-Next-After trailer.
func (f *fixture) journalPage(query string) (lines []string, next string) {
	f.t.Helper()
	resp := f.doResp("GET", "/v1/journal"+query, "")
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		f.t.Fatalf("GET /v1/journal%s: %d %s", query, resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != httpapi.JournalContentType {
		f.t.Errorf("Content-Type %q, want %q", ct, httpapi.JournalContentType)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		f.t.Fatalf("GET /v1/journal%s: %v", query, err)
	}
	return lines, resp.Trailer.Get(httpapi.NextAfterTrailer)
}

// replayLines is what `proxyhealth journal replay --format json` prints
// for the events after seq after: one JSON-encoded proxyhealth.Record a line.
func replayLines(t *testing.T, j journal.Journal, after uint64) []string {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for env, err := range j.Read(context.Background(), after+1) {
		if err != nil {
			t.Fatal(err)
		}
		if err := enc.Encode(proxyhealth.RecordOf(env)); err != nil {
			t.Fatal(err)
		}
	}
	return strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
}

func TestJournalPages(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	f.seedPool() // seqs 1..11
	want := replayLines(t, f.j, 0)
	lines, next := f.journalPage("")
	if !reflect.DeepEqual(lines, want) || next != "" {
		t.Fatalf("one page of everything: next %q, lines\n%s\nwant\n%s", next, strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if fl := f.eng.journalFilters(); fl[0].Limit != httpapi.DefaultJournalLimit {
		t.Errorf("default limit %d, want %d", fl[0].Limit, httpapi.DefaultJournalLimit)
	}
	// Pages of 5: full pages name the next cursor, the last (short) one
	// does not; together they are the whole journal.
	var all []string
	after, pages := "0", 0
	for after != "" {
		lines, next := f.journalPage("?limit=5&after=" + after)
		all = append(all, lines...)
		pages++
		if full := len(lines) == 5; full != (next != "") {
			t.Errorf("page after %s: %d lines, next %q (set only on full pages)", after, len(lines), next)
		}
		if next != "" {
			var r proxyhealth.Record
			if err := json.Unmarshal([]byte(lines[4]), &r); err != nil || strconv.FormatUint(r.Seq, 10) != next {
				t.Errorf("next %q is not the last seq of the page (%s)", next, lines[4])
			}
		}
		after = next
	}
	if pages != 3 || !reflect.DeepEqual(all, want) {
		t.Errorf("%d pages of 5 gave\n%s\nwant\n%s", pages, strings.Join(all, "\n"), strings.Join(want, "\n"))
	}
	// A page that ends exactly at the head is full: the next one is empty.
	if lines, next := f.journalPage("?after=7&limit=4"); len(lines) != 4 || next != "11" {
		t.Errorf("after=7&limit=4: %d lines, next %q", len(lines), next)
	}
	if lines, next := f.journalPage("?after=11"); len(lines) != 0 || next != "" {
		t.Errorf("after the head: %v, next %q", lines, next)
	}
}

func TestJournalFilters(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	f.seedPool()
	now := f.now()
	lines, _ := f.journalPage("?type=state_changed,proxy_added&source=a&proxy=" + url.QueryEscape("http://10.0.0.1:3128") +
		"&since=90m&until=" + url.QueryEscape(now.Format(time.RFC3339)) + "&after=2&limit=7")
	fl := f.eng.journalFilters()
	got := fl[len(fl)-1]
	wantF := proxyhealth.JournalFilter{Proxy: "http://10.0.0.1:3128", Types: []string{"state_changed", "proxy_added"}, Source: "a",
		Since: now.Add(-90 * time.Minute), Until: now.Truncate(time.Second), After: 2, Limit: 7}
	if !reflect.DeepEqual(got, wantF) || !got.Until.Equal(wantF.Until) {
		t.Errorf("filter\n%+v\nwant\n%+v", got, wantF)
	}
	// (The fake engine applies After, Types and Limit.)
	for _, l := range lines {
		var r proxyhealth.Record
		if err := json.Unmarshal([]byte(l), &r); err != nil || r.Seq <= 2 || (r.Type != "state_changed" && r.Type != "proxy_added") {
			t.Errorf("line %s", l)
		}
	}
	f.journalPage("?since=2025-03-04")
	fl = f.eng.journalFilters()
	if s := fl[len(fl)-1].Since; !s.Equal(time.Date(2025, 3, 4, 0, 0, 0, 0, time.Local)) {
		t.Errorf("since=2025-03-04 gave %v", s)
	}

	for _, c := range []struct{ query, substr string }{
		{"?limit=10001", "limit"},
		{"?limit=0", "limit"},
		{"?limit=x", "limit"},
		{"?after=-1", "after"},
		{"?type=bogus", `"bogus"`},
		{"?since=yesterday", "since"},
		{"?until=-5m", "until"},
		{"?proxy=not%20a%20proxy", "proxy"},
		{"?since=1h&until=2h", "before until"},
	} {
		n := len(f.eng.journalFilters())
		code, body := f.do("GET", "/v1/journal"+c.query, "")
		wantError(t, c.query, code, body, http.StatusBadRequest, c.substr)
		if len(f.eng.journalFilters()) != n {
			t.Errorf("%s reached the engine", c.query)
		}
	}

	g := newFixture(t, httpapi.Options{Token: "s3cret"})
	code, body := g.do("GET", "/v1/journal", "")
	wantError(t, "no token", code, body, http.StatusUnauthorized, "token")
	if code, body := g.do("GET", "/v1/journal", "", "Authorization", "Bearer s3cret"); code != http.StatusOK {
		t.Errorf("with the token: %d %s", code, body)
	}
}

// gatedEngine yields n events, then waits for release before the rest.
type gatedEngine struct {
	*fakeEngine
	n       int
	release chan struct{}
}

func (g *gatedEngine) ReadJournal(ctx context.Context, f proxyhealth.JournalFilter) iter.Seq2[*pb.Envelope, error] {
	return func(yield func(*pb.Envelope, error) bool) {
		i := 0
		for env, err := range g.fakeEngine.ReadJournal(ctx, f) {
			if i == g.n {
				select {
				case <-g.release:
				case <-ctx.Done():
					return
				}
			}
			i++
			if !yield(env, err) {
				return
			}
		}
	}
}

// TestJournalStreams: the page is streamed as the engine yields it (the
// client reads the first lines while the engine still holds the rest), so
// the server never holds a whole page.
func TestJournalStreams(t *testing.T) {
	var g *gatedEngine
	f := newFixtureWith(t, httpapi.Options{}, func(e *fakeEngine) httpapi.Engine {
		g = &gatedEngine{fakeEngine: e, n: 600, release: make(chan struct{})}
		return g
	})
	var envs []*pb.Envelope
	for range 1000 {
		envs = append(envs, okEnv(p1, "a", time.Millisecond))
	}
	f.append(addedEnv(p1, "a", "http://10.0.0.1:3128"))
	f.append(envs...)
	resp := f.doResp("GET", "/v1/journal?limit=1001", "")
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/journal: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	first, total := make(chan struct{}), make(chan int, 1)
	go func() {
		n := 0
		for sc.Scan() {
			if n++; n == 256 {
				close(first)
			}
		}
		total <- n
	}()
	select {
	case <-first: // the first 256 lines arrived while the engine waits
	case n := <-total:
		t.Fatalf("the page ended after %d lines", n)
	case <-time.After(20 * time.Second):
		t.Fatal("no line arrived while the engine still held events: the page is not streamed")
	}
	close(g.release)
	if n := <-total; n != 1001 {
		t.Errorf("%d lines, want 1001", n)
	}
	if next := resp.Trailer.Get(httpapi.NextAfterTrailer); next != "1001" {
		t.Errorf("next %q, want 1001", next)
	}
}

// TestJournalEndsWithServer: Server.Close ends a page still being read
// (http.Server.Shutdown waits for handlers), and the client sees it cut
// off, not a short page.
func TestJournalEndsWithServer(t *testing.T) {
	var g *gatedEngine
	f := newFixtureWith(t, httpapi.Options{}, func(e *fakeEngine) httpapi.Engine {
		g = &gatedEngine{fakeEngine: e, n: 300, release: make(chan struct{})}
		return g
	})
	defer close(g.release)
	var envs []*pb.Envelope
	for range 400 {
		envs = append(envs, okEnv(p1, "a", time.Millisecond))
	}
	f.append(envs...)
	resp := f.doResp("GET", "/v1/journal", "")
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for range 256 {
		if !sc.Scan() {
			t.Fatalf("the page ended early: %v", sc.Err())
		}
	}
	f.srv.Close()
	n := 256
	for sc.Scan() {
		n++
	}
	if !errors.Is(sc.Err(), io.ErrUnexpectedEOF) || n != 300 {
		t.Errorf("after Close: %d lines, error %v; want the 300 read lines and a cut-off body (unexpected EOF)", n, sc.Err())
	}
}

// TestJournalReadError: an error before the first line is a JSON error
// with its status; one after it cuts the response off, so a client cannot
// take a broken page for a short (last) one.
func TestJournalReadError(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	f.seedPool()
	f.eng.mu.Lock()
	f.eng.readErr = &readFailure{after: 0, err: fmt.Errorf("read: %w", proxyhealth.ErrJournalClosed)}
	f.eng.mu.Unlock()
	code, body := f.do("GET", "/v1/journal", "")
	wantError(t, "closed journal", code, body, http.StatusServiceUnavailable, "closed")

	f.eng.mu.Lock()
	f.eng.readErr = &readFailure{after: 3, err: errors.New("record 4: checksum mismatch")}
	f.eng.mu.Unlock()
	resp := f.doResp("GET", "/v1/journal", "")
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || err == nil {
		t.Errorf("failure after 3 lines: %d, read error %v, body %q (want the body cut off)", resp.StatusCode, err, b)
	}
}

func TestReload(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	code, body := f.do("POST", "/v1/reload", "")
	wantError(t, "no hook", code, body, http.StatusNotImplemented, "Options.Reload")

	var answer struct {
		diff proxyhealth.ReconcileDiff
		err  error
	}
	calls := 0
	g := newFixture(t, httpapi.Options{Reload: func(context.Context) (proxyhealth.ReconcileDiff, error) {
		calls++
		return answer.diff, answer.err
	}})
	answer.diff = proxyhealth.ReconcileDiff{Added: []string{"00000000000000aa"}, Changed: []string{"00000000000000cc"}}
	code, body = g.do("POST", "/v1/reload", "")
	if code != http.StatusOK || strings.TrimSpace(body) != `{"added":["00000000000000aa"],"removed":[],"changed":["00000000000000cc"]}` {
		t.Errorf("reload: %d %s", code, body)
	}
	for _, c := range []struct {
		err    error
		code   int
		substr string
	}{
		{fmt.Errorf("%w: proxyhealth.yaml:7: interval: want a duration", proxyhealth.ErrBadConfig), http.StatusBadRequest, "proxyhealth.yaml:7"},
		{fmt.Errorf("%w: proxyhealth.yaml:7", proxyhealth.ErrBadConfig), http.StatusBadRequest, "unchanged"},
		{errors.New("open proxyhealth.yaml: permission denied"), http.StatusInternalServerError, "permission denied"},
		{fmt.Errorf("%w: disk full", proxyhealth.ErrJournalFailing), http.StatusServiceUnavailable, "journal"},
	} {
		answer.err = c.err
		code, body = g.do("POST", "/v1/reload", "")
		wantError(t, c.err.Error(), code, body, c.code, c.substr)
	}
	if calls != 5 {
		t.Errorf("the hook ran %d times, want 5", calls)
	}
}

// notifyEngine is a fake engine with a real notifier on its journal.
type notifyEngine struct {
	*fakeEngine
	notifications func() (<-chan proxyhealth.Notification, func())
}

func (n *notifyEngine) Notifications() (<-chan proxyhealth.Notification, func()) {
	return n.notifications()
}

// nextNamed returns the next message with an event name, skipping
// journal events and comments; it also returns the last id the stream
// sent before it.
func (c *sseClient) nextNamed() (sseMsg, uint64) {
	c.t.Helper()
	for {
		m := c.next()
		if m.event != "" {
			return m, c.lastID
		}
		if m.id != 0 {
			c.lastID = m.id
		}
	}
}

func TestEventsNotifications(t *testing.T) {
	var ne *notifyEngine
	var notifier *projections.Notifier
	f := newFixtureWith(t, httpapi.Options{}, func(e *fakeEngine) httpapi.Engine {
		n, err := projections.NewNotifier(e.j, projections.NotifierOptions{})
		if err != nil {
			t.Fatal(err)
		}
		notifier = n
		ne = &notifyEngine{fakeEngine: e, notifications: n.Subscribe}
		return ne
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- notifier.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		_ = notifier.Close(context.Background())
	})
	f.seedPool()
	testutil.Eventually(t, 10*time.Second, "the notifier to read the pool", func() bool { return notifier.Applied() == f.j.Head() })

	all := f.stream("")
	all.next() // greeting
	onlyA := f.stream("?notify=proxy_recovered,proxy_down&source=a&type=check_failed")
	onlyA.next()
	none := f.stream("?notify=none")
	none.next()

	f.append(failEnv(p2, "a", pb.FailureClass_FAILURE_CLASS_TIMEOUT), changeEnv(p2, "a", degraded, unhealthy)) // 12, 13
	f.append(changeEnv(p3, "b", healthy, unhealthy))                                                           // 14
	f.append(changeEnv(p2, "a", unhealthy, healthy))                                                           // 15

	type note struct {
		Type     string `json:"type"`
		Seq      uint64 `json:"seq"`
		ProxyID  string `json:"proxy_id"`
		URL      string `json:"url"`
		From, To string
	}
	read := func(c *sseClient) (note, uint64) {
		m, last := c.nextNamed()
		var n note
		if err := json.Unmarshal([]byte(m.data), &n); err != nil || n.Type != m.event || m.id != 0 {
			t.Fatalf("notification %+v: %v (want its type as the event name, no id)", m, err)
		}
		return n, last
	}
	for _, w := range []note{{Type: "proxy_down", Seq: 13, ProxyID: p2}, {Type: "proxy_down", Seq: 14, ProxyID: p3}, {Type: "proxy_recovered", Seq: 15, ProxyID: p2}} {
		n, last := read(all)
		if n.Type != w.Type || n.Seq != w.Seq || n.ProxyID != w.ProxyID || n.URL == "" {
			t.Errorf("all: got %+v, want %+v", n, w)
		}
		if last < w.Seq {
			t.Errorf("all: %s of seq %d came before its event (the last was %d)", n.Type, n.Seq, last)
		}
	}
	// Source a only, journal events of type check_failed only.
	n, last := read(onlyA)
	if n.Type != "proxy_down" || n.ProxyID != p2 || last != 12 { // check_failed 12 passes the filter, state_changed 13 not
		t.Errorf("filtered: %+v after %d", n, last)
	}
	if n, _ = read(onlyA); n.Type != "proxy_recovered" || n.ProxyID != p2 {
		t.Errorf("filtered: %+v, want p2's recovery (p3 is in source b)", n)
	}
	// notify=none sends the journal events only.
	f.append(okEnv(p1, "a", time.Millisecond)) // 16
	for {
		m := none.next()
		if m.event != "" {
			t.Fatalf("notify=none sent %+v", m)
		}
		if m.id == 16 {
			break
		}
	}
	code, body := f.do("GET", "/v1/events?notify=proxy_up", "")
	wantError(t, "notify=proxy_up", code, body, http.StatusBadRequest, "proxy_up")
}

func TestPoolHistory(t *testing.T) {
	f := newFixture(t, httpapi.Options{PoolHistoryInterval: 2 * time.Millisecond, PoolHistoryWindow: 20 * time.Millisecond})
	f.seedPool()
	var h httpapi.PoolHistory
	testutil.EventuallyExplain(t, 10*time.Second, func() bool {
		h = httpapi.PoolHistory{}
		f.getJSON("/v1/pool/history", &h)
		if len(h.Samples) > 11 {
			t.Fatalf("%d samples, more than window/interval+1 = 11", len(h.Samples))
		}
		if len(h.Samples) == 0 {
			return false
		}
		last := h.Samples[len(h.Samples)-1]
		return len(h.Samples) == 11 && last.Healthy == 2 && last.Degraded == 1 && last.Total == 3 && last.JournalSeq == 11
	}, func() string { return fmt.Sprintf("11 samples, the last with the seeded pool: %+v", h) })
	if h.IntervalSeconds != 0.002 || h.WindowSeconds != 0.02 || h.Samples[0].At.After(h.Samples[10].At) {
		t.Errorf("history %+v", h)
	}
	// Samples older than the window are not served.
	f.append(okEnv(p1, "a", time.Millisecond))
	f.append(okEnv(p1, "a", time.Millisecond)) // the server's clock moves 2 s past every sample
	testutil.EventuallyExplain(t, 10*time.Second, func() bool {
		h = httpapi.PoolHistory{}
		f.getJSON("/v1/pool/history", &h)
		for _, s := range h.Samples {
			if s.At.Before(f.now().Add(-20 * time.Millisecond)) {
				return false
			}
		}
		return len(h.Samples) > 0
	}, func() string { return fmt.Sprintf("only samples of the last 20 ms: %+v", h) })
}

func TestNewErrors(t *testing.T) {
	j := journal.NewMem()
	defer j.Close()
	if _, err := httpapi.New(&fakeEngine{j: j}, httpapi.Options{}); !errors.Is(err, httpapi.ErrBadOptions) || !strings.Contains(err.Error(), "Options.Status") {
		t.Errorf("no status: %v", err)
	}
	if _, err := httpapi.New(nil, httpapi.Options{}); !errors.Is(err, httpapi.ErrBadOptions) {
		t.Errorf("nil engine: %v", err)
	}
	if _, err := httpapi.New(&fakeEngine{j: j}, httpapi.Options{Status: projections.NewLive(projections.LiveOptions{}), MaxBodyBytes: -1}); !errors.Is(err, httpapi.ErrBadOptions) || !strings.Contains(err.Error(), "MaxBodyBytes") {
		t.Errorf("negative MaxBodyBytes: %v", err)
	}
}
