package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/events/packed"
	"github.com/proxyhealth/proxyhealth/internal/clock"
	"github.com/proxyhealth/proxyhealth/journal"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// pending is a command waiting for the append in flight.
type pending struct {
	cmd   events.Command
	reply *actor.PID // nil: nobody waits
	sync  bool       // a Sync marker: reply only
}

// proxyActor is the shell around one proxy's state machine. It is spawned
// with Env.proxyProps under the name spec.ID, after the spec was registered
// in Env.specs. On (re)start it recovers its state from its latest snapshot
// plus the rest of its stream; a new proxy journals ProxyAdded. All fields
// are owned by the actor's mailbox; goroutines it starts only send messages.
type proxyActor struct {
	env   *Env
	spec  *ProxySpec // registered in env.specs; replaced, never changed
	track Tracker    // from env.Track, held from lookup to halt

	// state is the committed state, packed without its ProxyID, which is
	// spec.ID (216 bytes instead of 408: an actor per proxy). Read it with
	// st, write it with setState.
	state    packed.State
	lastSnap uint64 // stream seq of the latest snapshot

	// persistence: one append in flight at a time (persisting); commands
	// that arrive meanwhile wait in queue (nil while none waits) and are
	// decided after the commit, in order.
	queue *cmdQueue

	// schedule: the check timer and the zombie deadline are armings of
	// one re-armable timer (rt, made at the first arming): the check's
	// (timerArmed) only while no check runs, the zombie's only while one
	// does. The next check is due at reported while dueSet: a due time is
	// always told to the tracker, so it is not kept twice.
	rt       clock.Rearmable
	reported int64  // the due time last told to the tracker (unix ns; 0: none)
	gen      uint32 // invalidates stale timers (wraps after years of checks)

	// the check in flight (checking; its probe runs with the Env's
	// context: it is not cancelled on its own, see endCheck): check is
	// its one object, which holds its limiter ticket
	checkGen uint32
	check    *CheckDone

	// an ejection timer and appends the journal refused (nil: neither)
	rare *proxyRare

	// snapshot saves in flight: a handful at most (one per SnapshotEvery
	// events or SnapshotNow, each ends with its commit), so 16 bits, and
	// saveSnapshot refuses one more past them
	snapping uint16

	// The flags sit together: apart, padding gave each 8 bytes, in an
	// actor per proxy. With the times kept as unix ns, the ejection, the
	// append failures and the command queue apart and no timer fields
	// besides rt, the actor fits the 320-byte size class (480 before):
	// 16 MB less at 100,000 proxies.
	persisting bool
	checking   bool
	retiring   bool // removed: stop once nothing is in flight
	stopped    bool
	timerArmed bool // rt is armed for the next check
	dueSet     bool // the next check is due at reported
}

// cmdQueue holds the commands waiting for the append in flight, in q,
// first in its own room (buf): a queue of one command costs one
// allocation, as a slice of one did.
type cmdQueue struct {
	q   []pending
	buf [1]pending
}

// proxyRare is what few proxy actors hold at a time, kept apart from
// proxyActor (12 bytes of it in every proxy); the actor drops it once
// nothing of it is left (tidyRare).
type proxyRare struct {
	// the end of an ejection from rotation (nil: none armed)
	eject *ejection
	// when the next check may run after appends the journal refused (unix
	// ns; 0: on schedule), and how many were refused in a row; see
	// appendFailed
	retryAt        int64
	appendFailures int32
}

// rareState returns the actor's proxyRare, made if it has none.
func (a *proxyActor) rareState() *proxyRare {
	if a.rare == nil {
		a.rare = &proxyRare{}
	}
	return a.rare
}

// tidyRare drops the actor's proxyRare once nothing of it is left.
func (a *proxyActor) tidyRare() {
	if r := a.rare; r != nil && r.eject == nil && r.retryAt == 0 && r.appendFailures == 0 {
		a.rare = nil
	}
}

// armedEjection returns the armed ejection timer, if any.
func (a *proxyActor) armedEjection() *ejection {
	if a.rare == nil {
		return nil
	}
	return a.rare.eject
}

// ejection is an armed ejection timer: it fires, as its own ejectionDue
// message, when the proxy's ejection ends at until (the State's
// EjectedUntil it was armed for). The actor tells a stale firing by its
// identity: a disarmed ejection is never the actor's again.
type ejection struct {
	timer clock.Timer
	until time.Time
}

