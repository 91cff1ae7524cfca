package journal

import (
	"sync"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// The window of recent envelopes a Bolt journal keeps in memory for its
// subscriptions. It holds recentMin envelopes: about two seconds of events
// at 10,000 proxies checked every 10 s, a few hundred KiB. A commit larger
// than half the window (a wave of 8,192 proxies added at start, each with
// its ProxyAdded) widens it to twice the commit, up to recentMax, so that
// the subscriptions that had kept up get that commit from memory too:
// before, each of them read the whole commit back from the store and
// decoded it again (at a start of 100,000 proxies, about 4 % of the
// daemon's CPU and 33 MB of garbage in its first 9 s). After
// recentCalm commits that would have fit, it narrows back to recentMin,
// keeping the newest.
const (
	recentMin  = 2048
	recentMax  = 32768
	recentCalm = 256
)

// recent holds the latest committed envelopes, decoded, so that
// subscriptions that keep up (the live status, the view, the notifier, the
// pool monitor, the API's event stream all tail the journal) get the
// writer's own envelopes instead of each reading the store and decoding
// every record again. The envelopes are shared: nobody may modify one after
// it was appended (the journal's contract for Append and for every
// envelope a subscription delivers).
type recent struct {
	mu    sync.RWMutex
	buf   []*pb.Envelope // seq s at buf[s%len(buf)]; len a power of two, nil until the first add
	first uint64         // seqs [first, last] are held; first > last when empty
	last  uint64
	calm  int // commits since the last one that needed a wider window
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
	r.resize(len(envs))
	size := uint64(len(r.buf))
	for _, u := range envs {
		r.last++
		r.buf[r.last%size] = u.env
	}
	if r.last-r.first >= size {
		r.first = r.last - size + 1
	}
}

// resize fits the window to a commit of n envelopes: wider for a large
// one, back to recentMin after recentCalm commits that fit it.
func (r *recent) resize(n int) {
	size := recentMin
	for size < 2*n && size < recentMax {
		size *= 2
	}
	switch {
	case size > len(r.buf):
		r.calm = 0
		r.move(size)
	case size > recentMin:
		r.calm = 0
	case len(r.buf) > recentMin:
		if r.calm++; r.calm >= recentCalm {
			r.calm = 0
			r.move(recentMin)
		}
	}
}

// move puts the newest envelopes held (at most size) into a new window of
// size.
func (r *recent) move(size int) {
	buf := make([]*pb.Envelope, size)
	if r.first <= r.last {
		r.first = max(r.first, r.last-min(r.last, uint64(size))+1)
		for s := r.first; s <= r.last; s++ {
			buf[s%uint64(size)] = r.buf[s%uint64(len(r.buf))]
		}
	}
	r.buf = buf
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
	size := uint64(len(r.buf))
	for s := from; s <= end && n > 0; s, n = s+1, n-1 {
		dst = append(dst, r.buf[s%size])
	}
	return dst, true
}

// reset forgets every envelope (the journal's history changed under them).
func (r *recent) reset() {
	r.mu.Lock()
	r.buf, r.calm = nil, 0
	r.first, r.last = 1, 0
	r.mu.Unlock()
}
