package proxyhealth

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"time"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// ErrNotOneProxy is returned by Explain when the events it is given belong
// to more than one proxy: a story is one proxy's. Read them with
// JournalFilter{Proxy: id}.
var ErrNotOneProxy = errors.New("proxyhealth: events of more than one proxy")

// Story is one proxy's history told in plain sentences: a fold of its
// journal events (Explain). Runs of alike events are told once ("12
// checks passed between 10:00:00 and 10:06:00, latency 40–55 ms"), and
// every sentence keeps the seq of the event it starts at, so it can be
// looked up with `proxyhealth journal replay`. Pool-level events are not
// part of a proxy's story. A story carries no credentials: the journal has
// none and its URLs are redacted.
type Story struct {
	// ProxyID is the proxy's ID.
	ProxyID string
	// URL is the proxy's URL without credentials, from its latest
	// proxy_added event ("" when the history read starts after it).
	URL string
	// Source is the source the proxy belongs to.
	Source string
	// State is the proxy's health state after the last event ("unknown",
	// "healthy", …, the names of StateName).
	State string
	// Since is when the proxy entered State (zero if the events read do
	// not say).
	Since time.Time
	// Paused, Ejected and Removed are the proxy's flags after the last
	// event.
	Paused, Ejected, Removed bool
	// Events is the number of the proxy's events read; FirstSeq and
	// LastSeq are the seqs of the first and the last.
	Events            int
	FirstSeq, LastSeq uint64
	// Truncated is true when the history read does not start at the
	// proxy's first event (retention deleted the older ones).
	Truncated bool
	// Lines are the sentences, in journal order.
	Lines []StoryLine
}

// StoryLine is one sentence of a Story.
type StoryLine struct {
	// At is when the first event the sentence tells happened.
	At time.Time
	// Seq is that event's global journal seq.
	Seq uint64
	// Text is the sentence. Times in it are UTC.
	Text string
}

// writeHeader writes the story's first line: the proxy, its URL and
// source, and its state after the last event.
func (s Story) writeHeader(b *strings.Builder) {
	fmt.Fprintf(b, "proxy %s", s.ProxyID)
	if s.URL != "" {
		fmt.Fprintf(b, " %s", s.URL)
	}
	if s.Source != "" {
		fmt.Fprintf(b, " (source %q)", s.Source)
	}
	b.WriteString(": ")
	b.WriteString(s.Now())
	b.WriteByte('\n')
}

// lineTime is the layout of a line's time in Story.String.
const lineTime = "2006-01-02T15:04:05Z"

// String renders the story: a header naming the proxy and its state after
// the last event, then one sentence a line, each after its UTC time. The
// output depends on the events only (no local time zone, no clock).
func (s Story) String() string {
	var b strings.Builder
	s.writeHeader(&b)
	for _, l := range s.Lines {
		fmt.Fprintf(&b, "%s  %s\n", l.At.UTC().Format(lineTime), l.Text)
	}
	return b.String()
}

// Now says in a few words where the story ends: the state, since when,
// and the flags ("unhealthy since 2026-01-01T10:06:12Z, paused").
func (s Story) Now() string {
	var b strings.Builder
	if s.Removed {
		b.WriteString("removed; it was ")
	}
	state := s.State
	if state == "" {
		state = "state unknown"
	}
	b.WriteString(state)
	if !s.Since.IsZero() {
		b.WriteString(" since ")
		b.WriteString(s.Since.UTC().Format(lineTime))
	}
	if s.Ejected {
		b.WriteString(", ejected from rotation")
	}
	if s.Paused {
		b.WriteString(", paused")
	}
	return b.String()
}

// Explain tells the story of one proxy from its journal events, in seq
// order: what ReadJournal yields for JournalFilter{Proxy: id}. Pool-level
// events are skipped; events of a second proxy give an error wrapping
// ErrNotOneProxy; no event of a proxy at all gives one wrapping
// ErrUnknownProxy. It holds one event at a time (and a few words per
// sentence), so a long history costs time, not memory. A read error ends
// it with that error.
func Explain(events iter.Seq2[*pb.Envelope, error]) (Story, error) {
	x := newExplainer()
	for env, err := range events {
		if err != nil {
			return Story{}, fmt.Errorf("proxyhealth: explain: read the journal: %w", err)
		}
		if err := x.add(eventOfEnvelope(env)); err != nil {
			return Story{}, err
		}
	}
	return x.finish()
}

