package events

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
	"google.golang.org/protobuf/proto"
)

func TestStateNames(t *testing.T) {
	want := []string{"unknown", "healthy", "degraded", "unhealthy", "recovering", "failed"}
	if len(States) != len(want) || len(States) != len(pb.HealthState_name) {
		t.Fatalf("States = %v", States)
	}
	for i, s := range States {
		if n := StateName(s); n != want[i] {
			t.Errorf("StateName(%v) = %q, want %q", s, n, want[i])
		}
		if got, ok := ParseState(want[i]); !ok || got != s {
			t.Errorf("ParseState(%q) = %v %v", want[i], got, ok)
		}
	}
	if n := StateName(pb.HealthState(42)); n != "state_42" {
		t.Errorf("StateName(42) = %q", n)
	}
	for _, bad := range []string{"", "bogus", "state_42", "HEALTH_STATE_HEALTHY", "healthy "} {
		if _, ok := ParseState(bad); ok {
			t.Errorf("ParseState(%q) accepted", bad)
		}
	}
}

func TestClassNames(t *testing.T) {
	if ClassName(pb.FailureClass_FAILURE_CLASS_UNSPECIFIED) != "" {
		t.Errorf("ClassName(success) should be empty")
	}
	if _, ok := ParseClass(""); ok {
		t.Errorf("ParseClass(\"\") accepted")
	}
	seen := map[string]bool{}
	for v := range pb.FailureClass_name {
		c := pb.FailureClass(v)
		if c == pb.FailureClass_FAILURE_CLASS_UNSPECIFIED {
			continue
		}
		n := ClassName(c)
		if n == "" || seen[n] {
			t.Errorf("ClassName(%v) = %q (empty or duplicate)", c, n)
		}
		seen[n] = true
		if got, ok := ParseClass(n); !ok || got != c {
			t.Errorf("ParseClass(%q) = %v %v, want %v", n, got, ok, c)
		}
	}
	if ClassName(tooSlow) != "too_slow" || ClassName(pb.FailureClass_FAILURE_CLASS_PROXY_AUTH_REQUIRED) != "proxy_auth_required" {
		t.Errorf("unexpected class names")
	}
	if n := ClassName(pb.FailureClass(77)); n != "class_77" {
		t.Errorf("ClassName(77) = %q", n)
	}
	if _, ok := ParseClass("bogus"); ok {
		t.Errorf("ParseClass(bogus) accepted")
	}
}

// oneOfEach returns an envelope of every event kind, in TypeNames order.
func oneOfEach() []*pb.Envelope {
	return []*pb.Envelope{
		{Event: &pb.Envelope_ProxyAdded{ProxyAdded: &pb.ProxyAdded{}}},
		{Event: &pb.Envelope_ProxyRemoved{ProxyRemoved: &pb.ProxyRemoved{}}},
		{Event: &pb.Envelope_CheckSucceeded{CheckSucceeded: &pb.CheckSucceeded{}}},
		{Event: &pb.Envelope_CheckFailed{CheckFailed: &pb.CheckFailed{}}},
		{Event: &pb.Envelope_StateChanged{StateChanged: &pb.StateChanged{}}},
		{Event: &pb.Envelope_ProxyPaused{ProxyPaused: &pb.ProxyPaused{}}},
		{Event: &pb.Envelope_ProxyResumed{ProxyResumed: &pb.ProxyResumed{}}},
		{Event: &pb.Envelope_PassiveFailureReported{PassiveFailureReported: &pb.PassiveFailureReported{}}},
		{Event: &pb.Envelope_PassiveSuccessReported{PassiveSuccessReported: &pb.PassiveSuccessReported{}}},
		{Event: &pb.Envelope_ProxyRevived{ProxyRevived: &pb.ProxyRevived{}}},
		{Event: &pb.Envelope_PoolDegraded{PoolDegraded: &pb.PoolDegraded{}}},
		{Event: &pb.Envelope_PoolRecovered{PoolRecovered: &pb.PoolRecovered{}}},
		{Event: &pb.Envelope_ProxyEjected{ProxyEjected: &pb.ProxyEjected{}}},
		{Event: &pb.Envelope_ProxyReturned{ProxyReturned: &pb.ProxyReturned{}}},
		{Event: &pb.Envelope_PoolPanicEntered{PoolPanicEntered: &pb.PoolPanicEntered{}}},
		{Event: &pb.Envelope_PoolPanicLeft{PoolPanicLeft: &pb.PoolPanicLeft{}}},
		{Event: &pb.Envelope_ProxyMetadataChanged{ProxyMetadataChanged: &pb.ProxyMetadataChanged{}}},
		{Event: &pb.Envelope_ExitObserved{ExitObserved: &pb.ExitObserved{}}},
		{Event: &pb.Envelope_SourceRefreshed{SourceRefreshed: &pb.SourceRefreshed{}}},
		{Event: &pb.Envelope_SourceRefreshFailed{SourceRefreshFailed: &pb.SourceRefreshFailed{}}},
		{Event: &pb.Envelope_SourceShrinkHeld{SourceShrinkHeld: &pb.SourceShrinkHeld{}}},
		{Event: &pb.Envelope_ProxyAdopted{ProxyAdopted: &pb.ProxyAdopted{}}},
	}
}

