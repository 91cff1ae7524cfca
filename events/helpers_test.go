package events

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// Shared fixtures of the events tests.

const testID = "00000000deadbeef"

// t0 is the time of the first command of every script; each later command
// happens step after the previous one unless it carries its own time.
var t0 = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

const step = 10 * time.Second

// Command shorthands; the harness fills in At.
func add() Command         { return Add{URLRedacted: "http://10.0.0.7:3128", Source: "src"} }
func ok() Command          { return CheckCompleted{Result: CheckResult{StatusCode: 204}} }
func fail() Command        { return failC(pb.FailureClass_FAILURE_CLASS_TIMEOUT) }
func slow() Command        { return failC(tooSlow) }
func cool() Command        { return CooldownExpired{} }
func pause() Command       { return Pause{Reason: "op"} }
func resume() Command      { return Resume{Reason: "op"} }
func revive() Command      { return Revive{Reason: "op"} }
func remove() Command      { return Remove{Reason: "op"} }
func cfgChanged() Command  { return ConfigChanged{} }
func passiveFail() Command { return PassiveOutcome{Class: pb.FailureClass_FAILURE_CLASS_RESET} }
func passiveOK() Command   { return PassiveOutcome{OK: true} }
func expired() Command     { return EjectionExpired{} }
func failC(c pb.FailureClass) Command {
	return CheckCompleted{Result: CheckResult{Class: c, Message: "boom"}}
}
func repeat(n int, cmds ...Command) []Command {
	var out []Command
	for range n {
		out = append(out, cmds...)
	}
	return out
}

// withAt returns cmd with its time set to at, unless it already has one.
func withAt(cmd Command, at time.Time) Command {
	if !cmd.at().IsZero() {
		return cmd
	}
	switch c := cmd.(type) {
	case Add:
		c.At = at
		return c
	case CheckCompleted:
		c.At = at
		return c
	case CooldownExpired:
		c.At = at
		return c
	case PassiveOutcome:
		c.At = at
		return c
	case Pause:
		c.At = at
		return c
	case Resume:
		c.At = at
		return c
	case Revive:
		c.At = at
		return c
	case Remove:
		c.At = at
		return c
	case ConfigChanged:
		c.At = at
		return c
	case EjectionExpired:
		c.At = at
		return c
	case SetMetadata:
		c.At = at
		return c
	}
	panic(fmt.Sprintf("withAt: unknown command %T", cmd))
}

// harness plays commands like the shell would: Decide, then assign the
// journal's sequence numbers, then Evolve.
type harness struct {
	t   testing.TB
	cfg Config
	s   State
	now time.Time
	all []*pb.Envelope
}

func newHarness(t testing.TB, cfg Config) *harness {
	return &harness{t: t, cfg: cfg, s: NewState(testID), now: t0.Add(-step)}
}

// try applies one command; on error the state is unchanged.
func (h *harness) try(cmd Command) ([]*pb.Envelope, error) {
	h.t.Helper()
	h.now = h.now.Add(step)
	cmd = withAt(cmd, h.now)
	if at := cmd.at(); at.After(h.now) {
		h.now = at
	}
	before := h.s
	envs, err := Decide(h.s, cmd, h.cfg)
	if h.s != before {
		h.t.Fatalf("Decide mutated its state argument")
	}
	if err != nil {
		if len(envs) != 0 {
			h.t.Fatalf("Decide(%T) returned events and an error %v", cmd, err)
		}
		return nil, err
	}
	for _, e := range envs {
		if e.GetProxyId() != h.s.ProxyID || e.GetAtUnixNano() != cmd.at().UnixNano() || e.GetSeq() != 0 || e.GetStreamSeq() != 0 {
			h.t.Fatalf("Decide(%T) envelope header wrong: %v", cmd, e)
		}
		n := uint64(len(h.all) + 1)
		e.StreamSeq, e.Seq = n, 1000+n
		h.all = append(h.all, e)
		h.s = Evolve(h.s, e)
	}
	return envs, nil
}

// do applies one command and fails the test on error.
func (h *harness) do(cmd Command) []*pb.Envelope {
	h.t.Helper()
	envs, err := h.try(cmd)
	if err != nil {
		h.t.Fatalf("Decide(%T) in %s: %v", cmd, StateName(h.s.Health), err)
	}
	return envs
}

func (h *harness) run(cmds ...Command) *harness {
	h.t.Helper()
	for _, c := range cmds {
		h.do(c)
	}
	return h
}

// script decides and evolves each command in turn from NewState, assigning
// stream seqs 1, 2, 3… like the journal, and returns the final state and
// every envelope.
func script(t testing.TB, cfg Config, cmds ...Command) (State, []*pb.Envelope) {
	t.Helper()
	h := newHarness(t, cfg).run(cmds...)
	return h.s, h.all
}

// describe renders envelopes compactly: type names, state changes as
// "state_changed:from>to".
func describe(envs []*pb.Envelope) string {
	var parts []string
	for _, e := range envs {
		n := TypeName(e)
		if sc := e.GetStateChanged(); sc != nil {
			n += ":" + StateName(sc.GetFrom()) + ">" + StateName(sc.GetTo())
		}
		parts = append(parts, n)
	}
	return strings.Join(parts, " ")
}

// lastChange returns the last StateChanged in envs, or nil.
func lastChange(envs []*pb.Envelope) *pb.StateChanged {
	var sc *pb.StateChanged
	for _, e := range envs {
		if c := e.GetStateChanged(); c != nil {
			sc = c
		}
	}
	return sc
}

func mustErrIs(t testing.TB, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want one wrapping %v", err, want)
	}
}

// Starting points, with the default config.
var (
	sUnknown    = []Command{add()}
	sHealthy    = []Command{add(), ok()}
	sHealthy2   = []Command{add(), ok(), ok()}
	sDegraded   = []Command{add(), ok(), fail()}
	sDegraded2  = []Command{add(), ok(), fail(), fail()}
	sSlow       = []Command{add(), ok(), slow()}
	sUnhealthy  = []Command{add(), ok(), fail(), fail(), fail()}
	sRecovering = then(sUnhealthy, cool())
)

// failedAfter returns a script that leaves the proxy failed under a config
// with MaxRecoveryAttempts = n (n ≥ 1).
func failedAfter(n int) []Command {
	return append(append([]Command{}, sUnhealthy...), repeat(n, cool(), fail())...)
}

// then returns a fresh copy of base followed by more (never aliasing base).
func then(base []Command, more ...Command) []Command {
	out := make([]Command, 0, len(base)+len(more))
	return append(append(out, base...), more...)
}
