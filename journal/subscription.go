package journal

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// subscriptionBatch is how many envelopes Next fetches from the journal at a
// time.
const subscriptionBatch = 512

// feed is what a Subscription needs from a journal.
type feed interface {
	// readCommitted returns up to max committed envelopes with seq >= from
	// (from First() if from was retained away), appended to dst, in order.
	readCommitted(from uint64, max int, dst []*pb.Envelope) ([]*pb.Envelope, error)
	// Head returns the highest committed seq.
	Head() uint64
	// commits returns the current commit notification channel, closed at
	// the next commit.
	commits() <-chan struct{}
	// done is closed when the journal closes.
	done() <-chan struct{}
}

// notifier broadcasts commits without blocking the writer: the writer closes
// the current channel after each commit and installs a fresh one; waiters
// take the channel before checking the head.
type notifier struct {
	ch atomic.Pointer[chan struct{}]
}

func newNotifier() *notifier {
	n := &notifier{}
	ch := make(chan struct{})
	n.ch.Store(&ch)
	return n
}

// wait returns the channel that the next commit closes.
func (n *notifier) wait() <-chan struct{} { return *n.ch.Load() }

// broadcast wakes every waiter. Only the writer calls it, after publishing
// the new head.
func (n *notifier) broadcast() {
	ch := make(chan struct{})
	close(*n.ch.Swap(&ch))
}

// Subscription delivers a journal's committed envelopes in order, each
// exactly once, from a starting seq: first those already in the journal,
// then new ones as they commit. It reads from the journal at its own pace,
// so a slow subscriber never slows down Append.
//
// If the starting seq has been deleted by retention, delivery starts at the
// journal's First() instead; the same applies if retention overtakes a
// subscriber that lags behind. Use Position to see where the subscription
// is.
//
// When the journal closes, Next and NextBatch first return the envelopes the
// subscription had already fetched, then an error wrapping ErrClosed.
// Envelopes committed but not yet fetched are not delivered: resume after
// reopening with Subscribe(Position()).
//
// Next and NextBatch must not be called concurrently with each other; Close
// may be called from any goroutine and wakes a blocked Next.
type Subscription struct {
	src  feed
	next uint64 // seq of the next envelope to fetch from the journal
	buf  []*pb.Envelope
	pos  int

	closeOnce sync.Once
	closed    chan struct{}
}

// newSubscription creates a subscription on src starting at from.
func newSubscription(src feed, from uint64) *Subscription {
	if from == 0 {
		from = 1
	}
	return &Subscription{src: src, next: from, closed: make(chan struct{})}
}

// Position returns the seq of the next envelope the subscription will
// deliver (or a later one, if that one is deleted by retention first).
func (s *Subscription) Position() uint64 {
	if s.pos < len(s.buf) {
		return s.buf[s.pos].GetSeq()
	}
	return s.next
}

// Next returns the next envelope, waiting until one commits, ctx ends (its
// error is returned), the subscription is closed or the journal closes
// (ErrClosed).
func (s *Subscription) Next(ctx context.Context) (*pb.Envelope, error) {
	for s.pos >= len(s.buf) {
		buf, err := s.fetch(ctx, subscriptionBatch, s.buf[:0])
		if err != nil {
			return nil, err
		}
		s.buf, s.pos = buf, 0
	}
	e := s.buf[s.pos]
	s.buf[s.pos] = nil
	s.pos++
	return e, nil
}

// NextBatch returns between 1 and max envelopes (max <= 0 means 512),
// waiting like Next until at least one is available. The returned slice
// belongs to the caller.
func (s *Subscription) NextBatch(ctx context.Context, max int) ([]*pb.Envelope, error) {
	return s.NextBatchInto(ctx, nil, max)
}

// NextBatchInto is NextBatch returning the envelopes in dst[:0], grown if
// needed: a tail that is done with each batch before it asks for the next
// one reuses one slice instead of allocating one per batch. The envelopes
// themselves are the caller's to keep.
func (s *Subscription) NextBatchInto(ctx context.Context, dst []*pb.Envelope, max int) ([]*pb.Envelope, error) {
	if max <= 0 {
		max = subscriptionBatch
	}
	clear(dst) // drops what the caller's last batch held
	if s.pos < len(s.buf) {
		n := min(max, len(s.buf)-s.pos)
		out := append(dst[:0], s.buf[s.pos:s.pos+n]...)
		clear(s.buf[s.pos : s.pos+n])
		s.pos += n
		return out, nil
	}
	return s.fetch(ctx, max, dst[:0])
}

// Close ends the subscription; a blocked Next returns ErrClosed. It is
// idempotent and never fails.
func (s *Subscription) Close() {
	s.closeOnce.Do(func() { close(s.closed) })
}

// fetch reads up to max envelopes from s.next into dst, waiting for a commit
// when the subscription has caught up.
func (s *Subscription) fetch(ctx context.Context, max int, dst []*pb.Envelope) ([]*pb.Envelope, error) {
	for {
		select {
		case <-s.closed:
			return nil, fmt.Errorf("%w: subscription closed", ErrClosed)
		case <-s.src.done():
			return nil, fmt.Errorf("%w: the journal was closed; resume with Subscribe(%d) after reopening", ErrClosed, s.next)
		default:
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// Take the notification channel before looking at the head: a
		// commit that publishes a head after this point closes it.
		commit := s.src.commits()
		if s.src.Head() >= s.next {
			out, err := s.src.readCommitted(s.next, max, dst)
			if err != nil {
				return nil, err
			}
			if len(out) > 0 {
				s.next = out[len(out)-1].GetSeq() + 1
				return out, nil
			}
		}
		select {
		case <-commit:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.closed:
		case <-s.src.done():
		}
	}
}
