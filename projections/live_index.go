package projections

import "hash/maphash"

// entryIndex finds a proxy's entry by its ID. It is a hash table of entry
// pointers (open addressing, linear probing) keyed by the entries' own
// IDs, because a map[string]*entry keeps every ID a second time, as its
// key: a slot takes 9 bytes (the pointer, and a byte of the ID's hash so
// that a probe follows only the pointers of likely matches) where the
// map's takes 24, about 15 bytes a proxy instead of 35.
//
// Its zero value is empty. Its one writer must not run concurrently with
// anything else (Live's feeder, under Live.mu held for writing); readers
// may run concurrently with each other.
type entryIndex struct {
	seed  maphash.Seed // made with the first slots
	tags  []uint8      // per slot: 0 when empty, else tagOf the ID's hash
	slots []*entry     // a power of two of them, or none
	n     int
}

// indexMinSlots is the size of the first table.
const indexMinSlots = 16

// tagOf returns the tag of a slot whose ID hashes to h: never 0.
func tagOf(h uint64) uint8 { return 0x80 | uint8(h>>57) }

func (x *entryIndex) hash(id string) uint64 { return maphash.String(x.seed, id) }

// len returns the number of entries held.
func (x *entryIndex) len() int { return x.n }

// get returns the entry of ID id, nil if there is none.
func (x *entryIndex) get(id string) *entry {
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
			if e := x.slots[i]; e.id == id {
				return e
			}
		}
	}
}

// put adds e, whose ID the index must not hold yet. The table grows past
// 7/8 full: linear probing stays short with the tags, which keep a miss to
// reading about a cache line of them.
func (x *entryIndex) put(e *entry) {
	if 8*(x.n+1) > 7*len(x.slots) {
		x.grow()
	}
	x.place(e, x.hash(e.id))
	x.n++
}

// place puts e, whose ID hashes to h, in the first free slot from its own.
func (x *entryIndex) place(e *entry, h uint64) {
	mask := uint64(len(x.slots) - 1)
	i := h & mask
	for x.tags[i] != 0 {
		i = (i + 1) & mask
	}
	x.tags[i], x.slots[i] = tagOf(h), e
}

// grow doubles the table.
func (x *entryIndex) grow() {
	if x.slots == nil {
		x.seed = maphash.MakeSeed()
	}
	old := x.slots
	size := max(indexMinSlots, 2*len(old))
	x.tags, x.slots = make([]uint8, size), make([]*entry, size)
	for _, e := range old {
		if e != nil {
			x.place(e, x.hash(e.id))
		}
	}
}

// delete removes the entry of ID id, if any. The entries after it in its
// run move back into the slot it frees when they may (their own slot is
// not between it and theirs), so that no probe stops short of them.
func (x *entryIndex) delete(id string) {
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
		if t == tag && x.slots[i].id == id {
			break
		}
	}
	for j := (i + 1) & mask; x.tags[j] != 0; j = (j + 1) & mask {
		home := x.hash(x.slots[j].id) & mask
		// The entry at j stays when its own slot is cyclically in (i, j].
		if i <= j && i < home && home <= j || i > j && (i < home || home <= j) {
			continue
		}
		x.tags[i], x.slots[i] = x.tags[j], x.slots[j]
		i = j
	}
	x.tags[i], x.slots[i] = 0, nil
	x.n--
}
