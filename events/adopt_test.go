package events

import (
	"errors"
	"testing"
	"time"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// decideFold decides cmd on s and folds what it emits.
func decideFold(t *testing.T, s State, cmd Command) (State, []*pb.Envelope) {
	t.Helper()
	evs, err := Decide(s, cmd, DefaultConfig())
	if err != nil {
		t.Fatalf("Decide(%T): %v", cmd, err)
	}
	for i, e := range evs {
		e.ProxyId = testID
		e.StreamSeq = s.StreamSeq + uint64(i) + 1
		e.AtUnixNano = cmd.at().UnixNano()
	}
	return Fold(s, evs...), evs
}

// record is what another member replicated: unhealthy after 3 failures,
// recovery attempt 2, last checked at t0+1m.
func record() *pb.ProxySnapshot {
	return &pb.ProxySnapshot{
		ProxyId: testID, State: pb.HealthState_HEALTH_STATE_UNHEALTHY, ConsecutiveFailures: 3, RecoveryAttempt: 2,
		LastCheckUnixNano: t0.Add(time.Minute).UnixNano(), LastChangeUnixNano: t0.Add(50 * time.Second).UnixNano(),
		LastErrorClass: pb.FailureClass_FAILURE_CLASS_REFUSED, LastError: "connection refused",
		TotalChecks: 99, ExitIp: "192.0.2.7", Anonymity: pb.Anonymity_ANONYMITY_ELITE,
	}
}

func TestAddWithAdoptNeverShowsUnknown(t *testing.T) {
	at := t0.Add(2 * time.Minute)
	s, evs := decideFold(t, NewState(testID), Add{At: at, URLRedacted: "http://10.0.0.7:3128", Source: "src",
		Adopt: &Adopt{At: at, From: "127.0.0.1:7001", Record: record(), Reason: "owner left"}})
	if len(evs) != 2 || evs[0].GetProxyAdded() == nil || evs[1].GetProxyAdopted() == nil {
		t.Fatalf("events = %v, want ProxyAdded then ProxyAdopted (one append)", evs)
	}
	a := evs[1].GetProxyAdopted()
	if a.GetFromMember() != "127.0.0.1:7001" || a.GetPrevious() != pb.HealthState_HEALTH_STATE_UNKNOWN || a.GetReason() != "owner left" {
		t.Errorf("ProxyAdopted = %v", a)
	}
	if a.GetState().GetTotalChecks() != 0 || a.GetState().GetProxyId() != "" {
		t.Errorf("the adopted record carries fields that stay the new owner's own: %v", a.GetState())
	}
	if s.Health != pb.HealthState_HEALTH_STATE_UNHEALTHY || s.RecoveryAttempt != 2 || s.ConsecutiveFailures != 3 ||
		!s.LastCheckAt.Equal(t0.Add(time.Minute)) || s.LastError != "connection refused" || s.ExitIP != "192.0.2.7" ||
		!s.AdoptedAt.Equal(at) || s.TotalChecks != 0 {
		t.Errorf("state after adoption = %+v", s)
	}
	// Unhealthy keeps its cooldown, counted from the adopted last check.
	due, ok := NextCheckAt(s, DefaultConfig(), 0.5)
	if want := t0.Add(time.Minute).Add(DefaultConfig().Cooldown(2)); !ok || !due.Equal(want) {
		t.Errorf("next check of an adopted unhealthy proxy = %v, %v; want %v", due, ok, want)
	}
	// The state survives a snapshot (a restart recovers it).
	if got := FromSnapshot(ToSnapshot(s)); got != s {
		t.Errorf("snapshot round trip:\n got %+v\nwant %+v", got, s)
	}
}

func TestAdoptedHealthyProxyIsCheckedAtOnce(t *testing.T) {
	s, _ := decideFold(t, NewState(testID), withAt(add(), t0))
	s, _ = decideFold(t, s, withAt(ok(), t0.Add(time.Second)))
	r := record()
	r.State, r.ConsecutiveFailures, r.RecoveryAttempt = pb.HealthState_HEALTH_STATE_HEALTHY, 0, 0
	at := t0.Add(3 * time.Minute)
	s, evs := decideFold(t, s, Adopt{At: at, From: "m2", Record: r})
	if len(evs) != 1 || evs[0].GetProxyAdopted().GetPrevious() != pb.HealthState_HEALTH_STATE_HEALTHY {
		t.Fatalf("events = %v", evs)
	}
	if due, ok := NextCheckAt(s, DefaultConfig(), 0.5); !ok || !due.IsZero() {
		t.Errorf("next check after adoption = %v, %v; want now", due, ok)
	}
	// After the new owner's own check the usual schedule resumes.
	s, _ = decideFold(t, s, withAt(ok(), at.Add(time.Second)))
	if due, ok := NextCheckAt(s, DefaultConfig(), 0.5); !ok || !due.After(at.Add(10*time.Second)) {
		t.Errorf("next check after the new owner's check = %v, %v", due, ok)
	}
}

func TestAdoptIgnoresStaleRecords(t *testing.T) {
	s, _ := decideFold(t, NewState(testID), withAt(add(), t0))
	s, _ = decideFold(t, s, withAt(ok(), t0.Add(2*time.Minute))) // newer than the record
	before := s
	s, evs := decideFold(t, s, Adopt{At: t0.Add(3 * time.Minute), From: "m2", Record: record()})
	if len(evs) != 0 || s != before {
		t.Errorf("a record older than the stream's last check was adopted: %v", evs)
	}
	// The same record twice: the second adoption is a no-op.
	s2, _ := decideFold(t, NewState(testID), withAt(add(), t0))
	s2, evs = decideFold(t, s2, Adopt{At: t0.Add(3 * time.Minute), Record: record()})
	if len(evs) != 1 {
		t.Fatalf("first adoption: %v", evs)
	}
	if _, evs = decideFold(t, s2, Adopt{At: t0.Add(4 * time.Minute), Record: record()}); len(evs) != 0 {
		t.Errorf("the same record adopted twice: %v", evs)
	}
	if _, evs = decideFold(t, s2, Adopt{At: t0.Add(4 * time.Minute)}); len(evs) != 0 {
		t.Errorf("a nil record adopted: %v", evs)
	}
}

func TestAdoptNeedsALiveStream(t *testing.T) {
	if _, err := Decide(NewState(testID), Adopt{At: t0, Record: record()}, DefaultConfig()); !errors.Is(err, ErrNotAdded) {
		t.Errorf("adopt before add: %v", err)
	}
	s, _ := decideFold(t, NewState(testID), withAt(add(), t0))
	s, _ = decideFold(t, s, withAt(remove(), t0.Add(time.Second)))
	if _, err := Decide(s, Adopt{At: t0, Record: record()}, DefaultConfig()); !errors.Is(err, ErrRemoved) {
		t.Errorf("adopt after remove: %v", err)
	}
}
