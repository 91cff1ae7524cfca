package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/proxyhealth/proxyhealth"
)

const explainUsage = `Usage: proxyhealth journal explain PROXY [--data DIR] [--format text|json]
       proxyhealth journal explain PROXY --server URL [--token TOKEN] [--format text|json]
       proxyhealth journal explain PROXY --data DIR1 --data DIR2 ... --server URL ... [--format text|json]

Tells one proxy's story from the journal in plain sentences: when it was
added and healthy, which checks failed and how (runs of alike checks told
once), when it went unhealthy, each recovery attempt and its cooldown,
when real traffic ejected it and until when traffic avoided it, and what
operators did (pause, resume, revive, remove). PROXY is the proxy's ID or
its URL (credentials in it are ignored). Times are UTC.

The journal is read from the data directory (read-only; a running daemon
locks it) or, with --server, from the daemon's GET /v1/journal.

Several --data and --server (a cluster's members) tell one story: the
proxy's events in every member's journal merged by time, so a proxy that
moved from one owner to another reads as one story. Each sentence names
the member whose journal holds it, and the seq is that journal's. A
member that cannot be read fails the whole story (nothing is told).`

const explainExamples = `  proxyhealth journal explain socks5://10.0.0.7:1080 --data ./proxyhealth-data
  proxyhealth journal explain 5d1e7b0c9a2f4e61 --server http://127.0.0.1:9480
  proxyhealth journal explain 5d1e7b0c9a2f4e61 --data ./proxyhealth-data --format json
  proxyhealth journal explain 5d1e7b0c9a2f4e61 --server http://10.0.0.2:9480 --server http://10.0.0.3:9480`

// storyJSON is journal explain --format json.
type storyJSON struct {
	ProxyID   string          `json:"proxy_id"`
	URL       string          `json:"url,omitempty"` // without credentials
	Source    string          `json:"source,omitempty"`
	State     string          `json:"state,omitempty"`
	Since     *time.Time      `json:"since,omitempty"`
	Paused    bool            `json:"paused"`
	Ejected   bool            `json:"ejected"`
	Removed   bool            `json:"removed"`
	Events    int             `json:"events"`
	FirstSeq  uint64          `json:"first_seq"`
	LastSeq   uint64          `json:"last_seq"`
	Truncated bool            `json:"truncated"`
	Lines     []storyLineJSON `json:"lines"`
}

type storyLineJSON struct {
	At   time.Time `json:"at"`
	Seq  uint64    `json:"seq"`
	Text string    `json:"text"`
}

func journalExplain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("journal explain", explainUsage, explainExamples, stdout, stderr)
	jf := addJournalFlags(fs)
	format := newChoice("text", "text", "json")
	fs.Var(format, "format", "output `FORMAT`: text or json")
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	switch {
	case len(pos) == 0:
		return fs.fail("name the proxy to explain: its ID or URL")
	case len(pos) > 1:
		return fs.fail("unexpected argument %q: explain tells one proxy's story", short(pos[1]))
	}
	id, err := proxyhealth.ResolveProxyID(pos[0])
	if err != nil {
		return fs.fail("PROXY: %s", strings.TrimPrefix(err.Error(), "probe: "))
	}
	srcs, err := jf.sources()
	if err != nil {
		return fs.fail("%v", err)
	}
	if len(srcs) > 1 {
		return explainMerged(ctx, jf, srcs, id, format.value == "json", stdout, stderr)
	}
	src, server := srcs[0], srcs[0].server

	var story proxyhealth.Story
	where := ""
	if server != nil {
		where = server.JoinPath("/v1/journal").String()
		story, err = proxyhealth.ExplainRecords(serverJournal(ctx, server, *jf.token, proxyhealth.JournalFilter{Proxy: id}, false))
	} else {
		a, ok := openArchiveFor(ctx, "proxyhealth journal explain", src.dir, stderr)
		if !ok {
			return exitFailure
		}
		defer a.Close()
		where = a.Path()
		story, err = a.Explain(ctx, id)
	}
	switch {
	case errors.Is(err, proxyhealth.ErrUnknownProxy):
		fmt.Fprintf(stderr, "proxyhealth journal explain: %s holds no event of proxy %s: check the ID or URL ('proxyhealth status' lists the proxies)\n", where, id)
		return exitFailure
	case err != nil:
		fmt.Fprintf(stderr, "proxyhealth journal explain: %v\n", err)
		return exitFailure
	}

	if format.value == "json" {
		out := storyJSON{
			ProxyID: story.ProxyID, URL: story.URL, Source: story.Source, State: story.State,
			Paused: story.Paused, Ejected: story.Ejected, Removed: story.Removed,
			Events: story.Events, FirstSeq: story.FirstSeq, LastSeq: story.LastSeq, Truncated: story.Truncated,
			Lines: make([]storyLineJSON, 0, len(story.Lines)),
		}
		if !story.Since.IsZero() {
			since := story.Since.UTC()
			out.Since = &since
		}
		for _, l := range story.Lines {
			out.Lines = append(out.Lines, storyLineJSON{At: l.At.UTC(), Seq: l.Seq, Text: l.Text})
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return exitFailure
		}
		return exitOK
	}
	if _, err := io.WriteString(stdout, story.String()); err != nil {
		return exitFailure
	}
	return exitOK
}

