package proxyhealth

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// ErrMemberJournal is wrapped by every error MergeJournals and
// ExplainMembers report about one member's journal (a *MemberError says
// which member).
var ErrMemberJournal = errors.New("proxyhealth: a member's journal")

// MemberJournal is one cluster member's journal as MergeJournals and
// ExplainMembers read it: each member journals what its own actors decide
// in its own data directory, and a merge puts them back into one story.
// Exactly one of Events and Records is set.
type MemberJournal struct {
	// Member names the member in the merged output (its data directory or
	// its API's URL, as the user gave it). Names must differ.
	Member string
	// Events are the member's journal events in seq order, as
	// Archive.ReadJournal or Engine.ReadJournal yield them.
	Events iter.Seq2[*pb.Envelope, error]
	// Records are the member's flattened records in seq order, as GET
	// /v1/journal serves them (for a member read through its API).
	Records iter.Seq2[Record, error]
}

// MemberRecord is a journal record with the member whose journal holds
// it. Its JSON is the record's with a "member" field first.
type MemberRecord struct {
	// Member is the MemberJournal.Member the record comes from.
	Member string `json:"member"`
	Record
}

// MemberError is an error of one member's journal (it cannot be read, it
// is damaged, an event in it is not valid). It wraps ErrMemberJournal and
// the cause.
type MemberError struct {
	// Member is the MemberJournal.Member whose journal failed.
	Member string
	// Read is how many of the member's events had been read before the
	// error, and LastSeq the seq of the last one (0 when none).
	Read    int
	LastSeq uint64
	// Err is the cause.
	Err error
}

// Error names the member and how far its journal was read.
func (e *MemberError) Error() string {
	if e.Read == 0 {
		return fmt.Sprintf("member %s: %v", e.Member, e.Err)
	}
	return fmt.Sprintf("member %s (after %d of its events, up to seq %d): %v", e.Member, e.Read, e.LastSeq, e.Err)
}

// Unwrap returns ErrMemberJournal and the cause.
func (e *MemberError) Unwrap() []error { return []error{ErrMemberJournal, e.Err} }

// mergeItem is one member's event, as an envelope or as a record.
type mergeItem struct {
	at  int64 // Unix ns
	seq uint64
	env *pb.Envelope // or
	rec Record
}

func (it mergeItem) record() Record {
	if it.env != nil {
		return RecordOf(it.env)
	}
	return it.rec
}

func (it mergeItem) proxyID() string {
	if it.env != nil {
		return it.env.GetProxyId()
	}
	return it.rec.ProxyID
}

// items turns a member's journal into merge items.
func (m MemberJournal) items() iter.Seq2[mergeItem, error] {
	if m.Events != nil {
		return func(yield func(mergeItem, error) bool) {
			for env, err := range m.Events {
				if err != nil {
					yield(mergeItem{}, err)
					return
				}
				if !yield(mergeItem{at: env.GetAtUnixNano(), seq: env.GetSeq(), env: env}, nil) {
					return
				}
			}
		}
	}
	return func(yield func(mergeItem, error) bool) {
		for r, err := range m.Records {
			if err != nil {
				yield(mergeItem{}, err)
				return
			}
			at, err := time.Parse(time.RFC3339Nano, r.At)
			if err != nil {
				yield(mergeItem{}, fmt.Errorf("event seq %d: time %q is not RFC 3339: %w", r.Seq, r.At, err))
				return
			}
			if !yield(mergeItem{at: at.UnixNano(), seq: r.Seq, rec: r}, nil) {
				return
			}
		}
	}
}

// validMembers reports a member list MergeJournals cannot merge.
func validMembers(members []MemberJournal) error {
	if len(members) == 0 {
		return fmt.Errorf("%w: merge: no member journal to read", ErrBadConfig)
	}
	seen := make(map[string]bool, len(members))
	for i, m := range members {
		if (m.Events == nil) == (m.Records == nil) {
			return fmt.Errorf("%w: merge: member %d (%q): set exactly one of Events and Records", ErrBadConfig, i, m.Member)
		}
		if seen[m.Member] {
			return fmt.Errorf("%w: merge: member %q is given twice: every event would be told twice", ErrBadConfig, m.Member)
		}
		seen[m.Member] = true
	}
	return nil
}

// head is the next unmerged event of member i.
type head struct {
	i    int
	item mergeItem
	read int
	next func() (mergeItem, error, bool)
}

