package journaltest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/journal"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// waitTimeout bounds every wait of the suite; nothing should come close.
const waitTimeout = 30 * time.Second

// collect reads n envelopes from sub, taking turns with Next, NextBatch
// and NextBatchInto (one slice reused throughout), and
// fails unless they are the seqs from..from+n-1 in order.
func collect(t *testing.T, sub *journal.Subscription, from uint64, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	want := from
	var reused []*pb.Envelope // NextBatchInto's slice, batch after batch
	for got := 0; got < n; {
		var envs []*pb.Envelope
		switch got % 3 {
		case 0:
			e, err := sub.Next(ctx)
			if err != nil {
				t.Fatalf("Next after %d of %d envelopes: %v", got, n, err)
			}
			envs = []*pb.Envelope{e}
		case 1:
			var err error
			envs, err = sub.NextBatch(ctx, 1+got%97)
			if err != nil {
				t.Fatalf("NextBatch after %d of %d envelopes: %v", got, n, err)
			}
			if len(envs) == 0 || len(envs) > 1+got%97 {
				t.Fatalf("NextBatch(%d) returned %d envelopes", 1+got%97, len(envs))
			}
		default:
			var err error
			reused, err = sub.NextBatchInto(ctx, reused, 1+got%89)
			if err != nil {
				t.Fatalf("NextBatchInto after %d of %d envelopes: %v", got, n, err)
			}
			if len(reused) == 0 || len(reused) > 1+got%89 {
				t.Fatalf("NextBatchInto(%d) returned %d envelopes", 1+got%89, len(reused))
			}
			envs = reused
		}
		for _, e := range envs {
			if e.GetSeq() != want {
				t.Fatalf("subscription delivered seq %d, want %d", e.GetSeq(), want)
			}
			want++
			got++
		}
	}
	if got := int(want - from); got != n {
		t.Fatalf("subscription delivered %d envelopes, want %d", got, n)
	}
}

func (s *suite) subscribeConcurrent(t *testing.T) {
	j := s.open(t)
	fill(t, j, 50, 3) // some before subscribing
	sub := j.Subscribe(1)
	defer sub.Close()
	late := j.Subscribe(0) // 0 means from the beginning
	defer late.Close()
	const appenders, calls = 4, 150
	var wg sync.WaitGroup
	errs := make(chan error, appenders)
	for g := range appenders {
		wg.Go(func() {
			for c := range calls {
				envs := []*pb.Envelope{Succeeded(ProxyID(g), time.Duration(c)*time.Second)}
				if c%3 == 0 {
					envs = append(envs, Failed(ProxyID(g+10), time.Duration(c)*time.Second))
				}
				if _, err := j.Append(context.Background(), envs); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	total := 50 + appenders*(calls+calls/3)
	collect(t, sub, 1, total)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	collect(t, late, 1, total)
	// Nothing more: Next waits until its context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if e, err := sub.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next on a caught-up subscription = %v, %v; want DeadlineExceeded", e, err)
	}
	// And it still works afterwards.
	Append(t, j, PoolDegraded(time.Hour))
	collect(t, sub, uint64(total)+1, 1)
}

func (s *suite) subscribeFromMiddle(t *testing.T) {
	j := s.open(t)
	fill(t, j, 1200, 5)
	sub := j.Subscribe(700)
	defer sub.Close()
	if sub.Position() != 700 {
		t.Fatalf("Position = %d, want 700", sub.Position())
	}
	collect(t, sub, 700, 501)
	fill(t, j, 300, 5)
	collect(t, sub, 1201, 300)
	if sub.Position() != 1501 {
		t.Fatalf("Position = %d, want 1501", sub.Position())
	}
	beyond := j.Subscribe(1600) // starts in the future
	defer beyond.Close()
	fill(t, j, 100, 5)
	collect(t, beyond, 1600, 1)
}

func (s *suite) subscribeClose(t *testing.T) {
	j := s.open(t)
	sub := j.Subscribe(1)
	errc := make(chan error, 1)
	go func() {
		_, err := sub.Next(context.Background())
		errc <- err
	}()
	sub.Close()
	sub.Close() // idempotent
	select {
	case err := <-errc:
		wantErr(t, "Next on a closed subscription", err, journal.ErrClosed)
	case <-time.After(waitTimeout):
		t.Fatal("Close did not wake a blocked Next")
	}
	// Closing the journal wakes its subscriptions too.
	sub2 := j.Subscribe(1)
	go func() {
		_, err := sub2.Next(context.Background())
		errc <- err
	}()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		wantErr(t, "Next after the journal closed", err, journal.ErrClosed)
	case <-time.After(waitTimeout):
		t.Fatal("closing the journal did not wake a blocked Next")
	}
}
