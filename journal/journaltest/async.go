package journaltest

import (
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
