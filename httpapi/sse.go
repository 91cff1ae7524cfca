package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/proxyhealth/proxyhealth"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// sseWriteTimeout bounds one write to an event-stream client, so that a
// client that stopped reading does not hold its handler forever.
const sseWriteTimeout = 30 * time.Second

// sseBatch is how many events are read from the journal per write.
const sseBatch = 256

// notificationTypes are the notification names /v1/events sends as SSE
// event names (see proxyhealth.Notification).
var notificationTypes = []string{
	proxyhealth.NotifyProxyDown, proxyhealth.NotifyProxyRecovered,
	proxyhealth.NotifyPoolDegraded, proxyhealth.NotifyPoolRecovered,
}

// maxPendingNotifications bounds the notifications an event stream holds
// until it has read the journal event that caused them.
const maxPendingNotifications = 256

// eventFilter selects the events a stream sends.
type eventFilter struct {
	types  []string
	source string
	proxy  string
	// notify are the notification types sent (none when empty).
	notify []string
}

func (f eventFilter) match(env *pb.Envelope) bool {
	if len(f.types) > 0 && !slices.Contains(f.types, proxyhealth.EventType(env)) {
		return false
	}
	if f.source != "" && env.GetSource() != f.source {
		return false
	}
	return f.proxy == "" || env.GetProxyId() == f.proxy
}

// matchNote applies the source and proxy filters (pool notifications have
// neither, like pool events) and ?notify= to a notification.
func (f eventFilter) matchNote(n proxyhealth.Notification) bool {
	if !slices.Contains(f.notify, n.Type) {
		return false
	}
	if f.source != "" && n.Source != f.source {
		return false
	}
	return f.proxy == "" || n.ProxyID == f.proxy
}

// parseEventQuery reads Last-Event-ID (header or ?last_event_id=) and the
// filters.
func parseEventQuery(r *http.Request, head uint64) (from uint64, f eventFilter, err error) {
	from = head + 1
	last, what := r.Header.Get("Last-Event-ID"), "Last-Event-ID"
	if q := r.URL.Query().Get("last_event_id"); q != "" {
		last, what = q, "last_event_id"
	}
	if last != "" {
		n, perr := strconv.ParseUint(strings.TrimSpace(last), 10, 64)
		if perr != nil {
			return 0, f, fmt.Errorf("%s %q: want the seq of the last event received (an unsigned integer)", what, limit(last))
		}
		from = n + 1
	}
	q := r.URL.Query()
	if t := q.Get("type"); t != "" {
		for name := range strings.SplitSeq(t, ",") {
			name = strings.TrimSpace(name)
			if !slices.Contains(proxyhealth.EventTypes, name) {
				return 0, f, fmt.Errorf("type=%q is not an event type; use %s", limit(name), strings.Join(proxyhealth.EventTypes, ", "))
			}
			f.types = append(f.types, name)
		}
	}
	f.notify = notificationTypes
	if n, ok := q["notify"]; ok {
		f.notify = nil
		for name := range strings.SplitSeq(n[0], ",") {
			switch name = strings.TrimSpace(name); {
			case name == "none" || name == "":
			case slices.Contains(notificationTypes, name):
				f.notify = append(f.notify, name)
			default:
				return 0, f, fmt.Errorf("notify=%q is not a notification; use %s, or none", limit(name), strings.Join(notificationTypes, ", "))
			}
		}
	}
	f.source = q.Get("source")
	if p := q.Get("proxy"); p != "" {
		if f.proxy, err = proxyhealth.ResolveProxyID(p); err != nil {
			return 0, f, fmt.Errorf("proxy: %w", err) // not the raw value: it may hold credentials
		}
	}
	return from, f, nil
}

// batchResult is one read of an event stream's journal tail.
type batchResult struct {
	batch []*pb.Envelope
	err   error
}

