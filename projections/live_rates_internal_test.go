package projections

import (
	"math/rand/v2"
	"testing"
	"time"
)

// refRates is the success-rate buckets as they were before rates: each
// ring with its own newest bucket number, 32-bit counts.
type refRates struct {
	hourLast, fineLast int64
	hourly             [hourlySlots]rateSlot[uint32]
	fine               [fineSlots]rateSlot[uint32]
}

func (r *refRates) add(at int64, ok bool) {
	addRate(r.hourly[:], &r.hourLast, hourWidth, at, ok)
	addRate(r.fine[:], &r.fineLast, fineWidth, at, ok)
}

// TestRatesMatchTwoRings: one newest-check time gives both rings the
// newest bucket that keeping one number per ring gave, whatever the order
// and spacing of the checks (out of order, within a bucket, across gaps
// longer than a ring), and the windows sum alike at any time.
func TestRatesMatchTwoRings(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	steps := []time.Duration{0, time.Millisecond, time.Second, time.Minute, 4 * time.Minute, time.Hour, 3 * time.Hour, 25 * time.Hour}
	for run := range 300 {
		got, want := newRates(), refRates{hourLast: noBucket, fineLast: noBucket}
		at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano() - int64(r.IntN(1000))*int64(time.Hour)
		for i := range 400 {
			d := int64(steps[r.IntN(len(steps))]) + r.Int64N(int64(time.Minute))
			if r.IntN(4) == 0 {
				d = -d // out of order
			}
			at += d
			ok := r.IntN(3) > 0
			got.add(at, ok)
			want.add(at, ok)
			if got.last(hourWidth) != want.hourLast || got.last(fineWidth) != want.fineLast {
				t.Fatalf("run %d check %d: newest buckets %d, %d; want %d, %d", run, i, got.last(hourWidth), got.last(fineWidth), want.hourLast, want.fineLast)
			}
			now := at + r.Int64N(int64(26*time.Hour)) - int64(time.Hour)
			g1, n1 := got.fine(now)
			w1, m1 := sumRate(want.fine[:], want.fineLast, fineWidth, now)
			g24, n24 := got.hour(now)
			w24, m24 := sumRate(want.hourly[:], want.hourLast, hourWidth, now)
			if g1 != w1 || n1 != m1 || g24 != w24 || n24 != m24 {
				t.Fatalf("run %d check %d: windows %d/%d %d/%d, want %d/%d %d/%d", run, i, g1, n1, g24, n24, w1, m1, w24, m24)
			}
		}
	}
}
