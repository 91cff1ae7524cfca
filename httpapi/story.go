package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/proxyhealth/proxyhealth"
)

// DefaultStoryLines is how many sentences GET /v1/proxies/{id}/story
// returns without ?limit= (the newest); MaxStoryLines the largest limit.
const (
	DefaultStoryLines = 200
	MaxStoryLines     = 10000
)

// Story is the body of GET /v1/proxies/{id}/story: the proxy's history in
// plain sentences (proxyhealth.Explain over its journal stream).
type Story struct {
	ID     string `json:"id"`
	URL    string `json:"url"` // never with credentials
	Source string `json:"source"`
	// State is the proxy's state after its last event, Since when it
	// entered it (null when the events read do not say); Now says both
	// (and the flags) in a few words.
	State string     `json:"state"`
	Since *time.Time `json:"since"`
	Now   string     `json:"now"`
	// Paused, Ejected and Removed are its flags after the last event.
	Paused  bool `json:"paused"`
	Ejected bool `json:"ejected"`
	Removed bool `json:"removed"`
	// Events is the number of the proxy's events told, FirstSeq and
	// LastSeq their first and last seq; Truncated is true when retention
	// deleted the proxy's older events.
	Events    int    `json:"events"`
	FirstSeq  uint64 `json:"first_seq"`
	LastSeq   uint64 `json:"last_seq"`
	Truncated bool   `json:"truncated"`
	// LinesTotal is the number of sentences of the whole story; Lines the
	// newest ?limit= of them (default 200), oldest first.
	LinesTotal int         `json:"lines_total"`
	Lines      []StoryLine `json:"lines"`
}

// StoryLine is one sentence of a Story; Seq is the journal seq of the
// event it starts at (GET /v1/journal?after=Seq-1&limit=1 shows it).
type StoryLine struct {
	At   time.Time `json:"at"`
	Seq  uint64    `json:"seq"`
	Text string    `json:"text"`
}

// story serves GET /v1/proxies/{id}/story.
func (s *Server) story(w http.ResponseWriter, r *http.Request) {
	id, ok := proxyID(w, r)
	if !ok {
		return
	}
	n, ok := intParam(w, r.URL.Query().Get("limit"), "limit", DefaultStoryLines, 1, MaxStoryLines)
	if !ok {
		return
	}
	st, err := proxyhealth.Explain(s.eng.ReadJournal(r.Context(), proxyhealth.JournalFilter{Proxy: id}))
	if errors.Is(err, proxyhealth.ErrUnknownProxy) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no proxy %q: the journal holds no event of it; list the proxies with GET /v1/proxies%s", id, s.elsewhereHint()))
		return
	}
	if err != nil {
		s.engineError(w, r, err, proxyCheck(id))
		return
	}
	out := Story{ID: id, URL: st.URL, Source: st.Source, State: st.State, Since: timePtr(st.Since), Now: st.Now(),
		Paused: st.Paused, Ejected: st.Ejected, Removed: st.Removed, Events: st.Events, FirstSeq: st.FirstSeq, LastSeq: st.LastSeq,
		Truncated: st.Truncated, LinesTotal: len(st.Lines), Lines: []StoryLine{}}
	lines := st.Lines
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for _, l := range lines {
		out.Lines = append(out.Lines, StoryLine{At: l.At.UTC(), Seq: l.Seq, Text: l.Text})
	}
	writeJSON(w, http.StatusOK, out)
}
