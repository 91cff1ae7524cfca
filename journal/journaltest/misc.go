package journaltest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/journal"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

func (s *suite) checkDetectsDamage(t *testing.T) {
	if s.h.Damage == nil {
		t.Skip("the harness cannot damage a journal")
	}
	j := s.open(t)
	fill(t, j, 200, 4)
	saveSnapshot(t, j, ProxyID(1))
	check(t, j)
	d := s.h.Damage(t, j)
	if d != j {
		t.Cleanup(func() { _ = d.Close() })
	}
	err := d.Check(context.Background())
	wantErr(t, "Check of a damaged journal", err, journal.ErrCorrupt)
	t.Logf("Check reported: %v", err)
}

func (s *suite) closed(t *testing.T) {
	j := s.open(t)
	ctx := context.Background()
	fill(t, j, 10, 2)
	if err := j.SaveSnapshot(ctx, Snapshot(ProxyID(0), 1, 1)); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := j.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err := j.Append(ctx, []*pb.Envelope{Succeeded(ProxyID(0), 0)})
	wantErr(t, "Append", err, journal.ErrClosed)
	for _, err := range j.Read(ctx, 1) {
		wantErr(t, "Read", err, journal.ErrClosed)
	}
	for _, err := range j.ReadStream(ctx, ProxyID(0), 1) {
		wantErr(t, "ReadStream", err, journal.ErrClosed)
	}
	wantErr(t, "SaveSnapshot", j.SaveSnapshot(ctx, Snapshot(ProxyID(0), 1, 1)), journal.ErrClosed)
	_, err = j.LoadSnapshot(ctx, ProxyID(0))
	wantErr(t, "LoadSnapshot", err, journal.ErrClosed)
	_, err = j.Retain(ctx, BaseTime.Add(time.Hour))
	wantErr(t, "Retain", err, journal.ErrClosed)
	wantErr(t, "Check", j.Check(ctx), journal.ErrClosed)
	sub := j.Subscribe(1)
	defer sub.Close()
	_, err = sub.Next(ctx)
	wantErr(t, "Subscription.Next", err, journal.ErrClosed)
	if j.Head() != 10 {
		t.Fatalf("Head after Close = %d, want the last value 10", j.Head())
	}
}

func (s *suite) contextCancelled(t *testing.T) {
	j := s.open(t)
	fill(t, j, 10, 2)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := j.Append(ctx, []*pb.Envelope{Succeeded(ProxyID(0), 0)})
	wantErr(t, "Append", err, context.Canceled)
	n := 0
	for e, err := range j.Read(ctx, 1) {
		if e != nil || !errors.Is(err, context.Canceled) {
			t.Fatalf("Read with a cancelled context yielded %v, %v", e, err)
		}
		n++
	}
	if n != 1 {
		t.Fatalf("Read with a cancelled context yielded %d times, want once (the error)", n)
	}
	for _, err := range j.ReadStream(ctx, ProxyID(0), 1) {
		wantErr(t, "ReadStream", err, context.Canceled)
	}
	wantErr(t, "SaveSnapshot", j.SaveSnapshot(ctx, Snapshot(ProxyID(0), 1, 1)), context.Canceled)
	_, err = j.LoadSnapshot(ctx, ProxyID(0))
	wantErr(t, "LoadSnapshot", err, context.Canceled)
	_, err = j.Retain(ctx, BaseTime.Add(time.Hour))
	wantErr(t, "Retain", err, context.Canceled)
	wantErr(t, "Check", j.Check(ctx), context.Canceled)
	sub := j.Subscribe(11)
	defer sub.Close()
	_, err = sub.Next(ctx)
	wantErr(t, "Subscription.Next", err, context.Canceled)
	tctx, tcancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer tcancel()
	_, err = sub.NextBatch(tctx, 10)
	wantErr(t, "Subscription.NextBatch", err, context.DeadlineExceeded)
	// Nothing of the cancelled calls was written, and the journal works.
	if j.Head() != 10 {
		t.Fatalf("Head = %d after cancelled calls, want 10", j.Head())
	}
	Append(t, j, PoolDegraded(time.Hour))
	check(t, j)

	// Appends whose context ends while they wait: each either committed
	// (and then reported success or the context error) or not; the
	// journal stays consistent and gap-free either way.
	for i := range 50 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = j.Append(ctx, []*pb.Envelope{Succeeded(ProxyID(i%3), time.Duration(i)*time.Second)})
		}()
		cancel()
		<-done
	}
	check(t, j)
	wantSeqs(t, ReadAll(t, j, 1), 1, j.Head())
}
