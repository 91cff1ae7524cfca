package actors

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/proxyhealth/proxyhealth/events"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// ProxySpec is everything a proxy actor knows about its proxy besides its
// journal stream. It is rebuilt from configuration (never from a parent's
// in-memory state), so the actor can run as a cluster virtual actor whose
// identity is ID.
//
// A spec is handed over by pointer (SpawnProxy, SpawnProxies, Reconfigure)
// and registered as it is, not copied: the caller may keep it as part of
// its own record of the proxy (the engine does, so that a proxy has one
// record, not two), and must not change it once handed over: a change
// makes a new spec, sent with a Reconfigure.
type ProxySpec struct {
	// ID is the proxy's stable ID (16 hex digits of the redacted URL's
	// sha256); the actor is spawned under this name.
	ID string
	// Source is the named group the proxy belongs to.
	Source string
	// URLRedacted is the proxy URL without credentials.
	URLRedacted string
	// HasCredentials is true when the real URL carries user:pass.
	HasCredentials bool
	// Origin is how the proxy came in (configuration or run time); it is
	// journaled with its ProxyAdded.
	Origin pb.ProxyOrigin
	// Tags and Weight are the proxy's metadata (journaled with its
	// ProxyAdded; a Reconfigure with others journals the change).
	Tags   []string
	Weight float64
	// Settings are the check settings of the proxy's source (required),
	// shared by its proxies' specs.
	Settings *CheckSettings
	// Adopt, when set, is the state this cluster member takes the proxy
	// over with (see events.Adopt): decided with the ProxyAdded of a new
	// stream, or right after recovery of a known one. Its At is ignored
	// (the actor's clock decides).
	Adopt *events.Adopt
	// Check runs one check (one of Check and CheckAsync is required).
	Check CheckFunc
	// CheckAsync, when set, is used instead of Check: it starts one check
	// and calls done.Done exactly once with its result, from any goroutine,
	// without blocking. A checker that needs no goroutine per check (the
	// probe's event loop) saves the actor a hand-off to the work pool. It
	// is an interface, not a function, so that a caller's record of the
	// proxy can be its checker (the engine's is): a closure would cost an
	// allocation a proxy.
	CheckAsync AsyncChecker
}

// IndexID returns the spec's ID: what the actors' registry of specs
// finds it by (see idindex).
func (s *ProxySpec) IndexID() string { return s.ID }

// validate reports what a spec lacks that its actor needs.
func (s *ProxySpec) validate() error {
	switch {
	case s == nil:
		return errors.New("no proxy spec")
	case s.Settings == nil:
		return fmt.Errorf("proxy %s has no check settings (ProxySpec.Settings)", s.ID)
	case s.Check == nil && s.CheckAsync == nil:
		return fmt.Errorf("proxy %s has no check to run (ProxySpec.Check or CheckAsync)", s.ID)
	}
	return nil
}

// CheckSettings are a source's check settings. One value is shared by the
// specs of all the source's proxies (a spec lives as long as its actor: a
// copy per proxy would cost 10 MB at 100,000 proxies), so it must not be
// changed once handed over: a reconfiguration makes new settings.
type CheckSettings struct {
	// ConfigRef names the check configuration for auditors.
	ConfigRef string
	// Health drives the state machine.
	Health events.Config
	// Timeout of one check; a check running longer than 2× it is a zombie:
	// cancelled and recorded as a timeout.
	Timeout time.Duration
}

// AsyncCheckFunc starts one active check of a proxy and calls done.Done
// exactly once with the result, on any goroutine; Done does not block (it
// sends a message). It must honour ctx like CheckFunc.
//
// done is a pointer to a concrete type, not a function or an interface, so
// that a checker whose completion takes another result type passes it on
// without an adapter allocated per check: it defines its own type on
// CheckDone (type myDone actors.CheckDone, whose method converts the result
// and calls (*actors.CheckDone)(d).Done) and passes (*myDone)(done).
type AsyncCheckFunc func(ctx context.Context, done *CheckDone)

// AsyncChecker starts one active check of a proxy, as an AsyncCheckFunc
// does: ProxySpec.CheckAsync. An AsyncCheckFunc is one.
type AsyncChecker interface {
	CheckAsync(ctx context.Context, done *CheckDone)
}

// CheckAsync implements AsyncChecker: it calls f.
func (f AsyncCheckFunc) CheckAsync(ctx context.Context, done *CheckDone) { f(ctx, done) }

// CheckDone is the completion of one check started through an
// AsyncCheckFunc, and the message that brings a check's result (of Check
// too) to its actor: the one object the actor allocates for a check. It
// holds the check's limiter ticket and is told when a waiting ticket is
// granted (the grant reaches the actor as the same object, converted to a
// message type of its own), so a check allocates no ticket, no grant
// closure and no grant message. It names the actor incarnation and check
// generation that started the check and guards against a second
// completion. Only a proxy actor makes one.
type CheckDone struct {
	owner *proxyActor // the incarnation that started the check
	gen   uint32      // its check generation
	sys   *actor.ActorSystem
	self  *actor.PID
	once  atomic.Bool // set by the first Done or Abandon, or by a panic of the check's start
	// abandoned: the check did not take place (Abandon), result is empty
	abandoned bool
	result    events.CheckResult
	ticket    Ticket // the check's limiter slot; released by the actor (endCheck)
}

