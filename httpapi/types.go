package httpapi

import (
	"math"
	"slices"
	"sync"
	"time"

	"github.com/proxyhealth/proxyhealth"
)

// Counts are the counts of a set of proxies, in the order of the API.
// Checking and Paused are flags that overlap the six state counts.
type Counts struct {
	Total            int     `json:"total"`
	Healthy          int     `json:"healthy"`
	Degraded         int     `json:"degraded"`
	Unhealthy        int     `json:"unhealthy"`
	Recovering       int     `json:"recovering"`
	Failed           int     `json:"failed"`
	Unknown          int     `json:"unknown"`
	Checking         int     `json:"checking"`
	HealthPercentage float64 `json:"health_percentage"`
	Paused           int     `json:"paused"`
	// Ejected counts the proxies passive outlier detection holds out of
	// rotation (a flag, like Paused).
	Ejected int `json:"ejected"`
}

// SourceCounts are one source's counts and the mean latency of its proxies.
type SourceCounts struct {
	Counts
	// AvgLatencyMS is the mean of the source's proxies' latency averages
	// (passed checks only); 0 when none has passed a check.
	AvgLatencyMS float64 `json:"avg_latency_ms"`
	// LastRefresh is when the source's list (a URL or a watched file) was
	// last read and applied (null: never, or not such a source);
	// LastError the last failure to read it ("" since a good refresh; the
	// last good list stays in force meanwhile); HeldList is true while a
	// list that shrank by more than the shrink guard waits for
	// confirmation (POST /v1/sources/{name}/confirm).
	LastRefresh *time.Time `json:"last_refresh"`
	LastError   string     `json:"last_error"`
	HeldList    bool       `json:"held_list,omitempty"`
}

// Pool is the body of GET /v1/pool.
type Pool struct {
	Counts
	Sources map[string]SourceCounts `json:"sources"`
	// JournalSeq is the journal seq the numbers reflect.
	JournalSeq uint64 `json:"journal_seq"`
	// UpdatedAt is the time of that event; null before the first.
	UpdatedAt *time.Time `json:"updated_at"`
	// Journal is the journal's write condition and Projections the
	// condition of each fold of the journal, sorted by name; both are
	// absent when the engine does not report its health.
	Journal     *JournalStatus     `json:"journal,omitempty"`
	Projections []ProjectionStatus `json:"projections,omitempty"`
	// PanicMode is true from a journaled pool_panic_entered to the next
	// pool_panic_left (GET /v1/traffic has the picker's own view, which
	// also covers start-up, before checks back a verdict).
	PanicMode bool `json:"panic_mode"`
	// Cluster is this member's view of its cluster: the members, whether
	// its membership is confirmed, how many proxies it checks (absent
	// outside a cluster). It is this member's own view in either scope.
	Cluster *proxyhealth.ClusterStatus `json:"cluster,omitempty"`
	// ClusterAnswer is set when the counts above are the whole cluster's
	// (a cluster member, without scope=local): the members whose proxies
	// they count, and the members that did not answer. Absent when the
	// counts are this server's own proxies. The journal_seq, updated_at,
	// journal and projections stay this member's.
	ClusterAnswer *ClusterAnswer `json:"cluster_answer,omitempty"`
}

