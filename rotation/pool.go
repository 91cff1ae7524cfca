package rotation

import (
	"cmp"
	"encoding/binary"
	"iter"
	"math"
	"net/url"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/idindex"
)

// A member's class as the picker sees it.
const (
	clsUsable   uint8 = iota // handed out normally
	clsEligible              // not usable, but may be handed out in panic mode
	clsFailed                // a candidate (counts in the usable share), never handed out
	clsPaused                // not a candidate, never handed out
	clsRemoved               // gone (an older snapshot may still list it)
)

// slot is one member. Its Member never changes (Set with a changed Member
// makes a new slot); its published class and statistics are atomics
// updated in place, so statistics changes need no new snapshot. It keeps
// its Member in pieces (member puts them together): what is the member's
// own (ID, URL, host, port, tags) in the slot, what members share
// (source, scheme, weight) in the pool's attrs. Its groups are looked up
// from them (Pool.groupsOf), not kept. A slot takes 112 bytes; with a
// whole Member, class and state in two atomics, a copy of the class for
// the writer and a bool per flag it took 168 (176 allocated).
//
// The order of the fields is the cache's: 112-byte objects start on a
// 64-byte line or 16, 32 or 48 bytes into one, so bytes 32 to 63 are on
// one line but in the slots that start 16 bytes into one (one in four).
// There go what a scan reads of every member it passes: the class (cs),
// the attrs the filters compare, the ID exclusions compare.
type slot struct {
	// Read by pickers: the statistics (live).
	ewma  atomic.Int64  // latency EWMA, ns; 0 unknown
	rate  atomic.Uint64 // math.Float64bits(SuccessRate)
	ls    atomic.Int64  // LastSuccess
	check atomic.Uint32 // Checks
	cf    atomic.Uint32 // ConsecutiveFailures

	id string
	a  *attrs
	// cs is the class (low byte) and the state (the next one) as of the
	// last Publish, stored together by it.
	cs   atomic.Uint32
	port uint16 // Member.Port unless a.wide

	// Writer only: the state of the last Set, and flags.
	stState State
	flags   uint8

	url  *url.URL
	host string
	// tags are the pool's copy (Pool.tagsOf), shared with other members
	// when equal.
	tags []string
}

// A slot's flags (writer only).
const (
	fPaused    uint8 = 1 << iota // of the last Set
	fEjected                     // of the last Set
	fPublished                   // on its groups in the current snapshot
	fRemoved
	fPending // in Pool.pending
	fDirty   // in Pool.dirty (statistics)
)

// IndexID returns the member's ID, by which Pool.slots finds the slot.
func (s *slot) IndexID() string { return s.id }

// is reports whether flag f is set.
func (s *slot) is(f uint8) bool { return s.flags&f != 0 }

// set sets or clears flag f.
func (s *slot) set(f uint8, on bool) {
	if on {
		s.flags |= f
	} else {
		s.flags &^= f
	}
}

// health is the status of the last Set, as the writer keeps it.
func (s *slot) health() health {
	return health{s.stState, s.is(fPaused), s.is(fEjected)}
}

// class is the slot's class as of the last Publish.
func (s *slot) class() uint8 { return uint8(s.cs.Load()) }

// state is the slot's state as of the last Publish.
func (s *slot) state() State { return State(s.cs.Load() >> 8) }

// publish stores the class and state the snapshot being built gives the
// slot.
func (s *slot) publish(cls uint8, st State) { s.cs.Store(uint32(st)<<8 | uint32(cls)) }

// member returns the slot's Member: as Set was given it, but for Tags,
// the pool's copy (shared with the members that have the same).
func (s *slot) member() Member {
	var m Member
	s.fill(&m)
	return m
}

// fill sets *m to the slot's Member (member), field by field: a picker
// writes it straight into the caller's Pick.
func (s *slot) fill(m *Member) {
	a := s.a
	m.ID, m.URL, m.Host, m.Tags = s.id, s.url, s.host, s.tags
	m.Port = int(s.port)
	if a.wide {
		m.Port = a.port
	}
	m.Scheme, m.Source, m.Weight = a.scheme, a.source, a.weight
}