// heads is a min-heap by (at, member, seq).
type heads []*head

func (h heads) Len() int { return len(h) }
func (h heads) Less(a, b int) bool {
	x, y := h[a], h[b]
	if x.item.at != y.item.at {
		return x.item.at < y.item.at
	}
	if x.i != y.i {
		return x.i < y.i
	}
	return x.item.seq < y.item.seq
}
func (h heads) Swap(a, b int) { h[a], h[b] = h[b], h[a] }
func (h *heads) Push(x any)   { *h = append(*h, x.(*head)) }
func (h *heads) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// merge is the k-way merge behind MergeJournals and ExplainMembers: it
// calls yield with each member's index and event in merged order, or with
// a *MemberError, and holds one event per member.
func merge(ctx context.Context, members []MemberJournal, yield func(i int, it mergeItem, err error) bool) {
	if err := validMembers(members); err != nil {
		yield(-1, mergeItem{}, err)
		return
	}
	h := make(heads, 0, len(members))
	// pull reads member hd's next event into hd.item; it reports false
	// when the member has no more (or failed: the error is yielded).
	pull := func(hd *head) (more, goOn bool) {
		it, err, ok := hd.next()
		if !ok {
			return false, true
		}
		if err != nil {
			var last uint64
			if hd.read > 0 {
				last = hd.item.seq
			}
			return false, yield(hd.i, mergeItem{}, &MemberError{Member: members[hd.i].Member, Read: hd.read, LastSeq: last, Err: err})
		}
		hd.item = it
		hd.read++
		return true, true
	}
	// Every member's first event (or error) is read before anything is
	// yielded: a member that cannot be read is reported first.
	for i, m := range members {
		next, stop := iter.Pull2(m.items())
		defer stop()
		hd := &head{i: i, next: next}
		more, goOn := pull(hd)
		if !goOn {
			return
		}
		if more {
			h = append(h, hd)
		}
	}
	heap.Init(&h)
	for len(h) > 0 {
		if err := ctx.Err(); err != nil {
			yield(-1, mergeItem{}, err)
			return
		}
		hd := h[0]
		if !yield(hd.i, hd.item, nil) {
			return
		}
		more, goOn := pull(hd)
		if !goOn {
			return
		}
		if more {
			heap.Fix(&h, 0)
		} else {
			heap.Pop(&h)
		}
	}
}

// MergeJournals merges the journals of several members into one stream
// in time order: by the events' time (at), ties broken by the member's
// position in members, then by seq. Each member's own events keep their
// seq order (a member whose clock stepped back is not reordered). It
// holds one event per member, never a whole journal.
//
// A member that cannot be read, or fails part-way, is reported as a
// *MemberError (wrapping ErrMemberJournal) and not read further; the
// merge goes on with the others, so the caller decides whether to stop.
// Every member's first event is read before the first record is
// yielded, so a member that cannot be read at all is reported before
// any record. Each member's journal should be filtered the same way
// (ReadJournal with one JournalFilter) before the merge. A canceled ctx
// ends the merge with ctx's error.
func MergeJournals(ctx context.Context, members []MemberJournal) iter.Seq2[MemberRecord, error] {
	return func(yield func(MemberRecord, error) bool) {
		merge(ctx, members, func(i int, it mergeItem, err error) bool {
			if err != nil {
				return yield(MemberRecord{}, err)
			}
			return yield(MemberRecord{Member: members[i].Member, Record: it.record()}, nil)
		})
	}
}

// MemberStory is one proxy's story told from the journals of several
// members, in time order (MergeJournals' order), so a proxy that moved
// from one owner to another reads as one story.
type MemberStory struct {
	// Story is the story. Each line's Seq is the seq in its member's
	// journal (LineMembers). FirstSeq and LastSeq are 0: the seqs of
	// different journals do not compare; see Members. Truncated is true
	// when any member's history of the proxy is truncated.
	Story
	// LineMembers[i] names the member whose event Story.Lines[i] starts
	// at.
	LineMembers []string
	// Members are the members that hold events of the proxy, in the order
	// they were given.
	Members []MemberSpan
}

// MemberSpan is what one member's journal holds of a proxy.
type MemberSpan struct {
	// Member is the MemberJournal.Member.
	Member string
	// Events is the number of the proxy's events in this member's
	// journal; FirstSeq and LastSeq are the seqs of the first and the
	// last.
	Events            int
	FirstSeq, LastSeq uint64
	// Truncated is true when this member's history of the proxy does not
	// start at its first event there (retention deleted older ones).
	Truncated bool
}

