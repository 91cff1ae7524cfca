package projections

import (
	"cmp"
	"slices"
	"time"

	"github.com/proxyhealth/proxyhealth/events"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// ProxyView is the live status of one proxy.
type ProxyView struct {
	ID          string `json:"id"`
	URLRedacted string `json:"url_redacted"`
	Source      string `json:"source"`
	// State is the lowercase health state: unknown, healthy, degraded,
	// unhealthy, recovering or failed.
	State string `json:"state"`
	// Checking is true while a check is in flight (reported by the engine).
	Checking bool `json:"checking"`
	Paused   bool `json:"paused"`
	// Tags and Weight are the proxy's metadata from its list or the
	// configuration (weight 0: unset, counts as 1).
	Tags   []string `json:"tags,omitempty"`
	Weight float64  `json:"weight,omitempty"`
	// ExitIP and Anonymity (transparent, anonymous, elite) are what the
	// source's echo target last saw through the proxy; empty without one.
	ExitIP    string `json:"exit_ip,omitempty"`
	Anonymity string `json:"anonymity,omitempty"`
	// Ejected is true while passive outlier detection holds the proxy out
	// of rotation (real traffic through it failed), until EjectedUntil.
	Ejected      bool      `json:"ejected"`
	EjectedUntil time.Time `json:"ejected_until,omitzero"`

	ConsecutiveSuccesses uint32 `json:"consecutive_successes"`
	ConsecutiveFailures  uint32 `json:"consecutive_failures"`
	RecoveryAttempt      uint32 `json:"recovery_attempt"`
	TotalChecks          uint64 `json:"total_checks"`
	TotalFailures        uint64 `json:"total_failures"`

	AddedAt      time.Time `json:"added_at,omitzero"`
	LastCheckAt  time.Time `json:"last_check_at,omitzero"`
	LastChangeAt time.Time `json:"last_change_at,omitzero"`
	// LastSuccessAt is the time of the last passed check this status has
	// seen (zero: none since it was added or since retention).
	LastSuccessAt time.Time `json:"last_success_at,omitzero"`
	// LastErrorClass and LastError describe the last failed check (they are
	// kept after later successes).
	LastErrorClass string `json:"last_error_class,omitempty"`
	LastError      string `json:"last_error,omitempty"`
	LastStatusCode uint32 `json:"last_status_code,omitempty"`
	// LastLatency is the total latency of the last check, passed or failed.
	LastLatency time.Duration `json:"last_latency_ns"`
	// LatencyEWMA is the exponentially weighted moving average (alpha 0.2)
	// of the total latency of passed checks; zero before the first one.
	LatencyEWMA time.Duration `json:"latency_ewma_ns,omitempty"`

	// SuccessRate1h and SuccessRate24h are the shares (0..1) of passed
	// checks over the last hour (12 five-minute buckets) and the last 24
	// hours (24 hourly buckets), each window ending with the bucket holding
	// now; 0 when Checks1h / Checks24h is 0.
	SuccessRate1h  float64 `json:"success_rate_1h"`
	Checks1h       uint32  `json:"checks_1h"`
	SuccessRate24h float64 `json:"success_rate_24h"`
	Checks24h      uint32  `json:"checks_24h"`

	// NextCheckAt is when the proxy's actor will check it next: its real
	// due time, jitter and backoff included, as the engine reports it (Live.
	// SetNextCheck; a time before now means it waits for a check slot).
	// Zero when none is scheduled (paused, failed, a check in flight) and
	// in a status folded offline, where no actor runs.
	NextCheckAt time.Time `json:"next_check_at,omitzero"`
	// Seq is the global seq of the proxy's last event.
	Seq uint64 `json:"seq"`
}

// Counts are the counts of a set of proxies. Total is always the sum of the
// six state counts; Checking, Paused and Ejected are flags that overlap
// them.
type Counts struct {
	Unknown    int `json:"unknown"`
	Healthy    int `json:"healthy"`
	Degraded   int `json:"degraded"`
	Unhealthy  int `json:"unhealthy"`
	Recovering int `json:"recovering"`
	Failed     int `json:"failed"`
	Checking   int `json:"checking"`
	Paused     int `json:"paused"`
	// Ejected counts the proxies passive outlier detection holds out of
	// rotation.
	Ejected int `json:"ejected"`
	Total   int `json:"total"`
	// HealthPercentage is Healthy / Total × 100, 0 when Total is 0.
	HealthPercentage float64 `json:"health_percentage"`
}

// Add adds o's counts to c (not the percentage: it is recomputed from
// the sums).
func (c *Counts) Add(o Counts) {
	c.Unknown += o.Unknown
	c.Healthy += o.Healthy
	c.Degraded += o.Degraded
	c.Unhealthy += o.Unhealthy
	c.Recovering += o.Recovering
	c.Failed += o.Failed
	c.Checking += o.Checking
	c.Paused += o.Paused
	c.Ejected += o.Ejected
	c.Total += o.Total
	c.HealthPercentage = 0
	if c.Total > 0 {
		c.HealthPercentage = float64(c.Healthy) / float64(c.Total) * 100
	}
}

// SourceSummary is the status of one source.
type SourceSummary struct {
	Name string `json:"name"`
	Counts
	// AvgLatency is the mean of the latency EWMAs of the source's proxies
	// that have one; 0 when none has.
	AvgLatency time.Duration `json:"avg_latency_ns"`
	// LastCheckAt is the time of the newest check in the source.
	LastCheckAt time.Time `json:"last_check_at,omitzero"`
	// LastRefresh is when the source's list (a URL or a watched file) was
	// last read and applied; LastError and LastErrorAt the last failure to
	// read it (cleared by the next good refresh; the last good list stays
	// in force); HeldList is true while a list that shrank by more than the
	// shrink guard is held, waiting for confirmation.
	LastRefresh time.Time `json:"last_refresh,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	HeldList    bool      `json:"held_list,omitempty"`
}

// Summary is the status of the whole pool.
type Summary struct {
	Counts
	AvgLatency  time.Duration `json:"avg_latency_ns"`
	LastCheckAt time.Time     `json:"last_check_at,omitzero"`
	// Seq is the journal seq applied; UpdatedAt the time of that event.
	Seq       uint64    `json:"seq"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	// PoolDegraded reflects the last PoolDegraded/PoolRecovered event.
	PoolDegraded bool `json:"pool_degraded"`
	// PanicMode reflects the last PoolPanicEntered/PoolPanicLeft event:
	// too few proxies are usable, so pickers hand out the least-bad ones.
	PanicMode bool `json:"panic_mode"`
	// Sources lists the sources with at least one proxy, by name.
	Sources []SourceSummary `json:"sources"`
}

// Summary returns the pool's aggregates in O(sources), with one
// allocation made before taking the read lock.
func (l *Live) Summary() Summary {
	return l.AppendSummary(make([]SourceSummary, 0, l.nSources.Load()+1))
}

// AppendSummary is Summary with the sources' summaries appended to src[:0]
// (grown if it is too short): a caller that serves summaries over and over
// (the HTTP API's GET /v1/pool) reuses one slice instead of allocating one
// per call. The returned Summary's Sources shares src's array.
func (l *Live) AppendSummary(src []SourceSummary) Summary {
	src = src[:0]
	l.mu.RLock()
	s := Summary{
		Counts:       l.global.counts(),
		AvgLatency:   l.global.avgLatency(),
		LastCheckAt:  timeOrZero(l.global.lastCheck),
		Seq:          l.seq,
		UpdatedAt:    timeOrZero(l.lastAt),
		PoolDegraded: l.pool.degraded,
		PanicMode:    l.panic,
	}
	for _, n := range l.names {
		if a := l.sources[n]; a.total > 0 || a.refresh != (sourceRefresh{}) {
			src = append(src, SourceSummary{Name: n, Counts: a.counts(), AvgLatency: a.avgLatency(), LastCheckAt: timeOrZero(a.lastCheck),
				LastRefresh: timeOrZero(a.refresh.last), LastError: a.refresh.err, LastErrorAt: timeOrZero(a.refresh.errAt),
				HeldList: a.refresh.held})
		}
	}
	l.mu.RUnlock()
	s.Sources = src
	return s
}

// Counts returns the pool-wide counts of Summary alone: no per-source
// summaries, no allocation.
func (l *Live) Counts() Counts {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.global.counts()
}

// Proxy returns the status of one proxy; false if it is unknown or removed.
func (l *Live) Proxy(id string) (ProxyView, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	e := l.entries.Get(id)
	if e == nil {
		return ProxyView{}, false
	}
	return l.view(e, l.now()), true
}

// Knows reports whether the live status holds the proxy (known and not
// removed): Proxy without building the view.
func (l *Live) Knows(id string) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.entries.Get(id) != nil
}

