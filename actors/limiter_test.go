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

// granterLog is a Granter that records the tickets it is told of.
type granterLog struct {
	mu      sync.Mutex
	granted []*Ticket
}

func (g *granterLog) Granted(t *Ticket) {
	g.mu.Lock()
	g.granted = append(g.granted, t)
	g.mu.Unlock()
}

func (g *granterLog) tickets() []*Ticket {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.granted)
}

// TestLimiterAcquireTicketGrantedAtOnce: a free slot is taken inside
// AcquireTicket, which says so; the Granter is not called.
func TestLimiterAcquireTicketGrantedAtOnce(t *testing.T) {
	l := NewLimiter(2)
	var g granterLog
	var tk Ticket
	if !l.AcquireTicket(&tk, time.Unix(0, 0), &g) {
		t.Fatal("a free slot was not granted at once")
	}
	if n := len(g.tickets()); n != 0 {
		t.Fatalf("the Granter was called %d times for a slot granted at once", n)
	}
	if l.InFlight() != 1 || l.Waiting() != 0 {
		t.Fatalf("in flight %d waiting %d", l.InFlight(), l.Waiting())
	}
	tk.Release()
	tk.Release() // idempotent
	if l.InFlight() != 0 {
		t.Fatalf("in flight %d after the release", l.InFlight())
	}
}

// TestLimiterAcquireTicketGrantedLaterByRelease: a ticket that waits is
// granted by the Release that frees a slot, oldest due time first, and its
// Granter is told once, with that ticket.
func TestLimiterAcquireTicketGrantedLaterByRelease(t *testing.T) {
	l := NewLimiter(1)
	var held, late, early Ticket
	var gHeld, gLate, gEarly granterLog
	base := time.Unix(1000, 0)
	if !l.AcquireTicket(&held, base, &gHeld) {
		t.Fatal("a free slot was not granted at once")
	}
	if l.AcquireTicket(&late, base.Add(2*time.Second), &gLate) || l.AcquireTicket(&early, base.Add(time.Second), &gEarly) {
		t.Fatal("a ticket was granted a slot that was taken")
	}
	if l.InFlight() != 1 || l.Waiting() != 2 || len(gLate.tickets())+len(gEarly.tickets()) != 0 {
		t.Fatalf("in flight %d waiting %d, granted %d+%d before any release", l.InFlight(), l.Waiting(), len(gLate.tickets()), len(gEarly.tickets()))
	}
	held.Release()
	if got := gEarly.tickets(); len(got) != 1 || got[0] != &early {
		t.Fatalf("the earlier due ticket's Granter was told %v, want once with its ticket", got)
	}
	if n := len(gLate.tickets()); n != 0 {
		t.Fatalf("the later due ticket was granted out of order (%d times)", n)
	}
	early.Release()
	if got := gLate.tickets(); len(got) != 1 || got[0] != &late {
		t.Fatalf("the later due ticket's Granter was told %v, want once with its ticket", got)
	}
	late.Release()
	if n := len(gHeld.tickets()); n != 0 {
		t.Fatalf("the Granter of a ticket granted at once was called %d times", n)
	}
	if l.InFlight() != 0 || l.Waiting() != 0 {
		t.Fatalf("in flight %d waiting %d", l.InFlight(), l.Waiting())
	}
}

// TestLimiterAcquireTicketWithdrawnWhileWaiting: releasing a ticket that
// waits withdraws it: it is never granted and frees no slot.
func TestLimiterAcquireTicketWithdrawnWhileWaiting(t *testing.T) {
	l := NewLimiter(1)
	var held, w, next Ticket
	var gw, gNext granterLog
	l.AcquireTicket(&held, time.Unix(0, 0), &granterLog{})
	if l.AcquireTicket(&w, time.Unix(1, 0), &gw) {
		t.Fatal("a ticket was granted a slot that was taken")
	}
	l.AcquireTicket(&next, time.Unix(2, 0), &gNext)
	w.Release() // withdraw while waiting
	w.Release()
	if l.InFlight() != 1 || l.Waiting() != 1 {
		t.Fatalf("after the withdrawal: in flight %d waiting %d, want 1 and 1", l.InFlight(), l.Waiting())
	}
	held.Release()
	if n := len(gw.tickets()); n != 0 {
		t.Fatalf("a withdrawn ticket was granted (%d times)", n)
	}
	if got := gNext.tickets(); len(got) != 1 || got[0] != &next {
		t.Fatalf("the next waiter's Granter was told %v, want once with its ticket", got)
	}
	next.Release()
	if l.InFlight() != 0 || l.Waiting() != 0 {
		t.Fatalf("in flight %d waiting %d", l.InFlight(), l.Waiting())
	}
}

