// Package gen generates realistic journals for tests and benchmarks (the
// projections', the packed state's) by driving the real state machine
// (events.Decide and events.Evolve) with random commands.
package gen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/journal"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// T0 is the time of the first generated event.
var T0 = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

// ID returns the proxy ID of proxy number i: 16 hex digits, not in i order.
func ID(i int) string {
	z := uint64(i) + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return fmt.Sprintf("%016x", z^(z>>31))
}

// URL returns a redacted proxy URL for proxy number i.
func URL(i int) string {
	return fmt.Sprintf("http://10.%d.%d.%d:3128", (i>>16)&255, (i>>8)&255, i&255)
}

var hardClasses = []pb.FailureClass{
	pb.FailureClass_FAILURE_CLASS_DNS, pb.FailureClass_FAILURE_CLASS_REFUSED, pb.FailureClass_FAILURE_CLASS_TIMEOUT,
	pb.FailureClass_FAILURE_CLASS_TLS, pb.FailureClass_FAILURE_CLASS_PROXY_AUTH_REQUIRED, pb.FailureClass_FAILURE_CLASS_BAD_STATUS,
	pb.FailureClass_FAILURE_CLASS_CONTENT_MISMATCH, pb.FailureClass_FAILURE_CLASS_RESET, pb.FailureClass_FAILURE_CLASS_PROTOCOL,
	pb.FailureClass_FAILURE_CLASS_OTHER,
}

// Sim plays random commands against a set of proxies, like the actors
// would: Decide, then Evolve. Its envelopes carry no seq: append them to a
// journal, which assigns seq and stream_seq.
type Sim struct {
	R       *rand.Rand
	Cfg     events.Config
	Now     time.Time
	Sources []string
	// PoolEvents makes about 1 % of the commands pool-level events.
	PoolEvents bool
	// JumpProb is the probability that the clock jumps 1–10 hours before a
	// command (to exercise retention windows).
	JumpProb float64

	ids    []string
	states []events.State
	pool   bool
}

// NewSim returns a simulation of n proxies in 3 sources with a config
// whose thresholds make every state reachable quickly.
func NewSim(seed uint64, n int) *Sim {
	cfg := events.DefaultConfig()
	cfg.UnhealthyThreshold = 2
	cfg.MaxRecoveryAttempts = 2
	s := &Sim{R: rand.New(rand.NewPCG(seed, seed^0x5eed)), Cfg: cfg, Now: T0, Sources: []string{"alpha", "beta", "gamma"}, PoolEvents: true, JumpProb: 0.01}
	for i := range n {
		s.ids = append(s.ids, ID(i))
		s.states = append(s.states, events.NewState(ID(i)))
	}
	return s
}

// IDs returns the simulated proxy IDs.
func (s *Sim) IDs() []string { return s.ids }

func (s *Sim) latency() events.Latency {
	total := time.Duration(5+s.R.IntN(500)) * time.Millisecond
	return events.Latency{Connect: total / 3, FirstByte: total / 2, Total: total + time.Duration(s.R.IntN(1000))}
}

// Next plays one random command that produces events and returns them.
func (s *Sim) Next() []*pb.Envelope {
	for {
		if s.R.Float64() < s.JumpProb {
			s.Now = s.Now.Add(time.Duration(1+s.R.IntN(10)) * time.Hour)
		}
		s.Now = s.Now.Add(time.Duration(s.R.IntN(2000)) * time.Millisecond)
		if s.PoolEvents && s.R.IntN(100) == 0 {
			return []*pb.Envelope{s.poolEvent()}
		}
		i := s.R.IntN(len(s.ids))
		envs, err := events.Decide(s.states[i], s.command(i), s.Cfg)
		if err != nil || len(envs) == 0 {
			continue
		}
		for _, e := range envs {
			s.states[i] = events.Evolve(s.states[i], e)
		}
		return envs
	}
}

func (s *Sim) poolEvent() *pb.Envelope {
	s.pool = !s.pool
	env := &pb.Envelope{AtUnixNano: s.Now.UnixNano()}
	pct := float64(s.R.IntN(1000)) / 10
	if s.pool {
		env.Event = &pb.Envelope_PoolDegraded{PoolDegraded: &pb.PoolDegraded{HealthyPercentage: pct, ThresholdPercentage: 50, Healthy: 3, Total: 9}}
	} else {
		env.Event = &pb.Envelope_PoolRecovered{PoolRecovered: &pb.PoolRecovered{HealthyPercentage: pct, ThresholdPercentage: 50, Healthy: 7, Total: 9}}
	}
	return env
}

