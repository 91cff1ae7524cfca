// Package clock is the time source of proxyhealth's shell: the real clock in
// production, a manually advanced fake in tests. The pure core (package
// events) never reads time; actors read it only through a Clock.
package clock

import (
	"cmp"
	"container/heap"
	"math"
	"slices"
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

// Rearmable is a timer armed again and again with one callback, which it
// calls with the token of the arming that fired: a proxy's next check and
// its zombie deadline re-arm one timer instead of allocating a timer and a
// closure every time. Arm replaces the pending arming, if any; an arming
// that was already due and is firing still fires, with its own token (the
// callback tells a stale firing by its token).
type Rearmable interface {
	// Arm (re)arms the timer to call its function with token after d.
	Arm(d time.Duration, token uint64)
	// Stop disarms it and reports whether an arming was pending.
	Stop() bool
}

// RearmableClock is a Clock that makes Rearmable timers (Fake and
// Scheduler).
type RearmableClock interface {
	Clock
	// NewTimer returns a disarmed timer that calls f(arg, token), like
	// AfterFunc's functions, when an arming fires. Timers that share f and
	// differ by arg (a pointer, which an interface holds without an
	// allocation) cost no closure each: a proxy's check timer passes its
	// actor's PID to one function of all the actors.
	NewTimer(f func(arg any, token uint64), arg any) Rearmable
}

// NewRearmable returns a disarmed Rearmable of c that calls f(arg, token):
// c's own (NewTimer) when c is a RearmableClock; with any other clock, each
// arming is a timer of c.AfterFunc (a timer and a closure allocated per
// arming).
func NewRearmable(c Clock, f func(arg any, token uint64), arg any) Rearmable {
	if rc, ok := c.(RearmableClock); ok {
		return rc.NewTimer(f, arg)
	}
	return &afterFuncTimer{c: c, f: f, arg: arg}
}

// afterFuncTimer is the Rearmable of a clock that makes none: an arming is
// an AfterFunc timer of its own.
type afterFuncTimer struct {
	c   Clock
	f   func(arg any, token uint64)
	arg any
	mu  sync.Mutex
	t   Timer // the pending arming's timer, if any
}

// Arm implements Rearmable.
func (t *afterFuncTimer) Arm(d time.Duration, token uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.t != nil {
		t.t.Stop()
	}
	f, arg := t.f, t.arg
	t.t = t.c.AfterFunc(d, func() { f(arg, token) })
}

// Stop implements Rearmable.
func (t *afterFuncTimer) Stop() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.t == nil {
		return false
	}
	stopped := t.t.Stop()
	t.t = nil
	return stopped
}

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
func NewFake(start time.Time) *Fake {
	c := &Fake{now: start}
	c.epoch, c.fake = start, c
	return c
}

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
	return c.add(c.sinceEpoch(c.now, d), f)
}

// NewTimer returns a disarmed timer of the fake clock; its armings fire
// like AfterFunc's timers.
func (c *Fake) NewTimer(f func(arg any, token uint64), arg any) Rearmable {
	return &fakeTimer{q: &c.timerQueue, f: f, arg: arg, index: -1, slot: inHeap}
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
		if len(c.timers) == 0 || c.timers[0].when > c.sinceEpoch(end, 0) {
			if end.After(c.now) {
				c.now = end
			}
			c.mu.Unlock()
			return
		}
		t := heap.Pop(&c.timers).(*fakeTimer)
		if when := c.timeOf(t.when); when.After(c.now) {
			c.now = when
		}
		d := dueTimer{t: t, token: t.token}
		c.mu.Unlock()
		d.call()
	}
}

// NextDue returns the due time of the earliest pending timer.
func (c *Fake) NextDue() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.timers) == 0 {
		return time.Time{}, false
	}
	return c.timeOf(c.timers[0].when), true
}