// due returns when the next check is due (zero: none scheduled).
func (a *proxyActor) due() time.Time {
	if !a.dueSet {
		return time.Time{}
	}
	return events.FromUnixNano(a.reported)
}

// st returns the committed state (events.NewState(spec.ID) before the
// actor recovered one).
func (a *proxyActor) st() events.State { return a.state.Unpack(a.spec.ID) }

// setState makes s, a state of this proxy (journal.LoadState starts from
// events.NewState(spec.ID)), the committed state.
func (a *proxyActor) setState(s *events.State) { a.state.Repack(s, a.spec.ID) }

func (a *proxyActor) log() *slog.Logger {
	return a.env.Logger.With(slog.String("proxy_id", a.spec.ID), slog.String("source", a.spec.Source))
}

// Receive implements actor.Actor.
func (a *proxyActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if !a.lookup(ctx) {
			return
		}
		a.recover(ctx)
	case *actor.Stopping, *actor.Restarting:
		a.halt()
	case *checkDue:
		a.onCheckDue(ctx, m)
	case *ejectionDue:
		if e := a.armedEjection(); e != nil && (*ejection)(m) == e {
			a.rare.eject = nil
			a.tidyRare()
			a.submit(ctx, pending{cmd: events.EjectionExpired{At: a.now()}})
		}
	case *slotGranted:
		a.onSlotGranted(ctx, (*CheckDone)(m))
	case *CheckDone:
		a.onProbeDone(ctx, m)
	case *probePanicked:
		if m.owner == a && m.gen == a.checkGen && a.checking {
			a.endCheck()
			panic(fmt.Errorf("actors: probe of proxy %s panicked: %v", a.spec.ID, m.value))
		}
	case *zombie:
		a.onZombie(ctx, m)
	case *appendDone:
		a.onAppendDone(ctx, m)
	case *SnapshotNow:
		a.saveSnapshot(ctx, ctx.Sender())
	case *snapshotDone:
		if m.owner == a {
			a.snapping--
			if m.err == nil && m.seq > a.lastSnap {
				a.lastSnap = m.seq
			}
		}
		a.respond(ctx, m.reply, Reply{Err: m.err})
		a.stopWhenIdle(ctx)
	case *GetState:
		ctx.Respond(&StateReply{State: a.st(), Checking: a.checking, NextCheckAt: a.due(), Busy: a.persisting || a.queue != nil || a.snapping > 0, Stopped: a.stopped})
	case *Sync:
		a.submit(ctx, pending{reply: ctx.Sender(), sync: true})
	case *Pause:
		a.command(ctx, events.Pause{At: a.now(), Reason: m.Reason})
	case *Resume:
		a.command(ctx, events.Resume{At: a.now(), Reason: m.Reason})
	case *Revive:
		a.command(ctx, events.Revive{At: a.now(), Reason: m.Reason})
	case *Remove:
		a.command(ctx, events.Remove{At: a.now(), Reason: m.Reason})
	case *Adopt:
		a.command(ctx, events.Adopt{At: a.now(), From: m.From, Record: m.Record, Reason: m.Reason})
	case *Passive:
		a.command(ctx, events.PassiveOutcome{At: a.now(), OK: m.OK, Class: m.Class})
	case *Reconfigure:
		if err := m.Spec.validate(); err != nil {
			a.respond(ctx, ctx.Sender(), Reply{Err: fmt.Errorf("actors: reconfigure: %w", err)})
			return
		}
		if m.Spec.ID != a.spec.ID || m.Spec.Source != a.spec.Source {
			a.respond(ctx, ctx.Sender(), Reply{Err: fmt.Errorf("actors: reconfigure of %s cannot change its ID or source", a.spec.ID)})
			return
		}
		spec := m.Spec
		a.spec = spec
		a.env.specs.put(spec) // a restart starts from this spec
		// The metadata first (journaled if it changed), answered with
		// the config change.
		a.submit(ctx, pending{cmd: events.SetMetadata{At: a.now(), Tags: spec.Tags, Weight: spec.Weight}})
		a.command(ctx, events.ConfigChanged{At: a.now()})
	}
}