// Proxy is one proxy in GET /v1/proxies.
type Proxy struct {
	ID string `json:"id"`
	// URL never carries credentials.
	URL                  string     `json:"url"`
	Source               string     `json:"source"`
	State                string     `json:"state"`
	ConsecutiveFailures  uint32     `json:"consecutive_failures"`
	ConsecutiveSuccesses uint32     `json:"consecutive_successes"`
	LastCheckAt          *time.Time `json:"last_check_at"`
	// LastErrorClass is the class of the last failed check ("" if none
	// ever failed); it is kept after later successes.
	LastErrorClass string `json:"last_error_class"`
	// LatencyMS is the moving average (EWMA, alpha 0.2) of the total
	// latency of passed checks; 0 before the first passed check.
	LatencyMS float64 `json:"latency_ms"`
	// SuccessRate1h is the share (0..1) of passed checks in the last hour.
	SuccessRate1h float64 `json:"success_rate_1h"`
	// NextCheckAt is when the next check is due; null when none is
	// scheduled (paused, failed).
	NextCheckAt *time.Time `json:"next_check_at"`
	// Paused is true while the proxy is paused (POST
	// /v1/proxies/{id}/pause, or POST /v1/pause for its source): it is not
	// checked and keeps its last state until resumed.
	Paused bool `json:"paused"`
	// Ejected is true while passive outlier detection holds the proxy out
	// of rotation (real traffic through it failed), until EjectedUntil
	// (null when not ejected).
	Ejected      bool       `json:"ejected"`
	EjectedUntil *time.Time `json:"ejected_until"`
	// LastSuccessAt is the time of the last passed check; null for never.
	LastSuccessAt *time.Time `json:"last_success_at"`
	// Tags are the proxy's tags (from its list or the configuration);
	// Weight its weight under the weighted strategy (1 when unset).
	Tags   []string `json:"tags"`
	Weight float64  `json:"weight"`
	// ExitIP and Anonymity (transparent, anonymous or elite) are what the
	// source's echo target last saw through the proxy; "" without one.
	ExitIP    string `json:"exit_ip"`
	Anonymity string `json:"anonymity"`
}

// ProxyList is the body of GET /v1/proxies.
type ProxyList struct {
	// Total is the number of proxies matching the filter (all pages).
	Total   int     `json:"total"`
	Proxies []Proxy `json:"proxies"`
	// ClusterAnswer is set when the list is the whole cluster's (see
	// Pool.ClusterAnswer): the missing members' proxies are neither in
	// Total nor in Proxies.
	ClusterAnswer *ClusterAnswer `json:"cluster_answer,omitempty"`
}

// Check is one check result in a proxy's history.
type Check struct {
	At         time.Time `json:"at"`
	OK         bool      `json:"ok"`
	ErrorClass string    `json:"error_class,omitempty"`
	StatusCode uint32    `json:"status_code,omitempty"`
	LatencyMS  float64   `json:"latency_ms"`
}

// StateChange is one health transition of a proxy.
type StateChange struct {
	Seq             uint64    `json:"seq"`
	At              time.Time `json:"at"`
	From            string    `json:"from"`
	To              string    `json:"to"`
	Reason          string    `json:"reason"`
	RecoveryAttempt uint32    `json:"recovery_attempt,omitempty"`
}

// ProxyDetail is the body of GET /v1/proxies/{id}.
type ProxyDetail struct {
	Proxy
	// History holds the check results of the last 24 h, newest first, as
	// Engine.CheckHistory returns them (the engine keeps at most the last
	// 64), read from the journal.
	History []Check `json:"history"`
	// StateChanges are the most recent transitions, newest first.
	StateChanges []StateChange `json:"state_changes"`
}

// PoolOf converts the live status summary to the API's pool body.
func PoolOf(s proxyhealth.Summary) Pool {
	p := Pool{Sources: make(map[string]SourceCounts, len(s.Sources))}
	poolInto(&p, s, timePtr)
	return p
}

// poolInto sets *p to s's pool, keeping p.Sources, which must be an empty
// map; it takes the times' pointers from at.
func poolInto(p *Pool, s proxyhealth.Summary, at func(time.Time) *time.Time) {
	*p = Pool{Counts: countsOf(s.Counts), Sources: p.Sources, JournalSeq: s.Seq, UpdatedAt: at(s.UpdatedAt), PanicMode: s.PanicMode}
	for _, src := range s.Sources {
		p.Sources[src.Name] = SourceCounts{Counts: countsOf(src.Counts), AvgLatencyMS: ms(src.AvgLatency),
			LastRefresh: at(src.LastRefresh), LastError: src.LastError, HeldList: src.HeldList}
	}
}