func TestTypeNames(t *testing.T) {
	var got []string
	for _, e := range oneOfEach() {
		got = append(got, TypeName(e))
	}
	if !slices.Equal(got, TypeNames) {
		t.Errorf("TypeName of each event = %v, TypeNames = %v", got, TypeNames)
	}
	if n := TypeName(&pb.Envelope{}); n != "unknown" {
		t.Errorf("TypeName(empty) = %q", n)
	}
	if n := TypeName(nil); n != "unknown" {
		t.Errorf("TypeName(nil) = %q", n)
	}
}

func TestEvolveIgnoresUnknownAndPoolEvents(t *testing.T) {
	s, _ := script(t, DefaultConfig(), sDegraded...)
	for _, e := range []*pb.Envelope{
		{Seq: 77, StreamSeq: 9},
		{Seq: 78, Event: &pb.Envelope_PoolDegraded{PoolDegraded: &pb.PoolDegraded{}}},
	} {
		want := s
		want.Seq = e.GetSeq()
		if e.GetStreamSeq() != 0 {
			want.StreamSeq = e.GetStreamSeq()
		}
		if got := Evolve(s, e); got != want {
			t.Errorf("Evolve(%v) = %+v, want only seqs advanced", e, got)
		}
	}
}

func TestClone(t *testing.T) {
	_, envs := script(t, DefaultConfig(), sDegraded...)
	orig := envs[len(envs)-1]
	c := Clone(orig)
	if !proto.Equal(c, orig) {
		t.Fatalf("clone differs")
	}
	c.GetStateChanged().To = failed
	c.Seq = 9
	if orig.GetStateChanged().GetTo() != degraded || orig.GetSeq() == 9 {
		t.Errorf("mutating the clone changed the original")
	}
}

func TestUsable(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxRecoveryAttempts = 1
	for _, tc := range []struct {
		setup []Command
		want  bool
	}{
		{nil, false},
		{sUnknown, false},
		{sHealthy, true},
		{sDegraded, true},
		{sSlow, true},
		{sUnhealthy, false},
		{sRecovering, false},
		{failedAfter(1), false},
		{then(sHealthy, remove()), false},
		// Pausing stops checks, not traffic.
		{then(sHealthy, pause()), true},
		{then(sUnhealthy, pause()), false},
	} {
		s, _ := script(t, cfg, tc.setup...)
		if s.Usable() != tc.want {
			t.Errorf("%s (removed=%v): Usable() = %v, want %v", StateName(s.Health), s.Removed, s.Usable(), tc.want)
		}
	}
}

func TestLatencyFromPB(t *testing.T) {
	if l := LatencyFromPB(nil); l != (Latency{}) {
		t.Errorf("LatencyFromPB(nil) = %v", l)
	}
	l := Latency{Connect: 1, FirstByte: 2, Total: 3}
	if got := LatencyFromPB(l.toPB()); got != l {
		t.Errorf("round trip = %v", got)
	}
}

