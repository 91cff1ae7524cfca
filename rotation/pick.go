package rotation

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
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
// search), n the size of the group picked from. Several filters at once
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
		return 0, fmt.Errorf("%w: unknown strategy %q; use one of %v", ErrBadRequest, strat, Strategies)
	}
	if len(dst) == 0 {
		return 0, nil
	}
	var v view
	if !v.init(sn, &req) {
		v.release()
		return 0, ErrNoProxy
	}
	n := 0
	for n < len(dst) {
		v.f.chosen = dst[:n]
		s := v.pick(strat, req.Key)
		if s == nil {
			break
		}
		dst[n] = Pick{Member: s.m, State: State(s.state.Load()), Panic: v.panic}
		n++
	}
	v.release()
	if n == 0 {
		return 0, ErrNoProxy
	}
	return n, nil
}

// filter is what a member must pass beyond being in the group picked
// from: the request's other filters, its exclusions, and not being picked
// already (PickN).
type filter struct {
	source, scheme, tag string // "": not checked
	exclude             []string
	chosen              []Pick
}

func (f *filter) matches(s *slot) bool {
	if f.source != "" && s.m.Source != f.source || f.scheme != "" && s.m.Scheme != f.scheme {
		return false
	}
	return f.tag == "" || slices.Contains(s.m.Tags, f.tag)
}

func (f *filter) accept(s *slot) bool {
	if !f.matches(s) {
		return false
	}
	for _, id := range f.exclude {
		if id == s.m.ID {
			return false
		}
	}
	for i := range f.chosen {
		if f.chosen[i].ID == s.m.ID {
			return false
		}
	}
	return true
}

// view is one request's reading of a snapshot.
type view struct {
	g     *group
	st    *groupStats
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
	scratch *[]ranked
}

var scratchPool = sync.Pool{New: func() any { s := make([]ranked, 0, 64); return &s }}

// init picks the group and decides panic mode; false means nothing can be
// handed out.
func (v *view) init(sn *snapshot, req *Request) bool {
	v.f.exclude = req.Exclude
	v.g = sn.all
	nf := 0
	for _, c := range [...]struct {
		m    map[string]*group
		name string
	}{{sn.bySource, req.Source}, {sn.byScheme, req.Scheme}, {sn.byTag, req.Tag}} {
		if c.name == "" {
			continue
		}
		g := c.m[c.name]
		if g == nil {
			return false
		}
		if nf == 0 || len(g.members) < len(v.g.members) {
			v.g = g
		}
		nf++
	}
	v.st = v.g.stats.Load()
	if nf <= 1 {
		v.panic = v.g.panic
		v.list = v.g.usable
		if v.panic {
			v.list, v.cut, v.cutOK = v.st.panicSet, v.st.cut, v.st.cutOK
		}
		return len(v.list) > 0
	}
	// Several filters: check them all per member (the group's own one
	// passes anyway) and count the intersection for panic mode.
	v.multi = true
	v.f.source, v.f.scheme, v.f.tag = req.Source, req.Scheme, req.Tag
	usable, cands := 0, 0
	for _, s := range v.g.members {
		if !v.f.matches(s) {
			continue
		}
		switch s.class.Load() {
		case clsUsable:
			usable++
			cands++
		case clsEligible, clsFailed:
			cands++
		}
	}
	v.list = v.g.usable
	if !inPanic(usable, cands, sn.thr) {
		return usable > 0
	}
	v.panic, v.qualify, v.list = true, true, v.g.members
	v.scratch = scratchPool.Get().(*[]ranked)
	*v.scratch, v.cut, v.cutOK = panicCut(v.g.members, usable, panicNeed(cands, sn.thr), &v.f, *v.scratch)
	return usable > 0 || v.cutOK
}

func (v *view) release() {
	if v.scratch != nil {
		*v.scratch = (*v.scratch)[:0]
		scratchPool.Put(v.scratch)
		v.scratch = nil
	}
}

// handOut reports whether s may be handed out in this view's mode.
func (v *view) handOut(s *slot) bool {
	switch s.class.Load() {
	case clsUsable:
		return true
	case clsEligible:
		return v.panic && v.cutOK && !s.key().worse(v.cut)
	}
	return false
}

// ok reports whether s, drawn from v.list, may be handed out.
func (v *view) ok(s *slot) bool {
	if v.qualify && !v.handOut(s) {
		return false
	}
	return v.f.accept(s)
}

func (v *view) pick(strat Strategy, key string) *slot {
	switch strat {
	case RoundRobin:
		return v.roundRobin()
	case LeastLatency:
		return v.leastLatency()
	case Weighted:
		return v.weighted()
	case Sticky:
		return v.sticky(key)
	}
	return v.random()
}

// roundRobin cycles through the list. With several filters it draws at
// random instead: stepping one by one through a list where matches are
// sparse would hand out the member after each gap again and again.
func (v *view) roundRobin() *slot {
	if v.multi {
		return v.random()
	}
	n := uint64(len(v.list))
	start := v.g.rr.Add(1) - 1
	for i := range n {
		if s := v.list[(start+i)%n]; v.ok(s) {
			return s
		}
	}
	return nil
}

// random draws uniformly; after tries misses it scans from a random start,
// so it fails only when nothing in the list passes.
func (v *view) random() *slot {
	n := len(v.list)
	if n == 0 {
		return nil
	}
	for range tries {
		if s := v.list[rand.IntN(n)]; v.ok(s) {
			return s
		}
	}
	return v.scan(rand.IntN(n))
}

func (v *view) scan(start int) *slot {
	n := len(v.list)
	for i := range n {
		if s := v.list[(start+i)%n]; v.ok(s) {
			return s
		}
	}
	return nil
}

// leastLatency is the power of two choices: two random members, the one
// with the lower latency EWMA wins (members without one count as the
// group's median).
func (v *view) leastLatency() *slot {
	a := v.random()
	if a == nil {
		return nil
	}
	n := len(v.list)
	for range tries {
		b := v.list[rand.IntN(n)]
		if b == a || !v.ok(b) {
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
func (v *view) weighted() *slot {
	pre := v.st.prefix
	if v.panic || len(pre) != len(v.list) || len(pre) == 0 {
		return v.random()
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
		if s := v.list[lo]; v.ok(s) {
			return s
		}
	}
	return v.scan(rand.IntN(len(v.list)))
}

// sticky walks the group's ring clockwise from the key's hash to the first
// member that may be handed out. The ring holds every member of the group,
// usable or not, so a member turning unusable hands only its own keys to
// the next ones, and gets them back when it returns.
func (v *view) sticky(key string) *slot {
	hs, ss := v.g.ringH, v.g.ringS
	n := len(hs)
	if n == 0 {
		return nil
	}
	i, _ := slices.BinarySearch(hs, hashString(key))
	for j := range n {
		if s := ss[(i+j)%n]; v.handOut(s) && v.f.accept(s) {
			return s
		}
	}
	return nil
}