func countsOf(c proxyhealth.Counts) Counts {
	return Counts{
		Total: c.Total, Healthy: c.Healthy, Degraded: c.Degraded, Unhealthy: c.Unhealthy,
		Recovering: c.Recovering, Failed: c.Failed, Unknown: c.Unknown, Checking: c.Checking,
		HealthPercentage: round(c.HealthPercentage, 2), Paused: c.Paused, Ejected: c.Ejected,
	}
}

// ProxyOf converts a proxy's live status to the API's proxy.
func ProxyOf(v proxyhealth.ProxyView) Proxy { return proxyOf(v, timePtr) }

// proxyOf is ProxyOf taking the times' pointers from at (nil for a zero
// time).
func proxyOf(v proxyhealth.ProxyView, at func(time.Time) *time.Time) Proxy {
	p := Proxy{
		ID: v.ID, URL: v.URLRedacted, Source: v.Source, State: v.State,
		ConsecutiveFailures: v.ConsecutiveFailures, ConsecutiveSuccesses: v.ConsecutiveSuccesses,
		LastCheckAt: at(v.LastCheckAt), LastErrorClass: v.LastErrorClass,
		LatencyMS: ms(v.LatencyEWMA), SuccessRate1h: round(v.SuccessRate1h, 4), NextCheckAt: at(v.NextCheckAt),
		Paused: v.Paused, Ejected: v.Ejected, EjectedUntil: at(v.EjectedUntil), LastSuccessAt: at(v.LastSuccessAt),
		Tags: v.Tags, Weight: v.Weight, ExitIP: v.ExitIP, Anonymity: v.Anonymity,
	}
	if p.Tags == nil {
		p.Tags = []string{}
	}
	if p.Weight == 0 {
		p.Weight = 1
	}
	return p
}

func checkOf(c proxyhealth.CheckRecord) Check {
	return Check{At: c.At, OK: c.OK, ErrorClass: c.Class, StatusCode: c.StatusCode, LatencyMS: ms(c.Latency)}
}

func stateChangeOf(c proxyhealth.StateChange) StateChange {
	return StateChange{Seq: c.Seq, At: c.At, From: c.From, To: c.To, Reason: c.Reason, RecoveryAttempt: c.RecoveryAttempt}
}

// ms converts a duration to milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return round(float64(d)/1e6, 3) }

func round(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}

// proxyTimes is how many times a Proxy points to.
const proxyTimes = 4

// listPage holds what one GET /v1/proxies builds (the page of views, the
// page of Proxy and the times they point to), for the next request. A page
// of 100 proxies allocated about 73 KB (heap profiles of the daemon under
// BenchmarkDaemon's API load at 100,000 proxies), thirty times what a check
// does; at 100,000 proxies every cycle of the garbage collector marks a
// heap of about 400 MB. BenchmarkListProxies: 137.6 KB and 530 allocations
// a request before, 61.9 KB and 328 now, most of it the recorder's copy of
// the body.
type listPage struct {
	views []proxyhealth.ProxyView
	out   []Proxy
	times timeSlab
}

// maxPooledPage bounds the pages kept for reuse: a rare page of thousands
// of proxies (up to MaxListLimit) is left to the garbage collector.
const maxPooledPage = 1000

var listPages = sync.Pool{New: func() any { return new(listPage) }}

// proxies converts views into the page's Proxy values (never nil, so that
// an empty page is [] in JSON), valid until release.
func (p *listPage) proxies(views []proxyhealth.ProxyView) []Proxy {
	if p.out == nil || cap(p.out) < len(views) {
		p.out = make([]Proxy, len(views), max(len(views), 1))
	} else {
		p.out = p.out[:len(views)]
	}
	p.times.reserve(proxyTimes * len(views))
	for i, v := range views {
		p.out[i] = proxyOf(v, p.times.at)
	}
	return p.out
}

// release returns the page to the pool, dropping what it points to.
func (p *listPage) release() {
	if cap(p.views) > maxPooledPage || cap(p.out) > maxPooledPage {
		return
	}
	clear(p.views)
	clear(p.out)
	p.views, p.out = p.views[:0], p.out[:0]
	p.times.reset()
	listPages.Put(p)
}

