package projections

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/proxyhealth/proxyhealth/events/packed"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// numStates is the number of health states counted by the projections.
const numStates = 6

// stateIndex maps a health state to its counter; values this version does
// not know count as unknown, so that the counts always add up to the total.
func stateIndex(h pb.HealthState) int {
	if h < 0 || int(h) >= numStates {
		return 0
	}
	return int(h)
}

// entry is one proxy in the live projection. Every field except id, idx
// and src is guarded by Live.mu; id never changes. It takes 448 bytes (a
// size class: a byte more would take 480), and its changes.
type entry struct {
	id      string
	st      packed.State // the folded state (its ProxyID is id)
	src     *agg
	idx     int32 // position in Live.all
	removed bool
	fl      *Tracker // the flags the engine reports (checking, next check); nil: none reported
	lastOK  int64    // the last passed check (unix ns); 0: none seen

	changes ring[stateChange]

	rates rates
}

// IndexID returns the entry's ID, by which Live.entries finds it.
func (e *entry) IndexID() string { return e.id }

// stateChange is one compact transition.
type stateChange struct {
	at       int64
	seq      uint64
	reason   string
	attempt  uint32
	from, to uint8
}

// ring is a bounded buffer that drops its oldest element, oldest first.
// It keeps no start index (8 bytes an entry): a push into a full ring
// moves the others down one, which state changes, rare, can afford.
type ring[T any] struct {
	buf []T
}

// push appends v, dropping the oldest element when limit are held.
func (r *ring[T]) push(v T, limit int) {
	if limit <= 0 {
		return
	}
	if len(r.buf) < limit {
		if len(r.buf) == cap(r.buf) { // grow exactly, never past limit
			nb := make([]T, len(r.buf), min(max(2*len(r.buf), 1), limit))
			copy(nb, r.buf)
			r.buf = nb
		}
		r.buf = append(r.buf, v)
		return
	}
	copy(r.buf, r.buf[1:])
	r.buf[len(r.buf)-1] = v
}

// len returns the number of elements held.
func (r *ring[T]) len() int { return len(r.buf) }

// at returns the i-th newest element (0 = newest).
func (r *ring[T]) at(i int) T { return r.buf[len(r.buf)-1-i] }

// Success-rate buckets: the last 24 hours in hourly buckets and the last hour
// in five-minute buckets.
const (
	hourlySlots = 24
	fineSlots   = 12
	hourWidth   = int64(time.Hour)
	fineWidth   = int64(5 * time.Minute)
	noBucket    = math.MinInt64
)

// rateSlot counts the checks of one bucket.
type rateSlot[T counter] struct{ ok, total T }

// counter is the type of a bucket's counts.
type counter interface{ ~uint16 | ~uint32 }

// numSlots is the number of buckets of both windows: the hourly ones
// first, then the five-minute ones.
const numSlots = hourlySlots + fineSlots

// rates are a proxy's success-rate buckets. The counts are kept in 16 bits
// (checks are at least MinInterval, 100 ms, apart: 3,000 in five minutes,
// 36,000 in an hour), and in 32 bits (wide) from the first check that
// would take a bucket past 65,535 (checks run at once, besides the
// schedule, or events from elsewhere).
//
// Both rings' newest bucket is the one holding the newest check counted
// since they were last emptied (addRate moves it only forward, to the
// bucket of the check it counts, and ignores only checks older than its
// ring, so older than that check), so one time, lastAt, gives both.
type rates struct {
	lastAt int64 // the newest check counted (unix ns); noBucket: none
	narrow [numSlots]rateSlot[uint16]
	wide   *[numSlots]rateSlot[uint32] // nil until needed; then narrow is unused
}

// newRates returns empty buckets.
func newRates() rates { return rates{lastAt: noBucket} }

// last returns the bucket number of the newest bucket of a ring of width.
func (r *rates) last(width int64) int64 {
	if r.lastAt == noBucket {
		return noBucket
	}
	return floorDiv(r.lastAt, width)
}

// add counts one check at time at.
func (r *rates) add(at int64, ok bool) {
	hl, fl := r.last(hourWidth), r.last(fineWidth)
	if r.wide == nil && (full(r.narrow[:hourlySlots], hl, hourWidth, at) || full(r.narrow[hourlySlots:], fl, fineWidth, at)) {
		w := new([numSlots]rateSlot[uint32])
		for i, s := range r.narrow {
			w[i] = rateSlot[uint32]{ok: uint32(s.ok), total: uint32(s.total)}
		}
		r.wide, r.narrow = w, [numSlots]rateSlot[uint16]{}
	}
	if w := r.wide; w != nil {
		addRate(w[:hourlySlots], &hl, hourWidth, at, ok)
		addRate(w[hourlySlots:], &fl, fineWidth, at, ok)
	} else {
		addRate(r.narrow[:hourlySlots], &hl, hourWidth, at, ok)
		addRate(r.narrow[hourlySlots:], &fl, fineWidth, at, ok)
	}
	if r.lastAt == noBucket || at > r.lastAt {
		r.lastAt = at
	}
}

