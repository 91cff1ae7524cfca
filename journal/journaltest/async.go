package journaltest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/journal"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// appendAsync: a journal that implements journal.AsyncAppender calls done
// exactly once per call, with the seqs Append would return, from many
// concurrent callers; invalid calls and calls after Close fail through done.
func (s *suite) appendAsync(t *testing.T) {
	j := s.open(t)
	aj, ok := j.(journal.AsyncAppender)
	if !ok {
		t.Skip("this journal does not implement journal.AsyncAppender")
	}
	const callers, perCaller = 8, 50
	type result struct {
		seqs []uint64
		err  error
	}
	results := make([][]result, callers)
	var wg sync.WaitGroup
	wg.Add(callers * perCaller)
	for c := range callers {
		results[c] = make([]result, perCaller)
		go func() {
			for i := range perCaller {
				aj.AppendAsync([]*pb.Envelope{Succeeded(ProxyID(c), time.Duration(i)*time.Second)}, func(seqs []uint64, err error) {
					results[c][i] = result{seqs, err}
					wg.Done()
				})
			}
		}()
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for c := range callers {
		var last uint64
		for i, r := range results[c] {
			if r.err != nil || len(r.seqs) != 1 {
				t.Fatalf("caller %d append %d: %v %v", c, i, r.seqs, r.err)
			}
			if r.seqs[0] <= last || seen[r.seqs[0]] {
				t.Fatalf("caller %d append %d got seq %d after %d (or twice)", c, i, r.seqs[0], last)
			}
			seen[r.seqs[0]], last = true, r.seqs[0]
		}
		if h := j.StreamHead(ProxyID(c)); h != perCaller {
			t.Fatalf("proxy %d: stream head %d, want %d", c, h, perCaller)
		}
	}
	if h := j.Head(); h != callers*perCaller {
		t.Fatalf("head %d, want %d", h, callers*perCaller)
	}
	check(t, j)

	var got error
	aj.AppendAsync([]*pb.Envelope{{ProxyId: ProxyID(1)}}, func(_ []uint64, err error) { got = err })
	wantErr(t, "AppendAsync without an event", got, journal.ErrInvalidEvent)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	got = nil
	aj.AppendAsync([]*pb.Envelope{Succeeded(ProxyID(1), 0)}, func(_ []uint64, err error) { got = err })
	wantErr(t, "AppendAsync after Close", got, journal.ErrClosed)
}

// snapshotAsync: a journal that implements journal.AsyncSnapshotter calls
// done exactly once per call, with what SaveSnapshot would return, from
// many concurrent callers; the snapshots load back; an invalid snapshot
// and a save after Close fail through done.
func (s *suite) snapshotAsync(t *testing.T) {
	j := s.open(t)
	sj, ok := j.(journal.AsyncSnapshotter)
	if !ok {
		t.Skip("this journal does not implement journal.AsyncSnapshotter")
	}
	const proxies = 64
	for p := range proxies {
		Append(t, j, Succeeded(ProxyID(p), 0), Succeeded(ProxyID(p), time.Second))
	}
	errs := make([]error, proxies)
	calls := make([]int, proxies)
	var wg sync.WaitGroup
	wg.Add(proxies)
	for p := range proxies {
		go func() {
			sj.SaveSnapshotAsync(Snapshot(ProxyID(p), 2, 0), func(err error) {
				errs[p] = err
				calls[p]++
				wg.Done()
			})
		}()
	}
	wg.Wait()
	for p := range proxies {
		if errs[p] != nil || calls[p] != 1 {
			t.Fatalf("proxy %d: done called %d times, last with %v; want once with nil", p, calls[p], errs[p])
		}
		got, err := j.LoadSnapshot(context.Background(), ProxyID(p))
		if err != nil {
			t.Fatalf("proxy %d: LoadSnapshot after SaveSnapshotAsync: %v", p, err)
		}
		if got.GetStreamSeq() != 2 {
			t.Fatalf("proxy %d: loaded a snapshot at stream seq %d, want 2", p, got.GetStreamSeq())
		}
	}

	var got error
	done := make(chan struct{})
	sj.SaveSnapshotAsync(Snapshot(ProxyID(1), 9, 0), func(err error) { got = err; close(done) })
	<-done
	wantErr(t, "SaveSnapshotAsync beyond the stream head", got, journal.ErrInvalidSnapshot)
	got = nil
	sj.SaveSnapshotAsync(Snapshot("", 0, 0), func(err error) { got = err })
	wantErr(t, "SaveSnapshotAsync without proxy_id", got, journal.ErrInvalidSnapshot)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	got = nil
	sj.SaveSnapshotAsync(Snapshot(ProxyID(1), 2, 0), func(err error) { got = err })
	wantErr(t, "SaveSnapshotAsync after Close", got, journal.ErrClosed)
}