// ExplainRecords is Explain over the flattened records of a journal (what
// GET /v1/journal serves and `journal replay --format json` prints).
// Records do not carry an ejection's planned end or multiplier; the story
// then tells how long the ejection lasted from the proxy's return.
func ExplainRecords(records iter.Seq2[Record, error]) (Story, error) {
	x := newExplainer()
	for r, err := range records {
		if err != nil {
			return Story{}, fmt.Errorf("proxyhealth: explain: read the journal: %w", err)
		}
		ev, err := eventOfRecord(r)
		if err != nil {
			return Story{}, err
		}
		if err := x.add(ev); err != nil {
			return Story{}, err
		}
	}
	return x.finish()
}

// Explain tells the story of a proxy (its ID or URL) from the engine's
// journal: see the package function Explain. An unknown proxy gives an
// error wrapping ErrUnknownProxy.
func (e *Engine) Explain(ctx context.Context, proxy string) (Story, error) {
	return explainIn(ctx, proxy, e.ReadJournal)
}

// Explain tells the story of a proxy (its ID or URL) from the archive's
// journal: see the package function Explain. An unknown proxy gives an
// error wrapping ErrUnknownProxy.
func (a *Archive) Explain(ctx context.Context, proxy string) (Story, error) {
	return explainIn(ctx, proxy, a.ReadJournal)
}

func explainIn(ctx context.Context, proxy string, read func(context.Context, JournalFilter) iter.Seq2[*pb.Envelope, error]) (Story, error) {
	id, err := ResolveProxyID(proxy)
	if err != nil {
		return Story{}, fmt.Errorf("%w: explain: %w", ErrBadConfig, err)
	}
	s, err := Explain(read(ctx, JournalFilter{Proxy: id}))
	if errors.Is(err, ErrUnknownProxy) {
		return Story{}, fmt.Errorf("%w: %s: the journal holds no event of it (list the proxies with `proxyhealth status`)", ErrUnknownProxy, id)
	}
	return s, err
}

// storyEvent is what the story needs of one event, from an envelope or a
// record.
type storyEvent struct {
	seq, streamSeq uint64
	at             time.Time
	proxyID        string
	source         string
	typ            string

	url          string
	hasCreds     bool
	from, to     string
	reason       string
	attempt      uint32
	class        string
	message      string
	status       uint32
	latencyMS    float64
	hasLatency   bool
	consecutive  uint32
	until        time.Time // ejection's planned end (envelopes only)
	multiplier   uint32    // ejection's multiplier (envelopes only)
	hasEjectInfo bool
	fromMember   string // proxy_adopted
}

func eventOfEnvelope(env *pb.Envelope) storyEvent {
	r := RecordOf(env)
	ev := storyEvent{
		seq: r.Seq, streamSeq: r.StreamSeq, at: EventTime(env), proxyID: r.ProxyID, source: r.Source, typ: r.Type,
		url: r.URL, hasCreds: r.HasCredentials, from: r.From, to: r.To, reason: r.Reason, attempt: r.Attempt,
		class: r.ErrorClass, message: r.Message, status: r.StatusCode, consecutive: r.Consecutive, fromMember: r.FromMember,
	}
	if r.LatencyMS != nil {
		ev.latencyMS, ev.hasLatency = *r.LatencyMS, true
	}
	switch e := env.GetEvent().(type) {
	case *pb.Envelope_ProxyEjected:
		p := e.ProxyEjected
		ev.class, ev.consecutive, ev.multiplier = ClassName(p.GetClass()), p.GetConsecutive(), p.GetMultiplier()
		if p.GetUntilUnixNano() != 0 {
			ev.until = time.Unix(0, p.GetUntilUnixNano()).UTC()
		}
		ev.hasEjectInfo = true
	case *pb.Envelope_ProxyReturned:
		ev.reason = e.ProxyReturned.GetReason()
	}
	return ev
}