// State returns the folded state of one proxy; false if it is unknown or
// removed.
func (l *Live) State(id string) (events.State, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	e := l.entries.Get(id)
	if e == nil {
		return events.State{}, false
	}
	return e.st.Unpack(e.id), true
}

// view builds e's ProxyView; mu must be held.
func (l *Live) view(e *entry, now int64) ProxyView {
	st := e.st.Unpack(e.id)
	s := &st
	v := ProxyView{
		ID: e.id, URLRedacted: s.URLRedacted, Source: s.Source, State: events.StateName(s.Health),
		Checking: e.fl != nil && e.fl.checking.Load(), Paused: s.Paused, Ejected: s.Ejected(), EjectedUntil: s.EjectedUntil,
		Tags: s.TagList(), Weight: s.Weight, ExitIP: s.ExitIP, Anonymity: events.AnonymityName(s.Anonymity),
		ConsecutiveSuccesses: s.ConsecutiveSuccesses, ConsecutiveFailures: s.ConsecutiveFailures,
		RecoveryAttempt: s.RecoveryAttempt, TotalChecks: s.TotalChecks, TotalFailures: s.TotalFailures,
		AddedAt: s.AddedAt, LastCheckAt: s.LastCheckAt, LastChangeAt: s.LastChangeAt,
		LastErrorClass: events.ClassName(s.LastErrorClass), LastError: s.LastError, LastStatusCode: s.LastStatusCode,
		LastLatency: s.LastLatency.Total, Seq: s.Seq,
	}
	if s.HasLatencyEWMA {
		v.LatencyEWMA = s.LatencyEWMA
	}
	if e.lastOK != 0 {
		v.LastSuccessAt = time.Unix(0, e.lastOK).UTC()
	}
	var ok uint32
	ok, v.Checks1h = e.rates.fine(now)
	v.SuccessRate1h = ratio(ok, v.Checks1h)
	ok, v.Checks24h = e.rates.hour(now)
	v.SuccessRate24h = ratio(ok, v.Checks24h)
	if e.fl != nil {
		if next := e.fl.next.Load(); next != 0 {
			v.NextCheckAt = time.Unix(0, next).UTC()
		}
	}
	return v
}