// hour and fine sum the windows ending with the bucket that holds now.
func (r *rates) hour(now int64) (ok, total uint32) {
	if w := r.wide; w != nil {
		return sumRate(w[:hourlySlots], r.last(hourWidth), hourWidth, now)
	}
	return sumRate(r.narrow[:hourlySlots], r.last(hourWidth), hourWidth, now)
}

func (r *rates) fine(now int64) (ok, total uint32) {
	if w := r.wide; w != nil {
		return sumRate(w[hourlySlots:], r.last(fineWidth), fineWidth, now)
	}
	return sumRate(r.narrow[hourlySlots:], r.last(fineWidth), fineWidth, now)
}

// full reports whether counting a check at time at (addRate) would take
// its bucket past 65,535.
func full(slots []rateSlot[uint16], last, width, at int64) bool {
	b := floorDiv(at, width)
	if last == noBucket || b > last || b <= last-int64(len(slots)) {
		return false // a fresh bucket, or one too old to count
	}
	return slots[slotOf(b, len(slots))].total == math.MaxUint16
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func slotOf(bucket int64, n int) int {
	m := bucket % int64(n)
	if m < 0 {
		m += int64(n)
	}
	return int(m)
}

// addRate counts one check at time at into the ring of buckets whose newest
// bucket number is *last. Checks older than the ring are ignored.
func addRate[T counter](slots []rateSlot[T], last *int64, width, at int64, ok bool) {
	b := floorDiv(at, width)
	n := int64(len(slots))
	switch {
	case *last == noBucket || b-*last >= n:
		clear(slots)
		*last = b
	case b > *last:
		for k := *last + 1; k <= b; k++ {
			slots[slotOf(k, len(slots))] = rateSlot[T]{}
		}
		*last = b
	case b <= *last-n:
		return
	}
	s := &slots[slotOf(b, len(slots))]
	s.total++
	if ok {
		s.ok++
	}
}

// sumRate adds up the buckets of the window of len(slots) buckets ending
// with the bucket that holds now.
func sumRate[T counter](slots []rateSlot[T], last, width, now int64) (ok, total uint32) {
	if last == noBucket {
		return 0, 0
	}
	nb := floorDiv(now, width)
	n := int64(len(slots))
	for k := max(last-n+1, nb-n+1); k <= min(last, nb); k++ {
		s := slots[slotOf(k, len(slots))]
		ok += uint32(s.ok)
		total += uint32(s.total)
	}
	return ok, total
}

// agg holds the incrementally maintained counts of a set of proxies (the
// whole pool, or one source).
type agg struct {
	name   string
	states [numStates]int
	// checking counts the entries whose Tracker says checking (counted by
	// the Trackers, not by add), on a cache line of its own: the actors
	// change it twice a check while the feeder writes the fields around
	// it.
	_         [64]byte
	checking  atomic.Int64
	_         [56]byte
	paused    int
	ejected   int
	total     int
	latSum    time.Duration
	latN      int
	lastCheck int64
	refresh   sourceRefresh
}

// sourceRefresh is what the last source events said of a source's list.
type sourceRefresh struct {
	last, errAt int64 // unix ns of the last good refresh and of the last failure
	err         string
	held        bool // a shrunk list is held, waiting for confirmation
}

// add adds (sign 1) or removes (sign -1) one proxy's contribution.
func (a *agg) add(e *entry, sign int) {
	a.total += sign
	a.states[stateIndex(e.st.Health())] += sign
	if e.st.Paused() {
		a.paused += sign
	}
	if e.st.Ejected() {
		a.ejected += sign
	}
	if ewma, ok := e.st.LatencyEWMA(); ok {
		a.latSum += time.Duration(sign) * ewma
		a.latN += sign
	}
}

func (a *agg) counts() Counts {
	c := Counts{
		Unknown: a.states[0], Healthy: a.states[1], Degraded: a.states[2],
		Unhealthy: a.states[3], Recovering: a.states[4], Failed: a.states[5],
		Checking: int(a.checking.Load()), Paused: a.paused, Ejected: a.ejected, Total: a.total,
	}
	if a.total > 0 {
		c.HealthPercentage = float64(a.states[1]) * 100 / float64(a.total)
	}
	return c
}

func (a *agg) avgLatency() time.Duration {
	if a.latN == 0 {
		return 0
	}
	return a.latSum / time.Duration(a.latN)
}

func timeOrZero(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