// timerQueue holds the pending timers of a Fake or a Scheduler.
type timerQueue struct {
	mu     sync.Mutex
	timers timerHeap
	seq    uint64 // orders timers due at the same time
	// epoch is the time the timers' due times count from (see
	// fakeTimer.when): the Fake's start, the Scheduler's creation.
	epoch time.Time
	// The clock whose queue it is: sched is nil for a Fake.
	sched *Scheduler
	fake  *Fake
}

// sinceEpoch returns the due time t+d as a fakeTimer's when: nanoseconds
// since q.epoch (monotonic if both are), saturated.
func (q *timerQueue) sinceEpoch(t time.Time, d time.Duration) int64 {
	n := t.Sub(q.epoch) // saturates
	if d > 0 && n > math.MaxInt64-d {
		return math.MaxInt64
	}
	if d < 0 && n < math.MinInt64-d {
		return math.MinInt64
	}
	return int64(n + d)
}

// timeOf returns a fakeTimer's when as a time.
func (q *timerQueue) timeOf(when int64) time.Time { return q.epoch.Add(time.Duration(when)) }

// add queues f to run at when; call it with q.mu held.
func (q *timerQueue) add(when int64, f func()) *fakeTimer {
	q.seq++
	t := &fakeTimer{q: q, when: when, f: callFunc, arg: f, seq: q.seq, index: -1, slot: inHeap}
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
// There is one per proxy (its check timer, a Rearmable) and one per
// AfterFunc, so it is kept to 64 bytes (a size class; 112 with its due
// time a time.Time and its clock and wheel position in fields of their
// own): its clock is its queue's, its due time a count of nanoseconds, and
// it calls f(arg, token), so that a Rearmable's caller needs no closure of
// its own and an AfterFunc's function is the arg of callFunc.
type fakeTimer struct {
	q     *timerQueue
	when  int64 // due: nanoseconds since q.epoch
	f     func(arg any, token uint64)
	arg   any
	token uint64 // a Rearmable's current arming
	seq   uint64
	index int32 // in the heap, or in the wheel's bucket; -1: fired or stopped
	// slot is the Scheduler wheel's bucket the timer is in (index is its
	// place there), overdue, or inHeap: in the heap, or in nothing (index
	// -1).
	slot int32
}

// fakeTimer.slot of a timer in no bucket of a wheel.
const (
	inHeap  = -1
	overdue = -2 // in Scheduler.overdue
)

func (t *fakeTimer) Stop() bool {
	t.q.mu.Lock()
	defer t.q.mu.Unlock()
	return t.stopLocked()
}

func (t *fakeTimer) stopLocked() bool {
	if t.slot != inHeap {
		return t.q.sched.removeLocked(t)
	}
	if t.index < 0 {
		return false
	}
	heap.Remove(&t.q.timers, int(t.index))
	return true
}

// Arm implements Rearmable.
func (t *fakeTimer) Arm(d time.Duration, token uint64) {
	if s := t.q.sched; s != nil {
		s.arm(t, s.sinceEpoch(time.Now(), d), token)
		return
	}
	q := t.q
	q.mu.Lock()
	defer q.mu.Unlock()
	t.stopLocked()
	t.when, t.token = q.sinceEpoch(q.fake.now, d), token
	q.seq++
	t.seq = q.seq
	heap.Push(&q.timers, t)
}

// dueTimer is a timer taken to fire, with the token of its arming then.
type dueTimer struct {
	t     *fakeTimer
	token uint64
}

func (d dueTimer) call() { d.t.f(d.t.arg, d.token) }

// callFunc is the f of an AfterFunc timer, whose arg is its func().
func callFunc(arg any, _ uint64) { arg.(func())() }

type timerHeap []*fakeTimer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if h[i].when == h[j].when {
		return h[i].seq < h[j].seq
	}
	return h[i].when < h[j].when
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = int32(i)
	h[j].index = int32(j)
}
func (h *timerHeap) Push(x any) {
	t := x.(*fakeTimer)
	t.index = int32(len(*h))
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
//
// With a slack the timers live in a timing wheel of wheelSize ticks (a
// bucket per tick: arming and stopping a timer is O(1), where the heap
// costs O(log n) comparisons of times for each; about 700 ns for an arm
// and a stop among 10,000 pending timers on the heap, the cost of every
// check's zombie timer); timers due beyond the wheel wait in the heap and
// move into it as it turns. Within a tick they fire in due order.
type Scheduler struct {
	timerQueue // without a slack: every timer; with one: those beyond the wheel
	due        []dueTimer
	slack      time.Duration // ticks start at epoch
	wake       chan struct{}
	done       chan struct{}
	exited     chan struct{}
	// wakeups counts the batches fired (for tests).
	wakeups uint64

	// The wheel (slack > 0): the timer of tick k is in wheel[k%wheelSize]
	// for cur <= k < cur+wheelSize; every tick before cur has fired.
	wheel   [][]*fakeTimer // wheelSize buckets (fewer in tests)
	cur     int64
	inWheel int
	// overdue holds timers armed for a tick that has already ended (due
	// in the past): they fire at the goroutine's next turn.
	overdue []*fakeTimer
	// spare holds the arrays of emptied buckets for the next bucket that
	// gets a timer (see spareBucket): the wheel then holds arrays for the
	// buckets with timers, not one for each of its 4,096 buckets sized for
	// the most timers that bucket ever held.
	spare [][]*fakeTimer
	// sleepTick is the tick the goroutine sleeps until (math.MaxInt64:
	// none); an earlier timer wakes it.
	sleepTick int64
}

// wheelSize is the number of ticks in the wheel: 4,096 ticks of the
// engine's 100 ms slack are 409.6 s, longer than the usual check interval.
const wheelSize = 4096

// Bounds of Scheduler.spare: the arrays kept for reuse, and the largest
// kept (a bigger one, from a burst, goes to the garbage collector).
const (
	maxSpareBuckets   = 64
	maxSpareBucketCap = 1024
)

// NewScheduler starts a scheduler whose timers fire at most slack late so
// that timers due close together fire in one wake-up; slack <= 0 fires
// every timer as soon as it is due.
func NewScheduler(slack time.Duration) *Scheduler { return newScheduler(slack, wheelSize) }

func newScheduler(slack time.Duration, size int) *Scheduler {
	s := &Scheduler{slack: max(slack, 0),
		wake: make(chan struct{}, 1), done: make(chan struct{}), exited: make(chan struct{}),
		sleepTick: math.MaxInt64}
	s.epoch, s.sched = time.Now(), s
	if s.slack > 0 {
		s.wheel = make([][]*fakeTimer, size)
		go s.runWheel()
	} else {
		go s.run()
	}
	return s
}

// Now returns time.Now().
func (s *Scheduler) Now() time.Time { return time.Now() }

// Pending returns the number of timers not yet fired or stopped.
func (s *Scheduler) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.timers) + s.inWheel
}

