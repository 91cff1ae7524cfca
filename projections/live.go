package projections

import (
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/events/packed"
	"github.com/proxyhealth/proxyhealth/internal/idindex"
	"github.com/proxyhealth/proxyhealth/projections/internal/fold"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// Defaults of LiveOptions.
const (
	// DefaultStateChangeCap is how many transitions are kept per proxy.
	DefaultStateChangeCap = 16
	// EWMAAlpha is the weight of the newest sample in the latency EWMA
	// (events.EWMAAlpha: the EWMA is part of a proxy's folded state).
	EWMAAlpha = events.EWMAAlpha
)

// LiveOptions configures NewLive. The zero value is valid.
type LiveOptions struct {
	// Clock returns "now" for the success-rate windows. When nil,
	// now is the time of the newest applied event, so that a rebuild gives
	// the same answers as the live run.
	Clock func() time.Time
	// Snapshots loads a proxy's latest snapshot (journal.Journal's
	// LoadSnapshot fits). It is consulted when an event arrives for a proxy
	// whose ProxyAdded was deleted by journal retention; without it such a
	// proxy is shown with only what its retained events say. It must be fast
	// (a local read): the feeder calls it.
	Snapshots func(ctx context.Context, proxyID string) (*pb.ProxySnapshot, error)
	// StateChangeCap bounds the transitions kept per proxy (default 16).
	StateChangeCap int
}

func (o LiveOptions) withDefaults() LiveOptions {
	if o.StateChangeCap <= 0 {
		o.StateChangeCap = DefaultStateChangeCap
	}
	return o
}

// Live is the in-memory projection of the journal: the status of every proxy
// and of the pool, kept up to date by one feeder goroutine calling Apply in
// seq order. Queries are safe concurrently with Apply; they hold a read lock
// only for short, bounded critical sections, so they never hold up the feeder
// for long. Aggregates are maintained incrementally: Summary costs
// O(sources), not O(proxies).
type Live struct {
	opts LiveOptions

	mu       sync.RWMutex
	entries  idindex.Index[entry, *entry] // written only by the feeder, under mu
	all      []*entry                     // every entry, unsorted; entry.idx is the position
	members  uint64                       // bumped whenever a proxy appears or disappears
	global   agg
	sources  map[string]*agg
	names    []string            // sorted source names
	loose    map[string]*Tracker // trackers of proxies without an entry (not added yet, or removed while an actor holds them)
	seq      uint64
	lastAt   int64 // time of the last applied event
	newestAt int64 // newest event time applied
	pool     poolStatus
	panic    bool // the last PoolPanicEntered/Left said panic

	reasons reasonCache // written only by the feeder

	sorted   atomic.Pointer[sortedIndex]
	nSources atomic.Int64 // len(names), readable without mu
}

// poolStatus is the last pool-level event.
type poolStatus struct {
	degraded   bool
	at         int64
	pct, thres float64
}

// sortedIndex is an immutable list of entries sorted by ID, valid for the
// membership version it was built at.
type sortedIndex struct {
	version uint64
	entries []*entry
}

// NewLive returns an empty live projection.
func NewLive(opts LiveOptions) *Live {
	return &Live{
		opts:    opts.withDefaults(),
		sources: make(map[string]*agg),
		loose:   make(map[string]*Tracker),
		reasons: reasonCache{seed: maphash.MakeSeed()},
	}
}

// Apply folds committed envelopes into the projection, in seq order.
// Envelopes with a seq at or below the last applied one (and envelopes
// without a seq, which were never committed) are ignored, so re-applying is
// harmless. Apply must be called from one goroutine at a time.
//
// Consecutive envelopes of one proxy (the events of one decision, such as
// ProxyAdded and the ProxyAdopted that continues another member's state)
// are applied under one lock: a query never sees the proxy between them
// (unknown for an instant in a takeover). Other proxies' envelopes
// release the lock in between, so a big batch does not hold queries up.
func (l *Live) Apply(envs ...*pb.Envelope) {
	for len(envs) > 0 {
		n := l.applyRun(envs)
		envs = envs[n:]
	}
}

// applyRun applies envs[0] and the envelopes of the same proxy that follow
// it under one lock, and returns how many it applied. It stops early at
// an envelope that needs its proxy's base state read first (the proxy has
// no entry: it was removed within the run), which is read without the
// lock.
func (l *Live) applyRun(envs []*pb.Envelope) int {
	var p prepared
	l.prepare(envs[0], &p)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.applyLocked(envs[0], &p)
	id := envs[0].GetProxyId()
	n := 1
	for ; id != "" && n < len(envs) && envs[n].GetProxyId() == id; n++ {
		if p.e = l.entries.Get(id); p.e == nil {
			break
		}
		// With an entry, applyLocked reads neither base nor skip: p is
		// reused as it is, not zeroed (its base is a whole State).
		l.applyLocked(envs[n], &p)
	}
	return n
}

// prepared is what applying an envelope needs to look up before it takes
// the lock: its proxy's entry and, for a proxy without one, the state its
// stream starts from.
type prepared struct {
	e    *entry
	base events.State
	skip bool
}

// prepare fills p for env (the zero p for an envelope already applied).
func (l *Live) prepare(env *pb.Envelope, p *prepared) {
	seq := env.GetSeq()
	if seq == 0 || seq <= l.seq { // l.seq is written only by the feeder
		return
	}
	id := env.GetProxyId()
	if id != "" { // the feeder is the only writer of entries, so it stays
		p.e = l.entries.Get(id)
	}
	if id != "" && p.e == nil {
		var err error
		p.base, p.skip, err = fold.Base(context.Background(), l.opts.Snapshots, env)
		if err != nil {
			p.base, p.skip, _ = fold.Base(context.Background(), nil, env)
		}
	}
}

// SkipTo records that every event up to seq is accounted for without
// being applied: retention deleted them, and the proxies' snapshots cover
// them (Seed). The live status then counts as caught up with seq, so that
// nothing waits for events that are gone. It never moves back. Call it
// from the goroutine that applies (or before it starts).
func (l *Live) SkipTo(seq uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq = max(l.seq, seq)
}

// applyLocked applies one envelope with l.mu held; p is its prepare (for
// a proxy with an entry, the entry is enough).
func (l *Live) applyLocked(env *pb.Envelope, p *prepared) {
	seq := env.GetSeq()
	if seq == 0 || seq <= l.seq {
		return
	}
	id := env.GetProxyId()
	e, skip := p.e, p.skip
	l.seq = seq
	at := env.GetAtUnixNano()
	l.lastAt = at
	l.newestAt = max(l.newestAt, at)
	switch ev := env.GetEvent().(type) {
	case *pb.Envelope_PoolDegraded:
		l.pool = poolStatus{degraded: true, at: at, pct: ev.PoolDegraded.GetHealthyPercentage(), thres: ev.PoolDegraded.GetThresholdPercentage()}
		return
	case *pb.Envelope_PoolRecovered:
		l.pool = poolStatus{degraded: false, at: at, pct: ev.PoolRecovered.GetHealthyPercentage(), thres: ev.PoolRecovered.GetThresholdPercentage()}
		return
	case *pb.Envelope_SourceRefreshed:
		a := l.sourceAgg(env.GetSource())
		a.refresh.last, a.refresh.err, a.refresh.held = at, "", false
		return
	case *pb.Envelope_SourceRefreshFailed:
		a := l.sourceAgg(env.GetSource())
		a.refresh.errAt, a.refresh.err = at, ev.SourceRefreshFailed.GetError()
		return
	case *pb.Envelope_SourceShrinkHeld:
		a := l.sourceAgg(env.GetSource())
		a.refresh.held = true
		a.refresh.errAt = at
		a.refresh.err = fmt.Sprintf("the list shrank from %d to %d proxies (more than the shrink guard, %g%%): held until confirmed (POST /v1/sources/%s/confirm) or seen again",
			ev.SourceShrinkHeld.GetPrevious(), ev.SourceShrinkHeld.GetOffered(), ev.SourceShrinkHeld.GetShrinkGuard()*100, env.GetSource())
		return
	case *pb.Envelope_PoolPanicEntered:
		l.panic = true
		return
	case *pb.Envelope_PoolPanicLeft:
		l.panic = false
		return
	}
	if id == "" {
		return
	}
	isNew := e == nil
	covered := skip
	var st events.State
	if isNew {
		e = &entry{id: id, rates: newRates()}
		st = p.base
	} else {
		st = e.st.Unpack(e.id)
		covered = fold.Covered(st, env)
		l.contribute(e, -1)
	}
	l.record(e, &st, env, covered)
	if st.Removed {
		if !isNew {
			l.drop(e)
		}
		return
	}
	if isNew {
		l.insert(e)
	}
	l.contribute(e, 1)
}

// reasonCache shares the reasons of state changes between the proxies,
// and the transitions, that give the same one. Every event carries its
// own copy of its reason (made by the proxy's actor, or decoded from the
// journal), which a proxy's last transitions would keep; yet most reasons
// are one of a few phrases ("2 consecutive successes (threshold 2)"). It
// is direct-mapped and holds only short reasons, so that it stays small
// (4 KB of slots; up to 16 KB of reasons) whatever reasons come; a reason
// evicted from it stays shared by the transitions that took it.
type reasonCache struct {
	seed  maphash.Seed
	slots [reasonSlots]string
}

// reasonSlots is the number of reasons the cache holds; maxSharedReason
// the length of the longest.
const (
	reasonSlots     = 256
	maxSharedReason = 64
)

// share returns the copy of reason r the cache holds, keeping r in its
// place when it holds none.
func (c *reasonCache) share(r string) string {
	if r == "" || len(r) > maxSharedReason {
		return r
	}
	slot := &c.slots[maphash.String(c.seed, r)%reasonSlots]
	if *slot == r {
		return *slot
	}
	*slot = r
	return r
}

// insert registers a new entry (with l.mu held).
func (l *Live) insert(e *entry) {
	e.idx = int32(len(l.all))
	l.all = append(l.all, e)
	l.entries.Put(e)
	l.members++
	if t := l.loose[e.id]; t != nil {
		delete(l.loose, e.id)
		t.attach(e)
	}
}

// Seed adds proxies known only from their snapshots: proxies whose every
// event journal retention deleted (a proxy quiet for longer than the
// retention period). Proxies already known, and removed ones, are skipped.
// Like Apply, it must be called from the feeder (before it starts, or on
// its goroutine).
func (l *Live) Seed(snaps ...*pb.ProxySnapshot) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, snap := range snaps {
		id := snap.GetProxyId()
		if id == "" || l.entries.Get(id) != nil || snap.GetRemoved() {
			continue
		}
		st := events.FromSnapshot(snap)
		src := l.sourceAgg(st.Source)
		st.Source = src.name // as record does
		e := &entry{id: id, st: packed.Pack(&st, id), rates: newRates(), src: src}
		l.insert(e)
		l.contribute(e, 1)
	}
}

