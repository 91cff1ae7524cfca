package rotation

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
)

// tries is how many random draws a pick makes before it scans: a draw can
// hit a member the request excludes or, with several filters, one that
// does not match them all.
const tries = 8

// Pick hands out one proxy for req. It never blocks, never locks and does
// not allocate (except for an ErrBadRequest error): it reads the snapshot
// the last Publish made. It returns ErrNoProxy when nothing can be handed
// out (see Request for filters and exclusions, Pick.Panic for panic mode)
// and ErrBadRequest for an unknown strategy or a sticky request without a
// key.
//
// Cost: O(1) for round-robin and random, O(1) expected for least-latency
// (power of two choices), O(log n) for weighted and sticky (binary
// search), n the size of the group picked from; but a group's sticky
// picks are O(n × Options.StickyReplicas), the same answers computed
// without a ring, from its first sticky pick until the next Publish builds
// its ring. Several filters at once
// (say Source and Tag) pick from the smallest of their groups, checking
// the others per member, and count that group once to decide panic mode:
// O(size of that group).
func (p *Pool) Pick(req Request) (Pick, error) {
	var one [1]Pick
	if _, err := p.PickN(req, one[:]); err != nil {
		return Pick{}, err
	}
	return one[0], nil
}

// PickN fills dst with up to len(dst) distinct proxies for req, in the
// order the strategy prefers them (sticky: the key's proxy first, then
// the next ones clockwise), and returns how many it picked. It returns
// ErrNoProxy when it could pick none, and fewer than len(dst) without an
// error when fewer are available. Like Pick it neither locks nor
// allocates.
func (p *Pool) PickN(req Request, dst []Pick) (int, error) {
	sn := p.snap.Load()
	strat := req.Strategy
	if strat == "" {
		strat = sn.def
	}
	switch strat {
	case RoundRobin, Random, LeastLatency, Weighted:
	case Sticky:
		if req.Key == "" {
			return 0, fmt.Errorf("%w: strategy %s needs a key; set Request.Key (GET /v1/pick?key=)", ErrBadRequest, Sticky)
		}
	default:
		return 0, fmt.Errorf("%w: unknown strategy %q; use one of %v", ErrBadRequest, strings.Clone(string(strat)), Strategies) // a clone: req must not escape
	}
	if len(dst) == 0 {
		return 0, nil
	}
	var scratch *[]ranked
	v, ok := newView(sn, filter{req.Source, req.Scheme, req.Tag}, &scratch)
	if scratch != nil {
		defer release(scratch)
	}
	if !ok {
		return 0, ErrNoProxy
	}
	if strat == Sticky && v.g.ringH == nil && !v.g.sh.wantRing.Load() {
		// The next Publish builds this group's ring; until then sticky
		// picks scan (stickyScan).
		v.g.sh.wantRing.Store(true)
		p.ringWanted.Store(true)
	}
	n := 0
	for n < len(dst) {
		sk := skip{exclude: req.Exclude, chosen: dst[:n]}
		s := v.pick(strat, req.Key, &sk)
		if s == nil {
			break
		}
		d := &dst[n]
		s.fill(&d.Member)
		d.State, d.Panic = s.state(), v.panic
		n++
	}
	if n == 0 {
		return 0, ErrNoProxy
	}
	return n, nil
}

// filter is the request's filters beyond the group picked from.
type filter struct {
	source, scheme, tag string // "": not checked
}

// skip is what a pick must not hand out: the request's exclusions and the
// proxies picked already (PickN). It is kept out of view, and passed down
// separately, so that escape analysis keeps dst and Exclude on the
// caller's stack.
type skip struct {
	exclude []string
	chosen  []Pick
}

func (k *skip) allows(s *slot) bool {
	for _, id := range k.exclude {
		if id == s.id {
			return false
		}
	}
	for i := range k.chosen {
		if k.chosen[i].ID == s.id {
			return false
		}
	}
	return true
}

func (f *filter) matches(s *slot) bool {
	if f.source != "" && s.a.source != f.source || f.scheme != "" && s.a.scheme != f.scheme {
		return false
	}
	return f.tag == "" || slices.Contains(s.tags, f.tag)
}