// attrs is what a member shares with others: its source, scheme and
// weight. A pool's members have few distinct ones (often a single one),
// so the pool keeps each once (Pool.attrs) and its slots point to it: 8
// bytes a member instead of 40. The tags are not in it: a member's own
// tag (its exit IP's) would give it attrs of its own, costlier than the
// fields they replace. Immutable once made, but for refs: pickers read it.
type attrs struct {
	source, scheme string
	weight         float64
	// port is the members' Port when it does not fit a slot's (wide):
	// never for a real port, but Member.Port is an int. It is part of
	// the key then, so such members share attrs only with their port.
	port int
	wide bool
	key  string // in Pool.attrs
	refs int    // slots not removed that point to it (writer only)
}

// health is what the writer keeps of a Status (the statistics live in the
// slot's atomics), in a slot's stState and flags.
type health struct {
	state           State
	paused, ejected bool
}

func healthOf(st Status) health { return health{st.State, st.Paused, st.Ejected} }

// rankKey orders members for panic mode: fewest consecutive failures
// first, then the most recent success.
type rankKey struct {
	cf uint32
	ls int64
}

func (s *slot) key() rankKey { return rankKey{s.cf.Load(), s.ls.Load()} }

// worse reports whether a ranks after b.
func (a rankKey) worse(b rankKey) bool {
	return a.cf > b.cf || (a.cf == b.cf && a.ls < b.ls)
}

// group is the immutable picking state of the whole pool or of the members
// sharing one source, scheme or tag, as of one Publish. Only stats is
// replaced (atomically) by a refresh.
type group struct {
	members []*slot // every member, paused ones included
	usable  []*slot
	// ring is the consistent-hash ring over members: hashes sorted, with
	// the owner of each point. Built only for groups a sticky pick asked
	// for (shared.wantRing), at the next Publish; nil until then, and
	// sticky picks use stickyScan, which picks the same member.
	ringH []uint64
	ringS []*slot
	cands int // members not paused
	panic bool
	sh    *shared
	stats atomic.Pointer[groupStats]
}

// shared is what pickers write: it outlives each Publish's group.
type shared struct {
	rr       atomic.Uint64 // round-robin cursor
	wantRing atomic.Bool   // a sticky pick found no ring
	_        [48]byte      // keep groups' cursors off each other's cache line
}

// groupStats is what a group derives from its members' statistics.
type groupStats struct {
	// prefix[i] is the sum of the weights of usable[0..i].
	prefix []float64
	// median is the median latency EWMA (ns) of the usable members that
	// have one; members without count as it.
	median int64
	// In panic mode: the panic set is the usable members plus the eligible
	// ones ranking no worse than cut (cutOK false: none).
	cut      rankKey
	cutOK    bool
	panicSet []*slot
}

// wgroup is the writer's handle on one group.
type wgroup struct {
	kind, name string
	cur        *group
	added      []*slot
	gone       []*slot   // members that left since the last rebuild
	dirty      bool      // needs a rebuild
	stale      bool      // needs a statistics refresh
	statsAt    time.Time // when its statistics were last computed (Options.Now)
	// n is the number of its members as of the last Publish, kept for
	// every group; alias: n is the whole pool's, so its members are the
	// pool's: it keeps no lists or statistics of its own, and the snapshot
	// gives the pool's group under its name (see aliases).
	n     int
	alias bool
	sh    shared
}

// snapshot is what pickers read: immutable, swapped atomically.
type snapshot struct {
	all      *group
	bySource map[string]*group
	byScheme map[string]*group
	byTag    map[string]*group
	thr      float64
	def      Strategy
	replicas int
}

const (
	kindAll    = ""
	kindSource = "source"
	kindScheme = "scheme"
	kindTag    = "tag"
)

type groupID struct{ kind, name string }

// PanicState is the pool-wide panic mode as of the last Publish: whether it
// is on and the counts it was decided from.
type PanicState struct {
	// Active: fewer than PanicThreshold of the candidates are usable.
	Active bool
	// Usable and Candidates are the pool's usable members and its members
	// that are not paused.
	Usable, Candidates int
}

