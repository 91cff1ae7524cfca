// Package clock is the time source of proxyhealth's shell: the real clock in
// production, a manually advanced fake in tests. The pure core (package
// events) never reads time; actors read it only through a Clock.
package clock

import (
	"container/heap"
	"sync"
	"time"
)

// Clock tells the time and runs functions later.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d. Stop prevents the call
	// if it has not started.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc: Stop prevents it from firing and reports
// whether it did. It is an alias of an unnamed interface type, so that
// proxyhealth.Timer (the same alias) is the same type and the clocks here
// satisfy proxyhealth.Clock without the facade naming this package.
type Timer = interface{ Stop() bool }

// Real is the system clock.
type Real struct{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// AfterFunc wraps time.AfterFunc (no goroutine until it fires).
func (Real) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// Fake is a clock that only moves when told to. Timers fire synchronously,
// in due order, inside Advance (or Set), on the caller's goroutine, after
// the fake's lock is released, so a fired function may use the clock.
type Fake struct {
	timerQueue // its mu also guards now
	now        time.Time
}

// NewFake returns a fake clock set to start.
func NewFake(start time.Time) *Fake { return &Fake{now: start} }

// Now returns the fake time.
func (c *Fake) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc registers f to run when the fake time reaches now+d. A d ≤ 0
// still waits for the next Advance (even Advance(0)).
func (c *Fake) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.add(c.now.Add(d), f)
}

// Advance moves the time forward by d, firing every timer that falls due,
// in order, with Now() equal to each timer's due time while it runs.
func (c *Fake) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	c.runUntil(end)
}

// Set moves the time to t (never backwards), firing due timers.
func (c *Fake) Set(t time.Time) { c.runUntil(t) }

func (c *Fake) runUntil(end time.Time) {
	for {
		c.mu.Lock()
		if len(c.timers) == 0 || c.timers[0].when.After(end) {
			if end.After(c.now) {
				c.now = end
			}
			c.mu.Unlock()
			return
		}
		t := heap.Pop(&c.timers).(*fakeTimer)
		if t.when.After(c.now) {
			c.now = t.when
		}
		c.mu.Unlock()
		t.f()
	}
}

// NextDue returns the due time of the earliest pending timer.
func (c *Fake) NextDue() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.timers) == 0 {
		return time.Time{}, false
	}
	return c.timers[0].when, true
}

// timerQueue holds the pending timers of a Fake or a Scheduler.
type timerQueue struct {
	mu     sync.Mutex
	timers timerHeap
	seq    uint64 // orders timers due at the same time
}

// add queues f to run at when; call it with q.mu held.
func (q *timerQueue) add(when time.Time, f func()) *fakeTimer {
	q.seq++
	t := &fakeTimer{q: q, when: when, f: f, seq: q.seq, index: -1}
	heap.Push(&q.timers, t)
	return t
}

// Pending returns the number of timers not yet fired or stopped.
func (q *timerQueue) Pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.timers)
}

// fakeTimer is a timer of a Fake or a Scheduler: an entry in its queue.
type fakeTimer struct {
	q     *timerQueue
	when  time.Time
	f     func()
	seq   uint64
	index int
}

func (t *fakeTimer) Stop() bool {
	t.q.mu.Lock()
	defer t.q.mu.Unlock()
	if t.index < 0 {
		return false
	}
	heap.Remove(&t.q.timers, t.index)
	return true
}

type timerHeap []*fakeTimer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if h[i].when.Equal(h[j].when) {
		return h[i].seq < h[j].seq
	}
	return h[i].when.Before(h[j].when)
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *timerHeap) Push(x any) {
	t := x.(*fakeTimer)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	n := len(old)
	t := old[n-1]
	old[n-1] = nil
	t.index = -1
	*h = old[:n-1]
	return t
}

// Scheduler is the real clock with a single timer goroutine: its AfterFunc
// callbacks run one after another on that goroutine, where time.AfterFunc
// starts a goroutine for each. Timers that fire together (thousands, when
// a pool's checks line up, or after a pause) then cost no burst of
// goroutines, whose descriptors the runtime would keep for good. Callbacks
// must return quickly and must not block. Close stops it.
//
// A scheduler with a slack coalesces timers like the kernel's timer slack:
// time is cut into ticks of the slack's length, and every timer fires at the
// end of the tick it falls due in, together with the others due in that
// tick. A timer never fires early and at most one slack late (plus the
// operating system's own lateness). Waking up once for a batch instead of
// once per timer is what makes many evenly spread timers cheap: each
// wake-up of an idle thread costs more CPU than the work a health check's
// timer starts.
type Scheduler struct {
	timerQueue
	due    []*fakeTimer
	slack  time.Duration
	epoch  time.Time // start of the first tick
	wake   chan struct{}
	done   chan struct{}
	exited chan struct{}
	// wakeups counts the batches fired (for tests).
	wakeups uint64
}

// NewScheduler starts a scheduler whose timers fire at most slack late so
// that timers due close together fire in one wake-up; slack <= 0 fires
// every timer as soon as it is due.
func NewScheduler(slack time.Duration) *Scheduler {
	s := &Scheduler{slack: max(slack, 0), epoch: time.Now(),
		wake: make(chan struct{}, 1), done: make(chan struct{}), exited: make(chan struct{})}
	go s.run()
	return s
}

// Now returns time.Now().
func (s *Scheduler) Now() time.Time { return time.Now() }

// AfterFunc runs f on the scheduler's goroutine after d (at the end of the
// tick d falls in, when the scheduler has a slack). After Close, f never
// runs.
func (s *Scheduler) AfterFunc(d time.Duration, f func()) Timer {
	s.mu.Lock()
	t := s.add(time.Now().Add(d), f)
	first := t.index == 0
	s.mu.Unlock()
	if first {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return t
}

// fireAt returns when a timer due at when fires: the end of its tick.
func (s *Scheduler) fireAt(when time.Time) time.Time {
	if s.slack <= 0 {
		return when
	}
	d := when.Sub(s.epoch) // monotonic; rounded up to a whole tick
	switch r := d % s.slack; {
	case r > 0:
		d += s.slack - r
	case r < 0:
		d -= r
	}
	return s.epoch.Add(d)
}

func (s *Scheduler) run() {
	defer close(s.exited)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		now := time.Now()
		for len(s.timers) > 0 && !s.fireAt(s.timers[0].when).After(now) {
			s.due = append(s.due, heap.Pop(&s.timers).(*fakeTimer))
		}
		wait := time.Hour
		if len(s.timers) > 0 {
			wait = s.fireAt(s.timers[0].when).Sub(now)
		}
		due := s.due
		if len(due) > 0 {
			s.wakeups++
		}
		s.mu.Unlock()
		if len(due) > 0 {
			for i, t := range due {
				due[i] = nil
				t.f()
			}
			s.mu.Lock()
			s.due = due[:0]
			s.mu.Unlock()
			continue
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-s.wake:
		case <-s.done:
			return
		}
	}
}

// Close stops the scheduler's goroutine; pending timers never fire.
func (s *Scheduler) Close() {
	close(s.done)
	<-s.exited
}
