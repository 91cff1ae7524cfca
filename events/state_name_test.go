package events

import (
	"testing"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

func TestStateName(t *testing.T) {
	for s, want := range map[pb.HealthState]string{
		pb.HealthState_HEALTH_STATE_UNKNOWN: "unknown", pb.HealthState_HEALTH_STATE_HEALTHY: "healthy",
		pb.HealthState_HEALTH_STATE_DEGRADED: "degraded", pb.HealthState_HEALTH_STATE_UNHEALTHY: "unhealthy",
		pb.HealthState_HEALTH_STATE_RECOVERING: "recovering", pb.HealthState_HEALTH_STATE_FAILED: "failed",
		7: "state_7", 42: "state_42", -1: "state_-1",
	} {
		if got := StateName(s); got != want {
			t.Errorf("StateName(%d) = %q, want %q", s, got, want)
		}
		if got, ok := ParseState(want); ok && (got != s || StateName(got) != want) {
			t.Errorf("ParseState(%q) = %d, want %d", want, got, s)
		}
	}
	// The live status names the state of every proxy it shows.
	if n := testing.AllocsPerRun(100, func() { _ = StateName(pb.HealthState_HEALTH_STATE_RECOVERING) }); n != 0 {
		t.Errorf("StateName allocates %v times, want 0", n)
	}
}
