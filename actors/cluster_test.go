package actors

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/events"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// A fenced member (Env.MayCheck false) starts no check and journals
// nothing; once the fence lifts, the overdue check runs at once.
func TestFencedMemberChecksNothingUntilTheFenceLifts(t *testing.T) {
	var may atomic.Bool
	may.Store(true)
	h := newHarnessWith(t, nil, func(e *Env) { e.MayCheck = may.Load })
	s := &script{}
	pid := h.spawn("p1", noJitter(), s)
	h.step(pid)
	calls, events0 := s.calls.Load(), len(h.stream("p1"))

	may.Store(false)
	for range 5 { // the check falls due, then every FenceRetry
		h.clk.Advance(time.Minute)
		h.idle(pid)
	}
	if got := s.calls.Load(); got != calls {
		t.Fatalf("a fenced member ran %d checks", got-calls)
	}
	if got := len(h.stream("p1")); got != events0 {
		t.Fatalf("a fenced member journaled %d events", got-events0)
	}
	may.Store(true)
	h.clk.Advance(FenceRetry)
	poll(t, "the check held back by the fence runs", func() bool { return s.calls.Load() == calls+1 })
}

// A proxy spawned with an adoption record starts from that state: its
// stream never says unknown (ProxyAdded and ProxyAdopted are one append),
// and it is checked at once.
func TestSpawnWithAdoptionStartsFromTheAdoptedState(t *testing.T) {
	h := newHarness(t, nil)
	s := &script{}
	rec := &pb.ProxySnapshot{State: pb.HealthState_HEALTH_STATE_DEGRADED, ConsecutiveFailures: 1,
		LastCheckUnixNano: t0.Add(-time.Second).UnixNano(), LastErrorClass: pb.FailureClass_FAILURE_CLASS_TIMEOUT}
	pid := h.spawnSpec(ProxySpec{ID: "p1", Source: "default", URLRedacted: "http://127.0.0.1:1/p1", Settings: &CheckSettings{Health: noJitter(), Timeout: checkTimeout}, Check: s.check, Adopt: &events.Adopt{From: "127.0.0.1:7001", Record: rec, Reason: "owner died"}})
	st := h.idle(pid)
	if st.State.Health != pb.HealthState_HEALTH_STATE_DEGRADED || st.State.ConsecutiveFailures != 1 {
		t.Fatalf("state after spawn = %s, %d failures", events.StateName(st.State.Health), st.State.ConsecutiveFailures)
	}
	evs := h.stream("p1")
	if len(evs) != 2 || evs[0].GetProxyAdded() == nil || evs[1].GetProxyAdopted() == nil {
		t.Fatalf("stream = %v", evs)
	}
	if !st.NextCheckAt.Equal(h.clk.Now()) {
		t.Errorf("next check = %v, want now (%v)", st.NextCheckAt, h.clk.Now())
	}
	if evs[0].GetSeq()+1 != evs[1].GetSeq() {
		t.Errorf("ProxyAdded and ProxyAdopted are not adjacent: seqs %d, %d", evs[0].GetSeq(), evs[1].GetSeq())
	}
	// One success on the degraded proxy: healthy (degraded → healthy needs
	// healthy_threshold successes: 2).
	h.step(pid)
	h.step(pid)
	if st := h.idle(pid); st.State.Health != pb.HealthState_HEALTH_STATE_HEALTHY {
		t.Errorf("after two successes: %s", events.StateName(st.State.Health))
	}
}

// A running proxy adopts a newer record (journaled with the state it
// adopted) and ignores an older one.
func TestAdoptMessageTakesOnlyNewerRecords(t *testing.T) {
	h := newHarness(t, nil)
	s := &script{}
	pid := h.spawn("p1", noJitter(), s)
	checked := h.step(pid)
	old := &pb.ProxySnapshot{State: pb.HealthState_HEALTH_STATE_UNHEALTHY, LastCheckUnixNano: checked.Add(-time.Second).UnixNano()}
	if r := h.request(pid, &Adopt{From: "m2", Record: old}).(*Reply); r.Err != nil || r.Events != 0 {
		t.Fatalf("adopting an older record: %+v", r)
	}
	h.clk.Advance(time.Second)
	newer := &pb.ProxySnapshot{State: pb.HealthState_HEALTH_STATE_UNHEALTHY, RecoveryAttempt: 1, LastCheckUnixNano: h.clk.Now().UnixNano()}
	if r := h.request(pid, &Adopt{From: "m2", Record: newer, Reason: "handed over"}).(*Reply); r.Err != nil || r.Events != 1 {
		t.Fatalf("adopting a newer record: %+v", r)
	}
	st := h.idle(pid)
	if st.State.Health != pb.HealthState_HEALTH_STATE_UNHEALTHY || st.State.RecoveryAttempt != 1 {
		t.Fatalf("after adoption: %s attempt %d", events.StateName(st.State.Health), st.State.RecoveryAttempt)
	}
	evs := h.stream("p1")
	a := evs[len(evs)-1].GetProxyAdopted()
	if a.GetFromMember() != "m2" || a.GetPrevious() != pb.HealthState_HEALTH_STATE_HEALTHY || a.GetReason() != "handed over" {
		t.Errorf("journaled adoption = %v", a)
	}
}

// A check its checker abandons (the gate closed before it connected: the
// fence went down after onCheckDue passed it) journals nothing and is
// asked again after FenceRetry, like a fenced one.
func TestAbandonedCheckIsNoObservation(t *testing.T) {
	h := newHarness(t, nil)
	s := &script{}
	var abandon atomic.Bool
	var calls atomic.Int32
	check := func(ctx context.Context, done *CheckDone) {
		calls.Add(1)
		if abandon.Load() {
			go done.Abandon()
			return
		}
		go func() { done.Done(s.check(ctx)) }()
	}
	pid := h.spawnSpec(ProxySpec{ID: "p1", Source: "default", URLRedacted: "http://127.0.0.1:1/p1",
		Settings: &CheckSettings{Health: noJitter(), Timeout: checkTimeout}, CheckAsync: AsyncCheckFunc(check)})
	h.step(pid)
	st := h.idle(pid)
	checks, events0 := st.State.TotalChecks, len(h.stream("p1"))

	abandon.Store(true)
	before := calls.Load()
	h.clk.Set(st.NextCheckAt)
	poll(t, "the due check is started and abandoned", func() bool { return calls.Load() == before+1 && !h.state(pid).Checking })
	st = h.idle(pid)
	if st.State.TotalChecks != checks || len(h.stream("p1")) != events0 {
		t.Fatalf("an abandoned check was recorded: %d checks (was %d), %d events (was %d)", st.State.TotalChecks, checks, len(h.stream("p1")), events0)
	}
	abandon.Store(false)
	h.clk.Advance(FenceRetry)
	poll(t, "the check is asked again after FenceRetry and recorded", func() bool { return h.state(pid).State.TotalChecks == checks+1 })
}
