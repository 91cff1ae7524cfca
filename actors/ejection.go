package actors

import (
	"math"
	"sync"
)

// DefaultMaxEjectionShare is the default share of a pool that passive
// outlier detection may hold ejected at once (Envoy's max_ejection_percent;
// 50 % here, as in the spec of the rotation issue).
const DefaultMaxEjectionShare = 0.5

// EjectionBudget bounds how many proxies of a pool passive outlier
// detection holds ejected at once, so that a bad target (every request
// failing through every proxy) cannot empty the pool: at most
// max(1, floor(share × total)) proxies. It is shared by the proxy actors of
// one engine and safe for concurrent use.
type EjectionBudget struct {
	mu    sync.Mutex
	share float64
	total int
	held  map[string]struct{}
}

// NewEjectionBudget returns a budget of share (0 < share ≤ 1) of the pool.
func NewEjectionBudget(share float64) *EjectionBudget {
	return &EjectionBudget{share: share, held: map[string]struct{}{}}
}

// SetTotal sets the pool's size (the engine's proxy count).
func (b *EjectionBudget) SetTotal(n int) {
	b.mu.Lock()
	b.total = n
	b.mu.Unlock()
}

// limit is the number of ejections allowed; call with b.mu held.
func (b *EjectionBudget) limit() int {
	return max(1, int(math.Floor(b.share*float64(b.total)+1e-9)))
}

// TryEject takes a slot for proxy id, reporting whether it may be ejected;
// a proxy that holds one already keeps it.
func (b *EjectionBudget) TryEject(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.held[id]; ok {
		return true
	}
	if len(b.held) >= b.limit() {
		return false
	}
	b.held[id] = struct{}{}
	return true
}

// Hold records that proxy id is ejected (its journal says so: a restarted
// actor), whatever the limit: what is journaled stands.
func (b *EjectionBudget) Hold(id string) {
	b.mu.Lock()
	b.held[id] = struct{}{}
	b.mu.Unlock()
}

// Release frees proxy id's slot (it returned, was removed, or its ejection
// was not journaled).
func (b *EjectionBudget) Release(id string) {
	b.mu.Lock()
	delete(b.held, id)
	b.mu.Unlock()
}

// Ejected returns how many proxies hold a slot, and the limit.
func (b *EjectionBudget) Ejected() (n, limit int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.held), b.limit()
}
