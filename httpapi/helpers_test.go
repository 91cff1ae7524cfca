package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// *proxyhealth.Engine is what the daemon passes to New.
var _ httpapi.Engine = (*proxyhealth.Engine)(nil)

// *proxyhealth.Engine reports its health, which /healthz, /v1/pool and
// /metrics serve (the server finds it by this method).
var _ interface{ Health() proxyhealth.Health } = (*proxyhealth.Engine)(nil)

// *proxyhealth.Engine has notifications, which /v1/events sends as named
// events (the server finds them by this method).
var _ interface {
	Notifications() (<-chan proxyhealth.Notification, func())
} = (*proxyhealth.Engine)(nil)

// The engine's live status (Engine.Status) is what the server serves
// without Options.Status; the fixtures feed a *projections.Live.
var _ httpapi.Status = proxyhealth.StatusReader(nil)
var _ httpapi.Status = (*projections.Live)(nil)

var t0 = time.Date(2025, 3, 4, 5, 0, 0, 0, time.UTC)

// fakeEngine records commands and answers them with err (if set).
type fakeEngine struct {
	j       journal.Journal
	now     func() time.Time // the clock of CheckHistory (nil: time.Now)
	mu      sync.Mutex
	log     []string
	err     error
	filters []proxyhealth.JournalFilter
	readErr *readFailure
}

func (f *fakeEngine) record(s string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, s)
	return f.err
}

func (f *fakeEngine) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.log...)
}

func (f *fakeEngine) AddProxy(_ context.Context, source, raw string) (string, error) {
	return "0123456789abcdef", f.record("add " + source + " " + raw)
}
func (f *fakeEngine) RemoveProxy(_ context.Context, id string) error { return f.record("remove " + id) }
func (f *fakeEngine) ConfirmSource(_ context.Context, name string) error {
	return f.record("confirm " + name)
}
func (f *fakeEngine) RefreshSource(_ context.Context, name string) error {
	return f.record("refresh " + name)
}
func (f *fakeEngine) Revive(_ context.Context, id string) error  { return f.record("revive " + id) }
func (f *fakeEngine) Pause(_ context.Context, src string) error  { return f.record("pause " + src) }
func (f *fakeEngine) Resume(_ context.Context, src string) error { return f.record("resume " + src) }

// JournalHead, Tail and CheckHistory read the fake's journal.
func (f *fakeEngine) JournalHead() uint64                { return f.j.Head() }
func (f *fakeEngine) Tail(from uint64) httpapi.EventTail { return f.j.Subscribe(from) }
func (f *fakeEngine) CheckHistory(ctx context.Context, id string, since time.Time) ([]proxyhealth.CheckRecord, error) {
	return projections.NewHistory(f.j, projections.HistoryOptions{Clock: f.now}).Checks(ctx, id, since)
}

// The fake hands nothing out (the rotation tests use a real engine) and
// records outcomes.
func (f *fakeEngine) Pick(proxyhealth.PickRequest) (proxyhealth.Picked, error) {
	return proxyhealth.Picked{}, proxyhealth.ErrNoProxy
}
func (f *fakeEngine) PickN(proxyhealth.PickRequest, []proxyhealth.Picked) (int, error) {
	return 0, proxyhealth.ErrNoProxy
}
func (f *fakeEngine) ReportOutcome(o proxyhealth.Outcome) error {
	return f.record(fmt.Sprintf("outcome %s %v %s", o.ProxyID, o.OK, o.Class))
}
func (f *fakeEngine) Panic() proxyhealth.PanicState { return proxyhealth.PanicState{} }
func (f *fakeEngine) Ejections() (int, int)         { return 0, 0 }

func (f *fakeEngine) PauseProxy(_ context.Context, id string) error {
	return f.record("pause-proxy " + id)
}
func (f *fakeEngine) ResumeProxy(_ context.Context, id string) error {
	return f.record("resume-proxy " + id)
}

// ReadJournal records the filter and yields the journal's events after
// f.After, of f.Types, up to f.Limit (the rest of the filter is the
// engine's business: the tests of GET /v1/journal check what reaches it).
func (f *fakeEngine) ReadJournal(ctx context.Context, flt proxyhealth.JournalFilter) iter.Seq2[*pb.Envelope, error] {
	f.mu.Lock()
	f.filters = append(f.filters, flt)
	readErr := f.readErr
	f.mu.Unlock()
	return func(yield func(*pb.Envelope, error) bool) {
		n := 0
		for env, err := range f.j.Read(ctx, flt.After+1) {
			if err == nil && readErr != nil && n == readErr.after {
				err = readErr.err
			}
			if err != nil {
				yield(nil, err)
				return
			}
			if len(flt.Types) > 0 && !slices.Contains(flt.Types, proxyhealth.EventType(env)) {
				continue
			}
			if !yield(env, nil) {
				return
			}
			if n++; flt.Limit > 0 && n >= flt.Limit {
				return
			}
		}
	}
}

