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
	env  *Env
	spec *ProxySpec
	sys  *actor.ActorSystem
	self *actor.PID
	due  time.Time

	mu    sync.Mutex
	state runState
	// set while started (under mu): the limiter slot (slot: taken by
	// TryAcquire; else ticket), the probe's cancel, the zombie timer
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
	return &checkRun{env: a.env, spec: a.spec, sys: ctx.ActorSystem(), self: ctx.Self(), due: due}
}

// fire is the run's timer: it starts the check unless the actor withdrew
// the run first. It runs on the timer's goroutine and never blocks.
func (c *checkRun) fire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != runArmed {
		return
	}
	if c.env.stopping() {
		c.state = runEnded // no new check once stopping
		return
	}
	c.beginLocked()
}

// beginLocked marks the run started, tells the engine that the proxy is
// being checked and asks the limiter for a slot: the probe starts at once
// if one is free, else when one frees (granted). Called with mu held.
func (c *checkRun) beginLocked() {
	c.state = runStarted
	c.env.checking(c.spec.ID, true)
	if c.env.Limiter.TryAcquire() { // a free slot: no ticket
		c.slot = true
		c.startLocked()
		return
	}
	var inline atomic.Bool // read by a later grant on another goroutine
	inline.Store(true)
	grantedNow := false
	c.ticket = c.env.Limiter.Acquire(c.due, func(*Ticket) {
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
	if c.state == runStarted && c.cancel == nil {
		c.startLocked()
	}
}

// startLocked starts the probe (the spec's CheckAsync, or Check on a
// pooled goroutine) and arms the zombie timer. Its result comes back to
// the actor as the run itself (probeDone), or as runPanicked. Called with
// mu held.
func (c *checkRun) startLocked() {
	env := c.env
	if !env.begin() {
		// Stopping: no probe, the run is over.
		c.state = runEnded
		c.env.checking(c.spec.ID, false)
		c.releaseSlotLocked()
		return
	}
	pctx, cancel := context.WithCancel(env.ctx)
	c.cancel = cancel
	if async := c.spec.CheckAsync; async != nil {
		func() {
			defer func() {
				if v := recover(); v != nil { // the actor restarts; the check is over
					if c.once.CompareAndSwap(false, true) {
						env.work.Done()
					}
					c.sys.Root.Send(c.self, &runPanicked{run: c, value: v})
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
					c.sys.Root.Send(c.self, &runPanicked{run: c, value: v})
				}
			}()
			r := check(pctx)
			c.once.Store(true)
			c.result = r
			c.sys.Root.Send(c.self, (*probeDone)(c))
		})
	}
	if t := c.spec.Timeout; t > 0 {
		c.zombie = env.after(2*t, c.onZombie)
	}
}

// done is the asynchronous probe's callback: the result goes to the actor
// (once; a second call is ignored).
func (c *checkRun) done(r events.CheckResult) {
	if c.once.CompareAndSwap(false, true) {
		c.result = r
		c.sys.Root.Send(c.self, (*probeDone)(c))
		c.env.work.Done()
	}
}

// onZombie is the zombie timer: the actor records the check as a timeout.
func (c *checkRun) onZombie() { c.sys.Root.Send(c.self, &runZombie{run: c}) }

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
	slot, t, cancel, z := c.slot, c.ticket, c.cancel, c.zombie
	c.slot, c.ticket, c.cancel, c.zombie = false, nil, nil, nil
	c.env.checking(c.spec.ID, false)
	c.mu.Unlock()
	if z != nil {
		z.Stop()
	}
	if cancel != nil {
		cancel()
	}
	// Either may start a waiting run's probe, on this goroutine.
	if slot {
		c.env.Limiter.ReleaseSlot()
	}
	if t != nil {
		t.Release()
	}
	return true
}

// releaseSlotLocked frees the run's limiter slot or ticket; called with mu
// held.
func (c *checkRun) releaseSlotLocked() {
	if c.slot {
		c.slot = false
		c.env.Limiter.ReleaseSlot()
	}
	if t := c.ticket; t != nil {
		c.ticket = nil
		t.Release()
	}
}

// cancelProbe cancels the run's probe, if it started, without ending the
// run (its result, an error, still comes back).
func (c *checkRun) cancelProbe() {
	c.mu.Lock()
	cancel := c.cancel
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}