func ratio(ok, total uint32) float64 {
	if total == 0 {
		return 0
	}
	return float64(ok) / float64(total)
}

// ListFilter selects proxies; empty fields match everything.
type ListFilter struct {
	// State is a lowercase state name ("healthy", …); an unknown name
	// matches nothing.
	State string
	// Source is a source name.
	Source string
	// Tag selects the proxies carrying it; Anonymity those whose last
	// echo check saw that level (transparent, anonymous, elite).
	Tag, Anonymity string
}

// listChunk bounds how many entries List examines per read-lock hold.
const listChunk = 2048

// IDs returns the IDs of every proxy in the status, in no order: what a
// caller that needs only the IDs takes instead of List's views (a view per
// proxy, sorted).
func (l *Live) IDs() []string {
	l.mu.RLock()
	defer l.mu.RUnlock()
	ids := make([]string, len(l.all))
	for i, e := range l.all {
		ids[i] = e.id
	}
	return ids
}

// List returns the number of proxies matching f and the page of at most
// limit of them, sorted by ID, after skipping offset. limit <= 0 returns
// only the total. The scan takes the read lock in short chunks, so a page
// taken while events are applied may mix states from consecutive events;
// total comes from the incremental counts.
func (l *Live) List(f ListFilter, offset, limit int) (int, []ProxyView) {
	return l.AppendList(nil, f, offset, limit)
}

// AppendList is List appending the page to dst (nil when it is empty and
// dst is nil): a caller that serves pages over and over (the HTTP API)
// reuses one slice instead of allocating a page, about 37 KB for 100
// proxies, per call.
func (l *Live) AppendList(dst []ProxyView, f ListFilter, offset, limit int) (int, []ProxyView) {
	if f.Tag != "" || f.Anonymity != "" {
		return l.listScan(dst, f, offset, limit)
	}
	want := -1
	if f.State != "" {
		h, ok := events.ParseState(f.State)
		if !ok {
			return 0, dst
		}
		want = stateIndex(h)
	}
	offset = max(offset, 0)

	l.mu.RLock()
	total := l.countLocked(f.Source, want)
	ver := l.members
	idx := l.sorted.Load()
	var snap []*entry
	if limit > 0 && offset < total && (idx == nil || idx.version != ver) {
		snap = slices.Clone(l.all)
	}
	l.mu.RUnlock()
	if limit <= 0 || offset >= total {
		return total, dst
	}
	if snap != nil {
		slices.SortFunc(snap, func(a, b *entry) int { return cmp.Compare(a.id, b.id) })
		idx = &sortedIndex{version: ver, entries: snap}
		l.sorted.Store(idx)
	}

	start := len(dst)
	out := slices.Grow(dst, min(limit, total-offset))
	matched := 0
	for i := 0; i < len(idx.entries) && len(out)-start < limit; i += listChunk {
		l.mu.RLock()
		now := l.now()
		for _, e := range idx.entries[i:min(i+listChunk, len(idx.entries))] {
			if e.removed || (want >= 0 && stateIndex(e.st.Health()) != want) || (f.Source != "" && e.st.Source() != f.Source) {
				continue
			}
			if matched >= offset {
				out = append(out, l.view(e, now))
				if len(out)-start == limit {
					break
				}
			}
			matched++
		}
		l.mu.RUnlock()
	}
	return total, out
}

