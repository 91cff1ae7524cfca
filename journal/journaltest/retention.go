package journaltest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/journal"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// retain runs Retain and fails unless it deleted want events and First()
// is then first.
func retain(t *testing.T, j journal.Journal, cutoff time.Duration, want int, first uint64) {
	t.Helper()
	head := j.Head()
	n, err := j.Retain(context.Background(), BaseTime.Add(cutoff))
	if err != nil {
		t.Fatalf("Retain: %v", err)
	}
	if n != want || j.First() != first || j.Head() != head {
		t.Fatalf("Retain deleted %d events, First %d, Head %d; want %d, %d, %d", n, j.First(), j.Head(), want, first, head)
	}
	check(t, j)
	wantSeqs(t, ReadAll(t, j, 1), first, head)
}

func saveSnapshot(t *testing.T, j journal.Journal, proxyID string) {
	t.Helper()
	h := j.StreamHead(proxyID)
	if err := j.SaveSnapshot(context.Background(), Snapshot(proxyID, h, 0)); err != nil {
		t.Fatal(err)
	}
}

// retentionFixture appends
//
//	seq 1 A/1 at 0s, 2 pool at 1s, 3 A/2 at 2s, 4 B/1 at 3s,
//	5 A/3 at 4s, 6 B/2 at 5s, 7 A/4 at 6s, 8 pool at 7s,
//	9 A/5 at 100s, 10 B/3 at 101s
//
// and saves a snapshot of A covering A/3.
func retentionFixture(t *testing.T, j journal.Journal) (a, b string) {
	a, b = ProxyID(1), ProxyID(2)
	Append(t, j, Succeeded(a, 0), PoolDegraded(time.Second), Succeeded(a, 2*time.Second))
	Append(t, j, Failed(b, 3*time.Second), Succeeded(a, 4*time.Second))
	if err := j.SaveSnapshot(context.Background(), Snapshot(a, 3, 5)); err != nil {
		t.Fatal(err)
	}
	Append(t, j, Succeeded(b, 5*time.Second), Succeeded(a, 6*time.Second), PoolDegraded(7*time.Second))
	Append(t, j, Succeeded(a, 100*time.Second), Succeeded(b, 101*time.Second))
	return a, b
}

func (s *suite) retention(t *testing.T) {
	j := s.open(t)
	a, b := retentionFixture(t, j)
	// B has no snapshot: its first event (seq 4) blocks everything after.
	retain(t, j, 10*time.Second, 3, 4)
	wantStream := func(p string, from, to uint64) {
		t.Helper()
		got := ReadStreamAll(t, j, p, 1)
		if uint64(len(got)) != to-from+1 {
			t.Fatalf("ReadStream(%s) yielded %d envelopes, want stream_seq %d..%d", p, len(got), from, to)
		}
		for i, e := range got {
			if e.GetStreamSeq() != from+uint64(i) {
				t.Fatalf("ReadStream(%s) envelope %d has stream_seq %d, want %d", p, i, e.GetStreamSeq(), from+uint64(i))
			}
		}
	}
	wantStream(a, 3, 5)
	wantStream(b, 1, 3)
	sub := j.Subscribe(1) // retained away: starts at First
	defer sub.Close()
	collect(t, sub, 4, 7)

	if err := j.SaveSnapshot(context.Background(), Snapshot(b, 1, 4)); err != nil {
		t.Fatal(err)
	}
	// Now B/1 and A/3 go; B/2 (not covered) blocks.
	retain(t, j, 10*time.Second, 2, 6)
	wantStream(a, 4, 5)
	saveSnapshot(t, j, a)
	saveSnapshot(t, j, b)
	// Covered now, but 9 and 10 are newer than the cutoff.
	retain(t, j, 10*time.Second, 3, 9)
	retain(t, j, 10*time.Second, 0, 9)
	// Everything goes; the sequences continue.
	retain(t, j, time.Hour, 2, 11)
	wantStream(a, 6, 5)
	if j.StreamHead(a) != 5 || j.StreamHead(b) != 3 {
		t.Fatalf("StreamHead a %d b %d after retaining everything, want 5 3", j.StreamHead(a), j.StreamHead(b))
	}
	e := Succeeded(a, 2*time.Hour)
	if seqs := Append(t, j, e); seqs[0] != 11 || e.GetStreamSeq() != 6 {
		t.Fatalf("append after retaining everything: seq %d stream_seq %d; want 11 6", seqs[0], e.GetStreamSeq())
	}
	check(t, j)
	wantStream(a, 6, 6)
}

func (s *suite) retentionDurable(t *testing.T) {
	j := s.open(t)
	if s.h.Reopen == nil {
		t.Skip("the implementation is not durable")
	}
	// Enough events for several deletion chunks.
	const n, cut = 20000, 15000
	fillBatch(t, j, n, 5, 500)
	for p := range 5 {
		saveSnapshot(t, j, ProxyID(p))
	}
	retain(t, j, cut*time.Second, cut, cut+1)
	j = s.reopen(t, j)
	if j.First() != cut+1 || j.Head() != n {
		t.Fatalf("after reopen First %d Head %d; want %d %d", j.First(), j.Head(), cut+1, n)
	}
	check(t, j)
	wantSeqs(t, ReadAll(t, j, 1), cut+1, n)
	for p := range 5 {
		got := ReadStreamAll(t, j, ProxyID(p), 1)
		if len(got) == 0 || got[len(got)-1].GetStreamSeq() != j.StreamHead(ProxyID(p)) || got[0].GetSeq() <= cut {
			t.Fatalf("ReadStream(%d) after retention and reopen: %d envelopes", p, len(got))
		}
	}
	// Retain everything, reopen: the head survives an empty events bucket.
	for p := range 5 {
		saveSnapshot(t, j, ProxyID(p))
	}
	retain(t, j, 1e6*time.Second, n-cut, n+1)
	j = s.reopen(t, j)
	if j.First() != n+1 || j.Head() != n {
		t.Fatalf("empty after reopen: First %d Head %d; want %d %d", j.First(), j.Head(), n+1, n)
	}
	check(t, j)
	e := []*pb.Envelope{PoolDegraded(0)}
	if seqs := Append(t, j, e...); seqs[0] != n+1 {
		t.Fatalf("append after retaining everything got seq %d, want %d", seqs[0], n+1)
	}
}

