package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections/internal/fold"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// ErrBadOption is wrapped by the errors of constructors given invalid
// options.
var ErrBadOption = errors.New("projections: invalid option")

// Defaults of PoolMonitorOptions.
const (
	DefaultPoolThreshold = 50.0
	DefaultPoolMargin    = 10.0
	DefaultMinKnown      = 0.5
)

// PoolMonitorOptions configures NewPoolMonitor. The zero value gives the
// defaults.
type PoolMonitorOptions struct {
	// Threshold is the healthy percentage below which the pool is degraded
	// (default 50; range (0, 100]).
	Threshold float64
	// Margin is the hysteresis, in percentage points: a degraded pool
	// recovers at Threshold + Margin (capped at 100). Default 10; a negative
	// value means 0.
	Margin float64
	// MinKnown is the share of the pool (0..1) that must have a known state
	// (not unknown) before the pool is evaluated, so that the first results
	// after start-up cannot raise an alarm on their own. Default 0.5; a
	// negative value means 0 (evaluate as soon as one proxy is known).
	MinKnown float64
	// Logger receives warnings (a failed append); nil is silent.
	Logger *slog.Logger
}

func (o PoolMonitorOptions) withDefaults() (PoolMonitorOptions, error) {
	if o.Threshold == 0 {
		o.Threshold = DefaultPoolThreshold
	}
	if o.Margin == 0 {
		o.Margin = DefaultPoolMargin
	}
	if o.Margin < 0 {
		o.Margin = 0
	}
	if o.MinKnown == 0 {
		o.MinKnown = DefaultMinKnown
	}
	if o.MinKnown < 0 {
		o.MinKnown = 0
	}
	switch {
	case !(o.Threshold > 0 && o.Threshold <= 100):
		return o, fmt.Errorf("%w: pool threshold %v%%; must be in (0, 100]", ErrBadOption, o.Threshold)
	case math.IsNaN(o.Margin) || o.Margin > 100:
		return o, fmt.Errorf("%w: pool margin %v points; must be in [0, 100]", ErrBadOption, o.Margin)
	case math.IsNaN(o.MinKnown) || o.MinKnown > 1:
		return o, fmt.Errorf("%w: min known share %v; must be in [0, 1]", ErrBadOption, o.MinKnown)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// PoolMonitor watches the pool's healthy share and journals PoolDegraded
// when it falls below the threshold and PoolRecovered when it rises back to
// threshold + margin: edge-triggered with hysteresis, once per episode. The
// event is appended to the journal first (persist, then act); everything
// else (notifications, views) follows from the journal.
//
// The share is healthy / known × 100, where known counts the proxies whose
// state is not unknown (removed proxies do not count; paused and failed ones
// count with their state). It is evaluated only once at least MinKnown of
// the pool has a known state. Whether the pool is degraded is recovered from
// the journal's last pool event, so a restart does not fire again.
type PoolMonitor struct {
	j    journal.Journal
	opts PoolMonitorOptions

	mu      sync.Mutex
	proxies map[string]monProxy
	// big holds the proxies whose stream seq does not fit a monProxy
	// (from 2^61 on: never, in practice).
	big      map[string]bigMon
	healthy  int
	unknown  int
	total    int
	degraded bool
	applied  uint64
	fired    int
	// head is the journal head when the monitor was created: Run replays up
	// to it without evaluating, then evaluates after every event.
	head uint64
	// from is where Run starts reading the journal when StartFrom seeded
	// the monitor (0: from the first event, after restore), and the time
	// of the event before it.
	from   uint64
	fromAt int64
}

// monProxy is what the monitor keeps of a proxy: its stream seq and the
// counter of its health state (stateIndex: what the counts look at), in one
// word, which the map holds in its slot (24 bytes a proxy, where a pointer
// to a struct took 24 and 16 more). Stream seqs from 2^61 on (never, in
// practice) go to PoolMonitor.big instead.
type monProxy uint64

// monSeqLimit is the first stream seq a monProxy cannot hold.
const monSeqLimit = 1 << 61

func packMon(h pb.HealthState, streamSeq uint64) monProxy {
	return monProxy(streamSeq<<3 | uint64(stateIndex(h)))
}

func (p monProxy) health() pb.HealthState { return pb.HealthState(p & 7) }
func (p monProxy) streamSeq() uint64      { return uint64(p >> 3) }

// bigMon is a monProxy whose stream seq is too large for it.
type bigMon struct {
	streamSeq uint64
	health    pb.HealthState
}

// lookup returns what the monitor keeps of proxy id; ok is false when it
// keeps nothing. Call it from the goroutine that applies, or with mu held.
func (m *PoolMonitor) lookup(id string) (health pb.HealthState, streamSeq uint64, ok bool) {
	if p, ok := m.proxies[id]; ok {
		return p.health(), p.streamSeq(), true
	}
	if len(m.big) > 0 {
		if b, ok := m.big[id]; ok {
			return b.health, b.streamSeq, true
		}
	}
	return 0, 0, false
}

// store records proxy id's state; mu must be held.
func (m *PoolMonitor) store(id string, h pb.HealthState, streamSeq uint64) {
	if streamSeq < monSeqLimit {
		m.proxies[id] = packMon(h, streamSeq)
		if len(m.big) > 0 {
			delete(m.big, id)
		}
		return
	}
	if m.big == nil {
		m.big = make(map[string]bigMon)
	}
	m.big[id] = bigMon{streamSeq: streamSeq, health: pb.HealthState(stateIndex(h))}
	delete(m.proxies, id)
}

// forget drops proxy id's state; mu must be held.
func (m *PoolMonitor) forget(id string) {
	delete(m.proxies, id)
	if len(m.big) > 0 {
		delete(m.big, id)
	}
}

// Validate reports what NewPoolMonitor would refuse.
func (o PoolMonitorOptions) Validate() error {
	_, err := o.withDefaults()
	return err
}

// NewPoolMonitor returns a monitor of the pool journaled in j.
func NewPoolMonitor(j journal.Journal, opts PoolMonitorOptions) (*PoolMonitor, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &PoolMonitor{j: j, opts: o, proxies: make(map[string]monProxy), head: j.Head()}, nil
}

// PoolShare is the monitor's view of the pool.
type PoolShare struct {
	Healthy int `json:"healthy"`
	// Known counts the proxies with a state other than unknown.
	Known int `json:"known"`
	Total int `json:"total"`
	// Percentage is Healthy / Known × 100 (0 when Known is 0).
	Percentage float64 `json:"healthy_percentage"`
	Degraded   bool    `json:"degraded"`
	// Seq is the last journal seq the monitor has processed.
	Seq uint64 `json:"seq"`
	// Fired counts the pool events this monitor appended.
	Fired int `json:"fired"`
}

// Share returns the monitor's current view of the pool.
func (m *PoolMonitor) Share() PoolShare {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := PoolShare{Healthy: m.healthy, Known: m.total - m.unknown, Total: m.total, Degraded: m.degraded, Seq: m.applied, Fired: m.fired}
	if s.Known > 0 {
		s.Percentage = float64(s.Healthy) * 100 / float64(s.Known)
	}
	return s
}

// Run replays the journal from its first event up to the head it had when
// the monitor was created (silently: this only restores the counts and the
// degraded flag), evaluates the pool once there, then follows new events,
// evaluating after each, until ctx ends (nil) or the journal closes (an
// error). A monitor seeded with StartFrom reads from where its seed left
// off instead. Run one at a time.
func (m *PoolMonitor) Run(ctx context.Context) error {
	from := m.from
	if from == 0 {
		if err := m.restore(ctx); err != nil {
			return fmt.Errorf("projections: pool monitor: %w", err)
		}
		from = 1
	}
	head := m.head
	live := head == 0
	if !live && from > head {
		// Seeded at the head (StartFrom): the pool is evaluated there, as
		// a replay that reached it would.
		live = true
		if err := m.evaluate(ctx, m.fromAt); err != nil && ctx.Err() == nil {
			m.opts.Logger.Warn("pool monitor: cannot journal the pool event; will retry after the next event", "error", err)
		}
	}
	sub := m.j.Subscribe(from)
	defer sub.Close()
	var batch []*pb.Envelope // reused: nothing keeps the slice
	for {
		var err error
		batch, err = sub.NextBatchInto(ctx, batch, 1024)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("projections: pool monitor: %w", err)
		}
		for _, env := range batch {
			m.apply(ctx, env)
			if !live && env.GetSeq() >= head {
				live = true
			}
			if live {
				if err := m.evaluate(ctx, env.GetAtUnixNano()); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					m.opts.Logger.Warn("pool monitor: cannot journal the pool event; will retry after the next event", "error", err)
				}
			}
		}
	}
}