func (a *proxyActor) now() time.Time { return a.env.Clock.Now() }

// lookup finds the actor's spec by the name it was spawned with (the
// proxy ID, the last element of its PID's path). Without one (never
// registered, or the proxy was removed meanwhile) the actor stops.
func (a *proxyActor) lookup(ctx actor.Context) bool {
	spec, ok := a.env.specs.get(proxyIDOf(ctx.Self()))
	if !ok {
		a.env.Logger.Warn("proxy actor has no spec; stopping it", slog.String("actor", ctx.Self().GetId()))
		a.stopped = true
		ctx.Stop(ctx.Self())
		return false
	}
	a.spec = spec
	a.track = a.env.track(spec.ID)
	return true
}

// proxyIDOf returns the proxy ID a proxy actor was spawned with: the last
// element of its PID's path (its source is the parent).
func proxyIDOf(pid *actor.PID) string {
	id := pid.GetId()
	return id[strings.LastIndexByte(id, '/')+1:]
}

// recover rebuilds the state from the journal: snapshot, then the stream
// (or Env.Current's state and the snapshot's seq). A journal that cannot
// be read panics, so the supervisor retries with backoff.
func (a *proxyActor) recover(ctx actor.Context) {
	st, snapSeq, err := a.loadState()
	if err != nil {
		if errors.Is(err, journal.ErrClosed) || a.env.stopping() {
			a.stopped = true
			return
		}
		panic(fmt.Errorf("actors: recover proxy %s: %w", a.spec.ID, err))
	}
	a.lastSnap = snapSeq
	a.setState(&st)
	if st.Ejected() && !st.Removed && a.env.Ejections != nil {
		a.env.Ejections.Hold(a.spec.ID) // journaled: it stands
	}
	var adopt *events.Adopt
	if a.spec.Adopt != nil {
		c := *a.spec.Adopt
		c.At = a.now()
		adopt = &c
	}
	if !st.Added || st.Removed {
		a.submit(ctx, pending{cmd: events.Add{
			At: a.now(), URLRedacted: a.spec.URLRedacted, Source: a.spec.Source,
			ConfigRef: a.spec.Settings.ConfigRef, HasCredentials: a.spec.HasCredentials, Origin: a.spec.Origin,
			Tags: a.spec.Tags, Weight: a.spec.Weight, Adopt: adopt,
		}})
		return
	}
	if adopt != nil {
		a.submit(ctx, pending{cmd: *adopt}) // a no-op when the journal knows better
	}
	// Metadata changed while the engine was down (a new configuration or
	// list): journaled now, if it did.
	a.submit(ctx, pending{cmd: events.SetMetadata{At: a.now(), Tags: a.spec.Tags, Weight: a.spec.Weight}})
	a.schedule(ctx)
}

// loadState is journal.LoadState, unless Env.Current has the proxy's state
// through its stream's head: then only the snapshot is read, for its seq
// (from which the actor counts events until its next snapshot).
func (a *proxyActor) loadState() (events.State, uint64, error) {
	j, id := a.env.Journal, a.spec.ID
	if a.env.Current != nil {
		if head := j.StreamHead(id); head > 0 {
			if st, ok := a.env.Current(id, head); ok {
				snap, err := j.LoadSnapshot(a.env.ctx, id)
				switch {
				case err == nil:
					return st, snap.GetStreamSeq(), nil
				case errors.Is(err, journal.ErrNoSnapshot):
					return st, 0, nil
				default:
					return st, 0, fmt.Errorf("load the snapshot of proxy %s: %w", id, err)
				}
			}
		}
	}
	return journal.LoadState(a.env.ctx, j, id)
}

// halt cancels everything the actor started; used on Stopping and
// Restarting. Timers are not owned by the actor system, so this is the only
// place they die.
func (a *proxyActor) halt() {
	a.stopped = true
	a.stopCheckTimer()
	a.disarmEjection()
	if a.checking {
		a.endCheck()
	}
	if a.rt != nil {
		a.rt.Stop()
	}
	if a.track != nil {
		a.track.Release()
	}
	a.track = noTracker{} // a late message reports nothing
}

