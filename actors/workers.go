package actors

import (
	"sync"
	"time"
)

// workerIdle is how long a pooled goroutine may stay idle before it exits.
const workerIdle = 2 * time.Second

// workers is a pool of goroutines that run the actors' mailboxes (as their
// protoactor dispatcher) and what actors hand off their mailbox: probes,
// appends and snapshot saves. protoactor's default dispatcher and a plain
// `go` per probe start a goroutine for every message burst and every check,
// and each new 2 KiB stack then grows (inside net.Dial, inside Receive);
// reusing goroutines saves both. Idle workers are kept last-in first-out, so the pool shrinks
// to what the load needs: after the first sweep of a large pool, the
// workers that are not needed any more go stale at the bottom of the stack
// and exit: one with each later job and, in an unbounded pool, each by
// itself once idle for workerIdle, even when no job comes (a burst that is
// never repeated, 64,000 snapshot saves at once, otherwise kept its
// goroutines and their stacks for good).
type workers struct {
	mu     sync.Mutex
	idle   []*worker // most recently idle last
	closed bool
	live   sync.WaitGroup
	// max bounds the workers (0: no bound); jobs beyond it wait in queue,
	// first in first out. Only for jobs that never wait on one another.
	max   int
	count int
	queue jobQueue
	// idleAfter is how long a worker may stay idle before it exits (0:
	// workerIdle; tests set it shorter).
	idleAfter time.Duration
}

// job is what a worker runs: a func (run), or a proxy mailbox's turn
// (submit), which as a job of its own needs no closure per turn.
type job interface{ run() }

// funcJob is a func as a job.
type funcJob func()

func (f funcJob) run() { f() }

type worker struct {
	jobs   chan job    // buffered 1; nil job: exit
	since  time.Time   // when it became idle
	inIdle bool        // in p.idle (p.mu)
	timer  *time.Timer // an idle worker's retirement (unbounded pools)
}

// run runs f on an idle worker, or on a new one. It never blocks. After
// close it runs f on a plain goroutine, so a late message still reaches its
// mailbox.
func (p *workers) run(f func()) { p.submit(funcJob(f)) }

// submit runs j on an idle worker, or on a new one, as run does.
func (p *workers) submit(j job) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		go j.run()
		return
	}
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		w.inIdle = false
		p.retireStale()
		p.mu.Unlock()
		w.jobs <- j
		return
	}
	if p.max > 0 && p.count >= p.max {
		p.queue.push(j)
		p.mu.Unlock()
		return
	}
	p.count++
	p.live.Add(1)
	p.mu.Unlock()
	w := &worker{jobs: make(chan job, 1)}
	go w.loop(p, j)
}

// retireStale tells the worker idle the longest to exit if it has been idle
// for more than workerIdle. Called with p.mu held, once per job: the pool
// shrinks as fast as it is used, without a timer or a sweeper goroutine.
func (p *workers) retireStale() {
	if len(p.idle) == 0 || time.Since(p.idle[0].since) < p.idleFor() {
		return
	}
	p.retireOldest()
}

// retireOldest tells the worker idle the longest to exit (p.mu held, idle
// not empty).
func (p *workers) retireOldest() {
	w := p.idle[0]
	p.idle[0] = nil
	p.idle = p.idle[1:]
	w.inIdle = false
	p.count--
	w.jobs <- nil
}

// idleFor is how long a worker may stay idle: idleAfter, or workerIdle.
func (p *workers) idleFor() time.Duration {
	if p.idleAfter > 0 {
		return p.idleAfter
	}
	return workerIdle
}

// next waits for w's next job (nil: exit). In an unbounded pool, once w has
// been idle for idleAfter it retires itself and every worker idle longer
// (those below it in the stack), unless a job reached it meanwhile.
func (w *worker) next(p *workers) job {
	if p.max > 0 { // a few workers, busy: no timer on the hot path
		return <-w.jobs
	}
	after := p.idleFor()
	if w.timer == nil {
		w.timer = time.NewTimer(after)
	} else {
		w.timer.Reset(after)
	}
	select {
	case j := <-w.jobs:
		w.timer.Stop()
		return j
	case <-w.timer.C:
	}
	p.mu.Lock()
	for w.inIdle {
		p.retireOldest()
	}
	p.mu.Unlock()
	return <-w.jobs // the job run handed it, or the nil that retired it
}

func (w *worker) loop(p *workers, j job) {
	defer p.live.Done()
	for j != nil {
		j.run()
		j = nil // do not keep the job's closure alive while idle
		p.mu.Lock()
		if j = p.queue.pop(); j != nil {
			p.mu.Unlock()
			continue
		}
		if p.closed {
			p.count--
			p.mu.Unlock()
			return
		}
		w.since = time.Now()
		w.inIdle = true
		p.idle = append(p.idle, w)
		p.mu.Unlock()
		j = w.next(p)
	}
}

// jobQueue is a first-in first-out queue of jobs that reuses its array:
// the dispatcher's queue takes a mailbox turn per message burst beyond its
// workers, and a queue popped by reslicing its front lost that capacity
// and was reallocated (and copied) as it went, about 140 bytes a check at
// 10,000 proxies.
type jobQueue struct {
	buf  []job
	head int // buf[head:] waits
}

// push appends j, first moving what waits to the front of buf when buf is
// full and its front is free.
func (q *jobQueue) push(j job) {
	if len(q.buf) == cap(q.buf) && q.head > 0 {
		n := copy(q.buf, q.buf[q.head:])
		clear(q.buf[n:])
		q.buf, q.head = q.buf[:n], 0
	}
	q.buf = append(q.buf, j)
}

// len is how many jobs wait.
func (q *jobQueue) len() int { return len(q.buf) - q.head }

// pop removes and returns the oldest job, nil if none waits.
func (q *jobQueue) pop() job {
	if q.head == len(q.buf) {
		return nil
	}
	j := q.buf[q.head]
	q.buf[q.head] = nil
	if q.head++; q.head == len(q.buf) {
		q.buf, q.head = q.buf[:0], 0
	}
	return j
}

// close stops the idle workers and makes busy ones exit when their job
// ends; then it waits for all of them.
func (p *workers) close() {
	p.mu.Lock()
	p.closed = true
	for _, w := range p.idle {
		w.inIdle = false
		w.jobs <- nil
	}
	p.count -= len(p.idle)
	p.idle = nil
	p.mu.Unlock()
	p.live.Wait()
}

// Schedule implements actor.Dispatcher: a mailbox with messages runs on a
// pooled goroutine.
func (p *workers) Schedule(fn func()) { p.run(fn) }

// Throughput implements actor.Dispatcher: the messages a mailbox processes
// before it yields (protoactor's default).
func (p *workers) Throughput() int { return 300 }