// Pool is the picker. One goroutine (the engine's feeder) calls Set, Remove
// and Publish; any number call Pick and PickN, which never lock and never
// allocate: they read the snapshot the last Publish made.
type Pool struct {
	opt      Options
	replicas int
	snap     atomic.Pointer[snapshot]
	// ringWanted: a sticky pick set some group's wantRing since the last
	// Publish looked.
	ringWanted atomic.Bool

	mu          sync.Mutex // the writer's; held by Set, Remove, Publish
	slots       idindex.Index[slot, *slot]
	attrs       map[string]*attrs // by attrsKey
	keyBuf      []byte            // attrsKey's
	lastTags    []string          // tagsOf's
	scratchM    Member            // the Member SetStatusIf shows
	groups      map[groupID]*wgroup
	pending     []*slot // structural changes since the last Publish
	dirty       []*slot // statistics changes not yet refreshed
	lastRefresh time.Time
	// staleLeft: a refresh left a stale group whose turn had not come
	// (statsEvery); a later refresh looks again without a new change.
	staleLeft  bool
	panicState PanicState
	scratchK   []ranked
	scratchL   []int64
}

// NewPool returns an empty pool (Pick fails with ErrNoProxy until members
// are Set and Published).
func NewPool(opt Options) (*Pool, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	if opt.Strategy == "" {
		opt.Strategy = RoundRobin
	}
	p := &Pool{opt: opt, replicas: opt.StickyReplicas, attrs: map[string]*attrs{}, groups: map[groupID]*wgroup{}}
	if p.replicas == 0 {
		p.replicas = DefaultStickyReplicas
	}
	p.snap.Store(&snapshot{all: emptyGroup(), thr: opt.PanicThreshold, def: opt.Strategy, replicas: p.replicas})
	return p, nil
}

// now is the pool's clock (Options.Now, default time.Now).
func (p *Pool) now() time.Time {
	if p.opt.Now != nil {
		return p.opt.Now()
	}
	return time.Now()
}

// Options returns the pool's options (Strategy filled in).
func (p *Pool) Options() Options { return p.opt }

// Len returns the number of members as of the last Publish, paused ones
// included.
func (p *Pool) Len() int { return len(p.snap.Load().all.members) }

func (p *Pool) classOf(st health) uint8 {
	switch {
	case st.paused:
		return clsPaused
	case st.state == StateFailed:
		return clsFailed
	case st.ejected:
		return clsEligible
	case st.state == StateHealthy, st.state == StateDegraded && p.opt.IncludeDegraded:
		return clsUsable
	}
	return clsEligible
}

func sameMember(a, b Member) bool {
	if a.ID != b.ID || a.Scheme != b.Scheme || a.Host != b.Host || a.Port != b.Port || a.Source != b.Source || a.Weight != b.Weight || !slices.Equal(a.Tags, b.Tags) {
		return false
	}
	if a.URL == nil || b.URL == nil || a.URL == b.URL {
		return a.URL == b.URL
	}
	ua, ub := *a.URL, *b.URL
	ua.User, ub.User = nil, nil
	if ua != ub || (a.URL.User == nil) != (b.URL.User == nil) {
		return false
	}
	if a.URL.User == nil {
		return true
	}
	pa, oka := a.URL.User.Password()
	pb, okb := b.URL.User.Password()
	return a.URL.User.Username() == b.URL.User.Username() && pa == pb && oka == okb
}

// Set adds the member or updates its status. A change of State, Paused or
// Ejected that changes whether the member can be handed out, or a changed
// Member, takes effect at the next Publish; statistics (LatencyEWMA,
// SuccessRate, Checks, ConsecutiveFailures, LastSuccess) are visible to
// pickers at once, and what is derived from them (weights, panic set) is
// refreshed by Publish as Options.StatsRefresh allows. Writer side: call
// from one goroutine.
func (p *Pool) Set(m Member, st Status) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.slots.Get(m.ID)
	if s == nil || !sameMember(s.member(), m) {
		// The new attrs first: a change of the member's own fields keeps
		// its attrs, which the removal would otherwise drop if no other
		// member used them.
		a := p.attrsOf(&m)
		if s != nil {
			p.removeLocked(s)
		}
		s = &slot{id: m.ID, url: m.URL, host: m.Host, port: uint16(m.Port), tags: p.tagsOf(m.Tags), a: a}
		s.publish(clsRemoved, StateUnknown)
		p.slots.Put(s)
		for _, id := range memberGroups(s) {
			if p.groups[id] == nil {
				p.groups[id] = &wgroup{kind: id.kind, name: id.name}
			}
		}
	}
	p.setStatus(s, st)
}

