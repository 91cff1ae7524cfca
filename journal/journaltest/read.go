package journaltest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/journal"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// fill appends n events over proxies proxies (plus a pool event every 10th)
// in calls of up to 7, at one second intervals from BaseTime.
func fill(t *testing.T, j journal.Journal, n, proxies int) {
	t.Helper()
	fillBatch(t, j, n, proxies, 7)
}

// fillBatch is fill with calls of up to per envelopes.
func fillBatch(t *testing.T, j journal.Journal, n, proxies, per int) {
	t.Helper()
	var batch []*pb.Envelope
	for i := range n {
		at := time.Duration(i) * time.Second
		switch {
		case i%10 == 9:
			batch = append(batch, PoolDegraded(at))
		case i%4 == 3:
			batch = append(batch, Failed(ProxyID(i%proxies), at))
		default:
			batch = append(batch, Succeeded(ProxyID(i%proxies), at))
		}
		if len(batch) == per || i == n-1 {
			Append(t, j, batch...)
			batch = nil
		}
	}
}

func (s *suite) readFromMiddle(t *testing.T) {
	j := s.open(t)
	const n = 5000 // more than one read chunk
	fill(t, j, n, 7)
	wantSeqs(t, ReadAll(t, j, 0), 1, n)
	wantSeqs(t, ReadAll(t, j, 1234), 1234, n)
	wantSeqs(t, ReadAll(t, j, n), n, n)
	wantSeqs(t, ReadAll(t, j, n+1), n+1, n)

	// Stopping early stops the iteration.
	count := 0
	for e, err := range j.Read(context.Background(), 10) {
		if err != nil || e.GetSeq() != uint64(10+count) {
			t.Fatalf("Read: envelope %v, error %v", e, err)
		}
		if count++; count == 3 {
			break
		}
	}

	// Read is bounded by the head at the time of the call.
	it := j.Read(context.Background(), n-1)
	Append(t, j, Succeeded(ProxyID(1), time.Hour))
	got := 0
	for _, err := range it {
		if err != nil {
			t.Fatal(err)
		}
		got++
	}
	if got != 2 {
		t.Fatalf("Read created before an append yielded %d envelopes, want 2", got)
	}

	p := ProxyID(3)
	head := j.StreamHead(p)
	all := ReadStreamAll(t, j, p, 1)
	if uint64(len(all)) != head || head < 600 {
		t.Fatalf("ReadStream(%s, 1) yielded %d envelopes, stream head %d", p, len(all), head)
	}
	mid := ReadStreamAll(t, j, p, 100)
	if uint64(len(mid)) != head-99 {
		t.Fatalf("ReadStream(%s, 100) yielded %d envelopes, want %d", p, len(mid), head-99)
	}
	for i, e := range mid {
		if e.GetProxyId() != p || e.GetStreamSeq() != uint64(100+i) {
			t.Fatalf("ReadStream envelope %d: proxy %q stream_seq %d", i, e.GetProxyId(), e.GetStreamSeq())
		}
		equal(t, "stream envelope vs global read", e, all[99+i])
	}
	if n := len(ReadStreamAll(t, j, p, head+1)); n != 0 {
		t.Fatalf("ReadStream beyond the head yielded %d envelopes", n)
	}

	// A stream longer than a read chunk, read whole and by its tail.
	long := ProxyID(9)
	envs := make([]*pb.Envelope, 4500)
	for i := range envs {
		envs[i] = Succeeded(long, time.Duration(i)*time.Millisecond)
	}
	Append(t, j, envs...)
	for _, from := range []uint64{1, 400, 4401, 4500} {
		got := ReadStreamAll(t, j, long, from)
		if len(got) != int(4500-from+1) {
			t.Fatalf("ReadStream(%s, %d) of a stream of 4500 yielded %d envelopes", long, from, len(got))
		}
		for i, e := range got {
			if e.GetProxyId() != long || e.GetStreamSeq() != from+uint64(i) {
				t.Fatalf("ReadStream(%s, %d) envelope %d: proxy %q stream_seq %d", long, from, i, e.GetProxyId(), e.GetStreamSeq())
			}
		}
	}
}

