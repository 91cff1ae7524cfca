package rotation

import (
	"hash/maphash"
	"iter"
)

// slotIndex is the pool's members by ID: an open-addressing hash table
// of slots (linear probing), at most 3/4 full. The ID is the slot's own:
// a map[string]*slot held a copy of it and the pointer in each entry, at
// most 7/8 full and half that after it grows, about 44 bytes a member at
// 100,000; this is 8 bytes an entry, 11 to 21 a member. Writer side only
// (the pool's lock), so it needs no synchronization. The zero value is an
// empty index.
type slotIndex struct {
	t    []*slot // nil, or a power of two long
	n    int     // slots held
	seed maphash.Seed
}

// minIndex is the smallest table: a pool's first member makes it.
const minIndex = 16

// home is where id's probe starts.
func (x *slotIndex) home(id string) int {
	return int(maphash.String(x.seed, id) & uint64(len(x.t)-1))
}

// get returns the slot of id, or nil.
func (x *slotIndex) get(id string) *slot {
	if x.n == 0 {
		return nil
	}
	mask := len(x.t) - 1
	for i := x.home(id); ; i = (i + 1) & mask {
		if s := x.t[i]; s == nil || s.id == id {
			return s
		}
	}
}

// add adds s, whose ID the index does not hold.
func (x *slotIndex) add(s *slot) {
	if (x.n+1)*4 > len(x.t)*3 {
		x.grow()
	}
	x.place(s)
	x.n++
}

// place puts s in the first free entry from its home.
func (x *slotIndex) place(s *slot) {
	mask := len(x.t) - 1
	i := x.home(s.id)
	for x.t[i] != nil {
		i = (i + 1) & mask
	}
	x.t[i] = s
}

// grow doubles the table (or makes the first one).
func (x *slotIndex) grow() {
	if x.t == nil {
		x.seed = maphash.MakeSeed()
	}
	old := x.t
	x.t = make([]*slot, max(minIndex, 2*len(old)))
	for _, s := range old {
		if s != nil {
			x.place(s)
		}
	}
}

// remove takes out the slot of id, if held. It leaves no tombstone: the
// entries after it in its run move back when their probe allows, so a
// lookup still stops at the first empty entry.
func (x *slotIndex) remove(id string) {
	if x.n == 0 {
		return
	}
	mask := len(x.t) - 1
	i := x.home(id)
	for ; x.t[i] == nil || x.t[i].id != id; i = (i + 1) & mask {
		if x.t[i] == nil {
			return
		}
	}
	x.t[i] = nil
	x.n--
	for j := (i + 1) & mask; x.t[j] != nil; j = (j + 1) & mask {
		// The entry at j may fill the hole at i unless its home lies
		// cyclically in (i, j]: its probe would not pass i.
		if h := x.home(x.t[j].id); (j-h)&mask >= (j-i)&mask {
			x.t[i], x.t[j] = x.t[j], nil
			i = j
		}
	}
}

// all yields the slots held, in no particular order.
func (x *slotIndex) all() iter.Seq[*slot] {
	return func(yield func(*slot) bool) {
		for _, s := range x.t {
			if s != nil && !yield(s) {
				return
			}
		}
	}
}
