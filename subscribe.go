package proxyhealth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/proxyhealth/proxyhealth/actors"
	"github.com/proxyhealth/proxyhealth/journal"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// ErrSlowSubscriber is reported by Subscription.Err when the subscriber fell
// more than Config.SubscriberBuffer events behind and was dropped so that it
// could not slow the engine down. Read the journal from the last seq you saw
// to catch up.
var ErrSlowSubscriber = errors.New("proxyhealth: subscriber too slow; dropped")

// Subscription delivers committed journal events. Envelopes are shared:
// treat them as read-only (events.Clone to keep a modifiable copy).
type Subscription struct {
	// C delivers every event committed after Subscribe, in seq order. It is
	// closed by Close, by Engine.Close, or when the subscriber is dropped.
	C <-chan *pb.Envelope

	c    chan *pb.Envelope
	f    *fanout
	once sync.Once
	err  error // set before c is closed
}

// Err tells why C was closed: nil after Close or Engine.Close,
// ErrSlowSubscriber after a drop.
func (s *Subscription) Err() error {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	return s.err
}

// Close unsubscribes; C is closed. Idempotent.
func (s *Subscription) Close() { s.f.remove(s, nil) }

// Subscribe returns a subscription to the events committed from now on. A
// subscriber that does not keep up is dropped (C closed, Err ==
// ErrSlowSubscriber) and a warning is logged; the engine never waits for it.
func (e *Engine) Subscribe() *Subscription { return e.subs.add() }

// fanout tails the journal and hands each committed envelope to every
// subscriber without blocking.
type fanout struct {
	j      journal.Journal
	buf    int
	log    *slog.Logger
	from   uint64
	mu     sync.Mutex
	subs   map[*Subscription]struct{}
	closed bool
}

func newFanout(j journal.Journal, buf int, log *slog.Logger) *fanout {
	return &fanout{j: j, buf: buf, log: log, from: j.Head() + 1, subs: map[*Subscription]struct{}{}}
}

func (f *fanout) add() *Subscription {
	c := make(chan *pb.Envelope, f.buf)
	s := &Subscription{C: c, c: c, f: f}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		s.once.Do(func() { close(c) })
		return s
	}
	f.subs[s] = struct{}{}
	return s
}

func (f *fanout) remove(s *Subscription, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removeLocked(s, err)
}

func (f *fanout) removeLocked(s *Subscription, err error) {
	if _, ok := f.subs[s]; !ok {
		return
	}
	delete(f.subs, s)
	s.err = err
	s.once.Do(func() { close(s.c) })
}

func (f *fanout) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for s := range f.subs {
		f.removeLocked(s, nil)
	}
}

// run delivers until the journal closes or ctx ends.
func (f *fanout) run(ctx context.Context) {
	sub := f.j.Subscribe(f.from)
	defer sub.Close()
	var batch []*pb.Envelope // reused: the subscribers get envelopes, not the slice
	for {
		var err error
		batch, err = sub.NextBatchInto(ctx, batch, 1024)
		if err != nil {
			return
		}
		f.mu.Lock()
		for s := range f.subs {
			for _, env := range batch {
				select {
				case s.c <- env:
					continue
				default:
				}
				f.log.Warn("dropping a subscriber that fell behind", slog.Int("buffer", f.buf), slog.Uint64("seq", env.GetSeq()))
				f.removeLocked(s, ErrSlowSubscriber)
				break
			}
		}
		f.mu.Unlock()
	}
}

// ApplyRetention deletes journal events older than Config.Retention (it
// runs by itself hourly). It first has every proxy snapshot its state, so
// that quiet proxies (failed, paused) do not hold back the deletion; then
// it deletes the oldest events as a contiguous prefix, never one a snapshot
// does not cover. It returns how many events were deleted.
func (e *Engine) ApplyRetention(ctx context.Context) (int, error) {
	if e.cfg.Retention <= 0 {
		return 0, nil
	}
	cutoff := e.cfg.Clock.Now().Add(-e.cfg.Retention)
	if old, err := oldestBefore(ctx, e.journal, cutoff); err != nil || !old {
		// Nothing to delete (the usual case at start and in a young
		// journal): no proxy needs a snapshot first.
		return 0, err
	}
	if err := e.broadcast(ctx, "", func() any { return &actors.SnapshotNow{} }); err != nil {
		return 0, fmt.Errorf("proxyhealth: snapshot proxies before retention: %w", err)
	}
	return e.journal.Retain(ctx, cutoff)
}

// oldestBefore reports whether j's oldest retained event is older than
// cutoff. Retain deletes a prefix of the events older than the cutoff, so
// without such an event it deletes nothing.
func oldestBefore(ctx context.Context, j journal.Journal, cutoff time.Time) (bool, error) {
	if j.First() > j.Head() {
		return false, nil
	}
	for env, err := range j.Read(ctx, j.First()) {
		if err != nil {
			return false, fmt.Errorf("proxyhealth: read the oldest journal event before retention: %w", err)
		}
		return env.GetAtUnixNano() < cutoff.UnixNano(), nil
	}
	return false, nil
}

// retainer deletes journal events older than the retention period, once an
// hour (and once at start), on the engine's clock.
type retainer struct {
	e      *Engine
	period time.Duration
	mu     sync.Mutex
	timer  interface{ Stop() bool }
	done   bool
	busy   sync.WaitGroup
}

// retainEvery is how often retention runs.
const retainEvery = time.Hour

func newRetainer(e *Engine, period time.Duration) *retainer {
	r := &retainer{e: e, period: period}
	r.arm(time.Minute)
	return r
}

func (r *retainer) arm(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return
	}
	r.timer = r.e.cfg.Clock.AfterFunc(d, r.run)
}

func (r *retainer) run() {
	r.mu.Lock()
	if r.done {
		r.mu.Unlock()
		return
	}
	r.busy.Add(1)
	r.mu.Unlock()
	defer r.busy.Done()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	n, err := r.e.ApplyRetention(ctx)
	if err != nil && !errors.Is(err, journal.ErrClosed) && !errors.Is(err, ErrClosed) {
		r.e.log.Warn("journal retention failed; will retry", slog.Any("error", err))
	} else if n > 0 {
		r.e.log.Info("journal retention", slog.Int("deleted", n))
	}
	r.arm(retainEvery)
}

func (r *retainer) stop() {
	r.mu.Lock()
	r.done = true
	if r.timer != nil {
		r.timer.Stop()
	}
	r.mu.Unlock()
	r.busy.Wait()
}