// readFailure makes ReadJournal fail after yielding after events.
type readFailure struct {
	after int
	err   error
}

// journalFilters returns the filters ReadJournal was called with.
func (f *fakeEngine) journalFilters() []proxyhealth.JournalFilter {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]proxyhealth.JournalFilter(nil), f.filters...)
}

// fixture is a server on a Mem journal whose live status is fed by the
// test.
type fixture struct {
	t    *testing.T
	j    *journal.Mem
	live *projections.Live
	eng  *fakeEngine
	srv  *httpapi.Server
	http *httptest.Server
	atMu sync.Mutex
	at   time.Time
}

func newFixture(t *testing.T, opts httpapi.Options) *fixture {
	t.Helper()
	return newFixtureWith(t, opts, func(e *fakeEngine) httpapi.Engine { return e })
}

// newFixtureWith is newFixture with the engine the server sees made from
// the fake engine by wrap.
func newFixtureWith(t *testing.T, opts httpapi.Options, wrap func(*fakeEngine) httpapi.Engine) *fixture {
	t.Helper()
	j := journal.NewMem()
	live := projections.NewLive(projections.LiveOptions{})
	eng := &fakeEngine{j: j}
	opts.Status = live
	f := &fixture{t: t, j: j, live: live, eng: eng, at: t0}
	if opts.Now == nil {
		opts.Now = f.now // the time of the last event
	}
	eng.now = opts.Now
	srv, err := httpapi.New(wrap(eng), opts)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	f.srv, f.http = srv, hs
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
		_ = j.Close()
	})
	return f
}

// now is the time of the last event appended (the server's clock).
func (f *fixture) now() time.Time {
	f.atMu.Lock()
	defer f.atMu.Unlock()
	return f.at
}

// append commits envelopes and applies them to the live status.
func (f *fixture) append(envs ...*pb.Envelope) {
	f.t.Helper()
	for _, e := range envs {
		f.atMu.Lock()
		f.at = f.at.Add(time.Second)
		e.AtUnixNano = f.at.UnixNano()
		f.atMu.Unlock()
	}
	if _, err := f.j.Append(context.Background(), envs); err != nil {
		f.t.Fatal(err)
	}
	f.live.Apply(envs...)
}

func env(id, src string) *pb.Envelope { return &pb.Envelope{ProxyId: id, Source: src} }

func addedEnv(id, src, url string) *pb.Envelope {
	e := env(id, src)
	e.Event = &pb.Envelope_ProxyAdded{ProxyAdded: &pb.ProxyAdded{UrlRedacted: url, Source: src}}
	return e
}

func okEnv(id, src string, lat time.Duration) *pb.Envelope {
	e := env(id, src)
	e.Event = &pb.Envelope_CheckSucceeded{CheckSucceeded: &pb.CheckSucceeded{StatusCode: 204, Latency: &pb.Latency{TotalNs: int64(lat)}}}
	return e
}

func failEnv(id, src string, class pb.FailureClass) *pb.Envelope {
	e := env(id, src)
	e.Event = &pb.Envelope_CheckFailed{CheckFailed: &pb.CheckFailed{Class: class, Message: "boom", Latency: &pb.Latency{TotalNs: int64(time.Second)}}}
	return e
}

func changeEnv(id, src string, from, to pb.HealthState) *pb.Envelope {
	e := env(id, src)
	e.Event = &pb.Envelope_StateChanged{StateChanged: &pb.StateChanged{From: from, To: to, Reason: fmt.Sprintf("%v to %v", from, to)}}
	return e
}

const (
	unknown   = pb.HealthState_HEALTH_STATE_UNKNOWN
	healthy   = pb.HealthState_HEALTH_STATE_HEALTHY
	degraded  = pb.HealthState_HEALTH_STATE_DEGRADED
	unhealthy = pb.HealthState_HEALTH_STATE_UNHEALTHY
)