// TestLimiterSetMaxTellsGranters: a SetMax that grows the limit grants the
// waiters it makes room for, in order, through their Granters.
func TestLimiterSetMaxTellsGranters(t *testing.T) {
	l := NewLimiter(1)
	var g granterLog
	tks := make([]Ticket, 7)
	for i := range tks {
		l.AcquireTicket(&tks[i], time.Unix(int64(len(tks)-i), 0), &g) // later arrivals fall due earlier
	}
	l.SetMax(6) // five more
	got := g.tickets()
	want := []*Ticket{&tks[6], &tks[5], &tks[4], &tks[3], &tks[2]} // tks[0] was granted at once
	if !slices.Equal(got, want) {
		t.Fatalf("SetMax granted %v, want %v (due order)", got, want)
	}
	if l.InFlight() != 6 || l.Waiting() != 1 {
		t.Fatalf("in flight %d waiting %d", l.InFlight(), l.Waiting())
	}
	for i := range tks {
		tks[i].Release()
	}
	if l.InFlight() != 0 || l.Waiting() != 0 {
		t.Fatalf("in flight %d waiting %d", l.InFlight(), l.Waiting())
	}
}

// TestLimiterTicketServesOneRequest: a ticket that was used (even released)
// is refused, not queued twice.
func TestLimiterTicketServesOneRequest(t *testing.T) {
	l := NewLimiter(1)
	var tk Ticket
	l.AcquireTicket(&tk, time.Unix(0, 0), &granterLog{})
	tk.Release()
	defer func() {
		if recover() == nil {
			t.Fatal("a used ticket was accepted again")
		}
		if l.InFlight() != 0 || l.Waiting() != 0 {
			t.Fatalf("in flight %d waiting %d", l.InFlight(), l.Waiting())
		}
	}()
	l.AcquireTicket(&tk, time.Unix(1, 0), &granterLog{})
}

type nopGranter struct{}

func (nopGranter) Granted(*Ticket) {}

// BenchmarkLimiter takes and releases slots: free (granted at once) and
// contended (max 1: each Release grants the next waiter), through Acquire
// (a function, the ticket allocated) and AcquireTicket (the caller's
// ticket, a Granter).
func BenchmarkLimiter(b *testing.B) {
	due := time.Unix(0, 0)
	nop := func(*Ticket) {}
	b.Run("free/Acquire", func(b *testing.B) {
		l := NewLimiter(1)
		b.ReportAllocs()
		for range b.N {
			l.Acquire(due, nop).Release()
		}
	})
	b.Run("free/AcquireTicket", func(b *testing.B) {
		l := NewLimiter(1)
		tks := make([]Ticket, b.N)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range tks {
			l.AcquireTicket(&tks[i], due, nopGranter{})
			tks[i].Release()
		}
	})
	b.Run("contended/Acquire", func(b *testing.B) {
		l := NewLimiter(1)
		held := l.Acquire(due, nop)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			next := l.Acquire(due, nop)
			held.Release() // grants next
			held = next
		}
		held.Release()
	})
	b.Run("contended/AcquireTicket", func(b *testing.B) {
		l := NewLimiter(1)
		tks := make([]Ticket, b.N+1)
		l.AcquireTicket(&tks[0], due, nopGranter{})
		b.ReportAllocs()
		b.ResetTimer()
		for i := 1; i < len(tks); i++ {
			l.AcquireTicket(&tks[i], due, nopGranter{})
			tks[i-1].Release() // grants tks[i]
		}
		tks[b.N].Release()
	})
}