func (s *suite) heads(t *testing.T) {
	j := s.open(t)
	if j.Head() != 0 || j.First() != 1 || j.StreamHead(ProxyID(1)) != 0 {
		t.Fatalf("empty journal: Head %d First %d StreamHead %d; want 0 1 0", j.Head(), j.First(), j.StreamHead(ProxyID(1)))
	}
	wantSeqs(t, ReadAll(t, j, 1), 1, 0)
	check(t, j)
	fill(t, j, 100, 4)
	if j.Head() != 100 || j.First() != 1 {
		t.Fatalf("Head %d First %d; want 100 1", j.Head(), j.First())
	}
	for p := range 4 {
		if got := j.StreamHead(ProxyID(p)); got != uint64(len(ReadStreamAll(t, j, ProxyID(p), 1))) || got == 0 {
			t.Fatalf("StreamHead(%d) = %d disagrees with the stream", p, got)
		}
	}
}

func (s *suite) durability(t *testing.T) {
	j := s.open(t)
	if s.h.Reopen == nil {
		t.Skip("the implementation is not durable")
	}
	fill(t, j, 1000, 5)
	snap := Snapshot(ProxyID(2), j.StreamHead(ProxyID(2)), 0)
	if err := j.SaveSnapshot(context.Background(), snap); err != nil {
		t.Fatal(err)
	}
	before := ReadAll(t, j, 1)
	heads := map[string]uint64{}
	for p := range 6 {
		heads[ProxyID(p)] = j.StreamHead(ProxyID(p))
	}
	j = s.reopen(t, j)
	if j.Head() != 1000 || j.First() != 1 {
		t.Fatalf("after reopen: Head %d First %d; want 1000 1", j.Head(), j.First())
	}
	after := ReadAll(t, j, 1)
	wantSeqs(t, after, 1, 1000)
	for i := range after {
		equal(t, "envelope after reopen", after[i], before[i])
	}
	for p, h := range heads {
		if j.StreamHead(p) != h {
			t.Fatalf("after reopen StreamHead(%s) = %d, want %d", p, j.StreamHead(p), h)
		}
	}
	got, err := j.LoadSnapshot(context.Background(), ProxyID(2))
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "snapshot after reopen", got, snap)
	check(t, j)
	// Appending continues the sequences.
	e := Succeeded(ProxyID(2), time.Hour)
	if seqs := Append(t, j, e); seqs[0] != 1001 || e.GetStreamSeq() != heads[ProxyID(2)]+1 {
		t.Fatalf("append after reopen: seq %d stream_seq %d; want 1001 %d", seqs[0], e.GetStreamSeq(), heads[ProxyID(2)]+1)
	}
	j = s.reopen(t, j)
	if j.Head() != 1001 {
		t.Fatalf("after second reopen Head = %d, want 1001", j.Head())
	}
	check(t, j)
}

func (s *suite) snapshots(t *testing.T) {
	j := s.open(t)
	ctx := context.Background()
	a := ProxyID(1)
	_, err := j.LoadSnapshot(ctx, a)
	wantErr(t, "LoadSnapshot of a proxy without one", err, journal.ErrNoSnapshot)
	Append(t, j, Succeeded(a, 0), Succeeded(a, time.Second), Succeeded(a, 2*time.Second))
	s1 := Snapshot(a, 2, 2)
	if err := j.SaveSnapshot(ctx, s1); err != nil {
		t.Fatal(err)
	}
	got, err := j.LoadSnapshot(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "loaded snapshot", got, s1)
	got.TotalChecks = 999 // the journal's copy is not affected
	s2 := Snapshot(a, 3, 3)
	s2.State = pb.HealthState_HEALTH_STATE_DEGRADED
	if err := j.SaveSnapshot(ctx, s2); err != nil {
		t.Fatal(err)
	}
	got, err = j.LoadSnapshot(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "replaced snapshot", got, s2)
	err = j.SaveSnapshot(ctx, Snapshot(a, 4, 4))
	wantErr(t, "snapshot beyond the stream head", err, journal.ErrInvalidSnapshot)
	err = j.SaveSnapshot(ctx, Snapshot("", 0, 0))
	wantErr(t, "snapshot without proxy_id", err, journal.ErrInvalidSnapshot)
	_, err = j.LoadSnapshot(ctx, ProxyID(2))
	wantErr(t, "LoadSnapshot of another proxy", err, journal.ErrNoSnapshot)
	if l, ok := j.(journal.SnapshotLister); ok {
		b := ProxyID(0)
		Append(t, j, Succeeded(b, 0))
		if err := j.SaveSnapshot(ctx, Snapshot(b, 1, 4)); err != nil {
			t.Fatal(err)
		}
		ids, err := l.SnapshotIDs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{a, b}
		slices.Sort(want)
		if !slices.Equal(ids, want) {
			t.Errorf("SnapshotIDs = %v, want %v", ids, want)
		}
	}
	check(t, j)
}