// record folds env into e (unless covered) and keeps its history; st is
// e's state unpacked, which record updates and packs into e.
func (l *Live) record(e *entry, st *events.State, env *pb.Envelope, covered bool) {
	at := env.GetAtUnixNano()
	switch ev := env.GetEvent().(type) {
	case *pb.Envelope_CheckSucceeded:
		l.check(e, at, true)
		e.lastOK = max(e.lastOK, at)
	case *pb.Envelope_CheckFailed:
		l.check(e, at, false)
	case *pb.Envelope_StateChanged:
		c := ev.StateChanged
		e.changes.push(stateChange{at: at, seq: env.GetSeq(), reason: l.reasons.share(c.GetReason()), attempt: c.GetRecoveryAttempt(),
			from: uint8(stateIndex(c.GetFrom())), to: uint8(stateIndex(c.GetTo()))}, l.opts.StateChangeCap)
	case *pb.Envelope_ProxyAdded:
		if !covered { // a re-added proxy starts afresh
			e.changes = ring[stateChange]{}
			e.rates = newRates()
			e.lastOK = 0
		}
	}
	if !covered {
		*st = events.Evolve(*st, env)
	}
	if e.src == nil || e.src.name != st.Source {
		src := l.sourceAgg(st.Source)
		if t := e.fl; t != nil {
			t.moveTo(e, src)
		} else {
			e.src = src
		}
	}
	src := e.src
	// The state keeps its source's name, not the event's copy of it: the
	// events of a replayed journal are decoded one by one, each with its own.
	st.Source = src.name
	e.st.Repack(st, e.id)
	switch env.GetEvent().(type) {
	case *pb.Envelope_CheckSucceeded, *pb.Envelope_CheckFailed:
		l.global.lastCheck = max(l.global.lastCheck, at)
		src.lastCheck = max(src.lastCheck, at)
	}
}

