package actors

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

func idleWorkers(p *workers) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// TestWorkersReuseAndShrink: a burst grows the pool; later jobs reuse the
// most recently idle worker; a worker idle past workerIdle is retired by the
// next job; close stops the rest (goleak checks that they exited).
func TestWorkersReuseAndShrink(t *testing.T) {
	var p workers
	release := make(chan struct{})
	var started, ran sync.WaitGroup
	const burst = 8
	started.Add(burst)
	ran.Add(burst)
	for range burst {
		p.run(func() { started.Done(); <-release; ran.Done() })
	}
	started.Wait() // all 8 run at once: 8 workers
	close(release)
	ran.Wait()
	testutil.Eventually(t, 5*time.Second, "workers did not become idle", func() bool { return idleWorkers(&p) == burst })

	// The most recently idle worker takes the next job: the pool does not grow.
	var n atomic.Int64
	for range 100 {
		done := make(chan struct{})
		p.run(func() { n.Add(1); close(done) })
		<-done
		testutil.Eventually(t, 5*time.Second, "worker did not return to the pool", func() bool { return idleWorkers(&p) == burst })
	}
	if n.Load() != 100 {
		t.Fatalf("ran %d jobs, want 100", n.Load())
	}

	// Age the bottom worker: the next job retires it.
	p.mu.Lock()
	p.idle[0].since = time.Now().Add(-2 * workerIdle)
	p.mu.Unlock()
	done := make(chan struct{})
	p.run(func() { close(done) })
	<-done
	testutil.Eventually(t, 5*time.Second, "stale worker was not retired", func() bool { return idleWorkers(&p) == burst-1 })

	p.close()
	if idleWorkers(&p) != 0 {
		t.Fatalf("%d idle workers after close", idleWorkers(&p))
	}
	// After close a job still runs, on a goroutine of its own.
	late := make(chan struct{})
	p.run(func() { close(late) })
	<-late
}

// TestWorkersDispatcher: actors run on the pool as their dispatcher.
func TestWorkersDispatcher(t *testing.T) {
	var p workers
	if p.Throughput() <= 0 {
		t.Fatalf("throughput %d", p.Throughput())
	}
	done := make(chan struct{})
	p.Schedule(func() { close(done) })
	<-done
	p.close()
}

// TestWorkersBounded: with max set, at most max jobs run at once; the rest
// wait and run first in first out.
func TestWorkersBounded(t *testing.T) {
	p := workers{max: 2}
	release := make(chan struct{})
	var running, peak atomic.Int64
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	const n = 10
	wg.Add(n)
	for i := range n {
		p.run(func() {
			if r := running.Add(1); r > peak.Load() {
				peak.Store(r)
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			if i < 2 {
				<-release // the first two hold both workers
			}
			running.Add(-1)
			wg.Done()
		})
	}
	p.mu.Lock()
	queued, count := p.queue.len(), p.count
	p.mu.Unlock()
	if queued != n-2 || count != 2 {
		t.Fatalf("%d queued and %d workers, want %d and 2", queued, count, n-2)
	}
	close(release)
	wg.Wait()
	if peak.Load() > 2 {
		t.Fatalf("%d jobs ran at once, max 2", peak.Load())
	}
	p.close()

	// With one worker the order is observable: first in, first out.
	one := workers{max: 1}
	order = order[:0]
	gate := make(chan struct{})
	wg.Add(n)
	for i := range n {
		one.run(func() {
			if i == 0 {
				<-gate
			}
			order = append(order, i) // one worker: no race
			wg.Done()
		})
	}
	close(gate)
	wg.Wait()
	for k, i := range order {
		if i != k {
			t.Fatalf("jobs ran in order %v, want first in first out", order)
		}
	}
	one.close()
}

// TestWorkersRetireWithoutJobs: after a burst that is not repeated, the
// idle workers of an unbounded pool exit by themselves once idle for
// idleAfter, with no further job to retire them; the workers of a bounded
// pool (the dispatcher: a few, busy) arm no timer to do so.
func TestWorkersRetireWithoutJobs(t *testing.T) {
	p := workers{idleAfter: 20 * time.Millisecond}
	release := make(chan struct{})
	var started sync.WaitGroup
	const burst = 50
	started.Add(burst)
	for range burst {
		p.run(func() { started.Done(); <-release })
	}
	started.Wait()
	close(release)
	testutil.Eventually(t, 10*time.Second, "the burst's workers to retire without a job", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.count == 0 && len(p.idle) == 0
	})
	// The pool still works: a new job gets a new worker.
	done := make(chan struct{})
	p.run(func() { close(done) })
	<-done
	p.close()

	b := workers{max: 2, idleAfter: time.Millisecond}
	var ran sync.WaitGroup
	ran.Add(2)
	b.run(func() { ran.Done() })
	b.run(func() { ran.Done() })
	ran.Wait()
	testutil.Eventually(t, 5*time.Second, "the bounded pool's workers to go idle", func() bool { return idleWorkers(&b) > 0 })
	b.mu.Lock()
	for _, w := range b.idle {
		if w.timer != nil {
			t.Errorf("an idle worker of a bounded pool armed a retirement timer")
		}
	}
	b.mu.Unlock()
	b.close()
}

// TestJobQueue: first in, first out through interleaved pushes and pops
// (the front is reused, what waits moved to it when the array is full), and
// a queue that stays within its array allocates nothing.
func TestJobQueue(t *testing.T) {
	var q jobQueue
	type num struct{ funcJob }
	jobs := make([]job, 64)
	for i := range jobs {
		jobs[i] = &num{}
	}
	next, want := 0, 0
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10_000 {
		if q.len() < 40 && (q.len() == 0 || rng.IntN(2) == 0) {
			q.push(jobs[next%len(jobs)])
			next++
			continue
		}
		if got := q.pop(); got != jobs[want%len(jobs)] {
			t.Fatalf("pop %d: not the job pushed %d-th", want, want)
		}
		want++
	}
	for q.len() > 0 {
		if got := q.pop(); got != jobs[want%len(jobs)] {
			t.Fatalf("pop %d: not the job pushed %d-th", want, want)
		}
		want++
	}
	if q.pop() != nil || want != next {
		t.Fatalf("popped %d of %d pushed", want, next)
	}
	if n := testing.AllocsPerRun(100, func() {
		for i := range 30 {
			q.push(jobs[i])
			if i%3 == 2 {
				q.pop()
			}
		}
		for q.pop() != nil {
		}
	}); n != 0 {
		t.Fatalf("%v allocations a run of a queue within its array", n)
	}
}