// Done hands the check's result to the actor that started the check. Only
// the first call counts (a later one does nothing, as does one after the
// check's start panicked); it may be called from any goroutine, even before
// the AsyncCheckFunc returns, and does not block. A result that arrives
// after its check was given up (a zombie, a restart) is ignored by the
// actor.
func (d *CheckDone) Done(r events.CheckResult) { d.complete(r, false) }

// Abandon tells the actor that the check did not take place: the checker
// held it back before it connected (probe.WithGate: a cluster member's
// fence closed while the check waited to start). It is no observation:
// nothing is journaled, and the actor asks its fence again after
// Env.FenceRetry. Like Done, only the first of Done and Abandon counts.
func (d *CheckDone) Abandon() { d.complete(events.CheckResult{}, true) }

func (d *CheckDone) complete(r events.CheckResult, abandoned bool) {
	if !d.once.CompareAndSwap(false, true) {
		return
	}
	d.result, d.abandoned = r, abandoned
	env := d.owner.env // read before the send: the message then belongs to the actor
	d.sys.Root.Send(d.self, d)
	env.work.Done()
}

// slotGranted is a check's CheckDone as the message that its limiter
// ticket, which had to wait, was granted: the Granter of the check's
// ticket (a type of its own, so that a checker holding the CheckDone
// cannot call Granted). A grant of a check that is over (its generation
// passed, or its incarnation restarted) is ignored by the actor.
type slotGranted CheckDone

// Granted implements Granter: it sends the grant to the actor that
// started the check.
func (g *slotGranted) Granted(*Ticket) { g.sys.Root.Send(g.self, g) }

// Commands accepted by a proxy actor. Each is answered with a *Reply once
// its events (if any) are durable and applied. Send them with RequestFuture.
type (
	// Pause stops the proxy's checks.
	Pause struct{ Reason string }
	// Resume restarts the proxy's checks on its schedule.
	Resume struct{ Reason string }
	// Revive brings a failed (or unhealthy/recovering) proxy back to unknown.
	Revive struct{ Reason string }
	// Remove ends the proxy's stream and stops the actor.
	Remove struct{ Reason string }
	// Adopt takes over the state another cluster member replicated, if it
	// is newer than the proxy's own (events.Adopt).
	Adopt struct {
		From   string
		Record *pb.ProxySnapshot
		Reason string
	}
	// Passive reports the outcome of real traffic through the proxy.
	Passive struct {
		OK    bool
		Class pb.FailureClass
	}
	// Reconfigure replaces the proxy's spec (hot reload): thresholds,
	// intervals and the check function; the ID and source must not change.
	// Spec is registered as it is (see ProxySpec).
	Reconfigure struct{ Spec *ProxySpec }
	// Sync is answered when every command received before it is durable
	// and applied.
	Sync struct{}
	// GetState asks for a *StateReply; it is answered at once, even while an
	// append is in flight (with the last committed state).
	GetState struct{}
	// SnapshotNow asks the proxy to snapshot its committed state if its
	// latest snapshot is older; answered with a *Reply once it is durable.
	// Retention runs it first, so that quiet proxies (failed, paused) do
	// not hold back the deletion of old events.
	SnapshotNow struct{}
)

// Reply answers a command.
type Reply struct {
	// Err is nil on success; it wraps an events.Err* value when the command
	// did not apply, or the journal's error.
	Err error
	// Events is the number of events the command produced.
	Events int
	// Proxy is the ID of the proxy that answers, so that one receiver can
	// gather the replies of many proxies.
	Proxy string
}

// StateReply answers GetState.
type StateReply struct {
	State events.State
	// Checking is true while a check is in flight (or waiting for a
	// limiter slot).
	Checking bool
	// NextCheckAt is when the next check is due (zero if none scheduled).
	NextCheckAt time.Time
	// Busy is true while an append or a snapshot is in flight, or commands
	// are queued behind an append.
	Busy bool
	// Stopped is true once the actor stopped working (removed, or the
	// engine is stopping).
	Stopped bool
}

// internal messages
type (
	checkDue struct{ gen uint32 }
	// ejectionDue is the firing of the ejection it converts.
	ejectionDue ejection
	// probePanicked, like CheckDone (the message of a probe's result),
	// names the incarnation that started the probe: a probe is not
	// cancelled when its actor restarts, and the new incarnation's check
	// generations start again from zero.
	probePanicked struct {
		owner *proxyActor
		gen   uint32
		value any
	}
	zombie       struct{ gen uint32 }
	snapshotDone struct {
		owner *proxyActor
		seq   uint64
		err   error
		reply *actor.PID
	}
	appendDone struct {
		owner *proxyActor // the incarnation that appended
		evs   []*pb.Envelope
		p     pending
		seqs  []uint64
		err   error
	}
)