// attrsOf returns the pool's attrs for m's, made if no member has them
// yet, and counts m's slot as using them. Writer side, p.mu held.
func (p *Pool) attrsOf(m *Member) *attrs {
	wide := m.Port < 0 || m.Port > math.MaxUint16
	p.keyBuf = attrsKey(p.keyBuf[:0], m, wide)
	a := p.attrs[string(p.keyBuf)]
	if a == nil {
		a = &attrs{source: m.Source, scheme: m.Scheme, weight: m.Weight, wide: wide, key: string(p.keyBuf)}
		if wide {
			a.port = m.Port
		}
		p.attrs[a.key] = a
	}
	a.refs++
	return a
}

// attrsKey appends the key of m's attrs to b: every field with its
// length, so that no two differ only in where one string ends.
func attrsKey(b []byte, m *Member, wide bool) []byte {
	str := func(b []byte, s string) []byte { return append(binary.AppendUvarint(b, uint64(len(s))), s...) }
	b = str(str(b, m.Source), m.Scheme)
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(m.Weight))
	if wide {
		b = binary.AppendVarint(append(b, 'w'), int64(m.Port))
	}
	return b
}

// tagsOf returns the pool's copy of a new member's tags: the previous new
// member's when they are equal (nil and empty differ: each is handed out
// as it was Set), else a clone. Members come in runs that share their
// tags (a source's, the anonymity level's), and a slice that no map keeps
// costs nothing once its members are gone. Writer side, p.mu held.
func (p *Pool) tagsOf(tags []string) []string {
	if (tags == nil) != (p.lastTags == nil) || !slices.Equal(tags, p.lastTags) {
		p.lastTags = slices.Clone(tags)
	}
	return p.lastTags
}

// releaseAttrs counts a removed slot out of its attrs, and forgets attrs
// no member uses any more (pickers reading an older snapshot still hold
// them). Writer side, p.mu held.
func (p *Pool) releaseAttrs(a *attrs) {
	if a.refs--; a.refs == 0 {
		delete(p.attrs, a.key)
	}
}

// SetStatus updates the status of a member already Set, keeping its
// Member (no copy, no comparison); it reports false for an unknown ID.
// Writer side.
func (p *Pool) SetStatus(id string, st Status) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.slots.Get(id)
	if s == nil {
		return false
	}
	p.setStatus(s, st)
	return true
}

// SetStatusIf is SetStatus for a member whose Member same accepts: it
// reports false, changing nothing, for an unknown ID or when same returns
// false. same is called with the pool's lock held and must not keep m or
// call the pool. It lets a caller check its member is still up to date
// against the pool's own copy instead of keeping one. Writer side.
func (p *Pool) SetStatusIf(id string, st Status, same func(m *Member) bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.slots.Get(id)
	if s == nil {
		return false
	}
	// same is shown the pool's Member (not one on the stack, which a
	// call through a func value would move to the heap at every call),
	// and it is cleared after: it must not hold a removed member's URL.
	p.scratchM = s.member()
	ok := same(&p.scratchM)
	p.scratchM = Member{}
	if !ok {
		return false
	}
	p.setStatus(s, st)
	return true
}

// setStatus stores a member's status; call with p.mu held.
func (p *Pool) setStatus(s *slot, st Status) {
	h := healthOf(st)
	s.stState = h.state
	s.set(fPaused, h.paused)
	s.set(fEjected, h.ejected)
	s.ewma.Store(int64(st.LatencyEWMA))
	s.rate.Store(math.Float64bits(st.SuccessRate))
	s.check.Store(st.Checks)
	s.cf.Store(st.ConsecutiveFailures)
	s.ls.Store(st.LastSuccess)
	if !s.is(fPublished) || p.classOf(h) != s.class() || s.state() != st.State {
		p.markPending(s)
	}
	if !s.is(fDirty) {
		s.set(fDirty, true)
		p.dirty = append(p.dirty, s)
	}
}

// memberGroups lists the groups the member of s is on: the whole pool,
// its source, its scheme and each of its tags (once).
func memberGroups(s *slot) []groupID {
	ids := []groupID{{kindAll, ""}, {kindSource, s.a.source}, {kindScheme, s.a.scheme}}
	for i, t := range s.tags {
		if !slices.Contains(s.tags[:i], t) {
			ids = append(ids, groupID{kindTag, t})
		}
	}
	return ids
}