// endCheck releases everything held by the check in flight and invalidates
// its late messages. The probe itself is not cancelled: it runs with the
// Env's context (cancelled when the engine stops) and ends by its own
// timeout; its late result is ignored. A context of its own per check cost
// about seven allocations and two registrations in contexts' child maps,
// for what only a zombie, a removal or a restart in the middle of a check
// would use.
func (a *proxyActor) endCheck() {
	a.checking = false
	a.checkGen++
	if a.check != nil {
		a.check.ticket.Release()
		a.check = nil
	}
	if a.rt != nil {
		// While a check runs, rt is armed for nothing but its zombie
		// deadline (if for anything).
		a.rt.Stop()
	}
	a.track.SetChecking(false)
}

func (a *proxyActor) command(ctx actor.Context, cmd events.Command) {
	a.submit(ctx, pending{cmd: cmd, reply: ctx.Sender()})
}

// respond sends r, naming the proxy, to the actor that waits for it; to is
// nil when none does.
func (a *proxyActor) respond(ctx actor.Context, to *actor.PID, r Reply) {
	if to != nil {
		sent := r // on the heap only when sent: most commands wait for no reply
		sent.Proxy = a.spec.ID
		ctx.Send(to, &sent)
	}
}

// submit decides a command now, or queues it behind the append in flight.
func (a *proxyActor) submit(ctx actor.Context, p pending) {
	if a.persisting {
		if a.queue == nil {
			a.queue = &cmdQueue{}
			a.queue.q = a.queue.buf[:0]
		}
		a.queue.q = append(a.queue.q, p)
		return
	}
	a.decide(ctx, p)
}

// decide runs the pure core and persists what it returns. Commands that
// produce nothing are answered at once.
func (a *proxyActor) decide(ctx actor.Context, p pending) {
	if p.sync {
		a.respond(ctx, p.reply, Reply{})
		a.drain(ctx)
		return
	}
	if a.stopped {
		a.respond(ctx, p.reply, Reply{Err: fmt.Errorf("%w: proxy %s", ErrStopping, a.spec.ID)})
		return
	}
	st := a.st()
	evs, err := events.Decide(st, p.cmd, a.spec.Settings.Health)
	if err == nil && ejects(evs) && a.env.Ejections != nil && !a.env.Ejections.TryEject(a.spec.ID) {
		// The pool's maximum ejection share is reached: record the
		// failure, keep the proxy in rotation.
		if po, ok := p.cmd.(events.PassiveOutcome); ok {
			po.NoEjection = true
			p.cmd = po
			evs, err = events.Decide(st, p.cmd, a.spec.Settings.Health)
		}
	}
	if err != nil && p.reply == nil {
		a.log().Warn("command rejected", slog.String("command", fmt.Sprintf("%T", p.cmd)), slog.Any("error", err))
	}
	if err != nil || len(evs) == 0 {
		a.respond(ctx, p.reply, Reply{Err: err})
		a.schedule(ctx)
		a.drain(ctx)
		return
	}
	a.persist(ctx, evs, p)
}

// persist appends the events with explicit stream seqs (so a concurrent
// writer of the same stream is detected), and applies them only when the
// journal says they are durable: the commit comes back through the mailbox
// as an appendDone message, and the mailbox keeps serving queries meanwhile
// (commands wait in the queue). A journal that implements
// journal.AsyncAppender reports the commit through a callback, so an
// append in flight costs no goroutine; with any other journal the append
// runs on a pooled goroutine and fails after AppendTimeout. A failed append
// restarts the actor, which recovers from the journal, whatever part of it
// landed.
func (a *proxyActor) persist(ctx actor.Context, evs []*pb.Envelope, p pending) {
	for i, e := range evs {
		e.StreamSeq = a.state.StreamSeq() + uint64(i) + 1
	}
	if !a.env.begin() {
		a.respond(ctx, p.reply, Reply{Err: fmt.Errorf("%w: proxy %s", ErrStopping, a.spec.ID)})
		a.stopped = true
		a.failQueue(ctx, ErrStopping)
		return
	}
	a.persisting = true

	sys, self, j := ctx.ActorSystem(), ctx.Self(), a.env.Journal
	done := &appendDone{owner: a, evs: evs, p: p}
	if aj, ok := j.(journal.AsyncAppender); ok {
		aj.AppendAsync(evs, func(seqs []uint64, err error) {
			done.seqs, done.err = seqs, err
			sys.Root.Send(self, done)
			a.env.work.Done()
		})
		return
	}
	timeout := a.env.AppendTimeout
	a.env.pool.run(func() {
		defer a.env.work.Done()
		actx, cancel := context.WithTimeout(context.Background(), timeout)
		done.seqs, done.err = j.Append(actx, evs)
		cancel()
		sys.Root.Send(self, done)
	})
}