// AfterFunc runs f on the scheduler's goroutine after d (at the end of the
// tick d falls in, when the scheduler has a slack). After Close, f never
// runs.
func (s *Scheduler) AfterFunc(d time.Duration, f func()) Timer {
	when := s.sinceEpoch(time.Now(), d)
	s.mu.Lock()
	t := &fakeTimer{q: &s.timerQueue, f: callFunc, arg: f, index: -1, slot: inHeap}
	wake := s.insertLocked(t, when)
	s.mu.Unlock()
	if wake {
		s.wakeUp()
	}
	return t
}

// NewTimer returns a disarmed timer whose armings fire on the scheduler's
// goroutine, like AfterFunc's functions.
func (s *Scheduler) NewTimer(f func(arg any, token uint64), arg any) Rearmable {
	return &fakeTimer{q: &s.timerQueue, f: f, arg: arg, index: -1, slot: inHeap}
}

// arm (re)arms a Rearmable of s for when (see fakeTimer.when).
func (s *Scheduler) arm(t *fakeTimer, when int64, token uint64) {
	s.mu.Lock()
	t.stopLocked()
	t.token = token
	wake := s.insertLocked(t, when)
	s.mu.Unlock()
	if wake {
		s.wakeUp()
	}
}

// insertLocked queues t (not queued) to fire at when (see fakeTimer.when)
// and reports whether the goroutine must be woken for it; call with s.mu
// held.
func (s *Scheduler) insertLocked(t *fakeTimer, when int64) bool {
	s.seq++
	t.when, t.seq = when, s.seq
	if s.slack > 0 {
		tick := s.tickOf(when)
		if tick < s.cur+int64(len(s.wheel)) {
			s.toWheel(t, tick)
		} else {
			heap.Push(&s.timers, t)
		}
		return tick < s.sleepTick
	}
	heap.Push(&s.timers, t)
	return t.index == 0
}