// randomScript plays n random commands (errors are skipped, like a shell
// that rejects them) and returns the harness.
func randomScript(t testing.TB, rng *rand.Rand, n int) *harness {
	t.Helper()
	cfg := DefaultConfig()
	cfg.HealthyThreshold = 1 + rng.Uint32N(3)
	cfg.UnhealthyThreshold = 1 + rng.Uint32N(4)
	cfg.MaxRecoveryAttempts = rng.Uint32N(3)
	cfg.FirstSuccessHealthy = rng.IntN(2) == 0
	h := newHarness(t, cfg)
	h.do(Add{URLRedacted: "http://10.0.0.1:8080", Source: "s", HasCredentials: rng.IntN(2) == 0})
	cmds := allCommands()
	for range n {
		var c Command
		switch k := rng.IntN(20); {
		case k < 6:
			c = CheckCompleted{Result: CheckResult{StatusCode: 200, Latency: Latency{Total: time.Duration(rng.IntN(1e9))}}}
		case k < 11:
			c = CheckCompleted{Result: CheckResult{Class: pb.FailureClass(1 + rng.IntN(11)), StatusCode: uint32(rng.IntN(600)),
				Message: "m" + string(rune('a'+rng.IntN(26))), Latency: Latency{Connect: time.Duration(rng.IntN(1e6)), Total: time.Duration(rng.IntN(1e9))}}}
		default:
			c = cmds[1+rng.IntN(len(cmds)-1)]
			if _, isRemove := c.(Remove); isRemove && rng.IntN(5) != 0 {
				continue
			}
		}
		_, _ = h.try(c) // a rejected command changes nothing
	}
	return h
}

func TestSnapshotRoundTrip(t *testing.T) {
	if s := NewState(testID); !reflect.DeepEqual(FromSnapshot(ToSnapshot(s)), s) {
		t.Errorf("NewState does not round-trip")
	}
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 7))
		h := randomScript(t, rng, rng.IntN(60))
		s := h.s
		snap := ToSnapshot(s)
		if got := FromSnapshot(snap); !reflect.DeepEqual(got, s) {
			t.Fatalf("seed %d: FromSnapshot(ToSnapshot(s)) =\n%+v\nwant\n%+v", seed, got, s)
		}
		// Through the wire, as the journal stores it.
		b, err := proto.Marshal(snap)
		if err != nil {
			t.Fatal(err)
		}
		var back pb.ProxySnapshot
		if err := proto.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if got := FromSnapshot(&back); !reflect.DeepEqual(got, s) {
			t.Fatalf("seed %d: state changed through the wire", seed)
		}
		// Recovery: a snapshot at a random point plus the rest of the stream.
		k := rng.IntN(len(h.all) + 1)
		mid := Fold(NewState(testID), h.all[:k]...)
		if got := Fold(FromSnapshot(ToSnapshot(mid)), h.all[k:]...); !reflect.DeepEqual(got, s) {
			t.Fatalf("seed %d: snapshot at %d + replay =\n%+v\nwant\n%+v", seed, k, got, s)
		}
		if got := Fold(NewState(testID), h.all...); !reflect.DeepEqual(got, s) {
			t.Fatalf("seed %d: full replay differs from the live state", seed)
		}
	}
}

// TestSnapshotIntoReuses: one message reused for a run of states (with and
// without tags and latencies, in turn) gives each state's own snapshot,
// byte for byte, and keeps nothing of the state before.
func TestSnapshotIntoReuses(t *testing.T) {
	det := proto.MarshalOptions{Deterministic: true}
	dst := new(pb.ProxySnapshot)
	tags := []string{"eu,fast,x", "", "solo", ",", "a,,b", ""}
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 11))
		s := randomScript(t, rng, rng.IntN(60)).s
		s.Tags = tags[seed%uint64(len(tags))]
		want, err := det.Marshal(ToSnapshot(s))
		if err != nil {
			t.Fatal(err)
		}
		got, err := det.Marshal(SnapshotInto(dst, s))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("seed %d (tags %q): SnapshotInto into a used message differs from ToSnapshot", seed, s.Tags)
		}
		if back := FromSnapshot(dst); !reflect.DeepEqual(back, s) {
			t.Fatalf("seed %d: FromSnapshot(SnapshotInto(dst, s)) =\n%+v\nwant\n%+v", seed, back, s)
		}
	}
	for _, s := range []string{"a", "a,b", ",", "a,,b", "a,"} {
		if got, want := appendSplit([]string{"keep"}, s), append([]string{"keep"}, strings.Split(s, ",")...); !slices.Equal(got, want) {
			t.Errorf("appendSplit(%q) = %q, want %q", s, got, want)
		}
	}
}