// saveSnapshot saves the committed state as the proxy's snapshot, unless
// the latest snapshot already covers it, and answers reply (if any) once it
// is durable. It runs every SnapshotEvery events and on SnapshotNow, not
// while the Env drains. A failed snapshot only costs a longer replay next
// time.
func (a *proxyActor) saveSnapshot(ctx actor.Context, reply *actor.PID) {
	if a.state.StreamSeq() == 0 || a.state.StreamSeq() <= a.lastSnap {
		a.respond(ctx, reply, Reply{})
		return
	}
	if a.snapping == math.MaxUint16 { // before begin: a refusal registers no work
		a.respond(ctx, reply, Reply{Err: fmt.Errorf("actors: proxy %s has %d snapshot saves in flight", a.spec.ID, a.snapping)})
		return
	}
	if !a.env.begin() {
		a.respond(ctx, reply, Reply{Err: fmt.Errorf("%w: proxy %s", ErrStopping, a.spec.ID)})
		return
	}
	a.snapping++
	snap, seq := events.ToSnapshot(a.st()), a.state.StreamSeq()
	sys, self, j, owner := ctx.ActorSystem(), ctx.Self(), a.env.Journal, a
	if sj, ok := j.(journal.AsyncSnapshotter); ok {
		// No goroutine per save: a broadcast of SnapshotNow (retention)
		// reaches every proxy at once, and at 100,000 proxies saves that
		// each waited for their commit on a goroutine had 64,000
		// goroutines (140 MiB of stacks) up at once.
		sj.SaveSnapshotAsync(snap, func(err error) {
			sys.Root.Send(self, &snapshotDone{owner: owner, seq: seq, err: err, reply: reply})
			a.env.work.Done()
		})
		return
	}
	a.env.pool.run(func() {
		defer a.env.work.Done()
		err := j.SaveSnapshot(context.Background(), snap)
		sys.Root.Send(self, &snapshotDone{owner: owner, seq: seq, err: err, reply: reply})
	})
}

// onAppendDone applies a commit, unless the actor restarted meanwhile (the
// new incarnation recovered from the journal instead).
func (a *proxyActor) onAppendDone(ctx actor.Context, m *appendDone) {
	if m.owner != a {
		return
	}
	a.committed(ctx, m.evs, m.p, m, nil)
}

func (a *proxyActor) committed(ctx actor.Context, evs []*pb.Envelope, p pending, out *appendDone, err error) {
	a.persisting = false
	if err == nil {
		err = out.err
	}
	if err != nil {
		if errors.Is(err, journal.ErrClosed) || a.env.stopping() {
			a.respond(ctx, p.reply, Reply{Err: err})
			a.stopped = true
			a.failQueue(ctx, err)
			return
		}
		a.appendFailed(ctx, p, err)
		return
	}
	if a.rare != nil {
		a.rare.appendFailures, a.rare.retryAt = 0, 0
		a.tidyRare()
	}
	for i, e := range evs {
		if e.Seq != out.seqs[i] { // a journal that did not fill it in
			e.Seq = out.seqs[i]
		}
	}
	wasEjected := a.state.Ejected()
	st := events.Fold(a.st(), evs...)
	a.setState(&st)
	if wasEjected && (!a.state.Ejected() || a.state.Removed()) && a.env.Ejections != nil {
		a.env.Ejections.Release(a.spec.ID)
	}
	if a.state.StreamSeq()-a.lastSnap >= a.env.SnapshotEvery {
		a.saveSnapshot(ctx, nil)
	}
	a.respond(ctx, p.reply, Reply{Events: len(evs)})
	if a.state.Removed() {
		a.retire(ctx)
		return
	}
	a.schedule(ctx)
	a.drain(ctx)
}