func eventOfRecord(r Record) (storyEvent, error) {
	at, err := time.Parse(time.RFC3339Nano, r.At)
	if err != nil {
		return storyEvent{}, fmt.Errorf("proxyhealth: explain: event seq %d: time %q is not RFC 3339: %w", r.Seq, r.At, err)
	}
	ev := storyEvent{
		seq: r.Seq, streamSeq: r.StreamSeq, at: at.UTC(), proxyID: r.ProxyID, source: r.Source, typ: r.Type,
		url: r.URL, hasCreds: r.HasCredentials, from: r.From, to: r.To, reason: r.Reason, attempt: r.Attempt,
		class: r.ErrorClass, message: r.Message, status: r.StatusCode, consecutive: r.Consecutive, fromMember: r.FromMember,
	}
	if r.LatencyMS != nil {
		ev.latencyMS, ev.hasLatency = *r.LatencyMS, true
	}
	return ev, nil
}

// classCount counts the failures of one class in a run; message is the
// last one's.
type classCount struct {
	class   string
	message string
	status  uint32
	n       int
}

// failures counts failures by class, in order of first appearance.
type failures []classCount

func (f *failures) add(class, message string, status uint32) {
	for i := range *f {
		if (*f)[i].class == class {
			(*f)[i].n++
			(*f)[i].message, (*f)[i].status = message, status
			return
		}
	}
	*f = append(*f, classCount{class: class, message: message, status: status, n: 1})
}

// String is "refused ×3 (connection refused), timeout (i/o timeout)".
func (f failures) String() string {
	var b strings.Builder
	for i, c := range f {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(orDefault(c.class, "failure"))
		if c.n > 1 {
			fmt.Fprintf(&b, " ×%d", c.n)
		}
		switch {
		case c.message != "":
			fmt.Fprintf(&b, " (%s)", c.message)
		case c.status != 0:
			fmt.Fprintf(&b, " (status %d)", c.status)
		}
	}
	return b.String()
}

// checkRun is a run of checks with one outcome.
type checkRun struct {
	line         int
	ok           bool
	n            int
	first, last  time.Time
	minMS, maxMS float64
	latencies    int
	fails        failures
}

// passiveRun is a run of failures reported by real traffic.
type passiveRun struct {
	line        int
	n           int
	first, last time.Time
	consecutive uint32
	fails       failures
}

// recovery is a recovery attempt under way.
type recovery struct {
	line     int
	attempt  uint32
	head     string // "recovery attempt 2 after a 2m0s cooldown"
	passed   int
	failed   int
	lastFail failures
}

// ejection is the proxy's ejection from rotation under way.
type ejection struct {
	line  int
	text  string
	at    time.Time
	until time.Time
}

type explainer struct {
	s           Story
	streamSeen  bool
	unhealthyAt time.Time
	revived     bool // the last event was proxy_revived
	run         *checkRun
	passive     *passiveRun
	rec         *recovery
	eject       *ejection
}

func newExplainer() *explainer { return &explainer{} }

// line appends a sentence and returns its index.
func (x *explainer) line(ev storyEvent, text string) int {
	x.s.Lines = append(x.s.Lines, StoryLine{At: ev.at, Seq: ev.seq, Text: text})
	return len(x.s.Lines) - 1
}

