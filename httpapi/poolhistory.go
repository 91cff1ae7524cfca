package httpapi

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// Pool history defaults (Options.PoolHistoryInterval, PoolHistoryWindow).
const (
	// DefaultPoolHistoryInterval is how often the pool summary is sampled.
	DefaultPoolHistoryInterval = 10 * time.Second
	// DefaultPoolHistoryWindow is how far back GET /v1/pool/history goes.
	DefaultPoolHistoryWindow = time.Hour
	// MaxPoolHistorySamples bounds the samples kept, whatever the
	// interval and window (a day at the default interval).
	MaxPoolHistorySamples = 8640
)

// PoolSample is the pool's counts at one time.
type PoolSample struct {
	At time.Time `json:"at"`
	Counts
	// JournalSeq is the journal seq the counts reflect.
	JournalSeq uint64 `json:"journal_seq"`
	// MissingMembers, on a cluster member, are the members that did not
	// answer for this sample: their proxies are not in its counts.
	MissingMembers []string `json:"missing_members,omitempty"`
}

// PoolHistory is the body of GET /v1/pool/history.
type PoolHistory struct {
	// IntervalSeconds is the sampling interval and WindowSeconds how far
	// back samples are kept.
	IntervalSeconds float64 `json:"interval_seconds"`
	WindowSeconds   float64 `json:"window_seconds"`
	// Samples are oldest first; the server samples from its start, so
	// a server that started recently has fewer.
	Samples []PoolSample `json:"samples"`
}

// poolHistory is a ring of the most recent pool samples.
type poolHistory struct {
	interval, window time.Duration

	mu   sync.Mutex
	ring []PoolSample // len grows to cap, then wraps
	next int          // where the next sample goes once the ring is full
}

func newPoolHistory(interval, window time.Duration) *poolHistory {
	n := int(window/interval) + 1
	n = max(1, min(n, MaxPoolHistorySamples))
	return &poolHistory{interval: interval, window: window, ring: make([]PoolSample, 0, n)}
}

func (h *poolHistory) add(p PoolSample) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.ring) < cap(h.ring) {
		h.ring = append(h.ring, p)
		return
	}
	h.ring[h.next] = p
	h.next = (h.next + 1) % len(h.ring)
}

// samples returns the samples not older than the window before now,
// oldest first.
func (h *poolHistory) samples(now time.Time) []PoolSample {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]PoolSample, 0, len(h.ring))
	from := now.Add(-h.window)
	for i := range h.ring {
		p := h.ring[(h.next+i)%len(h.ring)]
		if !p.At.Before(from) {
			out = append(out, p)
		}
	}
	return out
}

// samplePool records the pool summary now and every interval until ctx
// ends.
func (s *Server) samplePool(ctx context.Context) {
	t := time.NewTicker(s.poolHist.interval)
	defer t.Stop()
	for {
		if p, ok := s.poolSample(ctx); ok {
			s.poolHist.add(p)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// poolSample is the pool's counts now: on a cluster member the whole
// cluster's (as GET /v1/pool answers by default), asked within one
// interval; false when that query failed (no sample rather than one
// member's counts passed off as the cluster's).
func (s *Server) poolSample(ctx context.Context) (PoolSample, bool) {
	if s.cluster != nil {
		if _, member := s.cluster.Cluster(); member {
			qctx, cancel := context.WithTimeout(ctx, s.poolHist.interval)
			sum, a, err := s.cluster.ClusterSummary(qctx)
			cancel()
			if err != nil {
				return PoolSample{}, false
			}
			p := PoolSample{At: s.opts.Now().UTC(), Counts: countsOf(sum.Counts), JournalSeq: sum.Seq}
			for _, m := range a.Missing {
				p.MissingMembers = append(p.MissingMembers, m.Member)
			}
			return p, true
		}
	}
	sum := s.status.Summary()
	return PoolSample{At: s.opts.Now().UTC(), Counts: countsOf(sum.Counts), JournalSeq: sum.Seq}, true
}

func (s *Server) poolHistory(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, PoolHistory{
		IntervalSeconds: s.poolHist.interval.Seconds(),
		WindowSeconds:   s.poolHist.window.Seconds(),
		Samples:         s.poolHist.samples(s.opts.Now()),
	})
}
