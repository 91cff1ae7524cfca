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
	if cond() {
		return
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(Interval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if cond() {
				return
			}
		case <-deadline.C:
			if cond() {
				return
			}
			tb.Fatalf("timed out after %v waiting for %s", timeout, explain())
			return
		}
	}
}
