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
// Waiting costs no goroutine: a waiter is a heap entry whose Granter is
// told (on the releasing goroutine, outside the lock) when a slot frees.
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
// withdraws it. Its zero value is a ticket not yet used, to be passed to
// AcquireTicket, so that a caller can keep it inside an object it
// allocates anyway; a ticket serves one request only.
type Ticket struct {
	l       *Limiter
	due     time.Time
	seq     uint64
	grant   Granter
	index   int32 // in the waiting heap, -1 when not waiting
	granted bool
	done    bool
}

// Granter is told when a ticket that had to wait is granted its slot.
type Granter interface {
	// Granted is called once, on the goroutine that freed the slot (a
	// Release or a SetMax), outside the limiter's lock. It must not block.
	Granted(t *Ticket)
}

// grantFunc adapts a function to a Granter (a func value is one pointer:
// converting it to the interface allocates nothing).
type grantFunc func(*Ticket)

// Granted calls f.
func (f grantFunc) Granted(t *Ticket) { f(t) }

// Acquire asks for a slot for a check that fell due at due. grant is called
// once when the slot is granted: synchronously if one is free now, else
// later from a releasing goroutine. grant must not block. It allocates the
// ticket; AcquireTicket takes one from the caller and needs no function.
func (l *Limiter) Acquire(due time.Time, grant func(*Ticket)) *Ticket {
	t := new(Ticket)
	if l.AcquireTicket(t, due, grantFunc(grant)) {
		grant(t)
	}
	return t
}

// AcquireTicket asks for a slot for t, a zero Ticket, for a check that fell
// due at due. If a slot is free now (and nobody waits), t takes it and
// AcquireTicket returns true; g is not called. Otherwise t waits, and
// AcquireTicket returns false: g.Granted(t) is called once when t is
// granted its slot (unless t is released first), on the goroutine that
// freed it, possibly before AcquireTicket returns. Either way t is to be
// released once. It panics if t was used before.
func (l *Limiter) AcquireTicket(t *Ticket, due time.Time, g Granter) (now bool) {
	if t.l != nil {
		panic("actors: Limiter.AcquireTicket with a ticket that was used before")
	}
	l.mu.Lock()
	l.seq++
	t.l, t.due, t.seq, t.grant, t.index = l, due, l.seq, g, -1
	if l.inflight < l.max && len(l.waiting) == 0 {
		l.inflight++
		t.granted = true
		l.mu.Unlock()
		return true
	}
	heap.Push(&l.waiting, t)
	l.mu.Unlock()
	return false
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
			heap.Remove(&l.waiting, int(t.index))
		}
		l.mu.Unlock()
		return
	}
	l.inflight--
	l.grantWaiters()
}

// grantWaiters hands free slots to the oldest waiters; it is called with
// l.mu held and releases it before telling their Granters.
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
		n.grant.Granted(n)
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
	h[i].index = int32(i)
	h[j].index = int32(j)
}
func (h *waitHeap) Push(x any) {
	t := x.(*Ticket)
	t.index = int32(len(*h))
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