// appendFailed handles an append the journal did not commit (disk full, I/O
// error): nothing of it was written, so the committed state stays as it is
// and nothing is announced. The requester and every queued command are
// told (ErrJournalFailing); nothing is retried behind their back, so an
// error answer always means "not applied". A proxy that was being added
// stops: it was never added. Any other proxy goes on checking: the next
// check follows after a backoff (the suspect interval, doubling up to the
// check interval), so the proxy is checked again within one interval of
// the journal taking writes again. The actor does not restart: a full disk
// is the engine's condition (Engine.Health), not this proxy's fault.
func (a *proxyActor) appendFailed(ctx actor.Context, p pending, err error) {
	if !a.state.Ejected() && a.env.Ejections != nil {
		a.env.Ejections.Release(a.spec.ID) // an ejection that was not journaled
	}
	err = fmt.Errorf("%w: proxy %s: %w", ErrJournalFailing, a.spec.ID, err)
	a.respond(ctx, p.reply, Reply{Err: err})
	a.failQueue(ctx, err)
	r := a.rareState()
	r.appendFailures++
	if !a.state.Added() || a.state.Removed() {
		a.log().Warn("the journal did not take the proxy's ProxyAdded; the proxy is not added", slog.Any("error", err))
		a.stopped = true
		if a.env.Abandoned != nil {
			a.env.Abandoned(a.spec.ID, ctx.Self())
		}
		ctx.Stop(ctx.Self())
		return
	}
	if r.appendFailures == 1 {
		a.log().Warn("the journal did not take the proxy's events; checking goes on, results are recorded again once the journal takes writes", slog.Any("error", err))
	}
	r.retryAt = a.now().UnixNano() + int64(appendRetryDelay(a.spec.Settings.Health, int(r.appendFailures), events.JitterSample(a.spec.ID, a.state.TotalChecks()+uint64(r.appendFailures))))
	a.schedule(ctx)
}

// appendRetryDelay is the wait before the next check after n appends in a
// row failed: the suspect interval (at least a second) doubled n-1 times,
// capped at the check interval, then shortened by up to 10 % by the
// jitter sample (in [0, 1)) so that a pool does not retry in step and
// never waits longer than one interval.
func appendRetryDelay(cfg events.Config, n int, r float64) time.Duration {
	d := max(cfg.SuspectInterval, time.Second)
	for i := 1; i < n && d < cfg.Interval; i++ {
		d *= 2
	}
	if cfg.Interval > 0 {
		d = min(d, cfg.Interval)
	}
	return d - time.Duration(float64(d)*0.1*r)
}

func (a *proxyActor) failQueue(ctx actor.Context, err error) {
	if a.queue == nil {
		return
	}
	for _, q := range a.queue.q {
		a.respond(ctx, q.reply, Reply{Err: err})
	}
	a.queue = nil
}

// drain decides queued commands until one needs an append.
func (a *proxyActor) drain(ctx actor.Context) {
	for !a.persisting && a.queue != nil {
		q := a.queue
		p := q.q[0]
		q.q[0] = pending{}
		q.q = q.q[1:]
		if len(q.q) == 0 {
			// An emptied queue goes: kept, it would stay for the
			// actor's life (in every proxy: the engine's Sync after a
			// new proxy's spawn waits behind its ProxyAdded).
			a.queue = nil
		}
		a.decide(ctx, p)
	}
}

// retire stops a removed proxy once nothing of it is in flight.
func (a *proxyActor) retire(ctx actor.Context) {
	a.stopCheckTimer()
	a.disarmEjection()
	if a.queue != nil {
		for _, q := range a.queue.q {
			if q.sync {
				a.respond(ctx, q.reply, Reply{})
			} else {
				a.respond(ctx, q.reply, Reply{Err: fmt.Errorf("%w: %s", events.ErrRemoved, a.spec.ID)})
			}
		}
		a.queue = nil
	}
	if a.checking {
		a.endCheck() // its late result goes to the dead letters
	}
	a.retiring = true
	a.stopWhenIdle(ctx)
}

// stopWhenIdle stops a retiring actor once no probe or snapshot goroutine
// can still send to it, so nothing reaches a dead mailbox. It reports
// whether the actor is retiring.
func (a *proxyActor) stopWhenIdle(ctx actor.Context) bool {
	if !a.retiring {
		return false
	}
	if !a.checking && a.snapping == 0 && !a.stopped {
		a.stopped = true
		ctx.Stop(ctx.Self())
	}
	return true
}

