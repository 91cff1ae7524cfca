// Package testutil holds helpers shared by proxyhealth's tests.
package testutil

import (
	"testing"
	"time"
)

// Interval is how often Eventually re-evaluates its condition.
const Interval = time.Millisecond

// Eventually waits until cond holds, re-evaluating it every Interval, and
// fails tb naming what it waited for when timeout passes. It is the one
// place where tests wait for something that happens on another goroutine
// or in another process (events that no fake clock drives: sockets,
// subprocesses, fsyncs). cond runs on the test's goroutine, so it may call
// tb.Fatal itself.
func Eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	EventuallyExplain(tb, timeout, cond, func() string { return what })
}

// EventuallyExplain is Eventually with a failure message computed at the
// time of failure (the last value seen, a process's output).
func EventuallyExplain(tb testing.TB, timeout time.Duration, cond func() bool, explain func() string) {
	tb.Helper()
	if !Within(timeout, Interval, cond) {
		tb.Fatalf("timed out after %v waiting for %s", timeout, explain())
	}
}

// Within re-evaluates cond every interval until it holds or timeout has
// passed (once more then), and reports whether it held. It is Eventually
// for waits whose outcome is itself a result, such as a benchmark counting
// what did not happen in time, or one that polls something costly less
// often than every Interval.
func Within(timeout, interval time.Duration, cond func() bool) bool {
	if cond() {
		return true
	}
	deadline := time.NewTimer(max(timeout, 0))
	defer deadline.Stop()
	tick := time.NewTicker(max(interval, time.Microsecond))
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if cond() {
				return true
			}
		case <-deadline.C:
			return cond()
		}
	}
}
