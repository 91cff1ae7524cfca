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

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/journal"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// sseWriteTimeout bounds one write to an event-stream client, so that a
// client that stopped reading does not hold its handler forever.
const sseWriteTimeout = 30 * time.Second

// sseBatch is how many events are read from the journal per write.
const sseBatch = 256

// eventFilter selects the events a stream sends.
type eventFilter struct {
	types  []string
	source string
	proxy  string
}

func (f eventFilter) match(env *pb.Envelope) bool {
	if len(f.types) > 0 && !slices.Contains(f.types, events.TypeName(env)) {
		return false
	}
	if f.source != "" && env.GetSource() != f.source {
		return false
	}
	return f.proxy == "" || env.GetProxyId() == f.proxy
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
			return 0, f, fmt.Errorf("%s %q: want the seq of the last event received (an unsigned integer)", what, last)
		}
		from = n + 1
	}
	q := r.URL.Query()
	if t := q.Get("type"); t != "" {
		for name := range strings.SplitSeq(t, ",") {
			name = strings.TrimSpace(name)
			if !slices.Contains(events.TypeNames, name) {
				return 0, f, fmt.Errorf("type=%q is not an event type; use %s", name, strings.Join(events.TypeNames, ", "))
			}
			f.types = append(f.types, name)
		}
	}
	f.source = q.Get("source")
	if p := q.Get("proxy"); p != "" {
		f.proxy = resolveID(p)
	}
	return from, f, nil
}

// events streams committed journal events as Server-Sent Events.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	j := s.eng.Journal()
	from, filter, err := parseEventQuery(r, j.Head())
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

	sub := j.Subscribe(from)
	defer sub.Close()

	var buf bytes.Buffer
	buf.WriteString("retry: 2000\n: proxyhealth event stream\n")
	if first := j.First(); from < first {
		fmt.Fprintf(&buf, ": events %d to %d were deleted by journal retention; continuing from %d\n", from, first-1, first)
	}
	buf.WriteString("\n")
	if !s.flushSSE(rc, w, &buf) {
		return
	}
	for {
		wait, cancelWait := context.WithTimeout(ctx, s.opts.Heartbeat)
		batch, err := sub.NextBatch(wait, sseBatch)
		cancelWait()
		switch {
		case err == nil:
		case ctx.Err() != nil, errors.Is(err, journal.ErrClosed):
			return
		case errors.Is(err, context.DeadlineExceeded):
			buf.WriteString(": heartbeat\n\n")
			if !s.flushSSE(rc, w, &buf) {
				return
			}
			continue
		default:
			s.log.Warn("event stream: reading the journal failed", slog.Any("error", err))
			fmt.Fprintf(&buf, "event: error\ndata: %s\n\n", jsonString(err.Error()))
			s.flushSSE(rc, w, &buf)
			return
		}
		for _, env := range batch {
			if !filter.match(env) {
				continue
			}
			data, err := json.Marshal(events.RecordOf(env))
			if err != nil {
				continue
			}
			fmt.Fprintf(&buf, "id: %d\ndata: %s\n\n", env.GetSeq(), data)
		}
		if buf.Len() > 0 && !s.flushSSE(rc, w, &buf) {
			return
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
