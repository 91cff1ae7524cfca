// Package idindex is a hash table of pointers to values that hold their
// own ID: what a map[string]*T is for per-proxy records, without keeping
// each ID a second time as the map's key. A map's slot holds the key's
// string header and the pointer (24 bytes, at most 7/8 full and half that
// after it grows: about 35 bytes a proxy at 100,000); an Index's holds the
// pointer and a byte of the ID's hash (9 bytes, about 12 a proxy), and a
// lookup follows only the pointers whose byte matches.
package idindex

import (
	"hash/maphash"
	"iter"
)

// Keyed is the constraint on an Index's pointer type: a *T that tells
// its ID, which must not change while the Index holds it.
type Keyed[T any] interface {
	*T
	IndexID() string
}

// Index finds the values of type T by their IDs (open addressing,
// linear probing, grown past 7/8 full). Its zero value is empty. It does
// no locking: its writer must not run concurrently with anything else;
// readers (Get, Len, All) may run concurrently with each other.
type Index[T any, P Keyed[T]] struct {
	seed  maphash.Seed // made with the first table
	tags  []uint8      // per slot: 0 when empty, else tagOf the ID's hash
	slots []P          // a power of two of them, or none
	n     int
}

// minSlots is the size of the first table.
const minSlots = 16

// tagOf returns the tag of a slot whose ID hashes to h: never 0.
func tagOf(h uint64) uint8 { return 0x80 | uint8(h>>57) }

func (x *Index[T, P]) hash(id string) uint64 { return maphash.String(x.seed, id) }

// Len returns the number of values held.
func (x *Index[T, P]) Len() int { return x.n }

// Get returns the value of ID id, nil if there is none.
func (x *Index[T, P]) Get(id string) P {
	if x.n == 0 {
		return nil
	}
	h := x.hash(id)
	tag, mask := tagOf(h), uint64(len(x.slots)-1)
	for i := h & mask; ; i = (i + 1) & mask {
		switch t := x.tags[i]; t {
		case 0:
			return nil
		case tag:
			if v := x.slots[i]; v.IndexID() == id {
				return v
			}
		}
	}
}

// Put adds v, whose ID the index must not hold yet.
func (x *Index[T, P]) Put(v P) {
	if 8*(x.n+1) > 7*len(x.slots) {
		x.grow()
	}
	x.place(v, x.hash(v.IndexID()))
	x.n++
}

// Set puts v in place of the value with v's ID, or adds v when the index
// holds none: a record replaced by a new one keeps its slot.
func (x *Index[T, P]) Set(v P) {
	if x.n > 0 {
		id := v.IndexID()
		h := x.hash(id)
		tag, mask := tagOf(h), uint64(len(x.slots)-1)
		for i := h & mask; x.tags[i] != 0; i = (i + 1) & mask {
			if x.tags[i] == tag && x.slots[i].IndexID() == id {
				x.slots[i] = v
				return
			}
		}
	}
	x.Put(v)
}

// place puts v, whose ID hashes to h, in the first free slot from its own.
func (x *Index[T, P]) place(v P, h uint64) {
	mask := uint64(len(x.slots) - 1)
	i := h & mask
	for x.tags[i] != 0 {
		i = (i + 1) & mask
	}
	x.tags[i], x.slots[i] = tagOf(h), v
}

// grow doubles the table (or makes the first one).
func (x *Index[T, P]) grow() {
	if x.slots == nil {
		x.seed = maphash.MakeSeed()
	}
	old := x.slots
	size := max(minSlots, 2*len(old))
	x.tags, x.slots = make([]uint8, size), make([]P, size)
	for _, v := range old {
		if v != nil {
			x.place(v, x.hash(v.IndexID()))
		}
	}
}

// Delete removes the value of ID id, if any. It leaves no tombstone: the
// values after it in its run move back into the slot it frees when they
// may (their own slot is not between it and theirs), so that no probe
// stops short of them.
func (x *Index[T, P]) Delete(id string) {
	if x.n == 0 {
		return
	}
	h := x.hash(id)
	tag, mask := tagOf(h), uint64(len(x.slots)-1)
	i := h & mask
	for ; ; i = (i + 1) & mask {
		t := x.tags[i]
		if t == 0 {
			return
		}
		if t == tag && x.slots[i].IndexID() == id {
			break
		}
	}
	for j := (i + 1) & mask; x.tags[j] != 0; j = (j + 1) & mask {
		home := x.hash(x.slots[j].IndexID()) & mask
		// The value at j stays when its own slot is cyclically in (i, j].
		if i <= j && i < home && home <= j || i > j && (i < home || home <= j) {
			continue
		}
		x.tags[i], x.slots[i] = x.tags[j], x.slots[j]
		i = j
	}
	x.tags[i], x.slots[i] = 0, nil
	x.n--
}

// All yields the values held, in no particular order.
func (x *Index[T, P]) All() iter.Seq[P] {
	return func(yield func(P) bool) {
		for _, v := range x.slots {
			if v != nil && !yield(v) {
				return
			}
		}
	}
}
