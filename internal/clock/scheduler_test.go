package clock

import (
	"slices"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// TestScheduler: timers fire in due order on the scheduler's goroutine; a
// stopped timer never fires; a callback may schedule again; Close ends the
// goroutine (goleak) and pending timers never fire.
func TestScheduler(t *testing.T) {
	s := NewScheduler(0)
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
	s := NewScheduler(0)
	defer s.Close()
	const n = 10000
	var wg sync.WaitGroup
	wg.Add(n)
	for range n {
		s.AfterFunc(0, wg.Done)
	}
	wg.Wait()
}

// TestSchedulerSlack: with a slack, timers due within one tick fire together
// at its end, never before they are due.
func TestSchedulerSlack(t *testing.T) {
	const slack = 200 * time.Millisecond
	s := NewScheduler(slack)
	defer s.Close()
	type fired struct {
		due, at time.Time
	}
	var mu sync.Mutex
	var got []fired
	var wg sync.WaitGroup
	var dues []time.Time
	for _, d := range []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 30 * time.Millisecond, 0, -time.Second} {
		wg.Add(1)
		due := time.Now().Add(d)
		dues = append(dues, due)
		s.AfterFunc(d, func() {
			mu.Lock()
			got = append(got, fired{due: due, at: time.Now()})
			mu.Unlock()
			wg.Done()
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for _, f := range got {
		if f.at.Before(f.due) {
			t.Errorf("a timer due at %v fired %v early", f.due, f.due.Sub(f.at))
		}
		if tick := s.fireAt(f.due); f.at.Before(tick) {
			t.Errorf("a timer fired %v before the end of its tick", tick.Sub(f.at))
		}
	}
	// Timers in one tick fire in one wake-up.
	ticks := map[time.Time]bool{}
	for _, due := range dues {
		ticks[s.fireAt(due)] = true
	}
	s.mu.Lock()
	wakeups := s.wakeups
	s.mu.Unlock()
	if wakeups != uint64(len(ticks)) {
		t.Errorf("%d wake-ups for timers in %d ticks", wakeups, len(ticks))
	}
}

// TestSchedulerFireAt: due times are rounded up to the end of their tick.
func TestSchedulerFireAt(t *testing.T) {
	s := &Scheduler{slack: 25 * time.Millisecond}
	s.epoch = time.Unix(1000, 0)
	for _, c := range []struct{ off, want time.Duration }{
		{0, 0}, {1, 25 * time.Millisecond}, {25 * time.Millisecond, 25 * time.Millisecond},
		{26 * time.Millisecond, 50 * time.Millisecond}, {-time.Millisecond, 0},
		{-30 * time.Millisecond, -25 * time.Millisecond},
	} {
		if got := s.fireAt(s.epoch.Add(c.off)).Sub(s.epoch); got != c.want {
			t.Errorf("fireAt(epoch%+v) = epoch%+v, want epoch%+v", c.off, got, c.want)
		}
	}
	s.slack = 0
	if at := s.epoch.Add(7); !s.fireAt(at).Equal(at) {
		t.Error("without slack a timer fires when due")
	}
}

// BenchmarkSchedulerArmStop: a timer armed and stopped before it fires (a
// check's zombie timer) among 10,000 pending ones (the pool's check timers),
// with the engine's slack.
func BenchmarkSchedulerArmStop(b *testing.B) {
	s := NewScheduler(25 * time.Millisecond)
	defer s.Close()
	for i := range 10000 {
		s.AfterFunc(time.Duration(i)*time.Millisecond+time.Minute, func() {})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.AfterFunc(10*time.Second+time.Duration(i%1000)*time.Millisecond, func() {}).Stop()
	}
}

// BenchmarkSchedulerRearm: a Rearmable (a proxy's check timer) armed and
// re-armed (its zombie deadline, its next check) among 10,000 pending
// ones, with the engine's slack.
func BenchmarkSchedulerRearm(b *testing.B) {
	s := NewScheduler(100 * time.Millisecond)
	defer s.Close()
	f := func(any, uint64) {}
	for i := range 10000 {
		s.NewTimer(f, nil).Arm(time.Duration(i)*time.Millisecond+time.Minute, 0)
	}
	tm := s.NewTimer(f, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		tm.Arm(10*time.Second+time.Duration(i%1000)*time.Millisecond, uint64(i))
	}
	tm.Stop()
}

// BenchmarkSchedulerBytesPerTimer reports the heap a Rearmable of the
// engine's scheduler costs armed (a proxy's check timer), with 10,000 of
// them armed within the wheel, their function shared and their args
// (a proxy's PID) made beforehand: the timer, not what it calls, is
// counted.
func BenchmarkSchedulerBytesPerTimer(b *testing.B) {
	const timers = 10_000
	f := func(any, uint64) {}
	args := make([]*int, timers)
	for i := range args {
		args[i] = new(int)
	}
	var perTimer float64
	for range b.N {
		s := NewScheduler(100 * time.Millisecond)
		before := testutil.HeapInUse()
		tms := make([]Rearmable, timers)
		for i := range tms {
			tms[i] = s.NewTimer(f, args[i])
			tms[i].Arm(time.Minute+time.Duration(i)*time.Millisecond, uint64(i))
		}
		perTimer = float64(testutil.HeapInUse()-before-int64(timers*unsafe.Sizeof(Rearmable(nil)))) / timers
		for _, tm := range tms {
			tm.Stop()
		}
		s.Close()
	}
	b.ReportMetric(perTimer, "B/timer")
}

// TestSchedulerWheel: with a slack, timers within the wheel and beyond it
// (waiting in the heap until the wheel turns to them) all fire, never
// early, in due order; stopped ones never fire, wherever they wait; a
// timer armed from a callback for the current tick fires too.
func TestSchedulerWheel(t *testing.T) {
	const slack = 2 * time.Millisecond
	s := newScheduler(slack, 8) // the wheel spans 16 ms
	defer s.Close()
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	start := time.Now()
	type arm struct {
		d    time.Duration
		stop bool
	}
	var arms []arm
	for i := range 60 {
		arms = append(arms, arm{d: time.Duration(i) * 700 * time.Microsecond, stop: i%7 == 3})
	}
	timers := make([]Timer, len(arms))
	for i, a := range arms {
		due := start.Add(a.d)
		if !a.stop {
			wg.Add(1)
		}
		timers[i] = s.AfterFunc(a.d, func() {
			if a.stop {
				t.Errorf("stopped timer %d fired", i)
				return
			}
			if now := time.Now(); now.Before(due) {
				t.Errorf("timer %d fired %v early", i, due.Sub(now))
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			if i == 0 {
				wg.Add(1)
				s.AfterFunc(0, wg.Done) // armed from a callback, due at once
			}
			wg.Done()
		})
	}
	for i, a := range arms {
		if a.stop && !timers[i].Stop() {
			t.Errorf("Stop of pending timer %d returned false", i)
		}
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if !slices.IsSorted(order) {
		t.Errorf("fired out of due order: %v", order)
	}
	if s.Pending() != 0 {
		t.Errorf("%d timers still pending", s.Pending())
	}
}

// TestSchedulerWheelKeepsNoArrayForAnEmptyBucket: a bucket gives its array
// up when its tick fires or its last timer is stopped, so the wheel's
// memory follows its pending timers and not the most each of its ticks
// ever had (it kept 8.8 MB at 10,000 proxies that way). Reused arrays
// still fire every timer, in bursts larger than they are, and the arrays
// kept for reuse stay within their bounds.
func TestSchedulerWheelKeepsNoArrayForAnEmptyBucket(t *testing.T) {
	s := newScheduler(2*time.Millisecond, 256) // the wheel spans 512 ms
	defer s.Close()
	for round, burst := range []int{300, 300, 2000} {
		// A bucket emptied by stops: timers 400 ms away, all stopped.
		var stopped []Timer
		for range burst {
			stopped = append(stopped, s.AfterFunc(400*time.Millisecond, func() { t.Error("a stopped timer fired") }))
		}
		for _, tm := range stopped {
			if !tm.Stop() {
				t.Fatal("Stop of a pending timer returned false")
			}
		}
		// Buckets emptied by their ticks: bursts in 8 ticks.
		var wg sync.WaitGroup
		for tick := range 8 {
			wg.Add(burst)
			for range burst {
				s.AfterFunc(time.Duration(2+2*tick)*time.Millisecond, wg.Done)
			}
		}
		wg.Wait()
		s.mu.Lock()
		held, spares, spareCap := 0, len(s.spare), 0
		for _, b := range s.wheel {
			held += cap(b)
		}
		for _, b := range s.spare {
			spareCap = max(spareCap, cap(b))
		}
		s.mu.Unlock()
		if held != 0 {
			t.Errorf("round %d: every timer fired or was stopped, yet the wheel's buckets hold arrays of %d timers in all", round, held)
		}
		if spares > maxSpareBuckets || spareCap > maxSpareBucketCap {
			t.Errorf("round %d: %d spare arrays, the largest of %d; want at most %d of at most %d", round, spares, spareCap, maxSpareBuckets, maxSpareBucketCap)
		}
		if n := s.Pending(); n != 0 {
			t.Fatalf("round %d: %d timers pending", round, n)
		}
	}
}