func (s *Sim) command(i int) events.Command {
	st := s.states[i]
	at := s.Now
	if !st.Added || st.Removed {
		return events.Add{At: at, URLRedacted: URL(i), Source: s.Sources[s.R.IntN(len(s.Sources))], ConfigRef: "v1"}
	}
	switch p := s.R.IntN(100); {
	case p < 48:
		return events.CheckCompleted{At: at, Result: events.CheckResult{StatusCode: 204, Latency: s.latency()}}
	case p < 72:
		c := hardClasses[s.R.IntN(len(hardClasses))]
		return events.CheckCompleted{At: at, Result: events.CheckResult{Class: c, StatusCode: uint32(s.R.IntN(2)) * 502, Message: "boom: " + events.ClassName(c), Latency: s.latency()}}
	case p < 76:
		return events.CheckCompleted{At: at, Result: events.CheckResult{Class: pb.FailureClass_FAILURE_CLASS_TOO_SLOW, StatusCode: 200, Message: "slow", Latency: s.latency()}}
	case p < 84:
		return events.CooldownExpired{At: at}
	case p < 88:
		return events.PassiveOutcome{At: at, Class: pb.FailureClass_FAILURE_CLASS_RESET}
	case p < 90:
		return events.PassiveOutcome{At: at, OK: true}
	case p < 92:
		return events.Pause{At: at, Reason: "op"}
	case p < 94:
		return events.Resume{At: at, Reason: "op"}
	case p < 98:
		return events.Revive{At: at, Reason: "op"}
	case p < 99:
		return events.Remove{At: at, Reason: "gone"}
	default:
		return events.ConfigChanged{At: at}
	}
}

// Events plays commands until at least n events were produced.
func (s *Sim) Events(n int) []*pb.Envelope {
	var out []*pb.Envelope
	for len(out) < n {
		out = append(out, s.Next()...)
	}
	return out
}

// AppendRandom appends envs to j in random batch sizes (1 to maxBatch).
func AppendRandom(ctx context.Context, j journal.Journal, r *rand.Rand, envs []*pb.Envelope, maxBatch int) error {
	for len(envs) > 0 {
		n := min(1+r.IntN(maxBatch), len(envs))
		if _, err := j.Append(ctx, envs[:n]); err != nil {
			return err
		}
		envs = envs[n:]
	}
	return nil
}

// Realistic appends a realistic journal of at least n events to j: proxies
// proxies in 10 sources, checked round-robin every 30 s (so the clock
// advances 30 s / proxies per check), 97 % of checks passing, and now and
// then a proxy that dies for 10 minutes (failures, unhealthy, recovery
// attempts, state changes). It returns the number of events appended.
func Realistic(ctx context.Context, j journal.Journal, seed uint64, proxies, n int) (int, error) {
	r := rand.New(rand.NewPCG(seed, 7))
	cfg := events.DefaultConfig()
	cfg.RecoveryCooldown = 30 * time.Second
	states := make([]events.State, proxies)
	deadUntil := make([]time.Time, proxies)
	now := T0
	step := 30 * time.Second / time.Duration(proxies)
	var batch []*pb.Envelope
	total := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, err := j.Append(ctx, batch)
		total += len(batch)
		batch = batch[:0]
		return err
	}
	decide := func(i int, cmd events.Command) error {
		envs, err := events.Decide(states[i], cmd, cfg)
		if err != nil {
			return err
		}
		for _, e := range envs {
			states[i] = events.Evolve(states[i], e)
		}
		batch = append(batch, envs...)
		if len(batch) >= 1000 {
			return flush()
		}
		return nil
	}
	for i := range proxies {
		states[i] = events.NewState(ID(i))
		if err := decide(i, events.Add{At: now, URLRedacted: URL(i), Source: fmt.Sprintf("source-%d", i%10), ConfigRef: "v1"}); err != nil {
			return total, err
		}
	}
	for i := 0; total+len(batch) < n; i = (i + 1) % proxies {
		now = now.Add(step)
		if r.IntN(3000) == 0 {
			deadUntil[i] = now.Add(10 * time.Minute)
		}
		lat := time.Duration(20+r.IntN(400)) * time.Millisecond
		res := events.CheckResult{StatusCode: 204, Latency: events.Latency{Connect: lat / 4, FirstByte: lat / 2, Total: lat}}
		if now.Before(deadUntil[i]) {
			res = events.CheckResult{Class: pb.FailureClass_FAILURE_CLASS_TIMEOUT, Message: "no answer within 5s", Latency: events.Latency{Total: 5 * time.Second}}
		} else if r.IntN(100) < 3 {
			c := hardClasses[r.IntN(len(hardClasses))]
			res = events.CheckResult{Class: c, Message: "check failed: " + events.ClassName(c), Latency: events.Latency{Total: lat}}
		}
		if err := decide(i, events.CheckCompleted{At: now, Result: res}); err != nil {
			return total, err
		}
	}
	return total, flush()
}

// States folds envs in order into the state of every proxy they name
// (events.Evolve from events.NewState): what each proxy's actor holds
// after them. Pool events name no proxy and are skipped.
func States(envs []*pb.Envelope) map[string]events.State {
	states := map[string]events.State{}
	for _, e := range envs {
		if id := e.GetProxyId(); id != "" {
			s, ok := states[id]
			if !ok {
				s = events.NewState(id)
			}
			states[id] = events.Evolve(s, e)
		}
	}
	return states
}

// SaveSnapshots saves a snapshot (events.ToSnapshot) of every state to j,
// as the actors do, so that journal.Retain may delete the events behind
// them. It stops at the first error.
func SaveSnapshots(ctx context.Context, j journal.Journal, states map[string]events.State) error {
	for _, s := range states {
		if err := j.SaveSnapshot(ctx, events.ToSnapshot(s)); err != nil {
			return err
		}
	}
	return nil
}
