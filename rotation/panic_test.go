package rotation_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/proxyhealth/proxyhealth/rotation"
)

func bad(s rotation.State, cf uint32, lastSuccess int64) rotation.Status {
	st := status(s)
	st.ConsecutiveFailures, st.LastSuccess = cf, lastSuccess
	return st
}

// Panic mode: 9 candidates (a paused member is none), 2 usable < 0.5 × 9,
// so picks come from the best ceil(4.5) = 5: the 2 usable and the 3
// least-bad (fewest failures, then the most recent success). Failed and
// paused members are never handed out.
func TestPanicModePicksTheLeastBad(t *testing.T) {
	p := newPool(t, opts(0.5))
	p.Set(member(0, "s", "http"), healthy())
	p.Set(member(1, "s", "http"), healthy())
	p.Set(member(2, "s", "http"), bad(rotation.StateUnhealthy, 5, 100))
	p.Set(member(3, "s", "http"), bad(rotation.StateDegraded, 1, 50)) // degraded is not usable here
	p.Set(member(4, "s", "http"), bad(rotation.StateRecovering, 2, 10))
	p.Set(member(5, "s", "http"), bad(rotation.StateRecovering, 2, 20)) // beats 4: more recent success
	p.Set(member(6, "s", "http"), bad(rotation.StateUnknown, 3, 0))
	ej := healthy()
	ej.Ejected, ej.ConsecutiveFailures = true, 6
	p.Set(member(7, "s", "http"), ej)
	p.Set(member(8, "s", "http"), bad(rotation.StateFailed, 0, 1000))
	paused := healthy()
	paused.Paused = true
	p.Set(member(9, "s", "http"), paused)
	if !p.Publish() {
		t.Fatal("Publish did not report entering panic mode")
	}
	if got, want := p.Panic(), (rotation.PanicState{Active: true, Usable: 2, Candidates: 9}); got != want {
		t.Fatalf("Panic() = %+v, want %+v", got, want)
	}
	want := set(id(0), id(1), id(3), id(5), id(4))
	want45 := set(id(0), id(1), id(3), id(5)) // sticky: its ring decides within the set
	for _, req := range picks {
		got := map[string]bool{}
		for k := range 500 {
			if req.Strategy == rotation.Sticky {
				req.Key = fmt.Sprint(k)
			}
			pk, err := p.Pick(req)
			if err != nil {
				t.Fatalf("%s: %v", req.Strategy, err)
			}
			if !pk.Panic {
				t.Fatalf("%s: pick without Panic in panic mode", req.Strategy)
			}
			got[pk.ID] = true
		}
		if !sameSet(got, want) && !(req.Strategy == rotation.Sticky && sameSet(got, want45)) {
			t.Errorf("%s picked %v, want %v", req.Strategy, got, want)
		}
	}
	// The same rule with several filters (computed per request).
	got := keys(counts(t, p, rotation.Request{Strategy: rotation.Random, Source: "s", Scheme: "http"}, 500))
	if !sameSet(got, want) {
		t.Errorf("filtered panic picks %v, want %v", got, want)
	}
	// Enough usable again: panic mode ends.
	for i := 2; i <= 4; i++ {
		p.Set(member(i, "s", "http"), healthy())
	}
	if !p.Publish() {
		t.Fatal("Publish did not report leaving panic mode")
	}
	if got, want := p.Panic(), (rotation.PanicState{Active: false, Usable: 5, Candidates: 9}); got != want {
		t.Fatalf("Panic() = %+v, want %+v", got, want)
	}
	if p.Publish() {
		t.Fatal("a Publish without changes reported a panic change")
	}
	for _, req := range picks {
		for range 100 {
			pk, err := p.Pick(req)
			if err != nil || pk.Panic || pk.State != rotation.StateHealthy {
				t.Fatalf("%s after panic: %+v %v", req.Strategy, pk, err)
			}
		}
	}
}

// Panic mode never hands out failed or paused members: with nothing else
// left, ErrNoProxy.
func TestPanicModeNeverHandsOutFailedOrPaused(t *testing.T) {
	p := newPool(t, opts(0.5))
	p.Set(member(0, "s", "http"), bad(rotation.StateFailed, 9, 0))
	paused := healthy()
	paused.Paused = true
	p.Set(member(1, "s", "http"), paused)
	p.Publish()
	for _, req := range picks {
		if pk, err := p.Pick(req); !errors.Is(err, rotation.ErrNoProxy) {
			t.Errorf("%s: %+v %v, want ErrNoProxy", req.Strategy, pk, err)
		}
		req.Source, req.Scheme = "s", "http"
		if pk, err := p.Pick(req); !errors.Is(err, rotation.ErrNoProxy) {
			t.Errorf("%s filtered: %+v %v, want ErrNoProxy", req.Strategy, pk, err)
		}
	}
	// One unhealthy member: nothing usable, but panic mode hands it out.
	p.Set(member(2, "s", "http"), bad(rotation.StateUnhealthy, 3, 0))
	p.Publish()
	for _, req := range picks {
		pk, err := p.Pick(req)
		if err != nil || pk.ID != id(2) || !pk.Panic {
			t.Errorf("%s: %+v %v, want the unhealthy member in panic mode", req.Strategy, pk, err)
		}
	}
	// Panic mode off: nothing usable is ErrNoProxy.
	q := newPool(t, opts(0))
	q.Set(member(2, "s", "http"), bad(rotation.StateUnhealthy, 3, 0))
	q.Publish()
	if _, err := q.Pick(rotation.Request{}); !errors.Is(err, rotation.ErrNoProxy) {
		t.Errorf("panic mode off: %v, want ErrNoProxy", err)
	}
}

// Panic mode is decided per request group: a source in trouble panics
// while the pool as a whole does not.
func TestPanicModePerGroup(t *testing.T) {
	p := newPool(t, opts(0.5))
	for i := range 10 {
		p.Set(member(i, "good", "http"), healthy())
	}
	p.Set(member(10, "weak", "http"), healthy())
	for i := 11; i < 14; i++ {
		p.Set(member(i, "weak", "http"), bad(rotation.StateUnhealthy, uint32(i), 0))
	}
	if p.Publish() || p.Panic().Active {
		t.Fatalf("pool-wide panic with 11 of 14 usable: %+v", p.Panic())
	}
	pk, err := p.Pick(rotation.Request{Source: "weak"})
	if err != nil || !pk.Panic {
		t.Fatalf("weak source (1 of 4 usable): %+v %v, want a panic pick", pk, err)
	}
	got := keys(counts(t, p, rotation.Request{Source: "weak", Strategy: rotation.Random}, 200))
	if want := set(id(10), id(11)); !sameSet(got, want) {
		t.Fatalf("weak source picked %v, want %v", got, want)
	}
	if pk, _ := p.Pick(rotation.Request{Source: "good"}); pk.Panic {
		t.Fatal("good source picked in panic mode")
	}
}
