package idindex

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// rec is a value that holds its own ID.
type rec struct {
	id string
	n  int
}

func (r *rec) IndexID() string { return r.id }

// TestIndexAgreesWithAMap: random puts, sets and deletes (of IDs not held too),
// through the table's growths, shrinking and growing again, leave the
// index holding what a map holds, every lookup answering as the map does
// (for the IDs it holds and those it does not), whatever runs of probes
// the deletions had to close up.
func TestIndexAgreesWithAMap(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var x Index[rec, *rec]
	want := map[string]*rec{}
	ids := make([]string, 3000)
	for i := range ids {
		ids[i] = fmt.Sprintf("p%06d", i)
	}
	check := func(step int) {
		t.Helper()
		if x.Len() != len(want) {
			t.Fatalf("step %d: index holds %d, want %d", step, x.Len(), len(want))
		}
		for _, id := range ids {
			if got := x.Get(id); got != want[id] {
				t.Fatalf("step %d: Get(%s) = %p, want %p", step, id, got, want[id])
			}
		}
		n := 0
		for v := range x.All() {
			if want[v.id] != v {
				t.Fatalf("step %d: All yields %s, which the index should not hold", step, v.id)
			}
			n++
		}
		if n != len(want) {
			t.Fatalf("step %d: All yields %d values, want %d", step, n, len(want))
		}
	}
	check(0)
	x.Delete("nobody") // an empty index
	for step := 1; step <= 20_000; step++ {
		// Grow to about 2,000, then shrink and grow again.
		id := ids[r.IntN(len(ids))]
		if add := step%10_000 < 7_000; add == (want[id] == nil) {
			if add {
				v := &rec{id: id}
				x.Put(v)
				want[id] = v
			} else {
				x.Delete(id)
				delete(want, id)
			}
		} else if !add {
			x.Delete(id + "x") // not held
		}
		if step%500 == 0 { // a new value for an ID held, or one more
			v := &rec{id: id}
			x.Set(v)
			want[id] = v
		}
		if step%1000 == 0 {
			check(step)
		}
	}
	for _, id := range ids {
		x.Delete(id)
	}
	clear(want)
	check(-1)
}

// TestDeleteClosesWrappedRuns: a full run of probes that wraps around the
// end of the table stays findable after deletions anywhere in it.
func TestDeleteClosesWrappedRuns(t *testing.T) {
	var x Index[rec, *rec]
	x.Put(&rec{id: "seed"}) // makes the first table (16 slots)
	mask := uint64(len(x.slots) - 1)
	// IDs whose home slot is the last two, so their runs wrap.
	var wrapped []*rec
	for i := 0; len(wrapped) < 10; i++ {
		id := fmt.Sprintf("w%d", i)
		if x.hash(id)&mask >= mask-1 {
			v := &rec{id: id}
			x.Put(v)
			wrapped = append(wrapped, v)
		}
	}
	for k, v := range wrapped {
		x.Delete(v.id)
		for _, w := range wrapped[k+1:] {
			if x.Get(w.id) != w {
				t.Fatalf("after deleting %s, %s is lost", v.id, w.id)
			}
		}
		if x.Get(v.id) != nil {
			t.Fatalf("%s still found after its deletion", v.id)
		}
	}
	if x.Get("seed") == nil || x.Len() != 1 {
		t.Fatalf("the seed is lost or the count is wrong: %d", x.Len())
	}
}

// BenchmarkGet compares the index's lookups with a map's at 100,000
// values; each reads the value it finds, as the folds do.
func BenchmarkGet(b *testing.B) {
	const n = 100_000
	ids := make([]string, n)
	var x Index[rec, *rec]
	m := map[string]*rec{}
	for i := range ids {
		ids[i] = fmt.Sprintf("%016x", rand.Uint64())
		v := &rec{id: ids[i], n: i}
		x.Put(v)
		m[v.id] = v
	}
	order := rand.Perm(n)
	b.Run("index", func(b *testing.B) {
		for i := range b.N {
			if k := order[i%n]; x.Get(ids[k]).n != k {
				b.Fatal("wrong value")
			}
		}
	})
	b.Run("map", func(b *testing.B) {
		for i := range b.N {
			if k := order[i%n]; m[ids[k]].n != k {
				b.Fatal("wrong value")
			}
		}
	})
}
