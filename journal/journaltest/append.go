package journaltest

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/proxyhealth/proxyhealth/journal"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

func (s *suite) appendOrder(t *testing.T) {
	j := s.open(t)
	a, b := ProxyID(1), ProxyID(2)
	in := []*pb.Envelope{Succeeded(a, 0), Failed(b, time.Second), PoolDegraded(2 * time.Second)}
	want := proto.CloneOf(in[0])
	seqs := Append(t, j, in...)
	for i, seq := range seqs {
		if seq != uint64(i+1) || in[i].GetSeq() != seq {
			t.Fatalf("envelope %d: returned seq %d, envelope seq %d, want %d", i, seq, in[i].GetSeq(), i+1)
		}
	}
	if in[0].GetStreamSeq() != 1 || in[1].GetStreamSeq() != 1 || in[2].GetStreamSeq() != 0 {
		t.Fatalf("stream seqs %d %d %d, want 1 1 0", in[0].GetStreamSeq(), in[1].GetStreamSeq(), in[2].GetStreamSeq())
	}
	seqs = Append(t, j, Succeeded(a, 3*time.Second))
	if seqs[0] != 4 {
		t.Fatalf("second append got seq %d, want 4", seqs[0])
	}
	if got, err := j.Append(context.Background(), nil); err != nil || len(got) != 0 {
		t.Fatalf("empty Append = %v, %v; want no seqs, no error", got, err)
	}
	all := ReadAll(t, j, 1)
	wantSeqs(t, all, 1, 4)
	want.Seq, want.StreamSeq = 1, 1
	equal(t, "first envelope read back", all[0], want)
	if all[3].GetStreamSeq() != 2 || all[3].GetProxyId() != a {
		t.Fatalf("fourth envelope: proxy %q stream_seq %d, want %q 2", all[3].GetProxyId(), all[3].GetStreamSeq(), a)
	}
	if j.Head() != 4 || j.First() != 1 || j.StreamHead(a) != 2 || j.StreamHead(b) != 1 {
		t.Fatalf("Head %d First %d StreamHead(a) %d StreamHead(b) %d; want 4 1 2 1", j.Head(), j.First(), j.StreamHead(a), j.StreamHead(b))
	}
	check(t, j)
}