// check counts one check result in the success-rate buckets.
func (l *Live) check(e *entry, at int64, ok bool) {
	e.rates.add(at, ok)
}

// contribute adds (1) or removes (-1) e from the pool and source counts.
func (l *Live) contribute(e *entry, sign int) {
	l.global.add(e, sign)
	e.src.add(e, sign)
}

// drop forgets a removed proxy.
func (l *Live) drop(e *entry) {
	e.removed = true
	last := l.all[len(l.all)-1]
	l.all[e.idx] = last
	last.idx = e.idx
	l.all[len(l.all)-1] = nil
	l.all = l.all[:len(l.all)-1]
	l.entries.Delete(e.id)
	l.members++
	if t := e.fl; t != nil {
		t.detach()
		if t.holders > 0 { // its actor goes on (a re-added proxy's new one, or the old one retiring)
			l.loose[e.id] = t
		}
	}
}

func (l *Live) sourceAgg(name string) *agg {
	a := l.sources[name]
	if a == nil {
		a = &agg{name: name}
		l.sources[name] = a
		i, _ := slices.BinarySearch(l.names, name)
		l.names = slices.Insert(l.names, i, name)
		l.nSources.Store(int64(len(l.names)))
	}
	return a
}

// SetChecking sets a proxy's "checking" flag (a check in flight), which is
// not journaled: the engine reports it. A flag reported before the proxy's
// ProxyAdded is applied is kept until it is. It looks the proxy up by ID;
// an actor that reports often holds a Tracker instead (Track).
func (l *Live) SetChecking(proxyID string, on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.trackerLocked(proxyID)
	t.SetChecking(on)
	l.forgetLocked(t)
}