func (x *explainer) add(ev storyEvent) error {
	if ev.proxyID == "" {
		return nil // pool-level
	}
	if x.s.ProxyID == "" {
		x.s.ProxyID = ev.proxyID
	} else if ev.proxyID != x.s.ProxyID {
		return fmt.Errorf("%w: %s and %s (seq %d): pass one proxy's events (JournalFilter{Proxy: id})", ErrNotOneProxy, x.s.ProxyID, ev.proxyID, ev.seq)
	}
	if x.s.Events == 0 {
		x.s.FirstSeq = ev.seq
		if ev.streamSeq > 1 {
			x.s.Truncated = true
			x.line(ev, fmt.Sprintf("(the journal keeps this proxy's history from its event %d on; retention deleted the older ones)", ev.streamSeq))
		}
	}
	x.s.Events++
	x.s.LastSeq = ev.seq
	if ev.source != "" {
		x.s.Source = ev.source
	}
	revived := x.revived
	x.revived = false

	switch ev.typ {
	case "check_succeeded", "check_failed":
		x.check(ev)
	case "state_changed":
		x.stateChanged(ev, revived)
	case "passive_failure":
		x.closeRun()
		p := x.passive
		if p != nil && ev.consecutive != 0 && ev.consecutive != p.consecutive+1 {
			x.closePassive()
			p = nil
		}
		if p == nil {
			p = &passiveRun{line: x.line(ev, ""), first: ev.at}
			x.passive = p
		}
		p.n++
		p.last = ev.at
		p.consecutive = ev.consecutive
		p.fails.add(ev.class, "", 0)
	case "passive_success":
		x.closeRun()
		streak := uint32(0)
		if x.passive != nil {
			streak = x.passive.consecutive
		}
		x.closePassive()
		if streak > 0 {
			x.line(ev, "real traffic through it succeeded again, ending a streak of "+plural(int(streak), "failure", "failures"))
		} else {
			x.line(ev, "real traffic through it succeeded again, ending a streak of failures")
		}
	case "proxy_ejected":
		x.ejected(ev)
	case "proxy_returned":
		x.closeAll()
		x.returned(ev)
	default:
		x.closeAll()
		x.other(ev)
	}
	return nil
}

func (x *explainer) check(ev storyEvent) {
	ok := ev.typ == "check_succeeded"
	x.closePassive()
	if r := x.rec; r != nil {
		if ok {
			r.passed++
		} else {
			r.failed++
			r.lastFail = failures{{class: ev.class, message: ev.message, status: ev.status, n: 1}}
		}
		return
	}
	r := x.run
	if r != nil && r.ok != ok {
		x.closeRun()
		r = nil
	}
	if r == nil {
		r = &checkRun{line: x.line(ev, ""), ok: ok, first: ev.at}
		x.run = r
	}
	r.n++
	r.last = ev.at
	if ev.hasLatency {
		if r.latencies == 0 || ev.latencyMS < r.minMS {
			r.minMS = ev.latencyMS
		}
		if r.latencies == 0 || ev.latencyMS > r.maxMS {
			r.maxMS = ev.latencyMS
		}
		r.latencies++
	}
	if !ok {
		r.fails.add(ev.class, ev.message, ev.status)
	}
}

func (x *explainer) stateChanged(ev storyEvent, revived bool) {
	x.s.State, x.s.Since = ev.to, ev.at
	if ev.to == "recovering" {
		x.closeAll()
		head := fmt.Sprintf("recovery attempt %d", ev.attempt)
		if !x.unhealthyAt.IsZero() {
			head += " after a " + fmtDuration(ev.at.Sub(x.unhealthyAt)) + " cooldown"
		}
		x.rec = &recovery{line: x.line(ev, head+": under way"), attempt: ev.attempt, head: head}
		return
	}
	if r := x.rec; r != nil && ev.from == "recovering" {
		x.rec = nil
		text := r.head
		switch ev.to {
		case "unhealthy", "failed":
			text += ": failed"
			if r.passed > 0 {
				text += fmt.Sprintf(" after %s passed", plural(r.passed, "check", "checks"))
			}
			if len(r.lastFail) > 0 {
				text += ": " + r.lastFail.String()
			}
		case "healthy":
			text += fmt.Sprintf(": succeeded, healthy again after %s", plural(r.passed, "passed check", "passed checks"))
		case "degraded":
			text += ": it answers again, but degraded (" + ev.reason + ")"
		default:
			text += ": ended, " + ev.to + ": " + ev.reason
		}
		x.s.Lines[r.line].Text = text
		if ev.to == "unhealthy" {
			x.unhealthyAt = ev.at
		}
		if ev.to == "failed" {
			x.line(ev, "gave up: "+ev.reason+"; no more checks until revived")
		}
		return
	}
	switch ev.to {
	case "healthy":
		x.line(ev, "healthy since "+clockAt(ev.at, ev.at)+": "+ev.reason)
	case "degraded":
		x.line(ev, "degraded (still in rotation): "+ev.reason)
	case "unhealthy":
		x.unhealthyAt = ev.at
		if ev.reason != "" && ev.reason[0] >= '0' && ev.reason[0] <= '9' {
			x.line(ev, "went unhealthy (out of rotation) after "+ev.reason)
		} else {
			x.line(ev, "went unhealthy (out of rotation): "+ev.reason)
		}
	case "failed":
		x.line(ev, "gave up: "+ev.reason+"; no more checks until revived")
	case "unknown":
		if revived {
			return // told by the proxy_revived sentence
		}
		x.line(ev, "state unknown: "+ev.reason)
	default:
		x.line(ev, fmt.Sprintf("%s → %s: %s", ev.from, ev.to, ev.reason))
	}
}

