package testutil

import (
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestEventuallyReturnsWhenTheConditionHolds(t *testing.T) {
	var n atomic.Int32
	go func() {
		for n.Load() < 5 {
			n.Add(1)
		}
	}()
	Eventually(t, 5*time.Second, "five increments", func() bool { return n.Load() >= 5 })
}

// fatalRecorder records Fatalf instead of stopping the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = format
	_ = args
}

func TestEventuallyFailsAfterTheTimeout(t *testing.T) {
	r := &fatalRecorder{TB: t}
	calls := 0
	EventuallyExplain(r, 20*time.Millisecond, func() bool { calls++; return false }, func() string { return "never" })
	if r.msg == "" || calls < 2 {
		t.Fatalf("fatal %q after %d evaluations", r.msg, calls)
	}
}

func TestWithinReportsWhetherTheConditionHeld(t *testing.T) {
	var n atomic.Int32
	go func() {
		for n.Load() < 5 {
			n.Add(1)
		}
	}()
	if !Within(5*time.Second, time.Millisecond, func() bool { return n.Load() >= 5 }) {
		t.Fatal("Within returned false for a condition that came to hold")
	}
	calls := 0
	start := time.Now()
	if Within(30*time.Millisecond, 10*time.Millisecond, func() bool { calls++; return false }) {
		t.Fatal("Within returned true for a condition that never held")
	}
	if time.Since(start) < 30*time.Millisecond || calls < 2 {
		t.Fatalf("gave up after %v and %d evaluations", time.Since(start), calls)
	}
}
