package clock

import (
	"sync"
	"testing"
	"time"
)

// TestFakeRearmable: a re-arming replaces the pending one (one firing, with
// the new token, at the new time); Stop disarms; a fired timer arms again.
func TestFakeRearmable(t *testing.T) {
	c := NewFake(time.Unix(0, 0))
	type firing struct {
		token uint64
		at    time.Time
	}
	var got []firing
	tm := c.NewTimer(func(arg any, tok uint64) {
		if arg != any(c) {
			t.Errorf("called with %v, want the timer's arg", arg)
		}
		got = append(got, firing{tok, c.Now()})
	}, c)
	tm.Arm(10*time.Second, 1)
	tm.Arm(20*time.Second, 2) // replaces the first
	c.Advance(30 * time.Second)
	if len(got) != 1 || got[0].token != 2 || got[0].at != time.Unix(20, 0) {
		t.Fatalf("firings %v, want token 2 at 20 s", got)
	}
	tm.Arm(time.Second, 3)
	if !tm.Stop() || tm.Stop() {
		t.Fatal("Stop of an armed timer, then of a disarmed one")
	}
	c.Advance(time.Minute)
	tm.Arm(time.Second, 4)
	c.Advance(time.Second)
	if len(got) != 2 || got[1].token != 4 {
		t.Fatalf("firings %v, want token 4 last", got)
	}
	if c.Pending() != 0 {
		t.Fatalf("%d pending", c.Pending())
	}
}

// TestSchedulerRearmable: on the scheduler (with and without a slack, and
// beyond its wheel), a re-arming replaces the pending one and a stopped
// timer never fires.
func TestSchedulerRearmable(t *testing.T) {
	for _, tc := range []struct {
		name  string
		s     *Scheduler
		far   time.Duration // an arming that starts beyond the wheel
		slack time.Duration
	}{
		{"no slack", NewScheduler(0), time.Hour, 0},
		{"wheel", newScheduler(5*time.Millisecond, 8), time.Second, 5 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.s
			defer s.Close()
			var mu sync.Mutex
			var got []uint64
			fired := make(chan struct{}, 10)
			tm := s.NewTimer(func(_ any, tok uint64) {
				mu.Lock()
				got = append(got, tok)
				mu.Unlock()
				fired <- struct{}{}
			}, nil)
			tm.Arm(tc.far, 1)
			tm.Arm(time.Millisecond, 7) // in the wheel, stopped, then in the heap and stopped
			tm.Stop()
			tm.Arm(tc.far, 8)
			tm.Stop()
			tm.Arm(10*time.Millisecond, 2) // replaces it
			other := s.NewTimer(func(any, uint64) { t.Error("a stopped timer fired") }, nil)
			other.Arm(5*time.Millisecond, 9)
			if !other.Stop() {
				t.Fatal("Stop of an armed timer returned false")
			}
			select {
			case <-fired:
			case <-time.After(10 * time.Second):
				t.Fatal("the re-armed timer did not fire")
			}
			tm.Arm(time.Millisecond, 3)
			select {
			case <-fired:
			case <-time.After(10 * time.Second):
				t.Fatal("the timer armed after firing did not fire")
			}
			// A stray late firing of a stopped or replaced arming would come
			// before a sentinel armed three ticks later (the scheduler fires
			// in time order): wait for the sentinel, then look.
			sentinel := make(chan struct{})
			s.NewTimer(func(any, uint64) { close(sentinel) }, nil).Arm(3*tc.slack+time.Millisecond, 0)
			select {
			case <-sentinel:
			case <-time.After(10 * time.Second):
				t.Fatal("the sentinel timer did not fire")
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) != 2 || got[0] != 2 || got[1] != 3 {
				t.Fatalf("firings %v, want [2 3]", got)
			}
			if s.Pending() != 0 {
				t.Fatalf("%d pending", s.Pending())
			}
		})
	}
}

// onlyClock is a Clock that makes no Rearmable timers (a host's clock).
type onlyClock struct{ f *Fake }

func (c onlyClock) Now() time.Time                            { return c.f.Now() }
func (c onlyClock) AfterFunc(d time.Duration, f func()) Timer { return c.f.AfterFunc(d, f) }

// TestNewRearmableOnAClockWithout: on a clock that makes no Rearmable,
// NewRearmable's timer behaves like one (a re-arming replaces the pending
// one, Stop disarms and reports it), with an AfterFunc timer per arming;
// on a clock that makes them, it is the clock's own.
func TestNewRearmableOnAClockWithout(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	if _, own := NewRearmable(f, func(any, uint64) {}, nil).(*fakeTimer); !own {
		t.Fatal("NewRearmable of a Fake is not the Fake's own timer")
	}
	var got []uint64
	arg := new(int)
	tm := NewRearmable(onlyClock{f}, func(a any, tok uint64) {
		if a != any(arg) {
			t.Errorf("called with %v, want the timer's arg %v", a, arg)
		}
		got = append(got, tok)
	}, arg)
	if tm.Stop() {
		t.Fatal("Stop of a new timer reported an arming")
	}
	tm.Arm(10*time.Second, 1)
	tm.Arm(20*time.Second, 2) // replaces the first
	f.Advance(15 * time.Second)
	if len(got) != 0 {
		t.Fatalf("firings %v after 15 s, want none", got)
	}
	f.Advance(10 * time.Second)
	if len(got) != 1 || got[0] != 2 {
		t.Fatalf("firings %v, want token 2", got)
	}
	if tm.Stop() {
		t.Fatal("Stop of a fired timer reported an arming")
	}
	tm.Arm(time.Second, 3)
	if !tm.Stop() || tm.Stop() {
		t.Fatal("Stop of an armed timer, then of a disarmed one")
	}
	f.Advance(time.Minute)
	tm.Arm(time.Second, 4)
	f.Advance(time.Second)
	if len(got) != 2 || got[1] != 4 {
		t.Fatalf("firings %v, want token 4 last", got)
	}
	if f.Pending() != 0 {
		t.Fatalf("%d pending", f.Pending())
	}
}
