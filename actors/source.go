package actors

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Source actor messages.
type (
	// SpawnProxy asks a source to start a proxy actor; answered with a
	// *Spawned. Spec is registered as it is (see ProxySpec).
	SpawnProxy struct{ Spec *ProxySpec }
	// Spawned answers SpawnProxy.
	Spawned struct {
		PID *actor.PID
		Err error
	}
	// SpawnProxies asks a source to start many proxy actors; answered with
	// a *SpawnedProxies. One request for a whole pool spares the engine a
	// future (and a process registry entry) per proxy.
	SpawnProxies struct{ Specs []*ProxySpec }
	// SpawnedProxies answers SpawnProxies: Results[i] is for Specs[i].
	SpawnedProxies struct{ Results []Spawned }
)

// RestartBackoff is a one-for-one supervisor strategy that restarts a
// failed child after a delay that doubles with each failure inside Window
// (Min, 2·Min, 4·Min … capped at Max), and stops it after more than
// MaxRestarts failures in Window. (protoactor's own
// ExponentialBackoffStrategy grows linearly and has no cap.)
type RestartBackoff struct {
	Min, Max    time.Duration
	MaxRestarts int
	Window      time.Duration
	Logger      *slog.Logger
	// AfterFunc delays the restart; default time.AfterFunc. Tests inject
	// a fake clock's.
	AfterFunc func(time.Duration, func())
}

// DefaultRestartBackoff: 100ms doubling to 10s, at most 10 restarts a minute.
func DefaultRestartBackoff(log *slog.Logger) *RestartBackoff {
	return &RestartBackoff{Min: 100 * time.Millisecond, Max: 10 * time.Second, MaxRestarts: 10, Window: time.Minute, Logger: log}
}

var _ actor.SupervisorStrategy = (*RestartBackoff)(nil)

// HandleFailure implements actor.SupervisorStrategy.
func (s *RestartBackoff) HandleFailure(sys *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, _ any) {
	n := rs.NumberOfFailures(s.Window)
	rs.Fail()
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if n >= s.MaxRestarts {
		log.Error("proxy actor keeps failing; stopped until the engine restarts or the proxy is re-added",
			slog.String("actor", child.GetId()), slog.Int("failures", n+1), slog.Duration("window", s.Window), slog.Any("reason", reason))
		sup.StopChildren(child)
		return
	}
	d := s.Min
	for i := 0; i < n && d < s.Max; i++ {
		d *= 2
	}
	d = min(d, s.Max)
	log.Warn("proxy actor failed; restarting from the journal",
		slog.String("actor", child.GetId()), slog.Duration("after", d), slog.Any("reason", reason))
	after := s.AfterFunc
	if after == nil {
		after = func(d time.Duration, f func()) { time.AfterFunc(d, f) }
	}
	after(d, func() { sup.RestartChildren(child) })
}

// SourceProps returns the props of a source actor: the supervisor of its
// proxies' actors (one-for-one, restart with backoff).
func SourceProps(env *Env, name string, strategy actor.SupervisorStrategy) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		return &sourceActor{env: env, name: name}
	}, actor.WithSupervisor(strategy), actor.WithDispatcher(env.Dispatcher()))
}

// sourceActor owns the set of its proxies' actors. A proxy's actor is its
// child named by the proxy's ID, found in the process registry (a map of
// its own cost about 50 bytes a proxy).
type sourceActor struct {
	env  *Env
	name string
}

// child returns the PID of the child named id, and whether it runs.
func (s *sourceActor) child(ctx actor.Context, id string) (*actor.PID, bool) {
	self := ctx.Self()
	pid := actor.NewPID(self.GetAddress(), self.GetId()+"/"+id)
	_, alive := ctx.ActorSystem().ProcessRegistry.GetLocal(pid.GetId())
	return pid, alive
}

func (s *sourceActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *SpawnProxy:
		r := s.spawn(ctx, m.Spec)
		ctx.Respond(&r)
	case *SpawnProxies:
		out := &SpawnedProxies{Results: make([]Spawned, len(m.Specs))}
		for i, spec := range m.Specs {
			out.Results[i] = s.spawn(ctx, spec)
		}
		ctx.Respond(out)
	case *SpawnRefresher:
		spec := m.Spec
		pid, err := ctx.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return &refresher{env: s.env, spec: spec} },
			actor.WithDispatcher(s.env.Dispatcher())), refresherName)
		ctx.Respond(&Spawned{PID: pid, Err: err})
	case *actor.Terminated:
		if _, alive := ctx.ActorSystem().ProcessRegistry.GetLocal(m.Who.GetId()); alive {
			return // a late notice about a previous actor of a re-added proxy
		}
		if id := proxyIDOf(m.Who); id != refresherName {
			s.env.specs.delete(id, s.name)
		}
	}
}

// spawn starts one proxy actor named by its ID.
func (s *sourceActor) spawn(ctx actor.Context, spec *ProxySpec) Spawned {
	if spec == nil {
		return Spawned{Err: errors.New("actors: spawn: no proxy spec")}
	}
	if spec.Source != s.name {
		return Spawned{Err: fmt.Errorf("actors: proxy %s belongs to source %q, not %q", spec.ID, spec.Source, s.name)}
	}
	if err := spec.validate(); err != nil {
		return Spawned{Err: fmt.Errorf("actors: %w", err)}
	}
	// One that stopped (removed) may have its Terminated still on its way:
	// it finds the new one running (see Receive).
	if pid, alive := s.child(ctx, spec.ID); alive {
		return Spawned{PID: pid, Err: fmt.Errorf("actors: proxy %s already running in source %q", spec.ID, s.name)}
	}
	s.env.specs.put(spec)
	pid, err := ctx.SpawnNamed(s.env.proxyProps, spec.ID)
	if err != nil {
		s.env.specs.delete(spec.ID, s.name)
		return Spawned{Err: fmt.Errorf("actors: spawn proxy %s: %w", spec.ID, err)}
	}
	// No Watch: a parent is told of its children's termination anyway, and
	// watching costs every child a watcher set.
	return Spawned{PID: pid}
}