// view is one request's reading of a snapshot.
type view struct {
	g     *group
	st    *groupStats
	reps  int // ring points per member (stickyScan)
	f     filter
	panic bool
	cut   rankKey
	cutOK bool
	// list is what the non-sticky strategies draw from: the usable
	// members, the panic set, or (panic mode with several filters) all
	// the group's members, which then must qualify.
	list    []*slot
	qualify bool
	multi   bool // several filters: members are checked against the others
}

// scratchFree holds the scratch buffers of panic-mode picks with several
// filters (the only picks that need one) between uses. A bounded free list
// rather than a sync.Pool: a sync.Pool drops items at random under the race
// detector, a channel never does, so Pick's "allocates nothing" holds (and
// is tested) with -race too. Full: the buffer is dropped; empty: one is
// made.
var scratchFree = make(chan *[]ranked, 64)

func takeScratch() *[]ranked {
	select {
	case buf := <-scratchFree:
		return buf
	default:
		s := make([]ranked, 0, 64)
		return &s
	}
}

// newView picks the group and decides panic mode; false means nothing can
// be handed out. A scratch buffer it takes (takeScratch) is left in
// *scratch for the caller to release. It returns the view by value: a
// view stored through a pointer would make escape analysis move the
// caller's request (its Exclude) to the heap.
func newView(sn *snapshot, want filter, scratch **[]ranked) (v view, _ bool) {
	g := sn.all
	nf := 0
	for _, c := range [...]struct {
		m    map[string]*group
		name string
	}{{sn.bySource, want.source}, {sn.byScheme, want.scheme}, {sn.byTag, want.tag}} {
		if c.name == "" {
			continue
		}
		cg := c.m[c.name]
		if cg == nil {
			return v, false
		}
		if nf == 0 || len(cg.members) < len(g.members) {
			g = cg
		}
		nf++
	}
	st := g.stats.Load()
	v.g, v.st, v.list, v.reps = g, st, g.usable, sn.replicas
	if nf <= 1 {
		v.panic = g.panic
		if g.panic {
			v.list, v.cut, v.cutOK = st.panicSet, st.cut, st.cutOK
		}
		return v, len(v.list) > 0
	}
	// Several filters: check them all per member (the group's own one
	// passes anyway) and count the intersection for panic mode.
	v.multi, v.f = true, want
	usable, cands := 0, 0
	for _, s := range g.members {
		if !want.matches(s) {
			continue
		}
		switch s.class() {
		case clsUsable:
			usable++
			cands++
		case clsEligible, clsFailed:
			cands++
		}
	}
	if !inPanic(usable, cands, sn.thr) {
		return v, usable > 0
	}
	v.panic, v.qualify, v.list = true, true, g.members
	buf := takeScratch()
	*scratch = buf
	var cut rankKey
	var ok bool
	*buf, cut, ok = panicCut(g.members, usable, panicNeed(cands, sn.thr), &want, *buf)
	v.cut, v.cutOK = cut, ok
	return v, usable > 0 || ok
}

func release(buf *[]ranked) {
	*buf = (*buf)[:0]
	select {
	case scratchFree <- buf:
	default:
	}
}

// handOut reports whether s may be handed out in this view's mode.
func (v *view) handOut(s *slot) bool {
	switch s.class() {
	case clsUsable:
		return true
	case clsEligible:
		return v.panic && v.cutOK && !s.key().worse(v.cut)
	}
	return false
}

// ok reports whether s, drawn from v.list, may be handed out.
func (v *view) ok(s *slot, sk *skip) bool {
	if v.qualify && !v.handOut(s) {
		return false
	}
	return v.f.matches(s) && sk.allows(s)
}

func (v *view) pick(strat Strategy, key string, sk *skip) *slot {
	switch strat {
	case RoundRobin:
		return v.roundRobin(sk)
	case LeastLatency:
		return v.leastLatency(sk)
	case Weighted:
		return v.weighted(sk)
	case Sticky:
		return v.sticky(key, sk)
	}
	return v.random(sk)
}