// memberStoryJSON is journal explain --format json over several members'
// journals: storyJSON without first_seq and last_seq (the seqs of two
// journals do not compare), with the members and each line's member.
type memberStoryJSON struct {
	ProxyID   string           `json:"proxy_id"`
	URL       string           `json:"url,omitempty"` // without credentials
	Source    string           `json:"source,omitempty"`
	State     string           `json:"state,omitempty"`
	Since     *time.Time       `json:"since,omitempty"`
	Paused    bool             `json:"paused"`
	Ejected   bool             `json:"ejected"`
	Removed   bool             `json:"removed"`
	Events    int              `json:"events"`
	Truncated bool             `json:"truncated"`
	Members   []memberSpanJSON `json:"members"`
	Lines     []memberLineJSON `json:"lines"`
}

type memberSpanJSON struct {
	Member    string `json:"member"`
	Events    int    `json:"events"`
	FirstSeq  uint64 `json:"first_seq"`
	LastSeq   uint64 `json:"last_seq"`
	Truncated bool   `json:"truncated"`
}

type memberLineJSON struct {
	At     time.Time `json:"at"`
	Member string    `json:"member"`
	Seq    uint64    `json:"seq"` // in the member's journal
	Text   string    `json:"text"`
}

// explainMerged tells one proxy's story from several members' journals,
// merged by time (proxyhealth.ExplainMembers). Any member's error ends it
// with nothing printed: a story without a member's part would tell the
// wrong end.
func explainMerged(ctx context.Context, jf journalFlags, srcs []journalSource, id string, asJSON bool, stdout, stderr io.Writer) int {
	story, err := proxyhealth.ExplainMembers(ctx, id, jf.members(ctx, srcs, proxyhealth.JournalFilter{Proxy: id}))
	if err != nil {
		fmt.Fprintf(stderr, "proxyhealth journal explain: %v\n", err)
		if errors.Is(err, proxyhealth.ErrMemberJournal) {
			fmt.Fprintln(stderr, "Nothing was told: a story across members needs every member's journal; leave out the members that cannot be read.")
		}
		return exitFailure
	}
	if !asJSON {
		if _, err := io.WriteString(stdout, story.String()); err != nil {
			return exitFailure
		}
		return exitOK
	}
	out := memberStoryJSON{
		ProxyID: story.ProxyID, URL: story.URL, Source: story.Source, State: story.State,
		Paused: story.Paused, Ejected: story.Ejected, Removed: story.Removed,
		Events: story.Events, Truncated: story.Truncated,
		Members: make([]memberSpanJSON, 0, len(story.Members)),
		Lines:   make([]memberLineJSON, 0, len(story.Lines)),
	}
	if !story.Since.IsZero() {
		since := story.Since.UTC()
		out.Since = &since
	}
	for _, m := range story.Members {
		out.Members = append(out.Members, memberSpanJSON{Member: m.Member, Events: m.Events, FirstSeq: m.FirstSeq, LastSeq: m.LastSeq, Truncated: m.Truncated})
	}
	for i, l := range story.Lines {
		out.Lines = append(out.Lines, memberLineJSON{At: l.At.UTC(), Member: story.LineMembers[i], Seq: l.Seq, Text: l.Text})
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return exitFailure
	}
	return exitOK
}