// events streams committed journal events, and the notifications derived
// from them, as Server-Sent Events.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	from, filter, err := parseEventQuery(r, s.eng.JournalHead())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()

	// Notifications first: one caused by an event this stream reads is
	// then not missed.
	var notes <-chan proxyhealth.Notification
	if s.notifications != nil && len(filter.notify) > 0 {
		c, unsubscribe := s.notifications()
		defer unsubscribe()
		notes = c
	}

	// Events before from that retention deleted: said in the greeting.
	first := from
	if from <= s.eng.JournalHead() {
		if first, err = journalFirst(ctx, s.eng); err != nil {
			first = from // the tail reports what went wrong
		}
	}
	sub := s.tail(from)
	defer sub.Close()
	// The reader goroutine reads the tail one batch ahead, so the
	// handler can wait for events, notifications and the heartbeat at once.
	batches := make(chan batchResult)
	readerDone := make(chan struct{})
	defer func() { cancel(); <-readerDone }() // before sub.Close
	go func() {
		defer close(readerDone)
		for {
			b, err := sub.NextBatch(ctx, sseBatch)
			select {
			case batches <- batchResult{b, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()

	var buf bytes.Buffer
	buf.WriteString("retry: 2000\n: proxyhealth event stream\n")
	if from < first {
		fmt.Fprintf(&buf, ": events %d to %d were deleted by journal retention; continuing from %d\n", from, first-1, first)
	}
	buf.WriteString("\n")
	if !s.flushSSE(rc, w, &buf) {
		return
	}
	heartbeat := time.NewTimer(s.opts.Heartbeat)
	defer heartbeat.Stop()
	read := from - 1 // the last journal seq this stream has read
	var pending []proxyhealth.Notification
	dropped := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-heartbeat.C:
			buf.WriteString(": heartbeat\n\n")
		case n, ok := <-notes:
			if !ok { // the engine closed
				return
			}
			if n.Seq < from || !filter.matchNote(n) {
				continue
			}
			if len(pending) == maxPendingNotifications {
				pending = pending[1:]
				dropped++
			}
			pending = append(pending, n)
		case res := <-batches:
			switch {
			case res.err == nil:
			case ctx.Err() != nil, errors.Is(res.err, proxyhealth.ErrJournalClosed):
				return
			default:
				s.log.Warn("event stream: reading the journal failed", slog.Any("error", res.err))
				fmt.Fprintf(&buf, "event: error\ndata: %s\n\n", jsonString(res.err.Error()))
				s.flushSSE(rc, w, &buf)
				return
			}
			for _, env := range res.batch {
				read = env.GetSeq()
				if !filter.match(env) {
					continue
				}
				data, err := json.Marshal(proxyhealth.RecordOf(env))
				if err != nil {
					continue
				}
				fmt.Fprintf(&buf, "id: %d\ndata: %s\n\n", env.GetSeq(), data)
			}
		}
		// Notifications follow the event that caused them.
		if dropped > 0 {
			fmt.Fprintf(&buf, ": %d notifications dropped: this stream fell behind\n\n", dropped)
			dropped = 0
		}
		for len(pending) > 0 && pending[0].Seq <= read {
			if data, err := json.Marshal(pending[0]); err == nil {
				fmt.Fprintf(&buf, "event: %s\ndata: %s\n\n", pending[0].Type, data)
			}
			pending = pending[1:]
		}
		if buf.Len() > 0 {
			if !s.flushSSE(rc, w, &buf) {
				return
			}
			heartbeat.Reset(s.opts.Heartbeat)
		}
	}
}

// flushSSE writes and flushes buf (then resets it); false when the client
// is gone.
func (s *Server) flushSSE(rc *http.ResponseController, w http.ResponseWriter, buf *bytes.Buffer) bool {
	_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
	_, err := w.Write(buf.Bytes())
	buf.Reset()
	if err == nil {
		err = rc.Flush()
	}
	return err == nil
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