// ExplainMembers tells the story of one proxy (its ID or URL) from the
// journals of several members, merged in time order (see MergeJournals).
// Events of other proxies and pool-level events are skipped, but each
// member's journal should be read with JournalFilter{Proxy: id} (one
// stream, not the whole journal). Any member's error ends it with that
// error (a *MemberError): a story missing a member's part would tell the
// wrong end. No event of the proxy in any journal gives an error
// wrapping ErrUnknownProxy. Memory: one event per member and the story's
// sentences.
func ExplainMembers(ctx context.Context, proxy string, members []MemberJournal) (MemberStory, error) {
	id, err := ResolveProxyID(proxy)
	if err != nil {
		return MemberStory{}, fmt.Errorf("%w: explain: %w", ErrBadConfig, err)
	}
	type origin struct {
		member int
		seq    uint64
	}
	var (
		x       = newExplainer()
		spans   = make([]MemberSpan, len(members))
		ordinal uint64
		// starts maps the ordinal a sentence starts at (the explainer
		// sees ordinals as seqs: unique across members) to its event.
		starts = map[uint64]origin{}
		failed error
	)
	merge(ctx, members, func(i int, it mergeItem, err error) bool {
		if err != nil {
			failed = err
			return false
		}
		pid := it.proxyID()
		if pid == "" {
			return true // pool-level
		}
		if pid != id {
			return true
		}
		var ev storyEvent
		if it.env != nil {
			ev = eventOfEnvelope(it.env)
		} else if ev, err = eventOfRecord(it.rec); err != nil {
			failed = &MemberError{Member: members[i].Member, Read: spans[i].Events, LastSeq: spans[i].LastSeq, Err: err}
			return false
		}
		sp := &spans[i]
		if sp.Events == 0 {
			sp.FirstSeq, sp.Truncated = it.seq, ev.streamSeq > 1
		}
		sp.Events++
		sp.LastSeq = it.seq
		ordinal++
		ev.seq = ordinal
		n := len(x.s.Lines)
		if err := x.add(ev); err != nil {
			failed = err
			return false
		}
		// A sentence is appended, or the last one replaced (an ejection
		// telling the run that tipped it).
		for _, l := range x.s.Lines[max(n-1, 0):] {
			if l.Seq == ordinal {
				starts[ordinal] = origin{member: i, seq: it.seq}
			}
		}
		return true
	})
	if failed != nil {
		return MemberStory{}, failed
	}
	s, err := x.finish()
	if errors.Is(err, ErrUnknownProxy) {
		names := make([]string, len(members))
		for i, m := range members {
			names[i] = m.Member
		}
		return MemberStory{}, fmt.Errorf("%w: %s: no journal holds an event of it (read %s; list the proxies with `proxyhealth status`)", ErrUnknownProxy, id, strings.Join(names, ", "))
	}
	if err != nil {
		return MemberStory{}, err
	}
	out := MemberStory{Story: s, LineMembers: make([]string, len(s.Lines))}
	out.FirstSeq, out.LastSeq = 0, 0
	for i, l := range s.Lines {
		o := starts[l.Seq]
		out.Lines[i].Seq = o.seq
		out.LineMembers[i] = members[o.member].Member
	}
	for i, sp := range spans {
		if sp.Events == 0 {
			continue
		}
		sp.Member = members[i].Member
		out.Truncated = out.Truncated || sp.Truncated
		out.Members = append(out.Members, sp)
	}
	return out, nil
}

// String renders the story as Story.String does, with a line naming the
// members after the header and each sentence's member after its time.
func (s MemberStory) String() string {
	var b strings.Builder
	s.writeHeader(&b)
	width := 0
	b.WriteString("told from ")
	for i, m := range s.Members {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (%s, seq %d to %d", m.Member, plural(m.Events, "event", "events"), m.FirstSeq, m.LastSeq)
		if m.Truncated {
			b.WriteString(", truncated by retention")
		}
		b.WriteByte(')')
		width = max(width, len(m.Member))
	}
	b.WriteByte('\n')
	for i, l := range s.Lines {
		fmt.Fprintf(&b, "%s  %-*s  %s\n", l.At.UTC().Format(lineTime), width, s.LineMembers[i], l.Text)
	}
	return b.String()
}