// groupsOf yields the groups a member is on (memberGroups), as p.groups
// holds them. Set made them; a group is deleted only once no member is on
// it, so every group of a member that was not removed is there, and a
// removed member's are there until the Publish that takes it out.
func (p *Pool) groupsOf(s *slot) iter.Seq[*wgroup] {
	return func(yield func(*wgroup) bool) {
		for _, id := range [...]groupID{{kindAll, ""}, {kindSource, s.a.source}, {kindScheme, s.a.scheme}} {
			if g := p.groups[id]; g != nil && !yield(g) {
				return
			}
		}
		for i, t := range s.tags {
			if slices.Contains(s.tags[:i], t) {
				continue
			}
			if g := p.groups[groupID{kindTag, t}]; g != nil && !yield(g) {
				return
			}
		}
	}
}

func (p *Pool) markPending(s *slot) {
	if !s.is(fPending) {
		s.set(fPending, true)
		p.pending = append(p.pending, s)
	}
}

// Remove takes the member out at the next Publish. Removing an unknown ID
// does nothing. Writer side.
func (p *Pool) Remove(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.slots.Get(id); s != nil {
		p.removeLocked(s)
	}
}

func (p *Pool) removeLocked(s *slot) {
	p.slots.Delete(s.id)
	s.set(fRemoved, true)
	p.releaseAttrs(s.a)
	p.markPending(s)
}

// Panic returns the pool-wide panic state as of the last Publish.
func (p *Pool) Panic() PanicState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.panicState
}

// Publish makes the changes Set and Remove made since the last Publish
// visible to pickers, and reports whether the pool-wide panic mode turned
// on or off (see Panic). It rebuilds only the groups whose membership or
// usability changed; when only statistics changed it costs O(1) unless a
// statistics refresh is due (Options.StatsRefresh), which recomputes the
// groups holding the changed members. Writer side.
func (p *Pool) Publish() (panicChanged bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Time{}
	refresh := false
	if len(p.dirty) > 0 || p.staleLeft {
		if p.opt.StatsRefresh == 0 {
			refresh = true
		} else if now = p.now(); now.Sub(p.lastRefresh) >= p.opt.StatsRefresh {
			refresh = true
		}
	}
	rings := p.ringWanted.Swap(false)
	if len(p.pending) == 0 && !refresh && !rings {
		return false
	}
	if refresh {
		for _, s := range p.dirty {
			s.set(fDirty, false)
			for g := range p.groupsOf(s) {
				g.stale = !g.alias // an alias's statistics are the pool's
			}
		}
		p.dirty = trim(p.dirty)
		if !now.IsZero() {
			p.lastRefresh = now
		}
	}
	structural := len(p.pending) > 0
	for _, s := range p.pending {
		s.set(fPending, false)
		removed, published := s.is(fRemoved), s.is(fPublished)
		cls := clsRemoved
		if !removed {
			cls = p.classOf(s.health())
		}
		old := s.class() // the class in the current snapshot
		s.publish(cls, s.stState)
		if cls == old && published {
			continue
		}
		for g := range p.groupsOf(s) {
			switch {
			case !published && !removed:
				g.n++
				if !g.alias {
					g.added = append(g.added, s)
				}
			case published && removed:
				g.n--
				if !g.alias {
					g.gone = append(g.gone, s)
				}
			}
			g.dirty = g.dirty || !g.alias
		}
		s.set(fPublished, !removed)
	}
	p.pending = trim(p.pending)
	if structural {
		p.aliases()
	}
	if refresh {
		p.staleLeft = false
	}
	for id, g := range p.groups {
		if g.alias {
			continue // the pool's group is its group
		}
		if g.dirty {
			if now.IsZero() && p.opt.StatsRefresh > 0 {
				now = p.now()
			}
			g.rebuild(p, now)
			if len(g.cur.members) == 0 {
				delete(p.groups, id)
				continue
			}
		} else if g.stale && refresh {
			if p.opt.StatsRefresh > 0 && now.Sub(g.statsAt) < p.statsEvery(len(g.cur.members)) {
				p.staleLeft = true // not its turn yet; it stays stale
			} else {
				g.stale, g.statsAt = false, now
				g.cur.stats.Store(p.computeStats(g.cur))
			}
		}
		if rings && g.cur.ringH == nil && g.sh.wantRing.Load() {
			g.addRing(p)
			structural = true
		}
	}
	if structural {
		p.buildSnapshot()
	}
	all := p.snap.Load().all
	ps := PanicState{Active: all.panic, Usable: len(all.usable), Candidates: all.cands}
	changed := ps.Active != p.panicState.Active
	p.panicState = ps
	return changed
}