func (s *Scheduler) wakeUp() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// tickOf returns the tick a timer due at when (see fakeTimer.when) fires
// at the end of.
func (s *Scheduler) tickOf(when int64) int64 {
	d := time.Duration(when) // since the epoch, monotonic
	k := int64(d / s.slack)
	if d%s.slack > 0 {
		k++
	}
	return k
}

// toWheel puts t in the bucket of tick, or with the overdue timers when
// that tick has ended; call with s.mu held.
func (s *Scheduler) toWheel(t *fakeTimer, tick int64) {
	b, slot := &s.overdue, int32(overdue)
	if tick >= s.cur {
		slot = int32(tick % int64(len(s.wheel)))
		b = &s.wheel[slot]
	}
	if *b == nil {
		if n := len(s.spare); n > 0 {
			*b = s.spare[n-1]
			s.spare[n-1] = nil
			s.spare = s.spare[:n-1]
		}
	}
	t.slot, t.index = slot, int32(len(*b))
	*b = append(*b, t)
	s.inWheel++
}

// removeLocked takes a wheel timer out of its bucket; call with s.mu held.
func (s *Scheduler) removeLocked(t *fakeTimer) bool {
	if t.index < 0 {
		return false
	}
	b := &s.overdue
	if t.slot != overdue {
		b = &s.wheel[t.slot]
	}
	last := int32(len(*b) - 1)
	if t.index != last {
		(*b)[t.index] = (*b)[last]
		(*b)[t.index].index = t.index
	}
	(*b)[last] = nil
	*b = (*b)[:last]
	if last == 0 {
		s.spareBucket(b)
	}
	t.index, t.slot = -1, inHeap // (a Rearmable may go to the heap next)
	s.inWheel--
	return true
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

// run is the goroutine of a scheduler without a slack: a heap of timers.
func (s *Scheduler) run() {
	defer close(s.exited)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		now := time.Now()
		nowNs := s.sinceEpoch(now, 0)
		for len(s.timers) > 0 && s.timers[0].when <= nowNs {
			t := heap.Pop(&s.timers).(*fakeTimer)
			s.due = append(s.due, dueTimer{t: t, token: t.token})
		}
		wait := time.Hour
		if len(s.timers) > 0 {
			wait = time.Duration(s.timers[0].when - nowNs)
		}
		due := s.due
		if len(due) > 0 {
			s.wakeups++
		}
		s.mu.Unlock()
		if len(due) > 0 {
			s.fire(due)
			continue
		}
		if !s.sleep(timer, wait) {
			return
		}
	}
}

// sleep waits for wait to pass, a wake-up or Close; false after Close.
func (s *Scheduler) sleep(timer *time.Timer, wait time.Duration) bool {
	timer.Reset(wait)
	select {
	case <-timer.C:
	case <-s.wake:
	case <-s.done:
		return false
	}
	return true
}

// fire runs the due timers' callbacks, in order, without the lock.
func (s *Scheduler) fire(due []dueTimer) {
	for i, d := range due {
		due[i] = dueTimer{}
		d.call()
	}
	s.mu.Lock()
	s.due = due[:0]
	s.mu.Unlock()
}

