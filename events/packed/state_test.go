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
	if n, full := unsafe.Sizeof(State{}), unsafe.Sizeof(events.State{}); n > 248 || n >= full {
		t.Fatalf("packed.State is %d bytes (events.State %d): want at most 248", n, full)
	}
}
