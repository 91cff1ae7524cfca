package actors

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/internal/clock"
)

// checkRun is one check of a proxy, from the timer armed for it to its
// result. The actor decides when the next check is due (schedule) and arms
// a timer for a checkRun; when the timer fires, the run starts the probe
// itself, on the timer's goroutine, instead of sending the actor a message
// that would start it (one mailbox hand-off fewer per check: a message
// post, a mailbox run on a pooled goroutine, often a goroutine wake-up).
// The actor only hears of the result (the run itself, as the probeDone
// message), and decides on it as before.
//
// Until the timer fires the actor may take the run back (withdraw: a
// command changed the schedule, the actor stops); once it fired, the actor
// adopts it as its check in flight. mu makes the two exclusive: exactly one
// of fire and withdraw wins. The state machine is the actor's alone: a run
// reads nothing of it, it only starts a probe with what the actor gave it
// when it armed the run (spec, due time), which is what the actor would
// have done had the timer's message reached it a moment before any other
// message it received meanwhile.
type checkRun struct {
	a     *proxyActor // for its env, system and PID, which never change
	spec  *ProxySpec
	dueNs int64 // the due time (unix ns), for the limiter's order

	mu    sync.Mutex
	state runState
	f     *flight // set when started (under mu)
}

// flight is what a started run holds. It is allocated when the run starts,
// so that the run armed for each proxy between checks stays small (48
// bytes a proxy, where the timer's message closure was 32).
type flight struct {
	// the limiter slot (slot: taken by TryAcquire; else ticket), the
	// probe's cancel, the zombie timer; under the run's mu
	slot   bool
	ticket *Ticket
	cancel context.CancelFunc
	zombie clock.Timer

	// the probe's result (written once, by the probe's callback, before
	// the run is sent to the actor as its probeDone message)
	result events.CheckResult
	once   atomic.Bool // the probe's result is taken once
}

// runState is where a checkRun is.
type runState uint8

const (
	runArmed     runState = iota // its timer is pending
	runStarted                   // fired (or started by the actor): a check is in flight
	runEnded                     // over: result taken, cancelled, or never started
	runWithdrawn                 // the actor took it back before its timer fired
)

// probeDone is the message that brings a run's result to its actor: the
// run itself, so that a check costs no separate message.
type probeDone = checkRun

// runZombie and runPanicked are the messages of a run whose probe outlived
// twice its timeout, or panicked.
type (
	runZombie   struct{ run *checkRun }
	runPanicked struct {
		run   *checkRun
		value any
	}
)

// newRun returns a run of the actor's current spec, due at due.
func (a *proxyActor) newRun(ctx actor.Context, due time.Time) *checkRun {
	if a.self == nil {
		a.sys, a.self = ctx.ActorSystem(), ctx.Self()
	}
	return &checkRun{a: a, spec: a.spec, dueNs: due.UnixNano()}
}

// send sends the run's actor a message.
func (c *checkRun) send(m any) { c.a.sys.Root.Send(c.a.self, m) }

// fire is the run's timer: it starts the check unless the actor withdrew
// the run first. It runs on the timer's goroutine and never blocks.
func (c *checkRun) fire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != runArmed {
		return
	}
	if c.a.env.stopping() {
		c.state = runEnded // no new check once stopping
		return
	}
	c.beginLocked()
}

// beginLocked marks the run started, tells the engine that the proxy is
// being checked and asks the limiter for a slot: the probe starts at once
// if one is free, else when one frees (granted). Called with mu held.
func (c *checkRun) beginLocked() {
	env := c.a.env
	c.state = runStarted
	c.f = &flight{}
	env.checking(c.spec.ID, true)
	if env.Limiter.TryAcquire() { // a free slot: no ticket
		c.f.slot = true
		c.startLocked()
		return
	}
	var inline atomic.Bool // read by a later grant on another goroutine
	inline.Store(true)
	grantedNow := false
	c.f.ticket = env.Limiter.Acquire(time.Unix(0, c.dueNs), func(*Ticket) {
		if inline.Load() { // inside Acquire, on this goroutine, mu held
			grantedNow = true
			return
		}
		c.granted()
	})
	inline.Store(false)
	if grantedNow {
		c.startLocked()
	}
}