// seedPool adds three proxies: p1 healthy (a), p2 degraded (a), p3
// healthy (b).
func (f *fixture) seedPool() {
	f.append(
		addedEnv(p1, "a", "http://10.0.0.1:3128"), okEnv(p1, "a", 10*time.Millisecond), changeEnv(p1, "a", unknown, healthy),
		addedEnv(p2, "a", "socks5://10.0.0.2:1080"), okEnv(p2, "a", 30*time.Millisecond), changeEnv(p2, "a", unknown, healthy),
		failEnv(p2, "a", pb.FailureClass_FAILURE_CLASS_TIMEOUT), changeEnv(p2, "a", healthy, degraded),
		addedEnv(p3, "b", "http://10.0.0.3:8080"), okEnv(p3, "b", 20*time.Millisecond), changeEnv(p3, "b", unknown, healthy),
	)
	// The engine's actors report their next check; here the test does.
	for _, id := range []string{p1, p2, p3} {
		f.live.SetNextCheck(id, f.now().Add(30*time.Second))
	}
}

// do sends a request and returns the status code and body. A request
// with a body is sent as "Content-Type: application/json" unless hdr sets
// a Content-Type (an empty value sends none); the pseudo-header "Host"
// sets the request's Host.
func (f *fixture) do(method, path, body string, hdr ...string) (int, string) {
	f.t.Helper()
	resp := f.doResp(method, path, body, hdr...)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// doResp is do returning the response (the caller closes its body).
func (f *fixture) doResp(method, path, body string, hdr ...string) *http.Response {
	f.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.http.URL+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		switch {
		case hdr[i] == "Host":
			req.Host = hdr[i+1]
		case hdr[i+1] == "":
			req.Header.Del(hdr[i])
		default:
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	c := *f.http.Client()
	c.Timeout = 30 * time.Second // the whole exchange, body included: no test waits forever
	resp, err := c.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp
}

// getJSON GETs path, expects 200 and decodes into v.
func (f *fixture) getJSON(path string, v any) {
	f.t.Helper()
	code, body := f.do("GET", path, "")
	if code != http.StatusOK {
		f.t.Fatalf("GET %s: %d %s", path, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		f.t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

// wantError checks a JSON error response.
func wantError(t *testing.T, what string, code int, body string, wantCode int, substr string) {
	t.Helper()
	if code != wantCode {
		t.Errorf("%s: status %d, want %d (%.300s)", what, code, wantCode, body)
		return
	}
	var e httpapi.ErrorBody
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
		t.Errorf("%s: body %q is not a JSON error", what, body)
		return
	}
	if !strings.Contains(e.Error, substr) {
		t.Errorf("%s: error %q does not mention %q", what, e.Error, substr)
	}
}

// healthEngine is a fake engine that reports the health the test sets.
type healthEngine struct {
	*fakeEngine
	hmu sync.Mutex
	h   proxyhealth.Health
}

func (e *healthEngine) Health() proxyhealth.Health {
	e.hmu.Lock()
	defer e.hmu.Unlock()
	return e.h
}

// AppendHealth is Health with the projections copied into projs, as the
// engine's is.
func (e *healthEngine) AppendHealth(projs []proxyhealth.ProjectionHealth) proxyhealth.Health {
	h := e.Health()
	h.Projections = append(projs[:0], h.Projections...)
	return h
}

func (e *healthEngine) setHealth(h proxyhealth.Health) {
	e.hmu.Lock()
	defer e.hmu.Unlock()
	e.h = h
}

// newHealthFixture is a fixture whose engine reports health (healthy at
// first, with two running projections).
func newHealthFixture(t *testing.T, opts httpapi.Options) (*fixture, *healthEngine) {
	t.Helper()
	var he *healthEngine
	f := newFixtureWith(t, opts, func(e *fakeEngine) httpapi.Engine {
		he = &healthEngine{fakeEngine: e, h: healthyHealth()}
		return he
	})
	return f, he
}

// healthyHealth is an engine whose journal takes writes and whose
// projections run.
func healthyHealth() proxyhealth.Health {
	return proxyhealth.Health{
		OK:      true,
		Journal: proxyhealth.JournalHealth{Head: 11, LastCommitAt: t0.Add(11 * time.Second)},
		Projections: []proxyhealth.ProjectionHealth{
			{Name: "live status", State: proxyhealth.ProjectionRunning, Seq: 11},
			{Name: "sqlite view", State: proxyhealth.ProjectionRunning, Seq: 11},
		},
	}
}

// The fake proxies' IDs (real IDs: 16 hex digits, as the API resolves
// them).
const (
	p1 = "00000000000000a1"
	p2 = "00000000000000a2"
	p3 = "00000000000000a3"
	p9 = "00000000000000a9"
)
