package clock

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestFakeFiresInOrderAtDueTime(t *testing.T) {
	start := time.Unix(1000, 0)
	c := NewFake(start)
	var got []time.Duration
	c.AfterFunc(3*time.Second, func() { got = append(got, c.Now().Sub(start)) })
	c.AfterFunc(time.Second, func() {
		got = append(got, c.Now().Sub(start))
		// A timer scheduled from a firing timer fires in the same Advance if due.
		c.AfterFunc(time.Second, func() { got = append(got, c.Now().Sub(start)) })
	})
	stopped := c.AfterFunc(2500*time.Millisecond, func() { t.Error("stopped timer fired") })
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop should succeed once")
	}
	c.Advance(10 * time.Second)
	want := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	if c.Now() != start.Add(10*time.Second) || c.Pending() != 0 {
		t.Fatalf("now %v pending %d", c.Now(), c.Pending())
	}
}

func TestFakeSameDueTimeFIFO(t *testing.T) {
	c := NewFake(time.Unix(0, 0))
	var order []int
	for i := 0; i < 5; i++ {
		c.AfterFunc(time.Second, func() { order = append(order, i) })
	}
	if d, ok := c.NextDue(); !ok || d != time.Unix(1, 0) {
		t.Fatalf("NextDue = %v %v", d, ok)
	}
	c.Advance(time.Second)
	for i, v := range order {
		if v != i {
			t.Fatalf("order %v", order)
		}
	}
}

func TestRealAfterFunc(t *testing.T) {
	done := make(chan struct{})
	var r Real
	r.AfterFunc(time.Millisecond, func() { close(done) })
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("real timer did not fire")
	}
	if r.Now().IsZero() {
		t.Fatal("zero now")
	}
}
