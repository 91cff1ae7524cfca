package rotation

import (
	"errors"
	"fmt"
	"time"
)

// ErrBadOptions wraps an Options value NewPool refuses; the message names
// the field.
var ErrBadOptions = errors.New("rotation: bad options")

// Default values (DefaultOptions).
const (
	// DefaultPanicThreshold is the usable share of the candidates below
	// which a pool, or a filtered part of it, is in panic mode.
	DefaultPanicThreshold = 0.5
	// DefaultStatsRefresh is how stale the statistics derived from many
	// members (weights, median latency, the panic set) may get when only
	// statistics changed, in a group of up to 10,000 members (see
	// Options.StatsRefresh).
	DefaultStatsRefresh = time.Second
	// DefaultStickyReplicas is how many points each member has on each
	// consistent-hash ring it is on.
	DefaultStickyReplicas = 16
	// MaxStickyReplicas bounds StickyReplicas (memory per member).
	MaxStickyReplicas = 1024
)

// Options configure a Pool. Start from DefaultOptions: the zero value is
// valid but has panic mode off (PanicThreshold 0) and refreshes derived
// statistics at every Publish (StatsRefresh 0).
type Options struct {
	// Strategy is used by requests that name none; "" means RoundRobin.
	// Default RoundRobin.
	Strategy Strategy
	// IncludeDegraded makes degraded proxies usable (picked like healthy
	// ones). Default false: only healthy proxies are usable.
	IncludeDegraded bool
	// PanicThreshold (0..1): when the usable share of a request's
	// candidates falls below it, the pick is made among the least-bad
	// candidates instead (panic mode, Pick.Panic). 0 disables panic mode.
	// Default 0.5.
	PanicThreshold float64
	// StatsRefresh bounds how often a Publish that saw only statistics
	// changes (latency EWMA, success rate, failure counts) recomputes what
	// is derived from them: the weighted strategy's weights, the median
	// latency given to members without an EWMA, and the panic set. A
	// structural change (membership, usability, pause) always rebuilds at
	// once. 0 recomputes at every such Publish. Default 1 s. A group of
	// more than 10,000 members (the pool, or the members of one source,
	// scheme or tag) is recomputed in proportion less often: every
	// StatsRefresh × members / 10,000 (10 s at 100,000 with the default),
	// so the refreshes cost the same CPU at any size. The latency EWMA
	// itself (least-latency) is read live, never stale.
	StatsRefresh time.Duration
	// StickyReplicas is the number of points each member has on each
	// consistent-hash ring. A ring exists only for a group sticky picks
	// are made in (the whole pool, or the members of one source, scheme
	// or tag a sticky request filters by): the first sticky pick in a
	// group asks for it and the next Publish builds it; until then the
	// group's sticky picks compute the same answer without it, in
	// O(members × StickyReplicas). More points balance keys more evenly
	// and cost 16 bytes each per ring. 0 means DefaultStickyReplicas.
	StickyReplicas int
	// Now is the clock of the StatsRefresh throttle (default time.Now);
	// tests and the engine inject theirs.
	Now func() time.Time
}

// DefaultOptions returns the documented defaults.
func DefaultOptions() Options {
	return Options{
		Strategy:       RoundRobin,
		PanicThreshold: DefaultPanicThreshold,
		StatsRefresh:   DefaultStatsRefresh,
		StickyReplicas: DefaultStickyReplicas,
	}
}

// Validate reports the first invalid field, wrapping ErrBadOptions.
func (o Options) Validate() error {
	if o.Strategy != "" && !validStrategy(o.Strategy) {
		return fmt.Errorf("%w: Strategy %q is not one of %v; use one of those or leave it empty for %s", ErrBadOptions, o.Strategy, Strategies, RoundRobin)
	}
	if !(o.PanicThreshold >= 0 && o.PanicThreshold <= 1) { // also refuses NaN
		return fmt.Errorf("%w: PanicThreshold %v is outside 0..1; use a share such as 0.5, or 0 to disable panic mode", ErrBadOptions, o.PanicThreshold)
	}
	if o.StatsRefresh < 0 {
		return fmt.Errorf("%w: StatsRefresh %v is negative; use 0 to refresh at every Publish or a positive duration", ErrBadOptions, o.StatsRefresh)
	}
	if o.StickyReplicas < 0 || o.StickyReplicas > MaxStickyReplicas {
		return fmt.Errorf("%w: StickyReplicas %d is outside 0..%d; use 0 for the default %d", ErrBadOptions, o.StickyReplicas, MaxStickyReplicas, DefaultStickyReplicas)
	}
	return nil
}

func validStrategy(s Strategy) bool {
	for _, k := range Strategies {
		if s == k {
			return true
		}
	}
	return false
}
