package clock

import (
	"sync"
	"testing"
	"time"
)

// TestScheduler: timers fire in due order on the scheduler's goroutine; a
// stopped timer never fires; a callback may schedule again; Close ends the
// goroutine (goleak) and pending timers never fire.
func TestScheduler(t *testing.T) {
	s := NewScheduler()
	var mu sync.Mutex
	var got []int
	done := make(chan struct{})
	record := func(i int) func() {
		return func() {
			mu.Lock()
			got = append(got, i)
			n := len(got)
			mu.Unlock()
			if n == 4 {
				close(done)
			}
		}
	}
	s.AfterFunc(30*time.Millisecond, record(3))
	s.AfterFunc(10*time.Millisecond, record(1))
	stopped := s.AfterFunc(20*time.Millisecond, record(99))
	s.AfterFunc(0, func() { s.AfterFunc(20*time.Millisecond, record(2)) })
	s.AfterFunc(40*time.Millisecond, record(4))
	if !stopped.Stop() {
		t.Fatal("Stop of a pending timer returned false")
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("timers did not fire: %v", got)
	}
	mu.Lock()
	if len(got) != 4 || got[0] != 1 || got[3] != 4 {
		t.Errorf("fired %v, want 1, then 2 and 3 (any order within 10 ms), then 4", got)
	}
	mu.Unlock()
	if stopped.Stop() {
		t.Error("second Stop returned true")
	}
	s.AfterFunc(time.Hour, func() { t.Error("a timer fired after Close") })
	if s.Pending() != 1 {
		t.Errorf("%d pending timers, want 1", s.Pending())
	}
	s.Close()
}

// TestSchedulerBurst: many timers due at once all fire.
func TestSchedulerBurst(t *testing.T) {
	s := NewScheduler()
	defer s.Close()
	const n = 10000
	var wg sync.WaitGroup
	wg.Add(n)
	for range n {
		s.AfterFunc(0, wg.Done)
	}
	wg.Wait()
}