func (s *suite) concurrentAppends(t *testing.T) {
	j := s.open(t)
	const goroutines, calls = 16, 500
	type result struct {
		seqs []uint64
		err  error
	}
	results := make([][]result, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			own := ProxyID(100 + g)
			shared := ProxyID(g % 3) // three streams shared by several goroutines
			for c := range calls {
				n := 1 + (g+c)%5
				envs := make([]*pb.Envelope, n)
				for i := range envs {
					switch (c + i) % 3 {
					case 0:
						envs[i] = Succeeded(own, time.Duration(c)*time.Millisecond)
					case 1:
						envs[i] = Failed(shared, time.Duration(c)*time.Millisecond)
					default:
						envs[i] = PoolDegraded(time.Duration(c) * time.Millisecond)
					}
				}
				seqs, err := j.Append(context.Background(), envs)
				results[g] = append(results[g], result{seqs, err})
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	var total uint64
	seen := make(map[uint64]bool)
	for g, rs := range results {
		for c, r := range rs {
			if r.err != nil {
				t.Fatalf("goroutine %d call %d: %v", g, c, r.err)
			}
			for i, seq := range r.seqs {
				if seen[seq] {
					t.Fatalf("seq %d returned twice", seq)
				}
				seen[seq] = true
				if i > 0 && seq != r.seqs[i-1]+1 {
					t.Fatalf("one call got non-contiguous seqs %v", r.seqs)
				}
			}
			total += uint64(len(r.seqs))
		}
	}
	if j.Head() != total {
		t.Fatalf("Head = %d, want %d", j.Head(), total)
	}
	check(t, j)
	all := ReadAll(t, j, 1)
	wantSeqs(t, all, 1, total)
	streams := make(map[string]uint64)
	for _, e := range all {
		if p := e.GetProxyId(); p != "" {
			streams[p]++
			if e.GetStreamSeq() != streams[p] {
				t.Fatalf("seq %d: proxy %s stream_seq %d, want %d", e.GetSeq(), p, e.GetStreamSeq(), streams[p])
			}
		}
	}
	for p, n := range streams {
		if j.StreamHead(p) != n {
			t.Fatalf("StreamHead(%s) = %d, want %d", p, j.StreamHead(p), n)
		}
	}
}

func (s *suite) streamSeqs(t *testing.T) {
	j := s.open(t)
	a := ProxyID(1)
	Append(t, j, Succeeded(a, 0), Succeeded(a, time.Second))
	// Explicit stream seqs that continue the head, mixed with implicit ones.
	e3, e4, e5 := Failed(a, 2*time.Second), Succeeded(a, 3*time.Second), Succeeded(a, 4*time.Second)
	e3.StreamSeq, e5.StreamSeq = 3, 5
	Append(t, j, e3, e4, PoolDegraded(3*time.Second), e5)
	if e4.GetStreamSeq() != 4 || j.StreamHead(a) != 5 {
		t.Fatalf("implicit stream_seq %d (want 4), StreamHead %d (want 5)", e4.GetStreamSeq(), j.StreamHead(a))
	}
	got := ReadStreamAll(t, j, a, 1)
	if len(got) != 5 {
		t.Fatalf("ReadStream got %d envelopes, want 5", len(got))
	}
	for i, e := range got {
		if e.GetStreamSeq() != uint64(i+1) || e.GetProxyId() != a {
			t.Fatalf("stream envelope %d: proxy %q stream_seq %d", i, e.GetProxyId(), e.GetStreamSeq())
		}
	}
	if got[4].GetSeq() != 6 {
		t.Fatalf("stream_seq 5 has seq %d, want 6", got[4].GetSeq())
	}
	// Each envelope links to the previous one of its stream (the pool-level
	// event at seq 5 is skipped), and Append fills prev_seq in.
	if e4.GetPrevSeq() != 3 {
		t.Fatalf("Append left prev_seq %d on the caller's envelope, want 3", e4.GetPrevSeq())
	}
	for i, e := range got {
		want := uint64(0)
		if i > 0 {
			want = got[i-1].GetSeq()
		}
		if e.GetPrevSeq() != want {
			t.Fatalf("stream_seq %d (seq %d) has prev_seq %d, want %d", e.GetStreamSeq(), e.GetSeq(), e.GetPrevSeq(), want)
		}
	}
	if n := len(ReadStreamAll(t, j, ProxyID(99), 1)); n != 0 {
		t.Fatalf("ReadStream of an unknown proxy yielded %d envelopes", n)
	}
	check(t, j)
}

func (s *suite) streamConflict(t *testing.T) {
	j := s.open(t)
	a, b := ProxyID(1), ProxyID(2)
	Append(t, j, Succeeded(a, 0), Succeeded(b, 0))
	cases := map[string]func() []*pb.Envelope{
		"behind the head": func() []*pb.Envelope {
			e := Succeeded(a, time.Second)
			e.StreamSeq = 1
			return []*pb.Envelope{Succeeded(b, time.Second), e}
		},
		"beyond head+1": func() []*pb.Envelope {
			e := Succeeded(a, time.Second)
			e.StreamSeq = 3
			return []*pb.Envelope{e}
		},
		"not counting the call's own envelopes": func() []*pb.Envelope {
			e := Succeeded(a, time.Second)
			e.StreamSeq = 2
			return []*pb.Envelope{Succeeded(a, time.Second), e}
		},
	}
	for name, mk := range cases {
		envs := mk()
		_, err := j.Append(context.Background(), envs)
		wantErr(t, name, err, journal.ErrStreamConflict)
		for i, e := range envs {
			if e.GetSeq() != 0 {
				t.Fatalf("%s: envelope %d of the failed call got seq %d", name, i, e.GetSeq())
			}
		}
		if j.Head() != 2 || j.StreamHead(a) != 1 || j.StreamHead(b) != 1 {
			t.Fatalf("%s: the failed call wrote something: Head %d StreamHead a %d b %d", name, j.Head(), j.StreamHead(a), j.StreamHead(b))
		}
	}
	// Two writers racing with the same explicit stream_seq: one wins.
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			e := Succeeded(a, time.Minute)
			e.StreamSeq = 2
			_, errs[i] = j.Append(context.Background(), []*pb.Envelope{e})
		})
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		if err == nil {
			wins++
		} else {
			wantErr(t, "racing append", err, journal.ErrStreamConflict)
		}
	}
	if wins != 1 || j.StreamHead(a) != 2 || j.Head() != 3 {
		t.Fatalf("%d racing appends won, StreamHead %d, Head %d; want 1, 2, 3", wins, j.StreamHead(a), j.Head())
	}
	wantSeqs(t, ReadAll(t, j, 1), 1, 3)
	check(t, j)
}

func (s *suite) invalidEvents(t *testing.T) {
	j := s.open(t)
	a := ProxyID(1)
	Append(t, j, Succeeded(a, 0))
	noEvent := Succeeded(a, 0)
	noEvent.Event = nil
	preset := Succeeded(a, 0)
	preset.Seq = 7
	poolWithStream := PoolDegraded(0)
	poolWithStream.StreamSeq = 1
	nul := Succeeded("abc\x00def", 0)
	cases := map[string][]*pb.Envelope{
		"nil envelope":             {Succeeded(a, 0), nil},
		"no event":                 {Succeeded(a, 0), noEvent},
		"preset seq":               {preset},
		"stream_seq without proxy": {poolWithStream},
		"proxy_id with a NUL byte": {nul},
	}
	for name, envs := range cases {
		_, err := j.Append(context.Background(), envs)
		wantErr(t, name, err, journal.ErrInvalidEvent)
		if j.Head() != 1 || j.StreamHead(a) != 1 {
			t.Fatalf("%s: the invalid call wrote something: Head %d StreamHead %d", name, j.Head(), j.StreamHead(a))
		}
	}
	check(t, j)
}