// roundRobin cycles through the list. With several filters it draws at
// random instead: stepping one by one through a list where matches are
// sparse would hand out the member after each gap again and again.
func (v *view) roundRobin(sk *skip) *slot {
	if v.multi {
		return v.random(sk)
	}
	n := uint64(len(v.list))
	start := v.g.sh.rr.Add(1) - 1
	for i := range n {
		if s := v.list[(start+i)%n]; v.ok(s, sk) {
			return s
		}
	}
	return nil
}

// random draws uniformly; after tries misses it scans from a random start,
// so it fails only when nothing in the list passes.
func (v *view) random(sk *skip) *slot {
	n := len(v.list)
	if n == 0 {
		return nil
	}
	for range tries {
		if s := v.list[rand.IntN(n)]; v.ok(s, sk) {
			return s
		}
	}
	return v.scan(rand.IntN(n), sk)
}

func (v *view) scan(start int, sk *skip) *slot {
	n := len(v.list)
	for i := range n {
		if s := v.list[(start+i)%n]; v.ok(s, sk) {
			return s
		}
	}
	return nil
}

// leastLatency is the power of two choices: two random members, the one
// with the lower latency EWMA wins (members without one count as the
// group's median).
func (v *view) leastLatency(sk *skip) *slot {
	a := v.random(sk)
	if a == nil {
		return nil
	}
	n := len(v.list)
	for range tries {
		b := v.list[rand.IntN(n)]
		if b == a || !v.ok(b, sk) {
			continue
		}
		if v.latency(b) < v.latency(a) {
			return b
		}
		return a
	}
	return a
}

func (v *view) latency(s *slot) int64 {
	if e := s.ewma.Load(); e > 0 {
		return e
	}
	return v.st.median
}

// weighted draws by success rate (prefix sums, binary search); in panic
// mode it draws uniformly from the panic set.
func (v *view) weighted(sk *skip) *slot {
	pre := v.st.prefix
	if v.panic || len(pre) != len(v.list) || len(pre) == 0 {
		return v.random(sk)
	}
	total := pre[len(pre)-1]
	for range tries {
		x := rand.Float64() * total
		lo, hi := 0, len(pre)-1
		for lo < hi {
			mid := int(uint(lo+hi) >> 1)
			if pre[mid] > x {
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		if s := v.list[lo]; v.ok(s, sk) {
			return s
		}
	}
	return v.scan(rand.IntN(len(v.list)), sk)
}

// sticky walks the group's ring clockwise from the key's hash to the first
// member that may be handed out. The ring holds every member of the group,
// usable or not, so a member turning unusable hands only its own keys to
// the next ones, and gets them back when it returns. A group has no ring
// until a Publish after its first sticky pick: until then stickyScan finds
// the same member without one.
func (v *view) sticky(key string, sk *skip) *slot {
	hs, ss := v.g.ringH, v.g.ringS
	if hs == nil {
		return v.stickyScan(key, sk)
	}
	n := len(hs)
	if n == 0 {
		return nil
	}
	i, _ := slices.BinarySearch(hs, hashString(key))
	for j := range n {
		if s := ss[(i+j)%n]; v.handOut(s) && v.f.matches(s) && sk.allows(s) {
			return s
		}
	}
	return nil
}

// stickyScan is sticky without a ring: it computes the ring points of every
// member that may be handed out and returns the owner of the first point
// clockwise from the key's hash, that is the one at the smallest distance
// (point − hash, modulo 2⁶⁴), ties going to the lower ID as on the ring
// (comparePoints). That is the member the ring walk finds, since the walk
// passes over exactly the members that may not be handed out. O(members ×
// replicas): it serves a group's sticky picks only until the next Publish
// builds the group's ring.
func (v *view) stickyScan(key string, sk *skip) *slot {
	h := hashString(key)
	var best *slot
	var bestD uint64
	for _, s := range v.g.members {
		if !v.handOut(s) || !v.f.matches(s) || !sk.allows(s) {
			continue
		}
		base := hashString(s.id)
		for i := range v.reps {
			d := pointHash(base, i) - h
			if best == nil || d < bestD || d == bestD && s.id < best.id {
				best, bestD = s, d
			}
		}
	}
	return best
}