// aliases makes every group whose members are the whole pool's an alias
// of the pool's group, and gives a group that stops being one its own
// lists again (built from the members, at the rebuild that follows). Most
// pools have one source and one scheme, often tags every member has: at
// 100,000 members their groups would each cost what the pool's does at
// every Publish that rebuilds (a member's usability changed) and at every
// statistics refresh, and memory for their lists. The groups' member
// counts (n) are up to date (the pending changes were counted). Writer
// side, p.mu held.
func (p *Pool) aliases() {
	all := p.groups[groupID{kindAll, ""}]
	for id, g := range p.groups {
		if id.kind == kindAll {
			continue
		}
		same := all != nil && g.n > 0 && g.n == all.n
		switch {
		case same && !g.alias:
			g.alias, g.cur, g.dirty, g.stale = true, nil, false, false
			g.added, g.gone = trim(g.added), trim(g.gone)
		case !same && g.alias:
			// Its own lists again: every member, as added to an empty group.
			g.alias, g.cur, g.dirty = false, nil, true
			g.added, g.gone = trim(g.added), trim(g.gone)
			for s := range p.slots.All() {
				if s.is(fPublished) && onGroup(s, id) {
					g.added = append(g.added, s)
				}
			}
		}
	}
}

// onGroup reports whether the member of s is on group id (memberGroups
// says which groups those are).
func onGroup(s *slot, id groupID) bool {
	return slices.Contains(memberGroups(s), id)
}

func (p *Pool) buildSnapshot() {
	sn := &snapshot{
		bySource: map[string]*group{},
		byScheme: map[string]*group{},
		byTag:    map[string]*group{},
		thr:      p.opt.PanicThreshold,
		def:      p.opt.Strategy,
		replicas: p.replicas,
	}
	if all := p.groups[groupID{kindAll, ""}]; all != nil {
		sn.all = all.cur
	} else {
		sn.all = emptyGroup()
	}
	for id, g := range p.groups {
		cur := g.cur
		if g.alias {
			cur = sn.all
		}
		switch id.kind {
		case kindSource:
			sn.bySource[id.name] = cur
		case kindScheme:
			sn.byScheme[id.name] = cur
		case kindTag:
			sn.byTag[id.name] = cur
		}
	}
	p.snap.Store(sn)
}

func emptyGroup() *group {
	g := &group{sh: new(shared)}
	g.stats.Store(&groupStats{})
	return g
}

// addRing replaces g's group with one that has a ring (a sticky pick asked
// for it). The group is otherwise the same, its statistics included.
func (g *wgroup) addRing(p *Pool) {
	old := g.cur
	ng := &group{members: old.members, usable: old.usable, cands: old.cands, panic: old.panic, sh: old.sh}
	ng.ringH, ng.ringS = p.mergeRing(&group{}, old.members, nil)
	ng.stats.Store(old.stats.Load())
	g.cur = ng
}

// rebuild makes g a new immutable group from the members' classes: the
// member list and the ring change only when members joined or left; the
// usable list, counts, panic flag and statistics are recomputed.
func (g *wgroup) rebuild(p *Pool, now time.Time) {
	old := g.cur
	if old == nil {
		old = &group{}
	}
	ng := &group{sh: &g.sh}
	if len(g.added) > 0 || len(g.gone) > 0 {
		ng.members = make([]*slot, 0, len(old.members)+len(g.added))
		for _, s := range old.members {
			if !s.is(fRemoved) {
				ng.members = append(ng.members, s)
			}
		}
		ng.members = append(ng.members, g.added...)
		if old.ringH != nil { // rings are kept up to date once built
			ng.ringH, ng.ringS = p.mergeRing(old, g.added, g.gone)
		}
	} else {
		ng.members, ng.ringH, ng.ringS = old.members, old.ringH, old.ringS
	}
	n := 0
	for _, s := range ng.members {
		cls := s.class()
		if cls == clsUsable {
			n++
		}
		if cls != clsPaused {
			ng.cands++
		}
	}
	ng.usable = make([]*slot, 0, n)
	for _, s := range ng.members {
		if s.class() == clsUsable {
			ng.usable = append(ng.usable, s)
		}
	}
	ng.panic = inPanic(len(ng.usable), ng.cands, p.opt.PanicThreshold)
	ng.stats.Store(p.computeStats(ng))
	g.added, g.gone, g.dirty, g.stale, g.statsAt = trim(g.added), trim(g.gone), false, false, now
	g.cur = ng
}