func (x *explainer) ejected(ev storyEvent) {
	x.closeRun()
	class, n := ev.class, ev.consecutive
	var what string
	if p := x.passive; p != nil {
		if n == 0 {
			n = p.consecutive
		}
		if class == "" && len(p.fails) > 0 {
			class = p.fails[len(p.fails)-1].class
		}
		if p.line == len(x.s.Lines)-1 && (n == 0 || uint32(p.n) <= n) {
			// The run that tipped it: told by the ejection's sentence.
			x.s.Lines = x.s.Lines[:p.line]
			what = p.fails.String()
			if p.n > 1 {
				what += ", " + span(p.first, p.last)
			}
			x.passive = nil
		}
	}
	x.closePassive()
	if what == "" {
		what = orDefault(class, "failure")
	}
	text := "ejected from rotation"
	if !ev.until.IsZero() {
		text += " for " + fmtDuration(ev.until.Sub(ev.at))
		if ev.multiplier > 1 {
			text += fmt.Sprintf(" (repeat ejection, ×%d)", ev.multiplier)
		}
	}
	if n > 0 {
		text += fmt.Sprintf(" after %s of real traffic (%s)", plural(int(n), "failure", "failures"), what)
	} else {
		text += " after failures of real traffic (" + what + ")"
	}
	x.eject = &ejection{line: x.line(ev, text), text: text, at: ev.at, until: ev.until}
	x.s.Ejected = true
}

func (x *explainer) returned(ev storyEvent) {
	x.s.Ejected = false
	text := "ejection ended"
	if j := x.eject; j != nil {
		x.s.Lines[j.line].Text = j.text + "; traffic avoided it until " + clockAt(ev.at, j.at)
		text += " after " + fmtDuration(ev.at.Sub(j.at))
		x.eject = nil
	} else if ev.reason != "" {
		text += " (" + ev.reason + ")"
	}
	switch x.s.State {
	case "healthy", "degraded", "":
		text = "returned to rotation: " + text
	default:
		text += "; still out of rotation: " + x.s.State
	}
	if x.s.Paused {
		text += " (paused)"
	}
	x.line(ev, text)
}

func (x *explainer) other(ev storyEvent) {
	switch ev.typ {
	case "proxy_added":
		again := x.s.URL != "" || x.s.Removed
		x.s.URL, x.s.State, x.s.Since = ev.url, "unknown", ev.at
		x.s.Removed, x.s.Paused, x.s.Ejected = false, false, false
		x.unhealthyAt = time.Time{}
		text := "added"
		if again {
			text = "added again"
		}
		text += ": " + orDefault(ev.url, "(no URL)")
		if ev.source != "" {
			text += fmt.Sprintf(" in source %q", ev.source)
		}
		if ev.hasCreds {
			text += " (its URL carries credentials; they are never stored)"
		}
		x.line(ev, text)
	case "proxy_removed":
		x.endRecovery("under way when it was removed")
		x.s.Removed = true
		x.line(ev, said("removed", ev.reason))
	case "proxy_paused":
		x.s.Paused = true
		x.line(ev, said("paused", ev.reason)+": no checks, pickers skip it until resumed")
	case "proxy_resumed":
		x.s.Paused = false
		x.line(ev, said("resumed", ev.reason)+": checks resume")
	case "proxy_revived":
		x.endRecovery("cut short by the revive")
		x.revived = true
		x.line(ev, said("revived", ev.reason)+": back to unknown, checked at once")
	case "proxy_adopted":
		x.endRecovery("handed over to another member")
		x.s.State, x.s.Since = ev.to, ev.at
		from := "another cluster member"
		if ev.fromMember != "" {
			from = "cluster member " + ev.fromMember
		}
		text := fmt.Sprintf("taken over from %s in state %s (was %s here)", from, ev.to, ev.from)
		if ev.attempt > 0 {
			text += fmt.Sprintf(", recovery attempt %d", ev.attempt)
		}
		x.line(ev, said(text, ev.reason)+": checked here from now on")
	default:
		x.line(ev, fmt.Sprintf("an event this version does not know (%s)", ev.typ))
	}
}