// SetNextCheck records when the proxy's actor will check it next (its real
// schedule; zero when none is scheduled, as while paused or a check is in
// flight). Like the checking flag it is reported by the engine, not
// journaled, and looked up by ID (see Track).
func (l *Live) SetNextCheck(proxyID string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.trackerLocked(proxyID)
	t.SetNextCheck(at)
	l.forgetLocked(t)
}

// Track returns the tracker of a proxy's engine-reported flags (checking,
// next check), for its actor to report through without looking the proxy
// up under the projection's lock three times a check. The caller holds
// the tracker until it calls Release; every proxy has at most one tracker
// at a time, shared by its holders (an actor and its restarted
// incarnation; a removed proxy's retiring actor and its re-added one).
func (l *Live) Track(proxyID string) *Tracker {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.trackerLocked(proxyID)
	t.holders++
	return t
}

// trackerLocked returns proxyID's tracker, making one if it has none; mu
// must be held for writing.
func (l *Live) trackerLocked(id string) *Tracker {
	if e := l.entries.Get(id); e != nil {
		if e.fl == nil {
			t := &Tracker{l: l}
			t.attach(e)
		}
		return e.fl
	}
	t := l.loose[id]
	if t == nil {
		t = &Tracker{l: l, id: &id} // id escapes: a loose tracker holds it
		l.loose[id] = t
	}
	return t
}

