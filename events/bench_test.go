package events

import (
	"testing"
	"time"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// decideEvolve is the per-command work of a proxy actor: Decide, then fold
// the events in.
func decideEvolve(b *testing.B, s State, cmd Command, cfg Config) State {
	envs, err := Decide(s, cmd, cfg)
	if err != nil {
		b.Fatal(err)
	}
	return Fold(s, envs...)
}

func BenchmarkDecideEvolveHealthyCheck(b *testing.B) {
	cfg := DefaultConfig()
	s, _ := script(b, cfg, sHealthy2...)
	cmd := CheckCompleted{At: t0, Result: CheckResult{StatusCode: 204, Latency: Latency{Total: 80 * time.Millisecond}}}
	b.ReportAllocs()
	for b.Loop() {
		s = decideEvolve(b, s, cmd, cfg)
	}
}

// BenchmarkDecideEvolveFailureCycle runs healthy → degraded → unhealthy →
// recovering → healthy repeatedly (7 commands, 6 state changes per cycle).
func BenchmarkDecideEvolveFailureCycle(b *testing.B) {
	cfg := DefaultConfig()
	s, _ := script(b, cfg, sHealthy2...)
	f := CheckCompleted{At: t0, Result: CheckResult{Class: pb.FailureClass_FAILURE_CLASS_TIMEOUT, Message: "i/o timeout"}}
	o := CheckCompleted{At: t0, Result: CheckResult{StatusCode: 204}}
	cycle := []Command{f, f, f, CooldownExpired{At: t0}, o, o}
	b.ReportAllocs()
	for b.Loop() {
		for _, c := range cycle {
			s = decideEvolve(b, s, c, cfg)
		}
	}
}

func BenchmarkNextCheckAt(b *testing.B) {
	cfg := DefaultConfig()
	s, _ := script(b, cfg, sHealthy2...)
	for b.Loop() {
		NextCheckAt(s, cfg, JitterSample(s.ProxyID, s.StreamSeq))
	}
}

func BenchmarkSnapshotRoundTrip(b *testing.B) {
	s, _ := script(b, DefaultConfig(), sUnhealthy...)
	b.ReportAllocs()
	for b.Loop() {
		s = FromSnapshot(ToSnapshot(s))
	}
}