// endRecovery ends the recovery attempt under way, if any, with how.
func (x *explainer) endRecovery(how string) {
	if r := x.rec; r != nil {
		x.rec = nil
		x.s.Lines[r.line].Text = r.head + ": " + how + r.soFar()
	}
}

// soFar is " (1 check passed so far)", or "" before any check.
func (r *recovery) soFar() string {
	if r.passed+r.failed == 0 {
		return ""
	}
	return fmt.Sprintf(" (%s passed so far)", plural(r.passed, "check", "checks"))
}

func (x *explainer) closeRun() {
	r := x.run
	if r == nil {
		return
	}
	x.run = nil
	var text string
	if r.ok {
		text = plural(r.n, "check", "checks") + " passed " + span(r.first, r.last)
		if r.latencies > 0 {
			text += ", latency " + msRange(r.minMS, r.maxMS)
		}
	} else {
		text = plural(r.n, "check", "checks") + " failed " + span(r.first, r.last) + ": " + r.fails.String()
	}
	x.s.Lines[r.line].Text = text
}

func (x *explainer) closePassive() {
	p := x.passive
	if p == nil {
		return
	}
	x.passive = nil
	x.s.Lines[p.line].Text = plural(p.n, "failure", "failures") + " of real traffic reported " + span(p.first, p.last) + ": " + p.fails.String()
}

func (x *explainer) closeAll() {
	x.closeRun()
	x.closePassive()
}

func (x *explainer) finish() (Story, error) {
	if x.s.Events == 0 {
		return Story{}, fmt.Errorf("%w: no event of a proxy to explain", ErrUnknownProxy)
	}
	x.closeAll()
	x.endRecovery("under way")
	if j := x.eject; j != nil {
		if !j.until.IsZero() {
			x.s.Lines[j.line].Text = j.text + "; traffic avoids it until " + clockAt(j.until, j.at)
		} else {
			x.s.Lines[j.line].Text = j.text + "; still out of rotation"
		}
	}
	return x.s, nil
}

// said is "paused" for reason "paused by operator", else "paused: reason".
func said(verb, reason string) string {
	switch {
	case reason == "":
		return verb
	case strings.HasPrefix(reason, verb):
		return reason
	}
	return verb + ": " + reason
}

// span is "at 10:00:00" or "between 10:00:00 and 10:06:00".
func span(first, last time.Time) string {
	a, b := clockAt(first, first), clockAt(last, first)
	if a == b {
		return "at " + a
	}
	return "between " + a + " and " + b
}

// clockAt formats t in UTC: the time of day when t is on the same UTC day
// as ref, else the date too.
func clockAt(t, ref time.Time) string {
	t, ref = t.UTC(), ref.UTC()
	if t.Format(time.DateOnly) == ref.Format(time.DateOnly) {
		return t.Format(time.TimeOnly)
	}
	return t.Format(time.DateTime)
}

// fmtDuration rounds to the second (to the millisecond under a second).
func fmtDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// msRange is "42 ms" or "40–55 ms".
func msRange(lo, hi float64) string {
	a, b := fmtMS(lo), fmtMS(hi)
	if a == b {
		return a + " ms"
	}
	return a + "–" + b + " ms"
}

func fmtMS(v float64) string {
	if v >= 10 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