// poolAnswer holds what one GET /v1/pool builds (the summary's sources,
// the Pool and its map of sources, the journal's and the projections'
// status, the times they point to), for the next request. While a client
// asks over and over, the requests' garbage paces the garbage collector as
// much as the checks' do, and at 100,000 proxies each cycle marks about
// 300 MB and slows the requests it meets. BenchmarkPoolHealth: 5.7 KB and
// 24 allocations a request before, 2.7 KB and 14 now (most of it the
// recorder's and net/http's); BenchmarkDaemon at 100,000 proxies, the API
// window: 3.7 KB of garbage a request before, 2.3–2.5 KB now, and a
// quarter fewer GC cycles a request.
type poolAnswer struct {
	srcs    []proxyhealth.SourceSummary
	ph      []proxyhealth.ProjectionHealth
	pool    Pool
	journal JournalStatus
	projs   []ProjectionStatus
	times   timeSlab
}

// maxPooledSources bounds the answers kept for reuse.
const maxPooledSources = 1000

var poolAnswers = sync.Pool{New: func() any { return &poolAnswer{pool: Pool{Sources: map[string]SourceCounts{}}} }}

// summary returns st's summary, its sources in a's slice when st can
// append them.
func (a *poolAnswer) summary(st Status) proxyhealth.Summary {
	sa, ok := st.(proxyhealth.SummaryAppender)
	if !ok {
		return st.Summary()
	}
	sum := sa.AppendSummary(a.srcs)
	a.srcs = sum.Sources
	return sum
}

// health returns s's engine's health, its projections in a's slice when
// the engine can append them.
func (a *poolAnswer) health(s *Server) (proxyhealth.Health, bool) {
	h, ok := s.health(a.ph)
	if ok {
		a.ph = h.Projections
	}
	return h, ok
}

// fill sets a's Pool to sum's pool, with the engine's health when hasH,
// and returns it; it is valid until release.
func (a *poolAnswer) fill(sum proxyhealth.Summary, h proxyhealth.Health, hasH bool) *Pool {
	// Three of the pool and the journal, one a source and a projection.
	a.times.reserve(3 + len(sum.Sources) + len(h.Projections))
	poolInto(&a.pool, sum, a.times.at)
	if hasH {
		a.projs = healthInto(&a.journal, a.projs[:0], h, a.times.at)
		a.pool.Journal, a.pool.Projections, a.pool.Cluster = &a.journal, a.projs, h.Cluster
	}
	return &a.pool
}

// release returns the answer to the pool, dropping what it points to.
func (a *poolAnswer) release() {
	if a.reset() {
		poolAnswers.Put(a)
	}
}

// reset drops what a points to and keeps its storage for the next fill;
// false when a grew too large to keep.
func (a *poolAnswer) reset() bool {
	if cap(a.srcs) > maxPooledSources || len(a.pool.Sources) > maxPooledSources {
		return false
	}
	clear(a.srcs)
	clear(a.ph)
	clear(a.projs)
	clear(a.pool.Sources)
	a.pool, a.journal = Pool{Sources: a.pool.Sources}, JournalStatus{}
	a.srcs, a.ph, a.projs = a.srcs[:0], a.ph[:0], a.projs[:0]
	a.times.reset()
	return true
}

// timeSlab holds the times that a reused answer's *time.Time fields point
// to (timePtr without an allocation a time).
type timeSlab struct{ ts []time.Time }

// reserve empties s with room for n times: the at calls that follow,
// up to n, never move the times already pointed to.
func (s *timeSlab) reserve(n int) { s.ts = slices.Grow(s.ts[:0], n) }

// at is timePtr pointing into s, valid until the next reserve.
func (s *timeSlab) at(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	s.ts = append(s.ts, t.UTC())
	return &s.ts[len(s.ts)-1]
}

// reset empties s, keeping its array.
func (s *timeSlab) reset() { s.ts = s.ts[:0] }

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}
