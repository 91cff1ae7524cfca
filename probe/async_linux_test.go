//go:build linux

package probe

import (
	"context"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// openFDs counts the process's open file descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting open descriptors (this file builds on Linux only, which has /proc/self/fd): %v", err)
	}
	return len(ents)
}

// TestCheckAsyncCancel cancels checks in flight (the proxy has read the
// request or the SOCKS greeting and does not answer): each must answer
// promptly with Check's canceled result, and no descriptor may stay open.
func TestCheckAsyncCancel(t *testing.T) {
	const n = 50
	var got atomic.Int64 // requests (greetings) the silent proxy received
	addr := silentProxy(t, &got)
	for _, scheme := range []string{"http", "socks5h"} {
		c := newChecker(t, Config{TargetURL: "http://t.proxyhealth.test/", Timeout: time.Hour})
		p := MustParseProxyURL(scheme + "://" + addr)
		// Check's result for the same cancellation, as the reference.
		ctx, cancel := context.WithCancel(context.Background())
		before := got.Load()
		ref := make(chan Result, 1)
		go func() { ref <- c.Check(ctx, p) }()
		waitFor(t, func() bool { return got.Load() == before+1 })
		cancel()
		want := outcomeOf(<-ref)
		if !want.Canceled || want.Class != cOther {
			t.Fatalf("Check's canceled result: %v", want)
		}

		fds := openFDs(t)
		ctx, cancel = context.WithCancel(context.Background())
		results := make(chan Result, n)
		before = got.Load()
		for range n {
			c.CheckAsync(ctx, p, DoneFunc(func(r Result) { results <- r }))
		}
		waitFor(t, func() bool { return got.Load() == before+n })
		start := time.Now()
		cancel()
		for range n {
			select {
			case r := <-results:
				if o := outcomeOf(r); o != want {
					t.Errorf("%s: canceled async check: %v, want %v", scheme, o, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: canceled checks not answered within 5s", scheme)
			}
		}
		t.Logf("%s: %d canceled checks answered %v after cancel", scheme, n, time.Since(start))
		waitFor(t, func() bool { return openFDs(t) <= fds })
	}
}

// TestCheckAsyncMany runs 2,000 checks at once against a farm of 2,000
// (a mix of schemes and behaviours): every check is answered exactly once,
// with the class its proxy's behaviour calls for, and no descriptor stays
// open.
func TestCheckAsyncMany(t *testing.T) {
	const n = 2000
	f := startFarm(t, n)
	kinds := []struct {
		b     fakeproxy.Behavior
		class pb.FailureClass
	}{
		{fakeproxy.OK(), cOK},
		{fakeproxy.Status(503), cStatus},
		{fakeproxy.Reset(), cReset}, // (not Refuse: another process's farm may take a closed port)
		{fakeproxy.Garbage(), cProtocol},
	}
	for i := range n {
		if err := f.Set(i, kinds[i%len(kinds)].b); err != nil {
			t.Fatal(err)
		}
	}
	c := newChecker(t, Config{TargetURL: "http://t.proxyhealth.test/"})
	schemes := []string{"http", "socks5h", "socks4a"}
	fds := openFDs(t)
	calls := make([]atomic.Int32, n)
	results := make([]Result, n)
	var answered atomic.Int32
	for i := range n {
		p := MustParseProxyURL(f.URLWith(i, schemes[i/len(kinds)%len(schemes)], "", ""))
		c.CheckAsync(context.Background(), p, DoneFunc(func(r Result) {
			if calls[i].Add(1) == 1 {
				results[i] = r
			}
			answered.Add(1)
		}))
	}
	waitFor(t, func() bool { return answered.Load() >= n })
	// Once the loop has exited (idle), no further call can come.
	waitFor(t, func() bool { loopMu.Lock(); defer loopMu.Unlock(); return curLoop == nil })
	for i := range n {
		if k := calls[i].Load(); k != 1 {
			t.Fatalf("check %d: done called %d times", i, k)
		}
		if results[i].Class != kinds[i%len(kinds)].class {
			t.Errorf("check %d (%v): %+v", i, kinds[i%len(kinds)].b, results[i])
		}
	}
	waitFor(t, func() bool { return openFDs(t) <= fds })
}

// TestCheckAsyncSharedContext: checks in flight with one context share one
// cancellation watch on the loop; checks with another context at the same
// time are watched on their own; cancelling either context aborts its
// checks only, each answered once with Check's canceled result.
func TestCheckAsyncSharedContext(t *testing.T) {
	const n = 20
	var got atomic.Int64
	addr := silentProxy(t, &got)
	c := newChecker(t, Config{TargetURL: "http://t.proxyhealth.test/", Timeout: time.Hour})
	p := MustParseProxyURL("http://" + addr)
	ctxA, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	ctxB, cancelB := context.WithCancel(context.Background())
	defer cancelB()
	resA, resB := make(chan Result, n), make(chan Result, n)
	for range n {
		c.CheckAsync(ctxA, p, DoneFunc(func(r Result) { resA <- r }))
	}
	waitFor(t, func() bool { return got.Load() == n })
	for range n {
		c.CheckAsync(ctxB, p, DoneFunc(func(r Result) { resB <- r }))
	}
	waitFor(t, func() bool { return got.Load() == 2*n })
	cancelB()
	allCanceled(t, resB, n, "the cancelled context")
	select {
	case r := <-resA:
		t.Fatalf("a check of the other context ended: %+v", r)
	case <-time.After(50 * time.Millisecond): // a window for a wrong cancellation to show
	}
	cancelA()
	allCanceled(t, resA, n, "the shared context")
}

// silentProxy serves a proxy that reads a request (or a SOCKS greeting),
// counts it in got and never answers, until the client closes.
func silentProxy(t *testing.T, got *atomic.Int64) string {
	t.Helper()
	return scripted(t, func(c net.Conn) {
		buf := make([]byte, 512)
		if _, err := c.Read(buf); err != nil {
			return
		}
		got.Add(1)
		for {
			if _, err := c.Read(buf); err != nil {
				return // until the client closes
			}
		}
	})
}

// allCanceled reads n results from res, each of which must say the check
// was cancelled, within 5 s.
func allCanceled(t *testing.T, res <-chan Result, n int, what string) {
	t.Helper()
	for range n {
		select {
		case r := <-res:
			if !r.Canceled {
				t.Fatalf("a check of %s: %+v", what, r)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("checks of %s not answered within 5s", what)
		}
	}
}

// TestCheckAsyncReusesFinishedChecks: the loop reuses the checks it
// finished for later ones. Over rounds of checks with every kind of
// context (none, one shared, one each, some cancelled as they start), each
// check is answered once, with its own proxy's outcome, and the loop keeps
// finished checks to reuse.
func TestCheckAsyncReusesFinishedChecks(t *testing.T) {
	const n, rounds = 240, 5
	f := startFarm(t, n)
	kinds := []struct {
		b     fakeproxy.Behavior
		class pb.FailureClass
	}{
		{fakeproxy.OK(), cOK},
		{fakeproxy.Status(503), cStatus},
		{fakeproxy.Garbage(), cProtocol},
		{fakeproxy.Status(404), cStatus},
	}
	for i := range n {
		if err := f.Set(i, kinds[i%len(kinds)].b); err != nil {
			t.Fatal(err)
		}
	}
	c := newChecker(t, Config{TargetURL: "http://t.proxyhealth.test/"})
	// A check that stays in flight keeps the loop (and its free list) from
	// exiting idle between rounds.
	var got atomic.Int64
	hold, release := context.WithCancel(context.Background())
	held := make(chan Result, 1)
	newChecker(t, Config{TargetURL: "http://t.proxyhealth.test/", Timeout: time.Hour}).
		CheckAsync(hold, MustParseProxyURL("http://"+silentProxy(t, &got)), DoneFunc(func(r Result) { held <- r }))
	waitFor(t, func() bool { return got.Load() == 1 })
	fds := openFDs(t)
	for round := range rounds {
		shared, cancelShared := context.WithCancel(context.Background())
		calls := make([]atomic.Int32, n)
		results := make([]Result, n)
		var answered atomic.Int32
		for i := range n {
			p := MustParseProxyURL(f.URLWith(i, []string{"http", "socks5h"}[i/len(kinds)%2], "", ""))
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			switch i % 3 {
			case 1:
				ctx = shared
			case 2:
				ctx, cancel = context.WithCancel(context.Background())
			}
			c.CheckAsync(ctx, p, DoneFunc(func(r Result) {
				if calls[i].Add(1) == 1 {
					results[i] = r
				}
				answered.Add(1)
			}))
			if i%6 == 5 {
				cancel() // as the check starts: cancelled, or done first
			}
			defer cancel()
		}
		waitFor(t, func() bool { return answered.Load() >= n })
		cancelShared()
		for i := range n {
			if k := calls[i].Load(); k != 1 {
				t.Fatalf("round %d, check %d: done called %d times", round, i, k)
			}
			r, want := results[i], kinds[i%len(kinds)]
			if r.Class != want.class && !(i%6 == 5 && r.Canceled) {
				t.Errorf("round %d, check %d (%v): %+v", round, i, want.b, r)
			}
		}
		loopMu.Lock()
		free := 0
		if curLoop != nil {
			free = len(curLoop.free)
		}
		loopMu.Unlock()
		if round == 0 && free == 0 {
			// The loop moves finished checks to its free list when it next
			// wakes; after n answers it has woken many times.
			t.Errorf("after %d checks the loop keeps no finished check to reuse", n)
		}
	}
	release()
	if r := <-held; !r.Canceled {
		t.Errorf("the held check: %+v, want cancelled", r)
	}
	waitFor(t, func() bool { return openFDs(t) <= fds })
}
