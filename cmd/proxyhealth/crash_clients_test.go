package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
)

// The clients of the kill -9 test (TestKillNineRounds): event-stream
// readers that record every event they were sent, and API writers that
// record every write and its answer.

// sseEvent is one event an event-stream client received: its id (the
// journal seq) and its data line (the record's JSON).
type sseEvent struct {
	seq  uint64
	data string
}

// sseNote is one notification an event-stream client received.
type sseNote struct {
	typ  string
	data string
}

// sseClient reads GET /v1/events until its connection ends and records
// every complete event (one ended by its blank line).
type sseClient struct {
	name   string
	lastID uint64 // the Last-Event-ID it connected with (0: none)
	done   chan struct{}

	mu     sync.Mutex
	events []sseEvent
	notes  []sseNote
	err    error // why the stream ended
}

// startSSE connects an event-stream client and returns once the daemon
// answered 200; the client then reads in its own goroutine until ctx ends
// or the connection does.
func startSSE(ctx context.Context, hc *http.Client, base, name string, lastID uint64) (*sseClient, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/events", nil)
	if err != nil {
		return nil, err
	}
	if lastID > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(lastID, 10))
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("event stream %s: %w", name, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("event stream %s: %s", name, resp.Status)
	}
	c := &sseClient{name: name, lastID: lastID, done: make(chan struct{})}
	go c.read(resp.Body)
	return c, nil
}

func (c *sseClient) read(body io.ReadCloser) {
	defer close(c.done)
	defer body.Close()
	r := bufio.NewReaderSize(body, 64<<10)
	var id, event, data string
	hasID := false
	for {
		line, err := r.ReadString('\n')
		if err != nil { // a partial line at the end is no event
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			c.mu.Lock()
			switch {
			case event != "":
				c.notes = append(c.notes, sseNote{typ: event, data: data})
			case hasID:
				seq, perr := strconv.ParseUint(id, 10, 64)
				if perr != nil && c.err == nil {
					c.err = fmt.Errorf("event id %q: %w", id, perr)
				}
				c.events = append(c.events, sseEvent{seq: seq, data: data})
			}
			c.mu.Unlock()
			id, event, data, hasID = "", "", "", false
		case strings.HasPrefix(line, ":"), strings.HasPrefix(line, "retry:"):
		case strings.HasPrefix(line, "id: "):
			id, hasID = strings.TrimPrefix(line, "id: "), true
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		}
	}
}

// seen returns what the client received.
func (c *sseClient) seen() ([]sseEvent, []sseNote) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]sseEvent(nil), c.events...), append([]sseNote(nil), c.notes...)
}

// count returns how many events the client received (0 for none).
func (c *sseClient) count() int {
	if c == nil {
		return 0
	}
	evs, _ := c.seen()
	return len(evs)
}

// apiWrite is one API write of a round and its answer.
type apiWrite struct {
	kind   string // pause, resume, add, remove, fail (a failed outcome), ok (a good one)
	proxy  string // the proxy's ID
	status int    // the HTTP status answered; 0: no answer (the daemon died)
}

// answered2xx reports whether the daemon answered the write with success.
func (w apiWrite) answered2xx() bool { return w.status >= 200 && w.status < 300 }

// writeLog collects the writes of a round, in the order each writer sent
// them (each proxy is written by one writer only, so per proxy the order
// is the order of sending).
type writeLog struct {
	mu     sync.Mutex
	writes []apiWrite
}

func (l *writeLog) add(w apiWrite) {
	l.mu.Lock()
	l.writes = append(l.writes, w)
	l.mu.Unlock()
}

func (l *writeLog) all() []apiWrite {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]apiWrite(nil), l.writes...)
}

// send sends one API request and returns the status answered (0 when the
// daemon did not answer). The body is read to its end, so the answer is
// whole.
func send(ctx context.Context, hc *http.Client, method, url string, body any) int {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			panic(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		panic(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		// The status line came: the daemon decided and answered.
		return resp.StatusCode
	}
	return resp.StatusCode
}

// writers are the API writers of one round. Each owns a set of proxies
// and knows their state at the round's start (from the journal); after a
// write it cannot be sure of (no answer, not 2xx), it leaves that proxy
// alone for the rest of the round.
type writers struct {
	hc   *http.Client
	base string
	farm *fakeproxy.Farm
	log  *writeLog
}

// pace waits between two writes of one writer: the scenario's schedule.
func pace(ctx context.Context, r *rand.Rand) bool {
	t := time.NewTimer(time.Duration(2+r.IntN(12)) * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// pauser toggles the pause of its proxies (IDs → paused at the start).
func (w *writers) pauser(ctx context.Context, r *rand.Rand, paused map[string]bool) {
	ids := sortedKeys(paused)
	uncertain := map[string]bool{}
	for pace(ctx, r) {
		id := ids[r.IntN(len(ids))]
		if uncertain[id] {
			continue
		}
		kind := "pause"
		if paused[id] {
			kind = "resume"
		}
		st := send(ctx, w.hc, http.MethodPost, w.base+"/v1/proxies/"+id+"/"+kind, nil)
		wr := apiWrite{kind: kind, proxy: id, status: st}
		w.log.add(wr)
		if !wr.answered2xx() {
			uncertain[id] = true
			continue
		}
		paused[id] = !paused[id]
	}
}

// adder adds and removes run-time proxies (farm index → monitored at the
// start).
func (w *writers) adder(ctx context.Context, r *rand.Rand, present map[int]bool) {
	idx := make([]int, 0, len(present))
	for i := range present {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	uncertain := map[int]bool{}
	for pace(ctx, r) {
		i := idx[r.IntN(len(idx))]
		if uncertain[i] {
			continue
		}
		u := w.farm.URL(i)
		var wr apiWrite
		if present[i] {
			wr = apiWrite{kind: "remove", proxy: id(u)}
			wr.status = send(ctx, w.hc, http.MethodDelete, w.base+"/v1/proxies/"+wr.proxy, nil)
		} else {
			wr = apiWrite{kind: "add", proxy: id(u)}
			wr.status = send(ctx, w.hc, http.MethodPost, w.base+"/v1/proxies", map[string]string{"url": u})
		}
		w.log.add(wr)
		if !wr.answered2xx() {
			uncertain[i] = true
			continue
		}
		present[i] = !present[i]
	}
}

// reporter reports outcomes of real traffic for its proxies: mostly
// failures (a streak of three ejects the proxy and re-probes it).
func (w *writers) reporter(ctx context.Context, r *rand.Rand, ids []string) {
	for pace(ctx, r) {
		id := ids[r.IntN(len(ids))]
		wr := apiWrite{kind: "fail", proxy: id}
		body := map[string]any{"ok": false, "error_class": "timeout", "latency_ms": 12.5}
		if r.IntN(10) < 3 {
			wr.kind, body = "ok", map[string]any{"ok": true, "latency_ms": 3}
		}
		wr.status = send(ctx, w.hc, http.MethodPost, w.base+"/v1/proxies/"+id+"/outcome", body)
		w.log.add(wr)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