func (s *suite) retentionConcurrent(t *testing.T) {
	j := s.open(t)
	ctx := context.Background()
	sub := j.Subscribe(1)
	defer sub.Close()
	const proxies, rounds = 4, 60
	errc := make(chan error, 2)
	progress := make(chan int, rounds)
	go func() { // appender: 10 events per round, snapshots every round
		defer close(progress)
		for r := range rounds {
			progress <- r
			for p := range proxies {
				at := time.Duration(r) * time.Second
				envs := []*pb.Envelope{Succeeded(ProxyID(p), at), Failed(ProxyID(p), at)}
				if p == 0 {
					envs = append(envs, PoolDegraded(at), PoolDegraded(at))
				}
				if _, err := j.Append(ctx, envs); err != nil {
					errc <- err
					return
				}
				if err := j.SaveSnapshot(ctx, Snapshot(ProxyID(p), j.StreamHead(ProxyID(p)), 0)); err != nil {
					errc <- err
					return
				}
			}
		}
		errc <- nil
	}()
	go func() { // retention chasing the appender
		for r := range progress {
			if _, err := j.Retain(ctx, BaseTime.Add(time.Duration(r)*time.Second)); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	const total = rounds * (proxies*2 + 2)
	wctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	var last uint64
	for last < total {
		e, err := sub.Next(wctx)
		if err != nil {
			t.Fatalf("Next after seq %d: %v", last, err)
		}
		if e.GetSeq() <= last {
			t.Fatalf("subscription delivered seq %d after %d", e.GetSeq(), last)
		}
		last = e.GetSeq()
	}
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if j.Head() != total {
		t.Fatalf("Head = %d, want %d", j.Head(), total)
	}
	check(t, j)
	wantSeqs(t, ReadAll(t, j, 1), j.First(), total)
	t.Logf("retention deleted seqs 1..%d while appending", j.First()-1)
}

// retentionCarries: the pool-wide events retention deletes are carried,
// the newest of each type and source, in seq order; an event still
// retained is not; a later retention replaces what it carried; a durable
// journal keeps them across a reopen and its check verifies them.
func (s *suite) retentionCarries(t *testing.T) {
	j := s.open(t)
	ctx := context.Background()
	a := ProxyID(0)
	Append(t, j,
		Wrap(1*time.Second, "", &pb.PoolDegraded{Healthy: 1}),    // 1
		Succeeded(a, 2*time.Second),                              // 2
		Wrap(3*time.Second, "", &pb.PoolRecovered{Healthy: 2}),   // 3
		Wrap(4*time.Second, "", &pb.PoolDegraded{Healthy: 3}),    // 4
		Wrap(5*time.Second, "s1", &pb.SourceRefreshed{Total: 1}), // 5
		Wrap(6*time.Second, "s2", &pb.SourceRefreshed{Total: 2}), // 6
		Wrap(7*time.Second, "s1", &pb.SourceRefreshed{Total: 3}), // 7
		Wrap(8*time.Second, "", &pb.PoolPanicEntered{Usable: 1}), // 8, stays
		Succeeded(a, 100*time.Second),                            // 9
	)
	saveSnapshot(t, j, a)
	carried := func(want ...uint64) {
		t.Helper()
		got, err := journal.Carried(ctx, j)
		if err != nil {
			t.Fatalf("Carried: %v", err)
		}
		var seqs []uint64
		for _, e := range got {
			seqs = append(seqs, e.GetSeq())
			if e.GetEvent() == nil || e.GetProxyId() != "" {
				t.Fatalf("carried %v", e)
			}
		}
		if fmt.Sprint(seqs) != fmt.Sprint(want) {
			t.Fatalf("carried seqs %v, want %v", seqs, want)
		}
	}
	carried()
	retain(t, j, 7500*time.Millisecond, 7, 8)
	// The newest PoolDegraded (4, not 1), PoolRecovered 3, s1's newest
	// refresh (7, not 5), s2's (6); panic 8 is still retained.
	carried(3, 4, 6, 7)
	got, _ := journal.Carried(ctx, j)
	if got[1].GetPoolDegraded().GetHealthy() != 3 || got[3].GetSource() != "s1" || got[3].GetSourceRefreshed().GetTotal() != 3 {
		t.Fatalf("carried events are not the newest of their type and source: %v", got)
	}
	Append(t, j, Wrap(101*time.Second, "", &pb.PoolRecovered{Healthy: 4})) // 10
	saveSnapshot(t, j, a)
	retain(t, j, 200*time.Second, 3, 11)
	carried(4, 6, 7, 8, 10)
	if s.h.Reopen == nil {
		return
	}
	j = s.reopen(t, j)
	carried(4, 6, 7, 8, 10)
	check(t, j)
	if got, err := journal.Carried(ctx, journal.ReadOnly(j)); err != nil || len(got) != 5 {
		t.Fatalf("Carried through ReadOnly: %d events, %v", len(got), err)
	}
}
