package proxyhealth_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/journal/journaltest"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

var (
	mergeP1 = journaltest.ProxyID(1)
	mergeP2 = journaltest.ProxyID(2)
	mergeP3 = journaltest.ProxyID(3)
)

// writeMember writes envs into a new journal in a new data directory and
// returns the directory.
func writeMember(t *testing.T, envs ...*pb.Envelope) string {
	t.Helper()
	dir := t.TempDir()
	j, err := journal.OpenBolt(filepath.Join(dir, proxyhealth.JournalFile), journal.WithUnsafeNoSync())
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range envs {
		journaltest.Append(t, j, env) // one at a time: seqs in the order given
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// archiveEvents reads dir's journal through an Archive opened lazily (as
// the CLI does), with filter f.
func archiveEvents(ctx context.Context, dir string, f proxyhealth.JournalFilter) iter.Seq2[*pb.Envelope, error] {
	return func(yield func(*pb.Envelope, error) bool) {
		a, err := proxyhealth.OpenArchive(ctx, dir, proxyhealth.ArchiveOptions{})
		if err != nil {
			yield(nil, err)
			return
		}
		defer a.Close()
		for env, err := range a.ReadJournal(ctx, f) {
			if !yield(env, err) || err != nil {
				return
			}
		}
	}
}

// asRecords flattens an envelope stream, as GET /v1/journal does.
func asRecords(envs iter.Seq2[*pb.Envelope, error]) iter.Seq2[proxyhealth.Record, error] {
	return func(yield func(proxyhealth.Record, error) bool) {
		for env, err := range envs {
			if err != nil {
				yield(proxyhealth.Record{}, err)
				return
			}
			if !yield(proxyhealth.RecordOf(env), nil) {
				return
			}
		}
	}
}

// threeMembers are three journals whose events interleave in time, with
// ties across members and a clock that stepped back in member c.
func threeMembers(t *testing.T) (a, b, c string) {
	s := time.Second
	a = writeMember(t,
		journaltest.Succeeded(mergeP1, 0),    // a1
		journaltest.PoolDegraded(10*s),       // a2
		journaltest.Succeeded(mergeP1, 20*s), // a3
		journaltest.Failed(mergeP1, 30*s))    // a4
	b = writeMember(t,
		journaltest.Succeeded(mergeP1, 5*s),  // b1
		journaltest.Succeeded(mergeP2, 10*s), // b2: ties with a2
		journaltest.Failed(mergeP1, 25*s))    // b3
	c = writeMember(t,
		journaltest.Succeeded(mergeP3, 10*s), // c1: ties with a2, b2
		journaltest.Succeeded(mergeP3, 15*s), // c2
		journaltest.Succeeded(mergeP3, 12*s), // c3: its clock stepped back
		journaltest.Succeeded(mergeP3, 40*s)) // c4
	return a, b, c
}

func mergedOrder(t *testing.T, recs iter.Seq2[proxyhealth.MemberRecord, error]) []string {
	t.Helper()
	var got []string
	for r, err := range recs {
		if err != nil {
			t.Fatalf("merge: %v", err)
		}
		got = append(got, fmt.Sprintf("%s%d", r.Member, r.Seq))
	}
	return got
}

// TestMergeJournalsOrder: three real journals merge by event time, ties
// broken by the member's position and then seq; a member's own events
// keep their seq order even when its clock stepped back; filters applied
// per member give one proxy's events of two members in time order. Read
// as envelopes (data directories) or records (the API), mixed, the order
// is the same.
func TestMergeJournalsOrder(t *testing.T) {
	ctx := t.Context()
	a, b, c := threeMembers(t)
	members := func(f proxyhealth.JournalFilter, records bool) []proxyhealth.MemberJournal {
		var ms []proxyhealth.MemberJournal
		for i, dir := range []string{a, b, c} {
			m := proxyhealth.MemberJournal{Member: string(rune('a' + i))}
			if records && i != 1 {
				m.Records = asRecords(archiveEvents(ctx, dir, f))
			} else {
				m.Events = archiveEvents(ctx, dir, f)
			}
			ms = append(ms, m)
		}
		return ms
	}
	for _, records := range []bool{false, true} {
		got := mergedOrder(t, proxyhealth.MergeJournals(ctx, members(proxyhealth.JournalFilter{}, records)))
		want := []string{"a1", "b1", "a2", "b2", "c1", "c2", "c3", "a3", "b3", "a4", "c4"}
		if !slices.Equal(got, want) {
			t.Errorf("records %v: merged order %v, want %v", records, got, want)
		}
		got = mergedOrder(t, proxyhealth.MergeJournals(ctx, members(proxyhealth.JournalFilter{Proxy: mergeP1}, records)))
		if want := []string{"a1", "b1", "a3", "b3", "a4"}; !slices.Equal(got, want) {
			t.Errorf("records %v: proxy 1's story %v, want %v", records, got, want)
		}
	}
	// The member named in each record is the one given; the record is the
	// member's own (its seq, its fields).
	for r, err := range proxyhealth.MergeJournals(ctx, members(proxyhealth.JournalFilter{Types: []string{"check_failed"}}, false)) {
		if err != nil {
			t.Fatal(err)
		}
		if r.Type != "check_failed" || r.ProxyID != mergeP1 || (r.Member == "a") != (r.Seq == 4) {
			t.Errorf("record %+v", r)
		}
	}
}

// countingSource yields n records of one proxy, one every step from
// start, and counts how many it produced and whether it was stopped.
type countingSource struct {
	n           int
	start, step time.Duration
	produced    int
	finished    bool
}

func (s *countingSource) records() iter.Seq2[proxyhealth.Record, error] {
	return func(yield func(proxyhealth.Record, error) bool) {
		defer func() { s.finished = true }()
		for i := range s.n {
			s.produced++
			at := journaltest.BaseTime.Add(s.start + time.Duration(i)*s.step)
			if !yield(proxyhealth.Record{Seq: uint64(i + 1), At: at.Format(time.RFC3339Nano), ProxyID: mergeP1, Type: "check_succeeded"}, nil) {
				return
			}
		}
	}
}

// TestMergeJournalsStreams: the merge holds one event per member: when
// it yields its k-th record, at most k + (members) records were read
// from the members, however long their journals; stopping the merge
// stops every member's reader.
func TestMergeJournalsStreams(t *testing.T) {
	srcs := []*countingSource{
		{n: 20000, start: 0, step: 3 * time.Millisecond},
		{n: 20000, start: time.Millisecond, step: 5 * time.Millisecond},
		{n: 20000, start: time.Hour, step: time.Millisecond}, // all after the others
	}
	var ms []proxyhealth.MemberJournal
	for i, s := range srcs {
		ms = append(ms, proxyhealth.MemberJournal{Member: fmt.Sprint(i), Records: s.records()})
	}
	produced := func() (n int) {
		for _, s := range srcs {
			n += s.produced
		}
		return n
	}
	k, last := 0, time.Time{}
	for r, err := range proxyhealth.MergeJournals(t.Context(), ms) {
		if err != nil {
			t.Fatal(err)
		}
		k++
		if p := produced(); p > k+len(srcs) {
			t.Fatalf("after %d records the members had produced %d", k, p)
		}
		at, _ := time.Parse(time.RFC3339Nano, r.At)
		if at.Before(last) {
			t.Fatalf("record %d at %s after one at %s", k, at, last)
		}
		last = at
		if k == 30000 {
			break
		}
	}
	if srcs[2].produced != 1 {
		t.Errorf("the member whose events all come later was read %d times, want 1", srcs[2].produced)
	}
	for i, s := range srcs {
		if !s.finished {
			t.Errorf("member %d's reader was not stopped", i)
		}
	}
}

// failingSource yields n records, then err.
func failingSource(n int, err error) iter.Seq2[proxyhealth.Record, error] {
	return func(yield func(proxyhealth.Record, error) bool) {
		for i := range n {
			at := journaltest.BaseTime.Add(time.Duration(i) * time.Second)
			if !yield(proxyhealth.Record{Seq: uint64(10 + i), At: at.Format(time.RFC3339Nano), ProxyID: mergeP1, Type: "check_succeeded"}, nil) {
				return
			}
		}
		yield(proxyhealth.Record{}, err)
	}
}

// TestMergeJournalsErrors: a member that cannot be read is reported,
// naming it, before any record, and the others are still merged whole; a
// member that fails part-way is reported where it failed (how many of its
// events, the last seq) and the others go on; a member list that cannot
// be merged is refused.
func TestMergeJournalsErrors(t *testing.T) {
	ctx := t.Context()
	a, b, _ := threeMembers(t)
	missing := filepath.Join(t.TempDir(), "nope")
	damaged := t.TempDir()
	if err := os.WriteFile(filepath.Join(damaged, proxyhealth.JournalFile), []byte(strings.Repeat("not bbolt ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	ms := []proxyhealth.MemberJournal{
		{Member: a, Events: archiveEvents(ctx, a, proxyhealth.JournalFilter{})},
		{Member: missing, Events: archiveEvents(ctx, missing, proxyhealth.JournalFilter{})},
		{Member: damaged, Events: archiveEvents(ctx, damaged, proxyhealth.JournalFilter{})},
		{Member: b, Events: archiveEvents(ctx, b, proxyhealth.JournalFilter{})},
	}
	var errs []error
	records := 0
	for r, err := range proxyhealth.MergeJournals(ctx, ms) {
		if err != nil {
			if records > 0 {
				t.Errorf("error after %d records: %v", records, err)
			}
			errs = append(errs, err)
			continue
		}
		if r.Member != a && r.Member != b {
			t.Errorf("record of %q", r.Member)
		}
		records++
	}
	if records != 7 || len(errs) != 2 {
		t.Fatalf("%d records (want 7) and errors %v", records, errs)
	}
	var me *proxyhealth.MemberError
	if !errors.As(errs[0], &me) || me.Member != missing || !errors.Is(errs[0], os.ErrNotExist) || !errors.Is(errs[0], proxyhealth.ErrMemberJournal) ||
		!strings.Contains(errs[0].Error(), "member "+missing+": ") {
		t.Errorf("missing member: %v", errs[0])
	}
	if !errors.As(errs[1], &me) || me.Member != damaged || !errors.Is(errs[1], proxyhealth.ErrNotAJournal) {
		t.Errorf("damaged member: %v", errs[1])
	}

	// Part-way: reported after its 3 events, and b's events after it are
	// still merged.
	boom := errors.New("the answer broke off")
	ms = []proxyhealth.MemberJournal{
		{Member: "broken", Records: failingSource(3, boom)},
		{Member: "b", Events: archiveEvents(ctx, b, proxyhealth.JournalFilter{})},
	}
	var got []string
	for r, err := range proxyhealth.MergeJournals(ctx, ms) {
		if err != nil {
			got = append(got, "error: "+err.Error())
			if !errors.Is(err, boom) || !errors.As(err, &me) || me.Read != 3 || me.LastSeq != 12 {
				t.Errorf("part-way error %v (%+v)", err, me)
			}
			continue
		}
		got = append(got, fmt.Sprintf("%s%d", r.Member, r.Seq))
	}
	want := []string{"broken10", "broken11", "broken12", "error: member broken (after 3 of its events, up to seq 12): the answer broke off", "b1", "b2", "b3"}
	if !slices.Equal(got, want) {
		t.Errorf("merge with a member failing part-way:\n%q\nwant\n%q", got, want)
	}

	// Lists that cannot be merged.
	one := failingSource(0, nil)
	for name, ms := range map[string][]proxyhealth.MemberJournal{
		"none":    nil,
		"twice":   {{Member: "x", Records: one}, {Member: "x", Records: one}},
		"both":    {{Member: "x", Records: one, Events: archiveEvents(ctx, a, proxyhealth.JournalFilter{})}},
		"neither": {{Member: "x"}},
	} {
		n := 0
		for _, err := range proxyhealth.MergeJournals(ctx, ms) {
			n++
			if !errors.Is(err, proxyhealth.ErrBadConfig) {
				t.Errorf("%s: %v", name, err)
			}
		}
		if n != 1 {
			t.Errorf("%s: %d results", name, n)
		}
	}

	// A canceled context ends the merge with its error.
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := 0
	for _, err := range proxyhealth.MergeJournals(cctx, []proxyhealth.MemberJournal{{Member: "c", Records: (&countingSource{n: 100, step: time.Second}).records()}}) {
		if n++; n == 5 {
			cancel()
		}
		if err != nil {
			if !errors.Is(err, context.Canceled) || n != 6 {
				t.Errorf("after cancel: %d %v", n, err)
			}
		}
	}
	if n != 6 {
		t.Errorf("the merge went on for %d results after cancel", n)
	}
}

// handover writes one proxy's story across two members: member a added
// it, saw it healthy, then real traffic failed through it; member b took
// it over, and there a third failure ejected it (the sentence tells the
// run of failures that began in a), checks failed and it went unhealthy. Other proxies' events interleave.
func handover(t *testing.T) (a, b string) {
	at := func(d time.Duration) int64 { return journaltest.BaseTime.Add(d).UnixNano() }
	p := func(d time.Duration, ev *pb.Envelope) *pb.Envelope {
		ev.AtUnixNano, ev.ProxyId, ev.Source = at(d), mergeP1, "lab"
		return ev
	}
	added := func(d time.Duration) *pb.Envelope {
		return p(d, &pb.Envelope{Event: &pb.Envelope_ProxyAdded{ProxyAdded: &pb.ProxyAdded{UrlRedacted: "socks5://10.0.0.7:1080", Source: "lab"}}})
	}
	change := func(d time.Duration, from, to pb.HealthState, reason string) *pb.Envelope {
		return p(d, &pb.Envelope{Event: &pb.Envelope_StateChanged{StateChanged: &pb.StateChanged{From: from, To: to, Reason: reason}}})
	}
	passive := func(d time.Duration, n uint32) *pb.Envelope {
		return p(d, &pb.Envelope{Event: &pb.Envelope_PassiveFailureReported{PassiveFailureReported: &pb.PassiveFailureReported{Class: pb.FailureClass_FAILURE_CLASS_REFUSED, Consecutive: n}}})
	}
	ok := func(d time.Duration) *pb.Envelope { e := journaltest.Succeeded(mergeP1, d); e.Source = "lab"; return e }
	fail := func(d time.Duration) *pb.Envelope { e := journaltest.Failed(mergeP1, d); e.Source = "lab"; return e }
	s := time.Second
	a = writeMember(t,
		journaltest.Succeeded(mergeP2, 0),
		added(1*s), // a2
		ok(2*s),    // a3
		change(2*s, pb.HealthState_HEALTH_STATE_UNKNOWN, pb.HealthState_HEALTH_STATE_HEALTHY, "first check passed"),
		ok(32*s), // a5
		journaltest.Succeeded(mergeP2, 40*s),
		passive(50*s, 1), // a7
		passive(51*s, 2)) // a8
	b = writeMember(t,
		journaltest.Succeeded(mergeP3, 5*s),
		journaltest.Succeeded(mergeP3, 35*s),
		passive(56*s, 3), // b3: a's run goes on here
		p(56*s, &pb.Envelope{Event: &pb.Envelope_ProxyEjected{ProxyEjected: &pb.ProxyEjected{Class: pb.FailureClass_FAILURE_CLASS_REFUSED, Consecutive: 3, UntilUnixNano: at(86 * s), Multiplier: 1}}}), // b4: tells the run
		fail(57*s), // b5
		fail(58*s), // b6
		change(58*s, pb.HealthState_HEALTH_STATE_HEALTHY, pb.HealthState_HEALTH_STATE_UNHEALTHY, "2 consecutive failures"), // b7
		journaltest.Succeeded(mergeP3, 65*s))
	return a, b
}

// TestExplainMembers: one proxy's events in two members' journals read
// as one story in time order: each sentence names the member whose event
// it starts at and that member's seq; the spans say what each journal
// holds; the text names the members. The same story from records (the
// API) and from envelopes.
func TestExplainMembers(t *testing.T) {
	ctx := t.Context()
	a, b := handover(t)
	for _, records := range []bool{false, true} {
		var ms []proxyhealth.MemberJournal
		for _, dir := range []string{a, b} {
			m := proxyhealth.MemberJournal{Member: filepath.Base(dir)}
			if evs := archiveEvents(ctx, dir, proxyhealth.JournalFilter{Proxy: mergeP1}); records {
				m.Records = asRecords(evs)
			} else {
				m.Events = evs
			}
			ms = append(ms, m)
		}
		ma, mb := ms[0].Member, ms[1].Member
		s, err := proxyhealth.ExplainMembers(ctx, mergeP1, ms)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for i, l := range s.Lines {
			got = append(got, fmt.Sprintf("%s %s#%d %s", l.At.Sub(journaltest.BaseTime), s.LineMembers[i], l.Seq, l.Text))
		}
		eject := "ejected from rotation for 30s after 3 failures of real traffic (refused ×3, between 12:00:50 and 12:00:56); traffic avoids it until 12:01:26"
		if records { // records carry no planned end
			eject = "ejected from rotation after 3 failures of real traffic (refused ×3, between 12:00:50 and 12:00:56); still out of rotation"
		}
		want := []string{
			"1s " + ma + "#2 added: socks5://10.0.0.7:1080 in source \"lab\"",
			"2s " + ma + "#3 2 checks passed between 12:00:02 and 12:00:32, latency 61 ms",
			"2s " + ma + "#4 healthy since 12:00:02: first check passed",
			"56s " + mb + "#4 " + eject,
			"57s " + mb + "#5 2 checks failed between 12:00:57 and 12:00:58: timeout ×2 (dial tcp 10.0.0.7:1080: i/o timeout)",
			"58s " + mb + "#7 went unhealthy (out of rotation) after 2 consecutive failures",
		}
		if !slices.Equal(got, want) {
			t.Errorf("records %v: story\n%s\nwant\n%s", records, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		wantSpans := []proxyhealth.MemberSpan{{Member: ma, Events: 6, FirstSeq: 2, LastSeq: 8}, {Member: mb, Events: 5, FirstSeq: 3, LastSeq: 7}}
		if !slices.Equal(s.Members, wantSpans) || s.Events != 11 || s.FirstSeq != 0 || s.LastSeq != 0 || s.State != "unhealthy" || !s.Ejected || s.Truncated {
			t.Errorf("story %+v", s)
		}
		text := s.String()
		if !strings.Contains(text, "told from "+ma+" (6 events, seq 2 to 8), "+mb+" (5 events, seq 3 to 7)\n") ||
			!strings.Contains(text, "2025-01-06T12:00:56Z  "+mb+"  ejected from rotation") || !strings.HasPrefix(text, "proxy "+mergeP1+" socks5://10.0.0.7:1080 (source \"lab\"): unhealthy since 2025-01-06T12:00:58Z, ejected from rotation\n") {
			t.Errorf("text:\n%s", text)
		}
	}

	// A proxy no member knows; a member that fails.
	ms := []proxyhealth.MemberJournal{{Member: "a", Events: archiveEvents(ctx, a, proxyhealth.JournalFilter{Proxy: mergeP3})}, {Member: "b", Events: archiveEvents(ctx, a, proxyhealth.JournalFilter{Proxy: mergeP3})}}
	if _, err := proxyhealth.ExplainMembers(ctx, mergeP3, ms); !errors.Is(err, proxyhealth.ErrUnknownProxy) || !strings.Contains(err.Error(), "no journal holds an event of it (read a, b;") {
		t.Errorf("unknown proxy: %v", err)
	}
	missing := filepath.Join(t.TempDir(), "nope")
	ms = []proxyhealth.MemberJournal{{Member: "a", Events: archiveEvents(ctx, a, proxyhealth.JournalFilter{Proxy: mergeP1})}, {Member: missing, Events: archiveEvents(ctx, missing, proxyhealth.JournalFilter{Proxy: mergeP1})}}
	var me *proxyhealth.MemberError
	if _, err := proxyhealth.ExplainMembers(ctx, mergeP1, ms); !errors.As(err, &me) || me.Member != missing || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing member: %v", err)
	}
}
