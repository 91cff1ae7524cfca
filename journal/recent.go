package journal

import (
	"sync"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// recentSize is how many of the latest committed envelopes a Bolt journal
// keeps in memory for its subscriptions: about two seconds of events at
// 10,000 proxies checked every 10 s, a few hundred KiB.
const recentSize = 2048

// recent holds the latest committed envelopes, decoded, so that
// subscriptions that keep up (the live status, the view, the notifier, the
// pool monitor, the API's event stream all tail the journal) get the
// writer's own envelopes instead of each reading the store and decoding
// every record again. The envelopes are shared: nobody may modify one after
// it was appended (the journal's contract for Append and for every
// envelope a subscription delivers).
type recent struct {
	mu    sync.RWMutex
	buf   [recentSize]*pb.Envelope // seq s at buf[s%recentSize]
	first uint64                   // seqs [first, last] are held; first > last when empty
	last  uint64
}

// add records committed envelopes; their seqs follow last without a gap
// (the writer's order). A gap (not expected) empties the window first.
func (r *recent) add(envs []undo) {
	if len(envs) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := envs[0].env.GetSeq(); r.first > r.last || s != r.last+1 {
		r.first, r.last = s, s-1
	}
	for _, u := range envs {
		r.last++
		r.buf[r.last%recentSize] = u.env
	}
	if r.last-r.first >= recentSize {
		r.first = r.last - recentSize + 1
	}
}

// get appends the held envelopes with from <= seq <= end (at most n) to
// dst; ok is false when from is not held, so the caller reads the store.
func (r *recent) get(from, end uint64, n int, dst []*pb.Envelope) ([]*pb.Envelope, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.first > r.last || from < r.first || from > r.last {
		return dst, false
	}
	end = min(end, r.last)
	for s := from; s <= end && n > 0; s, n = s+1, n-1 {
		dst = append(dst, r.buf[s%recentSize])
	}
	return dst, true
}

// reset forgets every envelope (the journal's history changed under them).
func (r *recent) reset() {
	r.mu.Lock()
	clear(r.buf[:])
	r.first, r.last = 1, 0
	r.mu.Unlock()
}
