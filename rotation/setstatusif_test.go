package rotation_test

import (
	"errors"
	"testing"

	"github.com/proxyhealth/proxyhealth/rotation"
)

// TestSetStatusIf: the status changes only for a known member that same
// accepts, and same sees the pool's copy of the member.
func TestSetStatusIf(t *testing.T) {
	p := newPool(t, opts(0))
	m := member(1, "s", "http", "eu")
	p.Set(m, status(rotation.StateUnhealthy))
	p.Publish()
	if _, err := p.Pick(rotation.Request{}); !errors.Is(err, rotation.ErrNoProxy) {
		t.Fatalf("an unhealthy member was picked (err %v)", err)
	}
	var seen rotation.Member
	reject := func(got *rotation.Member) bool { seen = *got; return false }
	if p.SetStatusIf(m.ID, healthy(), reject) {
		t.Fatal("SetStatusIf reported true when same returned false")
	}
	if seen.ID != m.ID || len(seen.Tags) != 1 || seen.Tags[0] != "eu" || seen.URL.String() != m.URL.String() {
		t.Fatalf("same saw %+v, want the member set (%+v)", seen, m)
	}
	p.Publish()
	if _, err := p.Pick(rotation.Request{}); !errors.Is(err, rotation.ErrNoProxy) {
		t.Fatalf("a rejected status took effect (err %v)", err)
	}
	if p.SetStatusIf("nobody", healthy(), func(*rotation.Member) bool { return true }) {
		t.Fatal("SetStatusIf reported true for an unknown ID")
	}
	if !p.SetStatusIf(m.ID, healthy(), func(*rotation.Member) bool { return true }) {
		t.Fatal("SetStatusIf reported false for an accepted member")
	}
	p.Publish()
	got, err := p.Pick(rotation.Request{})
	if err != nil || got.ID != m.ID || got.State != rotation.StateHealthy {
		t.Fatalf("Pick = %+v, %v: want %s, healthy", got, err, m.ID)
	}
}
