package projections_test

import (
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/projections"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// TestLiveRatesPast16Bits counts more checks into one five-minute bucket
// than 16 bits hold (the buckets widen to 32 bits): the windows count
// them all, and buckets filled before and after the widening add up.
func TestLiveRatesPast16Bits(t *testing.T) {
	const n = 70_000
	s := newScript("p1", t0).add(added("a"))
	s.addAt(t0.Add(time.Hour), ok(10)) // an earlier hourly bucket, counted before the widening
	base := t0.Add(2 * time.Hour)
	for i := range n {
		at := base.Add(time.Duration(i) * time.Microsecond) // all in one bucket
		if i%10 == 0 {
			s.addAt(at, fail(pb.FailureClass_FAILURE_CLASS_TIMEOUT))
		} else {
			s.addAt(at, ok(10))
		}
	}
	l := projections.NewLive(projections.LiveOptions{Clock: func() time.Time { return base.Add(time.Minute) }})
	l.Apply(s.out...)
	v, found := l.Proxy("p1")
	if !found {
		t.Fatal("p1 not found")
	}
	if v.Checks1h != n || v.Checks24h != n+1 {
		t.Fatalf("Checks1h %d, Checks24h %d: want %d and %d", v.Checks1h, v.Checks24h, n, n+1)
	}
	if want := float64(n-n/10) / n; v.SuccessRate1h != want {
		t.Fatalf("SuccessRate1h %v, want %v", v.SuccessRate1h, want)
	}
	if want := float64(n-n/10+1) / (n + 1); v.SuccessRate24h != want {
		t.Fatalf("SuccessRate24h %v, want %v", v.SuccessRate24h, want)
	}
	if b, _ := l.Brief("p1"); b.Checks1h != n || b.SuccessRate1h != v.SuccessRate1h {
		t.Fatalf("Brief: Checks1h %d, SuccessRate1h %v", b.Checks1h, b.SuccessRate1h)
	}
}
