package packed

import (
	"testing"
	"time"
	"unsafe"

	"go.uber.org/goleak"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/internal/gen"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// check packs s, checks that Unpack gives s back exactly and that the
// accessors agree with s, and reports whether the compact fields held it.
func check(t *testing.T, s events.State) bool {
	t.Helper()
	p := Pack(&s, s.ProxyID)
	if got := p.Unpack(s.ProxyID); got != s {
		t.Fatalf("Unpack(Pack(s)) differs:\n got %+v\nwant %+v", got, s)
	}
	ewma, has := p.LatencyEWMA()
	if p.Health() != s.Health || p.Anonymity() != s.Anonymity || p.Source() != s.Source || p.Tags() != s.Tags ||
		p.Removed() != s.Removed || p.Paused() != s.Paused || p.Ejected() != s.Ejected() ||
		ewma != s.LatencyEWMA || has != s.HasLatencyEWMA || p.StreamSeq() != s.StreamSeq ||
		p.ConsecutiveFailures() != s.ConsecutiveFailures || p.Weight() != s.Weight || p.ExitIP() != s.ExitIP ||
		p.Added() != s.Added || p.TotalChecks() != s.TotalChecks || p.EjectedUntil() != s.EjectedUntil {
		t.Fatalf("accessors differ from %+v", s)
	}
	return p.whole == nil
}

// simStates calls f with every state a random simulation of 20 proxies
// goes through (5 seeds of 5,000 events), with the event's index.
func simStates(f func(i int, id string, s events.State)) {
	for seed := range uint64(5) {
		sim := gen.NewSim(seed, 20)
		states := map[string]events.State{}
		for i, env := range sim.Events(5000) {
			id := env.GetProxyId()
			if id == "" {
				continue
			}
			s, ok := states[id]
			if !ok {
				s = events.NewState(id)
			}
			s = events.Evolve(s, env)
			states[id] = s
			f(i, id, s)
		}
	}
}

// TestRoundTripSim packs every state a random simulation goes through.
func TestRoundTripSim(t *testing.T) {
	simStates(func(_ int, _ string, s events.State) {
		s.Tags, s.ExitIP, s.Weight = "a,b", "192.0.2.1", 2.5 // strings the sim leaves empty
		if !check(t, s) {
			t.Fatalf("a state from events is kept whole: %+v", s)
		}
	})
}

// TestRoundTripOddValues covers values the compact fields cannot hold:
// they are kept whole, and still come back exactly.
func TestRoundTripOddValues(t *testing.T) {
	base := events.NewState("p1")
	base.Added, base.AddedAt = true, time.Unix(0, 1_700_000_000_123_456_789).UTC()
	if !check(t, base) {
		t.Fatal("an ordinary state is kept whole")
	}
	epoch := base
	epoch.LastCheckAt = time.Unix(0, 0).UTC() // unix 0 is not the zero time
	local := base
	local.LastChangeAt = time.Unix(5, 0) // not UTC
	mono := base
	mono.EjectedUntil = time.Now() // monotonic reading
	far := base
	far.AdoptedAt = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC) // past int64 ns
	enum := base
	enum.Health = pb.HealthState(300)
	neg := base
	neg.Anonymity = pb.Anonymity(-1)
	for name, s := range map[string]events.State{"epoch": epoch, "local": local, "mono": mono, "far": far, "enum": enum, "neg": neg} {
		if check(t, s) {
			t.Errorf("%s: held in the compact fields, which cannot hold it", name)
		}
	}
	// Another ID than the state's is kept whole too.
	p := Pack(&base, "other")
	if got := p.Unpack("other"); got != base {
		t.Fatalf("another id: got %+v", got)
	}
}

// TestSize pins the compact size (it is the point of the package).
func TestSize(t *testing.T) {
	if n, full := unsafe.Sizeof(State{}), unsafe.Sizeof(events.State{}); n > 216 || n >= full {
		t.Fatalf("packed.State is %d bytes (events.State %d): want at most 216", n, full)
	}
}

// TestRareFields: what only ejections and adoptions set lives behind a
// pointer, nil when all of it is zero; a state that keeps it repacks
// sharing it, without allocating, and one that clears it drops it.
func TestRareFields(t *testing.T) {
	at := func(ns int64) time.Time { return time.Unix(0, ns).UTC() }
	s := events.NewState("p1")
	s.Added, s.AddedAt, s.LastCheckAt = true, at(1_700_000_000_000_000_001), at(1_700_000_000_000_000_002)
	var p State
	p.Repack(&s, "p1")
	if p.rare != nil {
		t.Fatal("a proxy never ejected nor adopted has rare fields")
	}
	s.EjectedUntil, s.LastEjectedAt, s.LastReturnAt, s.AdoptedAt = at(1_700_000_000_000_000_010), at(1_700_000_000_000_000_003), at(1_700_000_000_000_000_004), at(1_700_000_000_000_000_005)
	s.PassiveFailures, s.EjectionMultiplier = 3, 2
	if !check(t, s) {
		t.Fatal("an ejected, adopted state is kept whole")
	}
	p.Repack(&s, "p1")
	r := p.rare
	if r == nil || p.EjectedUntil() != s.EjectedUntil || !p.Ejected() {
		t.Fatalf("rare %v, EjectedUntil %v, Ejected %v", r, p.EjectedUntil(), p.Ejected())
	}
	s.TotalChecks++ // a check: the rare fields stay
	if n := testing.AllocsPerRun(100, func() { p.Repack(&s, "p1") }); n != 0 || p.rare != r {
		t.Fatalf("repacking with the same rare fields: %v allocations, rare shared %v", n, p.rare == r)
	}
	if got := p.Unpack("p1"); got != s {
		t.Fatalf("Unpack after Repack:\n got %+v\nwant %+v", got, s)
	}
	s.EjectedUntil, s.LastReturnAt = time.Time{}, at(1_700_000_000_000_000_011) // returned
	p.Repack(&s, "p1")
	if p.rare == r || *r != (rare{times: [4]int64{1_700_000_000_000_000_010, 1_700_000_000_000_000_003, 1_700_000_000_000_000_004, 1_700_000_000_000_000_005}, passiveFailures: 3, ejectionMultiplier: 2}) {
		t.Fatal("a change of the rare fields wrote into the shared ones")
	}
	if got := p.Unpack("p1"); got != s || p.Ejected() {
		t.Fatalf("after the return: %+v, ejected %v", got, p.Ejected())
	}
	s.LastEjectedAt, s.LastReturnAt, s.AdoptedAt, s.PassiveFailures, s.EjectionMultiplier = time.Time{}, time.Time{}, time.Time{}, 0, 0
	if p.Repack(&s, "p1"); p.rare != nil {
		t.Fatal("rare fields all zero again, and still allocated")
	}
}