// forgetLocked drops a loose tracker that no actor holds and that reports
// nothing (the flags a proxy without an entry had are cleared); mu must be
// held for writing.
func (l *Live) forgetLocked(t *Tracker) {
	if t.holders == 0 && t.e == nil && !t.checking.Load() && t.next.Load() == 0 && l.loose[*t.id] == t {
		delete(l.loose, *t.id)
	}
}

// Tracker carries one proxy's flags that the engine reports and the journal
// does not hold: whether a check is in flight, and when the next one is
// due. Its setters take neither the projection's lock nor a lookup by ID,
// so that an actor reports them at the cost of an uncontended mutex; the
// live status reads them with its queries. Get one with Live.Track.
type Tracker struct {
	l *Live
	// id is the proxy's ID, guarded by Live.mu. It points to the ID of the
	// entry the tracker was last attached to (its own copy while it never
	// was), not to a string of its own: 48 bytes instead of 64, a size
	// class less for every tracked proxy. A removed proxy's entry thus
	// stays in memory while the tracker is held without another entry: a
	// retiring actor's while, or until the proxy's re-added entry takes it.
	id *string
	// mu orders the checking flag's changes with the entry's attachment,
	// so that the checking counts of the pool and of the entry's source
	// count exactly the attached entries whose flag is on.
	mu       sync.Mutex
	e        *entry       // the proxy's entry (guarded by mu and Live.mu: written under both)
	next     atomic.Int64 // unix ns; 0: none
	checking atomic.Bool
	holders  int32 // Track calls not yet released; guarded by Live.mu
}

// SetChecking sets the flag of a check in flight.
func (t *Tracker) SetChecking(on bool) {
	t.mu.Lock()
	if t.checking.Load() != on {
		t.checking.Store(on)
		if e := t.e; e != nil {
			d := int64(-1)
			if on {
				d = 1
			}
			t.l.global.checking.Add(d)
			e.src.checking.Add(d)
		}
	}
	t.mu.Unlock()
}

// SetNextCheck records the next check's due time (zero: none scheduled).
func (t *Tracker) SetNextCheck(at time.Time) {
	var n int64
	if !at.IsZero() {
		n = at.UnixNano()
	}
	t.next.Store(n)
}

// Release ends the caller's hold (one per Track). A released tracker's
// flags stay on its proxy's entry; a proxy without one forgets them once
// nothing holds them.
func (t *Tracker) Release() {
	l := t.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.holders > 0 {
		t.holders--
	}
	if t.holders == 0 && t.e == nil && l.loose[*t.id] == t {
		delete(l.loose, *t.id)
	}
}

// attach makes t the tracker of the new entry e, counting its flag; Live.mu
// must be held for writing.
func (t *Tracker) attach(e *entry) {
	t.mu.Lock()
	// Pointing id to the new entry's ID lets go of the entry it was
	// detached from (or of the tracker's own copy).
	t.e, e.fl, t.id = e, t, &e.id
	if t.checking.Load() {
		t.l.global.checking.Add(1)
		e.src.checking.Add(1)
	}
	t.mu.Unlock()
}

// detach parts t from its entry (the proxy was removed), uncounting its
// flag; Live.mu must be held for writing.
func (t *Tracker) detach() {
	t.mu.Lock()
	if e := t.e; e != nil && t.checking.Load() {
		t.l.global.checking.Add(-1)
		e.src.checking.Add(-1)
	}
	t.e = nil
	t.mu.Unlock()
}

// moveTo moves t's entry e to the source src, its flag's count with it;
// Live.mu must be held for writing.
func (t *Tracker) moveTo(e *entry, src *agg) {
	t.mu.Lock()
	if e.src != nil && t.e == e && t.checking.Load() {
		e.src.checking.Add(-1)
		src.checking.Add(1)
	}
	e.src = src
	t.mu.Unlock()
}

// Seq returns the seq of the last applied envelope.
func (l *Live) Seq() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.seq
}

// now returns the reference time of the windows; mu must be held.
func (l *Live) now() int64 {
	if l.opts.Clock != nil {
		return l.opts.Clock().UnixNano()
	}
	return l.newestAt
}
