package projections

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestEntryIndexMatchesAMap: random puts and deletes, through the table's
// growths and with the runs of full tables, leave the index answering as a
// map does, for the IDs it holds and for those it does not.
func TestEntryIndexMatchesAMap(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var x entryIndex
	ref := map[string]*entry{}
	id := func() string { return fmt.Sprintf("p%d", r.IntN(3000)) }
	check := func(step int) {
		t.Helper()
		if x.len() != len(ref) {
			t.Fatalf("step %d: len %d, want %d", step, x.len(), len(ref))
		}
		for k, e := range ref {
			if got := x.get(k); got != e {
				t.Fatalf("step %d: get(%q) = %p, want %p", step, k, got, e)
			}
		}
		for range 100 {
			if k := id(); ref[k] == nil && x.get(k) != nil {
				t.Fatalf("step %d: get(%q) found a removed or never added ID", step, k)
			}
		}
	}
	if x.get("p1") != nil {
		t.Fatal("the zero index holds an entry")
	}
	x.delete("p1") // harmless
	most := 0
	for step := range 20_000 {
		k := id()
		switch {
		case ref[k] == nil:
			e := &entry{id: k}
			x.put(e)
			ref[k] = e
			most = max(most, len(ref))
		case r.IntN(3) > 0:
			x.delete(k)
			delete(ref, k)
		}
		if step%997 == 0 {
			check(step)
		}
	}
	check(-1)
	// Grown only past 7/8 full (it never shrinks).
	if 8*most <= 7*len(x.slots)/2 {
		t.Fatalf("%d slots for at most %d entries", len(x.slots), most)
	}
	for k := range ref { // down to empty
		x.delete(k)
		delete(ref, k)
	}
	check(-2)
}

// BenchmarkEntryIndexGet compares the index's lookups, two of which every
// event's fold makes, with a map's, at 100,000 proxies; each reads the
// entry it finds, as the fold does.
func BenchmarkEntryIndexGet(b *testing.B) {
	const n = 100_000
	ids := make([]string, n)
	var x entryIndex
	m := map[string]*entry{}
	for i := range ids {
		ids[i] = fmt.Sprintf("%016x", rand.Uint64())
		e := &entry{id: ids[i], idx: int32(i)}
		x.put(e)
		m[e.id] = e
	}
	order := rand.Perm(n)
	b.Run("index", func(b *testing.B) {
		for i := range b.N {
			if k := order[i%n]; x.get(ids[k]).idx != int32(k) {
				b.Fatal("wrong entry")
			}
		}
	})
	b.Run("map", func(b *testing.B) {
		for i := range b.N {
			if k := order[i%n]; m[ids[k]].idx != int32(k) {
				b.Fatal("wrong entry")
			}
		}
	})
}