// countLocked returns the number of proxies in source (any if "") in state
// index want (any if < 0); mu must be held.
// listScan is List for the filters no aggregate counts: it walks the
// sorted index.
func (l *Live) listScan(dst []ProxyView, f ListFilter, offset, limit int) (int, []ProxyView) {
	want := -1
	if f.State != "" {
		h, ok := events.ParseState(f.State)
		if !ok {
			return 0, dst
		}
		want = stateIndex(h)
	}
	offset = max(offset, 0)
	l.mu.RLock()
	defer l.mu.RUnlock()
	all := slices.Clone(l.all)
	slices.SortFunc(all, func(a, b *entry) int { return cmp.Compare(a.id, b.id) })
	now := l.now()
	total := 0
	out, start := dst, len(dst)
	for _, e := range all {
		if e.removed || (want >= 0 && stateIndex(e.st.Health()) != want) || (f.Source != "" && e.st.Source() != f.Source) ||
			(f.Tag != "" && !slices.Contains(events.State{Tags: e.st.Tags()}.TagList(), f.Tag)) ||
			(f.Anonymity != "" && events.AnonymityName(e.st.Anonymity()) != f.Anonymity) {
			continue
		}
		if total >= offset && len(out)-start < limit {
			out = append(out, l.view(e, now))
		}
		total++
	}
	return total, out
}

func (l *Live) countLocked(source string, want int) int {
	a := &l.global
	if source != "" {
		if a = l.sources[source]; a == nil {
			return 0
		}
	}
	if want < 0 {
		return a.total
	}
	return a.states[want]
}

// StateChange is one health transition of a proxy.
type StateChange struct {
	Seq             uint64    `json:"seq"`
	At              time.Time `json:"at"`
	From            string    `json:"from"`
	To              string    `json:"to"`
	Reason          string    `json:"reason"`
	RecoveryAttempt uint32    `json:"recovery_attempt"`
}

// StateChanges returns up to n of a proxy's most recent transitions, newest
// first (n <= 0: all those kept, at most LiveOptions.StateChangeCap).
func (l *Live) StateChanges(id string, n int) []StateChange {
	l.mu.RLock()
	defer l.mu.RUnlock()
	e := l.entries.Get(id)
	if e == nil {
		return nil
	}
	k := e.changes.len()
	if n > 0 {
		k = min(k, n)
	}
	out := make([]StateChange, 0, k)
	for i := range k {
		c := e.changes.at(i)
		out = append(out, StateChange{
			Seq: c.seq, At: time.Unix(0, c.at).UTC(), Reason: c.reason, RecoveryAttempt: c.attempt,
			From: events.StateName(pb.HealthState(c.from)), To: events.StateName(pb.HealthState(c.to)),
		})
	}
	return out
}

// Brief is what a picker needs of a proxy's live status, read without
// building a ProxyView (no strings formatted, nothing allocated).
type Brief struct {
	State               pb.HealthState
	Paused, Ejected     bool
	LatencyEWMA         time.Duration // 0: none yet
	SuccessRate1h       float64
	Checks1h            uint32
	ConsecutiveFailures uint32
	LastSuccess         int64 // unix ns; 0: none seen
	// Tags are the proxy's tags, sorted and comma-separated; Weight its
	// weight (0: unset).
	Tags      string
	Weight    float64
	ExitIP    string
	Anonymity pb.Anonymity
}

// Brief returns the picker's view of a proxy; false if it is unknown or
// removed.
func (l *Live) Brief(id string) (Brief, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	e := l.entries.Get(id)
	if e == nil {
		return Brief{}, false
	}
	s := &e.st
	b := Brief{State: s.Health(), Paused: s.Paused(), Ejected: s.Ejected(), ConsecutiveFailures: s.ConsecutiveFailures(),
		LastSuccess: e.lastOK, Tags: s.Tags(), Weight: s.Weight(), ExitIP: s.ExitIP(), Anonymity: s.Anonymity()}
	if ewma, ok := s.LatencyEWMA(); ok {
		b.LatencyEWMA = ewma
	}
	var ok uint32
	ok, b.Checks1h = e.rates.fine(l.now())
	b.SuccessRate1h = ratio(ok, b.Checks1h)
	return b, true
}
