package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/httpapi"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// sseClient reads one event stream.
type sseClient struct {
	t      *testing.T
	resp   *http.Response
	r      *bufio.Reader
	cancel context.CancelFunc
	lastID uint64 // the last id nextNamed saw
}

// sseMsg is one message or comment of a stream.
type sseMsg struct {
	id      uint64
	event   string // "" for journal events (SSE's default "message")
	data    string
	comment string
}

func (f *fixture) stream(query string, hdr ...string) *sseClient {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	req, _ := http.NewRequestWithContext(ctx, "GET", f.http.URL+"/v1/events"+query, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := f.http.Client().Do(req)
	if err != nil {
		cancel()
		f.t.Fatal(err)
	}
	c := &sseClient{t: f.t, resp: resp, r: bufio.NewReader(resp.Body), cancel: cancel}
	f.t.Cleanup(c.close)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		f.t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return c
}

func (c *sseClient) close() {
	c.cancel()
	_ = c.resp.Body.Close()
}

// next returns the next message or comment block.
func (c *sseClient) next() sseMsg {
	c.t.Helper()
	var m sseMsg
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading the stream: %v", err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if m.data != "" || m.comment != "" {
				return m
			}
		case strings.HasPrefix(line, "event: "):
			m.event = line[7:]
		case strings.HasPrefix(line, "id: "):
			m.id, _ = strconv.ParseUint(line[4:], 10, 64)
		case strings.HasPrefix(line, "data: "):
			m.data = line[6:]
		case strings.HasPrefix(line, ":"):
			m.comment += line
		}
	}
}

// nextEvent skips comments and returns the next event's record.
func (c *sseClient) nextEvent() (uint64, proxyhealth.Record) {
	c.t.Helper()
	for {
		m := c.next()
		if m.data == "" || m.event != "" {
			continue
		}
		var r proxyhealth.Record
		if err := json.Unmarshal([]byte(m.data), &r); err != nil {
			c.t.Fatalf("data %q: %v", m.data, err)
		}
		if r.Seq != m.id {
			c.t.Fatalf("id %d but seq %d", m.id, r.Seq)
		}
		return m.id, r
	}
}

func TestEventsLiveAndResume(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	f.seedPool() // seqs 1..11, before the stream: not sent without Last-Event-ID
	c := f.stream("")
	if m := c.next(); !strings.Contains(m.comment, "event stream") {
		t.Errorf("first block %+v, want the greeting comment", m)
	}
	f.append(okEnv(p1, "a", 5*time.Millisecond), changeEnv(p3, "b", healthy, degraded))
	id, r := c.nextEvent()
	if id != 12 || r.Type != "check_succeeded" || r.ProxyID != p1 || r.Source != "a" || r.LatencyMS == nil || *r.LatencyMS != 5 {
		t.Errorf("event 12: %+v", r)
	}
	id, r = c.nextEvent()
	if id != 13 || r.Type != "state_changed" || r.From != "healthy" || r.To != "degraded" {
		t.Errorf("event 13: %+v", r)
	}
	if _, err := time.Parse(time.RFC3339Nano, r.At); err != nil {
		t.Errorf("at %q: %v", r.At, err)
	}
	c.close()

	// A client that saw seq 9 reconnects: 10..13 from the journal, then live.
	c = f.stream("", "Last-Event-ID", "9")
	for want := uint64(10); want <= 13; want++ {
		if id, _ := c.nextEvent(); id != want {
			t.Fatalf("resume: got seq %d, want %d", id, want)
		}
	}
	f.append(failEnv(p1, "a", pb.FailureClass_FAILURE_CLASS_REFUSED))
	if id, r := c.nextEvent(); id != 14 || r.ErrorClass != "refused" {
		t.Errorf("live after resume: %d %+v", id, r)
	}
	// The query parameter works like the header (for clients that cannot
	// set headers).
	c2 := f.stream("?last_event_id=13")
	if id, _ := c2.nextEvent(); id != 14 {
		t.Errorf("?last_event_id=13 gave %d first", id)
	}
}

func TestEventsFilter(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	f.seedPool()
	c := f.stream("?type=state_changed&source=a", "Last-Event-ID", "0")
	var got []uint64
	for range 3 {
		id, r := c.nextEvent()
		if r.Type != "state_changed" || r.Source != "a" {
			t.Errorf("filtered stream sent %+v", r)
		}
		got = append(got, id)
	}
	if got[0] != 3 || got[1] != 6 || got[2] != 8 {
		t.Errorf("state changes of source a at seqs %v, want [3 6 8]", got)
	}
	c3 := f.stream("?proxy="+p3, "Last-Event-ID", "0")
	if _, r := c3.nextEvent(); r.ProxyID != p3 || r.Type != "proxy_added" {
		t.Errorf("proxy filter: %+v", r)
	}
	for _, q := range []string{"?type=bogus", "?last_event_id=x"} {
		code, body := f.do("GET", "/v1/events"+q, "")
		wantError(t, q, code, body, http.StatusBadRequest, strings.TrimPrefix(strings.Split(q, "=")[0], "?"))
	}
	code, body := f.do("GET", "/v1/events", "", "Last-Event-ID", "-1")
	wantError(t, "negative Last-Event-ID", code, body, http.StatusBadRequest, "Last-Event-ID")
}

func TestEventsHeartbeatAndClose(t *testing.T) {
	f := newFixture(t, httpapi.Options{Heartbeat: 20 * time.Millisecond})
	c := f.stream("")
	c.next() // greeting
	if m := c.next(); m.comment != ": heartbeat" {
		t.Errorf("idle stream sent %+v, want a heartbeat", m)
	}
	// Close ends open streams (so that http.Server.Shutdown can finish).
	f.srv.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := c.r.ReadString('\n'); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("stream still open after Server.Close")
		}
	}
}

func TestEventsRetentionGap(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	f.seedPool()
	for _, id := range []string{p1, p2, p3} {
		snap := &pb.ProxySnapshot{ProxyId: id, StreamSeq: f.j.StreamHead(id)}
		if err := f.j.SaveSnapshot(context.Background(), snap); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.j.Retain(context.Background(), t0.Add(5*time.Second+time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	first := f.j.First()
	if first != 6 {
		t.Fatalf("retention left first = %d, want 6 (events 1-5 are older than the cutoff)", first)
	}
	c := f.stream("", "Last-Event-ID", "0")
	m := c.next()
	if !strings.Contains(m.comment, "deleted by journal retention") {
		t.Errorf("no retention notice in %+v", m)
	}
	if id, _ := c.nextEvent(); id != first {
		t.Errorf("first event %d, want %d", id, first)
	}
}
