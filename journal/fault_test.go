package journal_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/journal/journaltest"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// TestBoltCommitFault: a commit failed by WithCommitFault fails every
// request of its batch with the injected error, writes nothing, moves no
// head, is reported to the observer, and the next commit works.
func TestBoltCommitFault(t *testing.T) {
	ctx := context.Background()
	injected := errors.New("injected: disk on fire")
	var failing atomic.Bool
	var mu sync.Mutex
	var stats []journal.CommitStats
	path := filepath.Join(t.TempDir(), "journal.db")
	j := openBolt(t, path, journal.WithUnsafeNoSync(),
		journal.WithCommitFault(func() error {
			if failing.Load() {
				return injected
			}
			return nil
		}),
		journal.WithCommitObserver(func(s journal.CommitStats) {
			mu.Lock()
			stats = append(stats, s)
			mu.Unlock()
		}))
	defer j.Close()
	a, b := journaltest.ProxyID(1), journaltest.ProxyID(2)
	fillN(t, j, 10)
	head, headA, headB := j.Head(), j.StreamHead(a), j.StreamHead(b)

	failing.Store(true)
	e1 := journaltest.Succeeded(a, time.Minute)
	if _, err := j.Append(ctx, []*pb.Envelope{e1}); !errors.Is(err, injected) {
		t.Fatalf("Append during the fault = %v, want the injected error", err)
	}
	if e1.GetSeq() != 0 || e1.GetStreamSeq() != 0 || e1.GetPrevSeq() != 0 {
		t.Fatalf("the failed envelope keeps seq %d stream_seq %d prev_seq %d", e1.GetSeq(), e1.GetStreamSeq(), e1.GetPrevSeq())
	}
	asyncErr := make(chan error, 1)
	j.AppendAsync([]*pb.Envelope{journaltest.Failed(b, time.Minute)}, func(_ []uint64, err error) { asyncErr <- err })
	if err := <-asyncErr; !errors.Is(err, injected) {
		t.Fatalf("AppendAsync during the fault = %v, want the injected error", err)
	}
	if err := j.SaveSnapshot(ctx, journaltest.Snapshot(a, 1, 1)); !errors.Is(err, injected) {
		t.Fatalf("SaveSnapshot during the fault = %v, want the injected error", err)
	}
	if j.Head() != head || j.StreamHead(a) != headA || j.StreamHead(b) != headB {
		t.Fatalf("heads moved by failed commits: Head %d StreamHead %d %d, want %d %d %d", j.Head(), j.StreamHead(a), j.StreamHead(b), head, headA, headB)
	}
	if _, err := j.LoadSnapshot(ctx, a); !errors.Is(err, journal.ErrNoSnapshot) {
		t.Fatalf("the failed snapshot was written: %v", err)
	}
	mu.Lock()
	failed := 0
	for _, s := range stats {
		if errors.Is(s.Err, injected) {
			failed++
		}
	}
	mu.Unlock()
	if failed != 3 {
		t.Fatalf("the observer saw %d failed commits, want 3", failed)
	}

	failing.Store(false)
	seqs := journaltest.Append(t, j, e1, journaltest.Failed(b, 2*time.Minute))
	if seqs[0] != head+1 || j.StreamHead(a) != headA+1 || j.StreamHead(b) != headB+1 {
		t.Fatalf("after the fault: seqs %v, stream heads %d %d; want %d.. and %d %d", seqs, j.StreamHead(a), j.StreamHead(b), head+1, headA+1, headB+1)
	}
	if err := j.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(journaltest.ReadAll(t, j, 1)); n != int(head)+2 {
		t.Fatalf("read %d events, want %d", n, head+2)
	}
}
