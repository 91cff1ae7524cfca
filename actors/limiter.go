package actors

import (
	"container/heap"
	"sync"
	"time"
)

// DefaultConcurrency is the default number of checks in flight at once.
const DefaultConcurrency = 1000

// Limiter bounds the number of checks in flight across all proxies. Waiting
// checks are served oldest-first: by the time they fell due, then by arrival.
// Waiting costs no goroutine: a waiter is a heap entry whose grant function
// is called (on the releasing goroutine, outside the lock) when a slot frees.
type Limiter struct {
	mu       sync.Mutex
	max      int
	inflight int
	seq      uint64
	waiting  waitHeap
}

// NewLimiter returns a limiter allowing max checks in flight (max ≥ 1).
func NewLimiter(max int) *Limiter {
	if max < 1 {
		max = 1
	}
	return &Limiter{max: max}
}

// Ticket is one request for a slot. Release it exactly once after the check
// (later calls are no-ops); releasing a ticket that is still waiting
// withdraws it.
type Ticket struct {
	l       *Limiter
	due     time.Time
	seq     uint64
	grant   func(*Ticket)
	index   int // in the waiting heap, -1 when not waiting
	granted bool
	done    bool
}

// Acquire asks for a slot for a check that fell due at due. grant is called
// once when the slot is granted: synchronously if one is free now, else
// later from a releasing goroutine. grant must not block.
func (l *Limiter) Acquire(due time.Time, grant func(*Ticket)) *Ticket {
	l.mu.Lock()
	l.seq++
	t := &Ticket{l: l, due: due, seq: l.seq, grant: grant, index: -1}
	if l.inflight < l.max && len(l.waiting) == 0 {
		l.inflight++
		t.granted = true
		l.mu.Unlock()
		grant(t)
		return t
	}
	heap.Push(&l.waiting, t)
	l.mu.Unlock()
	return t
}

// Release frees the ticket's slot, or withdraws it if still waiting. It is
// idempotent.
func (t *Ticket) Release() {
	l := t.l
	l.mu.Lock()
	if t.done {
		l.mu.Unlock()
		return
	}
	t.done = true
	if !t.granted {
		if t.index >= 0 {
			heap.Remove(&l.waiting, t.index)
		}
		l.mu.Unlock()
		return
	}
	l.inflight--
	l.grantWaiters()
}

// grantWaiters hands free slots to the oldest waiters; it is called with
// l.mu held and releases it before calling their grant functions.
func (l *Limiter) grantWaiters() {
	var next []*Ticket
	for l.inflight < l.max && len(l.waiting) > 0 {
		n := heap.Pop(&l.waiting).(*Ticket)
		n.granted = true
		l.inflight++
		next = append(next, n)
	}
	l.mu.Unlock()
	for _, n := range next {
		n.grant(n)
	}
}

// InFlight returns the number of granted, unreleased tickets.
func (l *Limiter) InFlight() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inflight
}

// Waiting returns the number of tickets waiting for a slot.
func (l *Limiter) Waiting() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.waiting)
}

// SetMax changes the concurrency (hot reload); extra waiters are granted at
// once when it grows.
func (l *Limiter) SetMax(max int) {
	if max < 1 {
		max = 1
	}
	l.mu.Lock()
	l.max = max
	l.grantWaiters()
}

type waitHeap []*Ticket

func (h waitHeap) Len() int { return len(h) }
func (h waitHeap) Less(i, j int) bool {
	if !h[i].due.Equal(h[j].due) {
		return h[i].due.Before(h[j].due)
	}
	return h[i].seq < h[j].seq
}
func (h waitHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *waitHeap) Push(x any) {
	t := x.(*Ticket)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *waitHeap) Pop() any {
	old := *h
	n := len(old)
	t := old[n-1]
	old[n-1] = nil
	t.index = -1
	*h = old[:n-1]
	return t
}