// keepScratch is the capacity up to which a writer's work list is kept
// for the next Publish: a larger one (a pool's first Publish, a large
// addition) is dropped rather than held for good.
const keepScratch = 1024

// trim empties a work list of slots for reuse, or drops it when large.
func trim[T any](l []*T) []*T {
	if cap(l) > keepScratch {
		return nil
	}
	clear(l)
	return l[:0]
}

func inPanic(usable, cands int, thr float64) bool {
	return thr > 0 && cands > 0 && float64(usable) < thr*float64(cands)
}

// panicNeed is how many members the panic set should hold: the best
// ceil(threshold × candidates).
func panicNeed(cands int, thr float64) int {
	return int(math.Ceil(thr * float64(cands)))
}

// statsScale is the group size up to which a group's statistics are
// refreshed every StatsRefresh; a larger group's turn comes in proportion
// to its size (statsEvery).
const statsScale = 10_000

// statsEvery is how often a refresh recomputes the statistics of a group of
// n members: StatsRefresh up to statsScale members, then in proportion (10 s
// at 100,000 members with the default 1 s). A recomputation reads every
// member (about 100 ns each, most of it cache misses), and a pool's
// members are on several groups (the pool, their source, their scheme, their
// tags): at 100,000 members refreshing every second took about 4 % of the
// engine's CPU. Scaled, it costs the same share at any size. A statistic
// changes with a check, and a large pool is checked no more often than a
// small one (100,000 proxies every 60 s: 10 s is a sixth of an interval).
func (p *Pool) statsEvery(n int) time.Duration {
	d := p.opt.StatsRefresh
	if n <= statsScale {
		return d
	}
	return time.Duration(min(float64(d)*float64(n)/statsScale, math.MaxInt64/2))
}

// computeStats derives weights, the median latency and, in panic mode, the
// panic set from the members' current statistics.
func (p *Pool) computeStats(g *group) *groupStats {
	st := &groupStats{prefix: make([]float64, len(g.usable))}
	// Weights: the success rate; members without checks get the mean of
	// those with (1 when none has any); a floor keeps every usable member
	// reachable.
	sum, known := 0.0, 0
	for _, s := range g.usable {
		if s.check.Load() > 0 {
			sum += math.Float64frombits(s.rate.Load())
			known++
		}
	}
	neutral := 1.0
	if known > 0 {
		neutral = sum / float64(known)
	}
	total := 0.0
	lat := p.scratchL[:0]
	for i, s := range g.usable {
		w := neutral
		if s.check.Load() > 0 {
			w = math.Float64frombits(s.rate.Load())
		}
		total += weightOf(w) * memberWeight(s.a.weight)
		st.prefix[i] = total
		if e := s.ewma.Load(); e > 0 {
			lat = append(lat, e)
		}
	}
	if len(lat) > 0 {
		k := len(lat) / 2
		st.median = quickselect(lat, k)
	}
	p.scratchL = lat[:0]
	if g.panic {
		var ok bool
		p.scratchK, st.cut, ok = panicCut(g.members, len(g.usable), panicNeed(g.cands, p.opt.PanicThreshold), nil, p.scratchK)
		st.cutOK = ok
		for _, s := range g.members {
			switch s.class() {
			case clsUsable:
				st.panicSet = append(st.panicSet, s)
			case clsEligible:
				if ok && !s.key().worse(st.cut) {
					st.panicSet = append(st.panicSet, s)
				}
			}
		}
	}
	return st
}

// minWeight keeps members with a success rate of 0 reachable.
const minWeight = 0.01

// memberWeight is a member's own weight: 0 (unset), negative or not a
// number count as 1.
func memberWeight(w float64) float64 {
	if !(w > 0) || math.IsInf(w, 0) {
		return 1
	}
	return w
}

func weightOf(rate float64) float64 {
	if !(rate >= minWeight) { // also NaN
		return minWeight
	}
	return min(rate, 1)
}