// StartFrom seeds the monitor with what l says of every proxy (its health
// and stream seq) and of the pool (degraded or not), so that Run reads
// the journal from the event after l.Seq() instead of from its first: l
// holds what a fold up to there gives, what retention carried and the
// proxies known only from their snapshot included. The engine's Open
// folds the live status before it starts the monitor, so the monitor
// folds the journal no second time. Call it before Run, with l not being
// applied to.
func (m *PoolMonitor) StartFrom(l *Live) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range l.all {
		h := e.st.Health()
		m.store(e.id, h, e.st.StreamSeq())
		m.count(h, 1)
	}
	m.degraded = l.pool.degraded
	m.applied = max(m.applied, l.seq)
	m.from, m.fromAt = l.seq+1, l.lastAt
}

// restore folds what retention left outside the events: the pool events
// it carried (whether the pool is degraded) and the proxies known only
// from their snapshot.
func (m *PoolMonitor) restore(ctx context.Context) error {
	carried, err := journal.Carried(ctx, m.j)
	if err != nil {
		return err
	}
	for _, env := range carried {
		m.apply(ctx, env)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if first := m.j.First(); first > 1 {
		// Everything before first was accounted for by retention (the
		// carried events and the snapshots): the monitor has processed it,
		// even when none of it is read again.
		m.applied = max(m.applied, first-1)
	}
	return journal.QuietSnapshots(ctx, m.j, nil, func(snap *pb.ProxySnapshot) {
		if id := snap.GetProxyId(); !snap.GetRemoved() {
			if _, _, known := m.lookup(id); !known {
				st := events.FromSnapshot(snap)
				m.store(id, st.Health, st.StreamSeq)
				m.count(st.Health, 1)
			}
		}
	})
}

// apply folds one envelope into the counts.
func (m *PoolMonitor) apply(ctx context.Context, env *pb.Envelope) {
	var base events.State
	var skip, fresh bool
	id := env.GetProxyId()
	// Only the goroutine that applies writes the proxies (Share reads
	// only the counts), so it reads them without mu.
	health, streamSeq, known := m.lookup(id)
	if id != "" && !known {
		var err error
		if base, skip, err = fold.Base(ctx, m.j.LoadSnapshot, env); err != nil {
			base, skip, _ = fold.Base(ctx, nil, env)
		}
		fresh = true
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	m.applied = max(m.applied, env.GetSeq())
	switch env.GetEvent().(type) {
	case *pb.Envelope_PoolDegraded:
		m.degraded = true
		return
	case *pb.Envelope_PoolRecovered:
		m.degraded = false
		return
	}
	if id == "" {
		return
	}
	var s events.State
	if fresh {
		s = base
		if !skip {
			s = events.Evolve(s, env)
		}
	} else {
		s = events.State{ProxyID: id, Added: true, Health: health, StreamSeq: streamSeq}
		if fold.Covered(s, env) {
			return
		}
		m.count(health, -1)
		s = events.Evolve(s, env)
	}
	if s.Removed {
		m.forget(id)
		return
	}
	m.store(id, s.Health, s.StreamSeq)
	m.count(s.Health, 1)
}

func (m *PoolMonitor) count(h pb.HealthState, sign int) {
	m.total += sign
	switch stateIndex(h) {
	case int(pb.HealthState_HEALTH_STATE_UNKNOWN):
		m.unknown += sign
	case int(pb.HealthState_HEALTH_STATE_HEALTHY):
		m.healthy += sign
	}
}

// evaluate journals a pool event if the share crossed a boundary.
func (m *PoolMonitor) evaluate(ctx context.Context, at int64) error {
	m.mu.Lock()
	known := m.total - m.unknown
	if known == 0 || float64(known) < m.opts.MinKnown*float64(m.total) {
		m.mu.Unlock()
		return nil
	}
	pct := float64(m.healthy) * 100 / float64(known)
	healthy, degraded := uint32(m.healthy), m.degraded
	m.mu.Unlock()

	// The envelope is made only when it is journaled: evaluate runs for
	// every check, and a pool rarely crosses its threshold.
	var env *pb.Envelope
	switch {
	case !degraded && pct < m.opts.Threshold:
		env = &pb.Envelope{AtUnixNano: at, Event: &pb.Envelope_PoolDegraded{PoolDegraded: &pb.PoolDegraded{
			HealthyPercentage: pct, ThresholdPercentage: m.opts.Threshold, Healthy: healthy, Total: uint32(known)}}}
	case degraded && pct >= min(m.opts.Threshold+m.opts.Margin, 100):
		env = &pb.Envelope{AtUnixNano: at, Event: &pb.Envelope_PoolRecovered{PoolRecovered: &pb.PoolRecovered{
			HealthyPercentage: pct, ThresholdPercentage: m.opts.Threshold, Healthy: healthy, Total: uint32(known)}}}
	default:
		return nil
	}
	// Committed even if the engine is stopping meanwhile (the journal's
	// writer always answers): an append cut short by ctx may still commit
	// later, after the last catch-up of the view at a clean stop.
	if _, err := m.j.Append(context.WithoutCancel(ctx), []*pb.Envelope{env}); err != nil {
		return err
	}
	m.mu.Lock()
	m.degraded = !degraded
	m.fired++
	m.mu.Unlock()
	return nil
}