// schedule arms the timer for the next check from the state machine's
// NextCheckAt, with a jitter sample derived from the proxy's ID and stream
// position (deterministic across restarts).
func (a *proxyActor) schedule(ctx actor.Context) {
	a.stopCheckTimer()
	a.dueSet = false
	if a.stopped || a.env.stopping() {
		return
	}
	if !a.persisting {
		a.armEjection(ctx)
	}
	if a.checking || a.persisting {
		return
	}
	at, ok := events.NextCheckAt(a.st(), a.spec.Settings.Health, events.JitterSample(a.spec.ID, a.state.TotalChecks()))
	if !ok {
		a.report(time.Time{})
		return
	}
	now := a.now()
	if r := a.rare; r != nil && r.retryAt != 0 && at.UnixNano() < r.retryAt {
		at = events.FromUnixNano(r.retryAt)
	}
	if at.Before(now) {
		at = now
	}
	a.report(at)
	a.dueSet = true
	a.gen++
	a.arm(ctx, at.Sub(now), a.gen, false)
}

// stopCheckTimer disarms the check timer, if armed.
func (a *proxyActor) stopCheckTimer() {
	if a.timerArmed {
		a.rt.Stop()
		a.timerArmed = false
	}
}

// arm arms the check timer (a checkDue of gen after d) or the zombie
// deadline (a zombie of check gen): an arming of the actor's re-armable
// timer, made at the first arming (clock.NewRearmable: with a clock that
// cannot make one, each arming is a timer of its own).
func (a *proxyActor) arm(ctx actor.Context, d time.Duration, gen uint32, isZombie bool) {
	tok := uint64(gen) << 1
	if isZombie {
		tok |= 1
	} else {
		a.timerArmed = true
	}
	if a.rt == nil {
		a.rt = clock.NewRearmable(a.env.timers, a.env.timerFunc(ctx.ActorSystem()), ctx.Self())
	}
	a.rt.Arm(d, tok)
}

// timerMessage is the message of a check timer's or zombie deadline's
// firing (see arm).
func timerMessage(tok uint64) any {
	if tok&1 == 1 {
		return &zombie{gen: uint32(tok >> 1)}
	}
	return &checkDue{gen: uint32(tok >> 1)}
}

// armEjection arms the timer that ends the proxy's ejection at
// State.EjectedUntil (at once if that has passed, as after a restart), or
// disarms it when the proxy is not ejected.
func (a *proxyActor) armEjection(ctx actor.Context) {
	until := a.state.EjectedUntil()
	if e := a.armedEjection(); e != nil && until.Equal(e.until) {
		return
	}
	a.disarmEjection()
	if until.IsZero() {
		return
	}
	e, self, sys := &ejection{until: until}, ctx.Self(), ctx.ActorSystem()
	e.timer = a.env.after(max(until.Sub(a.now()), 0), func() { sys.Root.Send(self, (*ejectionDue)(e)) })
	a.rareState().eject = e
}

// disarmEjection stops the ejection timer and invalidates its late message.
func (a *proxyActor) disarmEjection() {
	if e := a.armedEjection(); e != nil {
		e.timer.Stop()
		a.rare.eject = nil
		a.tidyRare()
	}
}

// ejects reports whether evs eject the proxy.
func ejects(evs []*pb.Envelope) bool {
	for _, e := range evs {
		if e.GetProxyEjected() != nil {
			return true
		}
	}
	return false
}

// report tells the tracker the proxy's next due time when it changed (the
// live status shows it; nothing is journaled).
func (a *proxyActor) report(due time.Time) {
	var n int64
	if !due.IsZero() {
		n = due.UnixNano()
	}
	if n == a.reported {
		return
	}
	a.reported = n
	a.track.SetNextCheck(due)
}