type ranked struct {
	k rankKey
}

// panicCut returns the rank of the worst eligible member the panic set
// takes: usable members count first, then the eligible (not usable, not
// failed, not paused) ones by rank, until need members are in. Members
// tied with the last one taken are in too. Only members f accepts count
// (f nil: all). ok is false when no eligible member is needed or there is
// none.
func panicCut(members []*slot, usable, need int, f *filter, scratch []ranked) ([]ranked, rankKey, bool) {
	k := need - usable
	if k <= 0 {
		return scratch, rankKey{}, false
	}
	buf := scratch[:0]
	for _, s := range members {
		if s.class() == clsEligible && (f == nil || f.matches(s)) {
			buf = append(buf, ranked{s.key()})
		}
	}
	if len(buf) == 0 {
		return buf, rankKey{}, false
	}
	slices.SortFunc(buf, func(a, b ranked) int {
		if c := cmp.Compare(a.k.cf, b.k.cf); c != 0 {
			return c
		}
		return cmp.Compare(b.k.ls, a.k.ls)
	})
	return buf, buf[min(k, len(buf))-1].k, true
}

// quickselect returns the k-th smallest of a (reordering a).
func quickselect(a []int64, k int) int64 {
	lo, hi := 0, len(a)-1
	for lo < hi {
		pv := a[lo+(hi-lo)/2]
		i, j := lo, hi
		for i <= j {
			for a[i] < pv {
				i++
			}
			for a[j] > pv {
				j--
			}
			if i <= j {
				a[i], a[j] = a[j], a[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return a[k]
		}
	}
	return a[k]
}

type ringPoint struct {
	h uint64
	s *slot
}

func comparePoints(a, b ringPoint) int {
	if c := cmp.Compare(a.h, b.h); c != 0 {
		return c
	}
	return cmp.Compare(a.s.id, b.s.id)
}

// mergeRing returns old's ring without the points of the members gone and
// with the points of the members added. It finds the points to drop and
// the places to insert by binary search and copies the runs between them
// in bulk: linear in the ring's size, but a memory copy, not a walk over
// the members.
func (p *Pool) mergeRing(old *group, added, gone []*slot) ([]uint64, []*slot) {
	hs, ss := old.ringH, old.ringS
	var drop []int
	for _, s := range gone {
		base := hashString(s.id)
		for i := range p.replicas {
			h := pointHash(base, i)
			for j, _ := slices.BinarySearch(hs, h); j < len(hs) && hs[j] == h; j++ {
				if ss[j] == s {
					drop = append(drop, j)
				}
			}
		}
	}
	slices.Sort(drop)
	fresh := make([]ringPoint, 0, len(added)*p.replicas)
	for _, s := range added {
		base := hashString(s.id)
		for i := range p.replicas {
			fresh = append(fresh, ringPoint{pointHash(base, i), s})
		}
	}
	slices.SortFunc(fresh, comparePoints)
	n := len(hs) - len(drop) + len(fresh)
	nh, ns := make([]uint64, 0, n), make([]*slot, 0, n)
	i, d, f := 0, 0, 0 // cursors: old ring, drop, fresh
	for d < len(drop) || f < len(fresh) {
		// The next place something happens in the old ring.
		at, ins := len(hs), len(hs)
		if f < len(fresh) {
			x := fresh[f]
			ins = i + sort.Search(len(hs)-i, func(k int) bool { return comparePoints(ringPoint{hs[i+k], ss[i+k]}, x) > 0 })
			at = ins
		}
		if d < len(drop) && drop[d] < at {
			at = drop[d]
		}
		nh, ns = append(nh, hs[i:at]...), append(ns, ss[i:at]...)
		i = at
		if f < len(fresh) && ins == at {
			nh, ns = append(nh, fresh[f].h), append(ns, fresh[f].s)
			f++
			continue
		}
		i++ // drop hs[at]
		d++
	}
	nh, ns = append(nh, hs[i:]...), append(ns, ss[i:]...)
	return nh, ns
}

// hashString is 64-bit FNV-1a, allocation-free.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return mix(h)
}

// pointHash is the i-th ring point of a member whose ID hashes to base.
func pointHash(base uint64, i int) uint64 {
	return mix(base + uint64(i+1)*0x9e3779b97f4a7c15)
}

// mix is splitmix64's finalizer: FNV's low bits are weak.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