// granted is the limiter's grant of a slot to a run that waited for one:
// called on the goroutine that freed the slot.
func (c *checkRun) granted() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == runStarted && c.f.cancel == nil {
		c.startLocked()
	}
}

// startLocked starts the probe (the spec's CheckAsync, or Check on a
// pooled goroutine) and arms the zombie timer. Its result comes back to
// the actor as the run itself (probeDone), or as runPanicked. Called with
// mu held.
func (c *checkRun) startLocked() {
	env, f := c.a.env, c.f
	if !env.begin() {
		// Stopping: no probe, the run is over.
		c.state = runEnded
		env.checking(c.spec.ID, false)
		f.releaseSlot(env.Limiter)
		return
	}
	pctx, cancel := context.WithCancel(env.ctx)
	f.cancel = cancel
	if async := c.spec.CheckAsync; async != nil {
		func() {
			defer func() {
				if v := recover(); v != nil { // the actor restarts; the check is over
					if f.once.CompareAndSwap(false, true) {
						env.work.Done()
					}
					c.send(&runPanicked{run: c, value: v})
				}
			}()
			async(pctx, c.done)
		}()
	} else {
		check := c.spec.Check
		env.pool.run(func() {
			defer env.work.Done()
			defer func() {
				if v := recover(); v != nil {
					c.send(&runPanicked{run: c, value: v})
				}
			}()
			r := check(pctx)
			f.once.Store(true)
			f.result = r
			c.send((*probeDone)(c))
		})
	}
	if t := c.spec.Timeout; t > 0 {
		f.zombie = env.after(2*t, c.onZombie)
	}
}

// done is the asynchronous probe's callback: the result goes to the actor
// (once; a second call is ignored).
func (c *checkRun) done(r events.CheckResult) {
	f := c.flightOf()
	if f.once.CompareAndSwap(false, true) {
		f.result = r
		c.send((*probeDone)(c))
		c.a.env.work.Done()
	}
}

// flightOf returns the run's flight. The probe's callbacks read it without
// the lock: it is set before the probe starts and never replaced.
func (c *checkRun) flightOf() *flight { return c.f }

// result is the probe's result; the actor reads it once the run came back
// as its probeDone message.
func (c *checkRun) result() events.CheckResult { return c.f.result }

// onZombie is the zombie timer: the actor records the check as a timeout.
func (c *checkRun) onZombie() { c.send(&runZombie{run: c}) }

// withdraw takes an armed run back before its timer fires and reports
// whether it did; false means the timer fired first (the run is started
// or over).
func (c *checkRun) withdraw() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != runArmed {
		return false
	}
	c.state = runWithdrawn
	return true
}

// startedNow reports whether the run is a check in flight now.
func (c *checkRun) startedNow() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == runStarted
}

// end releases everything the run holds (its limiter slot, its probe, its
// zombie timer) and tells the engine the check is over; late messages of
// the run are ignored by the actor. It reports whether the run was in
// flight.
func (c *checkRun) end() bool {
	c.mu.Lock()
	if c.state != runStarted {
		c.mu.Unlock()
		return false
	}
	c.state = runEnded
	f := c.f
	slot, t, cancel, z := f.slot, f.ticket, f.cancel, f.zombie
	f.slot, f.ticket, f.cancel, f.zombie = false, nil, nil, nil
	c.a.env.checking(c.spec.ID, false)
	c.mu.Unlock()
	if z != nil {
		z.Stop()
	}
	if cancel != nil {
		cancel()
	}
	// Either may start a waiting run's probe, on this goroutine.
	if slot {
		c.a.env.Limiter.ReleaseSlot()
	}
	if t != nil {
		t.Release()
	}
	return true
}

// releaseSlot frees the flight's limiter slot or ticket; called with the
// run's mu held.
func (f *flight) releaseSlot(l *Limiter) {
	if f.slot {
		f.slot = false
		l.ReleaseSlot()
	}
	if t := f.ticket; t != nil {
		f.ticket = nil
		t.Release()
	}
}

// cancelProbe cancels the run's probe, if it started, without ending the
// run (its result, an error, still comes back).
func (c *checkRun) cancelProbe() {
	c.mu.Lock()
	var cancel context.CancelFunc
	if c.f != nil {
		cancel = c.f.cancel
	}
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}
