package rotation

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestSlotIndexAgreesWithAMap: random adds and removes (removes of IDs
// not held too) leave the index holding what a map holds, every lookup
// answering as the map does, whatever runs of probes the removals had to
// close up.
func TestSlotIndexAgreesWithAMap(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var x slotIndex
	want := map[string]*slot{}
	ids := make([]string, 3000)
	for i := range ids {
		ids[i] = fmt.Sprintf("p%06d", i)
	}
	check := func(step int) {
		t.Helper()
		if x.n != len(want) {
			t.Fatalf("step %d: index holds %d, want %d", step, x.n, len(want))
		}
		for _, id := range ids {
			if got := x.get(id); got != want[id] {
				t.Fatalf("step %d: get(%s) = %p, want %p", step, id, got, want[id])
			}
		}
		n := 0
		for s := range x.all() {
			if want[s.id] != s {
				t.Fatalf("step %d: all yields %s, which the index should not hold", step, s.id)
			}
			n++
		}
		if n != len(want) {
			t.Fatalf("step %d: all yields %d slots, want %d", step, n, len(want))
		}
	}
	check(0)
	x.remove("nobody") // an empty index
	for step := 1; step <= 20_000; step++ {
		// Grow to about 2,000, then shrink and grow again.
		id := ids[r.IntN(len(ids))]
		if add := step%10_000 < 7_000; add == (want[id] == nil) {
			if add {
				s := &slot{id: id}
				x.add(s)
				want[id] = s
			} else {
				x.remove(id)
				delete(want, id)
			}
		} else if !add {
			x.remove(id + "x") // not held
		}
		if step%1000 == 0 {
			check(step)
		}
	}
	for _, id := range ids {
		x.remove(id)
	}
	clear(want)
	check(-1)
}