func (a *proxyActor) onCheckDue(ctx actor.Context, m *checkDue) {
	if m.gen != a.gen || a.checking || a.persisting || a.stopped || a.env.stopping() {
		return // stale, or schedule() runs again after the append
	}
	a.timerArmed = false
	if a.env.MayCheck != nil && !a.env.MayCheck() {
		// Fenced (a cluster member whose membership is not confirmed):
		// no check, no event; asked again shortly.
		a.arm(ctx, FenceRetry, a.gen, false)
		return
	}
	if a.state.Health() == pb.HealthState_HEALTH_STATE_UNHEALTHY {
		// Journal the move to recovering first; the probe follows at once.
		a.submit(ctx, pending{cmd: events.CooldownExpired{At: a.now()}})
		return
	}
	a.checking = true
	a.checkGen++
	a.track.SetChecking(true)
	// One allocation per check: its CheckDone holds the limiter ticket, is
	// the ticket's Granter and, converted, the grant's message, and is the
	// check's completion and result message.
	d := &CheckDone{owner: a, gen: a.checkGen, sys: ctx.ActorSystem(), self: ctx.Self()}
	a.check = d
	// A slot granted at once starts the probe directly, on this goroutine;
	// one granted later arrives as a message (*slotGranted).
	if a.env.Limiter.AcquireTicket(&d.ticket, a.due(), (*slotGranted)(d)) {
		a.startProbe(ctx)
	}
}

// onSlotGranted starts the check whose ticket had to wait, unless the check
// is over (a stale grant: its generation passed, or it is an earlier
// incarnation's).
func (a *proxyActor) onSlotGranted(ctx actor.Context, d *CheckDone) {
	if d.owner != a || d.gen != a.checkGen || !a.checking {
		return
	}
	a.startProbe(ctx)
}

// startProbe starts the check in flight (a.check, granted its slot)
// through the spec's CheckAsync, or Check on a pooled goroutine; its result
// comes back as that *CheckDone (or a probePanicked), and a zombie timer
// bounds it.
func (a *proxyActor) startProbe(ctx actor.Context) {
	if !a.env.begin() {
		a.endCheck()
		return
	}
	pctx, done := a.env.ctx, a.check
	if async := a.spec.CheckAsync; async != nil {
		func() {
			defer func() {
				if v := recover(); v != nil { // the actor restarts; the check is over
					if done.once.CompareAndSwap(false, true) {
						a.env.work.Done()
					}
					panic(v)
				}
			}()
			async.CheckAsync(pctx, done)
		}()
	} else {
		check, env := a.spec.Check, a.env
		env.pool.run(func() {
			defer env.work.Done()
			defer func() {
				if v := recover(); v != nil {
					done.sys.Root.Send(done.self, &probePanicked{owner: done.owner, gen: done.gen, value: v})
				}
			}()
			done.result = check(pctx)
			done.sys.Root.Send(done.self, done) // the message then belongs to the actor
		})
	}
	if a.spec.Settings.Timeout > 0 {
		a.arm(ctx, 2*a.spec.Settings.Timeout, done.gen, true)
	}
}

func (a *proxyActor) onProbeDone(ctx actor.Context, m *CheckDone) {
	if m.owner != a || m.gen != a.checkGen || !a.checking {
		return
	}
	a.endCheck()
	if a.stopWhenIdle(ctx) {
		return
	}
	if a.stopped || a.env.stopping() {
		return // shutting down: a cancelled probe is not an observation
	}
	if m.abandoned {
		// Held back by the checker's gate before it connected (the
		// fence closed after onCheckDue passed it): no observation;
		// asked again shortly, as a fenced check is.
		a.arm(ctx, FenceRetry, a.gen, false)
		return
	}
	a.submit(ctx, pending{cmd: events.CheckCompleted{At: a.now(), Result: m.result}})
}

// onZombie records a check that outlived twice its timeout as a timeout and
// frees its limiter slot; the probe goroutine's late result is ignored.
func (a *proxyActor) onZombie(ctx actor.Context, m *zombie) {
	if m.gen != a.checkGen || !a.checking {
		return
	}
	a.log().Warn("check outlived twice its timeout; cancelled", slog.Duration("timeout", a.spec.Settings.Timeout))
	a.endCheck()
	if a.stopWhenIdle(ctx) {
		return
	}
	a.submit(ctx, pending{cmd: events.CheckCompleted{At: a.now(), Result: events.CheckResult{
		Class:   pb.FailureClass_FAILURE_CLASS_TIMEOUT,
		Message: fmt.Sprintf("check exceeded twice its timeout (%v) and was cancelled", a.spec.Settings.Timeout),
		Latency: events.Latency{Total: 2 * a.spec.Settings.Timeout},
	}}})
}