// runWheel is the goroutine of a scheduler with a slack: it turns the
// wheel tick by tick up to now, firing each bucket, and sleeps until the
// next tick with a timer.
func (s *Scheduler) runWheel() {
	defer close(s.exited)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		now := time.Now()
		nowTick := int64(now.Sub(s.epoch) / s.slack) // the last tick that has ended
		s.takeBucket(&s.overdue)
		for s.cur <= nowTick {
			if s.inWheel == 0 && len(s.timers) > 0 {
				// Nothing in the wheel: jump to the next timer's tick.
				s.cur = min(max(s.cur, s.tickOf(s.timers[0].when)), nowTick)
			}
			s.refill()
			s.takeBucket(&s.wheel[s.cur%int64(len(s.wheel))])
			if s.inWheel == 0 && len(s.timers) == 0 {
				s.cur = nowTick + 1
				break
			}
			s.cur++
		}
		s.refill()
		due := s.due
		if len(due) > 0 {
			s.wakeups++
			s.sleepTick = math.MinInt64 // awake: no need to be woken
		} else {
			s.sleepTick = s.nextTick()
		}
		sleep := s.sleepTick
		s.mu.Unlock()
		if len(due) > 0 {
			s.fire(due)
			continue
		}
		wait := time.Hour
		if sleep != math.MaxInt64 {
			wait = s.epoch.Add(time.Duration(sleep) * s.slack).Sub(time.Now())
		}
		if !s.sleep(timer, wait) {
			return
		}
	}
}

// takeBucket moves a bucket's timers to s.due, in due order, and gives its
// array to s.spare; call with s.mu held.
func (s *Scheduler) takeBucket(b *[]*fakeTimer) {
	n := len(*b)
	if n == 0 {
		return
	}
	start := len(s.due)
	for i, t := range *b {
		t.index, t.slot = -1, inHeap
		s.due = append(s.due, dueTimer{t: t, token: t.token})
		(*b)[i] = nil
	}
	s.spareBucket(b)
	s.inWheel -= n
	slices.SortFunc(s.due[start:], func(a, b dueTimer) int {
		if c := cmp.Compare(a.t.when, b.t.when); c != 0 {
			return c
		}
		return cmp.Compare(a.t.seq, b.t.seq)
	})
}

// spareBucket takes the array of the bucket b, just emptied (its tick
// fired, or its last timer was stopped), for reuse by the next bucket that
// gets a timer, within the bounds of s.spare; call with s.mu held. A bucket
// that kept its array would hold, once the wheel has turned, an array for
// each of its 4,096 ticks sized for the most timers that tick ever had:
// 8.8 MB of live heap after 10 minutes at 10,000 proxies checked every
// 10 s (BenchmarkE2ESteadyState), against 160 KB for the pointers to their
// pending check and zombie timers.
func (s *Scheduler) spareBucket(b *[]*fakeTimer) {
	if *b == nil {
		return
	}
	if c := cap(*b); c <= maxSpareBucketCap && len(s.spare) < maxSpareBuckets {
		s.spare = append(s.spare, (*b)[:0])
	}
	*b = nil
}

// refill moves the heap's timers that fall within the wheel into it; call
// with s.mu held.
func (s *Scheduler) refill() {
	for len(s.timers) > 0 {
		t := s.timers[0]
		tick := s.tickOf(t.when)
		if tick >= s.cur+int64(len(s.wheel)) {
			return
		}
		heap.Pop(&s.timers)
		s.toWheel(t, tick)
	}
}

// nextTick returns the first tick from cur with a timer (math.MaxInt64:
// none); call with s.mu held, after the overdue timers were taken (an
// overdue timer armed later wakes the goroutine).
func (s *Scheduler) nextTick() int64 {
	if s.inWheel > 0 {
		for k := s.cur; k < s.cur+int64(len(s.wheel)); k++ {
			if len(s.wheel[k%int64(len(s.wheel))]) > 0 {
				return k
			}
		}
	}
	if len(s.timers) > 0 {
		return max(s.tickOf(s.timers[0].when), s.cur)
	}
	return math.MaxInt64
}

// Close stops the scheduler's goroutine; pending timers never fire.
func (s *Scheduler) Close() {
	close(s.done)
	<-s.exited
}
