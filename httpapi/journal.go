package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/proxyhealth/proxyhealth"
)

// GET /v1/journal paging.
const (
	// DefaultJournalLimit is the page size of GET /v1/journal without
	// ?limit=.
	DefaultJournalLimit = 1000
	// MaxJournalLimit is the largest accepted ?limit= of GET /v1/journal.
	MaxJournalLimit = 10000
	// JournalContentType is the media type of GET /v1/journal: JSON lines,
	// one event a line.
	JournalContentType = "application/x-ndjson"
	// NextAfterTrailer is the HTTP trailer of a full GET /v1/journal page:
	// the after= of the next page.
	NextAfterTrailer = "X-Next-After"
)

// journalFlushEvery is how many lines GET /v1/journal writes between
// flushes, so a client sees a long page arrive and the server holds at
// most this many encoded events.
const journalFlushEvery = 256

// parseTime reads the time parameter name (proxyhealth.ParseTime, as the
// CLI's --since and --until); the error names the parameter.
func parseTime(name, s string, now time.Time) (time.Time, error) {
	t, err := proxyhealth.ParseTime(s, now)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), proxyhealth.ErrBadConfig.Error()+": ")
		return t, fmt.Errorf("%s=%s", name, strings.Replace(msg, strconv.Quote(s), strconv.Quote(limit(s)), 1))
	}
	return t, nil
}

// journalFilter reads the query of GET /v1/journal.
func (s *Server) journalFilter(q url.Values) (proxyhealth.JournalFilter, error) {
	f := proxyhealth.JournalFilter{Proxy: q.Get("proxy"), Source: q.Get("source"), Limit: DefaultJournalLimit}
	if t := q.Get("type"); t != "" {
		for name := range strings.SplitSeq(t, ",") {
			if name = strings.TrimSpace(name); name != "" {
				f.Types = append(f.Types, name)
			}
		}
	}
	now := s.opts.Now()
	var err error
	if v := q.Get("since"); v != "" {
		if f.Since, err = parseTime("since", v, now); err != nil {
			return f, err
		}
	}
	if v := q.Get("until"); v != "" {
		if f.Until, err = parseTime("until", v, now); err != nil {
			return f, err
		}
	}
	if v := q.Get("after"); v != "" {
		if f.After, err = strconv.ParseUint(v, 10, 64); err != nil {
			return f, fmt.Errorf("after=%q: want the seq of the last event of the previous page (an unsigned integer)", limit(v))
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxJournalLimit {
			return f, fmt.Errorf("limit=%q: want an integer from 1 to %d; page with after=", limit(v), MaxJournalLimit)
		}
		f.Limit = n
	}
	if err := f.Validate(); err != nil {
		return f, err
	}
	return f, nil
}

// journal streams the selected journal events as JSON lines, one page.
// Memory is bounded by the flush interval, not the page size: events are
// encoded as the engine yields them and flushed every journalFlushEvery
// lines.
func (s *Server) journal(w http.ResponseWriter, r *http.Request) {
	f, err := s.journalFilter(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	// Server.Close ends a long read too (http.Server.Shutdown waits for it).
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(s.ctx, cancel)()
	rc := http.NewResponseController(w)
	bw := bufio.NewWriterSize(deadlineWriter{w, rc}, 32<<10)
	enc := json.NewEncoder(bw)
	started := false
	start := func() {
		started = true
		h := w.Header()
		h.Set("Content-Type", JournalContentType)
		h.Set("Cache-Control", "no-store")
		h.Set("Trailer", NextAfterTrailer)
		w.WriteHeader(http.StatusOK)
	}
	flush := func() bool {
		err := bw.Flush()
		_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
		if err == nil {
			err = rc.Flush()
		}
		return err == nil
	}
	var (
		n       int
		last    uint64
		readErr error
	)
	for env, err := range s.eng.ReadJournal(ctx, f) {
		if err != nil {
			readErr = err
			break
		}
		if !started {
			start()
		}
		if enc.Encode(proxyhealth.RecordOf(env)) != nil {
			return // the client is gone
		}
		n++
		last = env.GetSeq()
		if n%journalFlushEvery == 0 && !flush() {
			return
		}
	}
	if readErr == nil && ctx.Err() != nil {
		readErr = ctx.Err() // an iterator that stopped without saying why
	}
	if readErr != nil {
		if !started {
			s.engineError(w, r, readErr, commandTarget{check: "GET /healthz"})
			return
		}
		// The status line is sent: end the response without its final
		// chunk, so the client sees a broken page rather than a short one
		// it could take for the end of the journal.
		_ = bw.Flush()
		_ = rc.Flush()
		s.log.Error("GET /v1/journal: reading the journal failed after the response started; the response is cut off", slog.Any("error", readErr))
		panic(http.ErrAbortHandler)
	}
	if !started {
		start()
	}
	if !flush() {
		return
	}
	if n == f.Limit {
		w.Header().Set(NextAfterTrailer, strconv.FormatUint(last, 10))
	}
}

// deadlineWriter gives every write to the client sseWriteTimeout, so a
// client that stopped reading does not hold its handler forever, and a
// slow read of the journal between writes does not count against it.
type deadlineWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (d deadlineWriter) Write(p []byte) (int, error) {
	_ = d.rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
	return d.w.Write(p)
}
