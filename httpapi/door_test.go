package httpapi_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/httpapi"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// TestUnresolvableProxyID: a path {id} that is neither a proxy ID nor a
// proxy URL names no proxy: 404 naming it, and the engine is not asked.
// A URL is resolved to its ID like the engine does (credentials ignored).
func TestUnresolvableProxyID(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/proxies/nope"},
		{"DELETE", "/v1/proxies/nope"},
		{"POST", "/v1/proxies/nope/revive"},
		{"POST", "/v1/proxies/nope/pause"},
		{"POST", "/v1/proxies/nope/resume"},
	} {
		code, body := f.do(c.method, c.path, "")
		wantError(t, c.method+" "+c.path, code, body, http.StatusNotFound, `no proxy "nope": it is neither a proxy ID (16 hex digits) nor a proxy URL`)
	}
	if calls := f.eng.calls(); len(calls) != 0 {
		t.Errorf("unresolvable IDs reached the engine: %q", calls)
	}

	// Something with user info that is not a proxy URL either: not echoed.
	code, body := f.do("DELETE", "/v1/proxies/"+url.PathEscape("ftp://bob:hunter2@10.0.0.1:21"), "")
	wantError(t, "a non-proxy URL with credentials", code, body, http.StatusNotFound, "not shown")
	if strings.Contains(body, "hunter2") {
		t.Errorf("the answer shows the password: %s", body)
	}

	// A proxy URL (with credentials) is its ID.
	u, err := proxyhealth.ParseProxy("http://bob:hunter2@10.0.0.1:3128")
	if err != nil {
		t.Fatal(err)
	}
	if code, body := f.do("DELETE", "/v1/proxies/"+url.PathEscape("http://bob:hunter2@10.0.0.1:3128"), ""); code != http.StatusOK || strings.Contains(body, "hunter2") {
		t.Errorf("delete by URL: %d %s", code, body)
	}
	if calls := f.eng.calls(); len(calls) != 1 || calls[0] != "remove "+u.ID {
		t.Errorf("engine calls %q, want [remove %s]", calls, u.ID)
	}
}

// TestEventsProxyByURL: ?proxy= of the event stream takes a proxy URL
// (resolved to the proxy's ID) and refuses what is neither an ID nor a
// proxy URL.
func TestEventsProxyByURL(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	f.seedPool()
	u, err := proxyhealth.ParseProxy("http://10.9.9.9:3128")
	if err != nil {
		t.Fatal(err)
	}
	f.append(addedEnv(u.ID, "a", u.Redacted)) // 12
	c := f.stream("?proxy="+url.QueryEscape("http://10.9.9.9:3128"), "Last-Event-ID", "0")
	if id, r := c.nextEvent(); id != 12 || r.ProxyID != u.ID || r.Type != "proxy_added" {
		t.Errorf("proxy filter by URL: %d %+v", id, r)
	}
	code, body := f.do("GET", "/v1/events?proxy="+url.QueryEscape("ftp://bob:hunter2@x y"), "")
	wantError(t, "proxy=garbage", code, body, http.StatusBadRequest, "proxy")
	if strings.Contains(body, "hunter2") {
		t.Errorf("the answer shows the password: %s", body)
	}
}

// firstEngine is a fake engine that tells its oldest retained seq
// (JournalFirst) instead of the server reading it from the journal.
type firstEngine struct{ *fakeEngine }

func (e firstEngine) JournalFirst() uint64 { return e.j.First() }

// retainFirstFive snapshots the seeded proxies and lets retention delete
// events 1 to 5.
func (f *fixture) retainFirstFive() {
	f.t.Helper()
	for _, id := range []string{p1, p2, p3} {
		snap := &pb.ProxySnapshot{ProxyId: id, StreamSeq: f.j.StreamHead(id)}
		if err := f.j.SaveSnapshot(context.Background(), snap); err != nil {
			f.t.Fatal(err)
		}
	}
	if _, err := f.j.Retain(context.Background(), t0.Add(5*time.Second+time.Millisecond)); err != nil {
		f.t.Fatal(err)
	}
	if first := f.j.First(); first != 6 {
		f.t.Fatalf("retention left first = %d, want 6", first)
	}
}

// TestJournalFirst: proxyhealth_journal_first_seq and the event stream's
// retention notice give the oldest event retention kept, whether the
// engine tells it (JournalFirst) or the server reads it (ReadJournal).
func TestJournalFirst(t *testing.T) {
	for _, c := range []struct {
		name string
		wrap func(*fakeEngine) httpapi.Engine
	}{
		{"read from the journal", func(e *fakeEngine) httpapi.Engine { return e }},
		{"JournalFirst", func(e *fakeEngine) httpapi.Engine { return firstEngine{e} }},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixtureWith(t, httpapi.Options{}, c.wrap)
			f.scrapeUntil(`proxyhealth_journal_first_seq 1`, `proxyhealth_journal_head_seq 0`)
			f.seedPool()
			f.scrapeUntil(`proxyhealth_journal_first_seq 1`, `proxyhealth_journal_head_seq 11`)
			f.retainFirstFive()
			f.scrapeUntil(`proxyhealth_journal_first_seq 6`, `proxyhealth_journal_head_seq 11`)
			s := f.stream("", "Last-Event-ID", "2")
			if m := s.next(); !strings.Contains(m.comment, "events 3 to 5 were deleted by journal retention; continuing from 6") {
				t.Errorf("no retention notice in %+v", m)
			}
			if id, _ := s.nextEvent(); id != 6 {
				t.Errorf("first event %d, want 6", id)
			}
		})
	}
}
