package actors

import (
	"slices"
	"sync"
	"testing"
	"time"
)

func TestLimiterBoundsInFlightAndServesOldestDueFirst(t *testing.T) {
	l := NewLimiter(2)
	var mu sync.Mutex
	var granted []int
	grant := func(i int) func(*Ticket) {
		return func(*Ticket) { mu.Lock(); granted = append(granted, i); mu.Unlock() }
	}
	base := time.Unix(1000, 0)
	t1 := l.Acquire(base, grant(1))
	t2 := l.Acquire(base, grant(2))
	// Waiting, due at different times, arriving out of due order.
	t5 := l.Acquire(base.Add(5*time.Second), grant(5))
	t3 := l.Acquire(base.Add(3*time.Second), grant(3))
	t4 := l.Acquire(base.Add(3*time.Second), grant(4)) // same due time as 3: arrival order
	if l.InFlight() != 2 || l.Waiting() != 3 {
		t.Fatalf("in flight %d waiting %d", l.InFlight(), l.Waiting())
	}
	t1.Release()
	t1.Release() // idempotent
	if l.InFlight() != 2 {
		t.Fatalf("double release freed two slots: in flight %d", l.InFlight())
	}
	t2.Release()
	t3.Release()
	t4.Release()
	t5.Release()
	if want := []int{1, 2, 3, 4, 5}; !slices.Equal(granted, want) {
		t.Fatalf("grant order %v, want %v", granted, want)
	}
	if l.InFlight() != 0 || l.Waiting() != 0 {
		t.Fatalf("in flight %d waiting %d", l.InFlight(), l.Waiting())
	}
}

func TestLimiterWithdrawnWaiterIsNeverGranted(t *testing.T) {
	l := NewLimiter(1)
	held := l.Acquire(time.Unix(0, 0), func(*Ticket) {})
	w := l.Acquire(time.Unix(1, 0), func(*Ticket) { t.Error("withdrawn ticket granted") })
	w.Release() // withdraw while waiting
	got := false
	l.Acquire(time.Unix(2, 0), func(*Ticket) { got = true })
	held.Release()
	if !got || l.InFlight() != 1 {
		t.Fatalf("next waiter granted %v, in flight %d", got, l.InFlight())
	}
}

func TestLimiterSetMaxGrantsWaiters(t *testing.T) {
	l := NewLimiter(1)
	n := 0
	for i := range 4 {
		l.Acquire(time.Unix(int64(i), 0), func(*Ticket) { n++ })
	}
	if n != 1 {
		t.Fatalf("granted %d with max 1", n)
	}
	l.SetMax(3)
	if n != 3 || l.InFlight() != 3 || l.Waiting() != 1 {
		t.Fatalf("after SetMax(3): granted %d in flight %d waiting %d", n, l.InFlight(), l.Waiting())
	}
}

func TestLimiterConcurrentUseNeverExceedsMax(t *testing.T) {
	const limit = 8
	l := NewLimiter(limit)
	var mu sync.Mutex
	inflight, peak := 0, 0
	var wg sync.WaitGroup
	for i := range 500 {
		wg.Add(1)
		l.Acquire(time.Unix(int64(i), 0), func(tk *Ticket) {
			mu.Lock()
			inflight++
			peak = max(peak, inflight)
			mu.Unlock()
			go func() {
				defer wg.Done()
				mu.Lock()
				inflight--
				mu.Unlock()
				tk.Release()
			}()
		})
	}
	wg.Wait()
	if peak > limit {
		t.Fatalf("peak %d checks in flight, max %d", peak, limit)
	}
	if l.InFlight() != 0 || l.Waiting() != 0 {
		t.Fatalf("in flight %d waiting %d", l.InFlight(), l.Waiting())
	}
}
