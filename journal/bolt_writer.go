package journal

import (
	"bytes"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// Request states: the writer takes a pending request (reqPending ->
// reqTaken); a caller whose context ends abandons a pending one
// (reqPending -> reqAbandoned), which the writer then skips untouched.
const (
	reqPending uint32 = iota
	reqTaken
	reqAbandoned
)

// request is one Append or SaveSnapshot waiting for the writer.
type request struct {
	envs  []*pb.Envelope
	snap  *pb.ProxySnapshot
	state atomic.Uint32
	done  chan struct{} // closed by the writer after the commit
	seqs  []uint64
	seq1  [1]uint64 // backing for seqs of single-event appends
	err   error
}

func (r *request) size() int {
	if r.snap != nil {
		return 1
	}
	return len(r.envs)
}

// put is one key/value of a commit; both slices point into the writer's
// arena, which stays untouched until the transaction ends.
type put struct {
	bucket uint8
	k, v   []byte
}

const (
	putEvent uint8 = iota
	putStream
	putHead
	putSnapshot
)

// undo restores an envelope's fields when its commit fails.
type undo struct {
	env       *pb.Envelope
	streamSeq uint64
}

// writer owns all appends: it drains pending requests into one transaction.
type writer struct {
	b        *Bolt
	maxBatch int
	batch    []*request
	overlay  map[string]uint64 // stream heads after the commit
	local    map[string]uint64 // one request's new heads
	streams  []uint64          // stream seqs of the current request
	undo     []undo
	taken    []*request
	puts     []put
	arena    []byte
	marshal  proto.MarshalOptions
	delay    time.Duration     // linger for small batches
	timer    *time.Timer       // reused linger timer
	observer func(CommitStats) // optional metrics hook
	lastReqs int               // requests in the previous commit
}

// The writer's arena for keys and values starts at initialArena bytes and
// is dropped after a commit that grew it beyond maxArena.
const (
	initialArena = 1 << 20
	maxArena     = 16 << 20
)

func newWriter(b *Bolt, maxBatch int) *writer {
	return &writer{
		b:        b,
		maxBatch: maxBatch,
		overlay:  make(map[string]uint64),
		local:    make(map[string]uint64),
		arena:    make([]byte, 0, initialArena),
	}
}

// run is the writer goroutine. On stop it commits everything queued, then
// exits.
func (w *writer) run() {
	defer close(w.b.writerDone)
	for {
		select {
		case r := <-w.b.reqs:
			w.collect(r)
		case <-w.b.stop:
			for {
				select {
				case r := <-w.b.reqs:
					w.collect(r)
				default:
					return
				}
			}
		}
	}
}

// collect gathers r and whatever else is queued, up to the batch cap, and
// commits them.
func (w *writer) collect(r *request) {
	w.batch = append(w.batch[:0], r)
	n := r.size()
	// Let the appenders just woken by the previous commit queue their next
	// requests, so that they join this commit instead of waiting a whole
	// fsync for the next: a yield, not a wait.
	runtime.Gosched()
gather:
	for n < w.maxBatch {
		select {
		case r := <-w.b.reqs:
			w.batch = append(w.batch, r)
			n += r.size()
		default:
			break gather
		}
	}
	// With a commit delay, a small batch lingers for more (one fsync for
	// many appends) when appends come from several writers (this batch or
	// the last one had more than one request); a lone sequential appender
	// is never delayed.
	concurrent := len(w.batch) > 1 || w.lastReqs > 1
	if w.delay > 0 && n < commitDelayBelow && concurrent {
		if w.timer == nil {
			w.timer = time.NewTimer(w.delay)
		} else {
			w.timer.Reset(w.delay)
		}
	linger:
		for n < w.maxBatch {
			select {
			case r := <-w.b.reqs:
				w.batch = append(w.batch, r)
				n += r.size()
			case <-w.timer.C:
				break linger
			case <-w.b.stop:
				w.timer.Stop()
				break linger
			}
		}
	}
	w.lastReqs = len(w.batch)
	w.commit(w.batch)
	clear(w.batch)
}

// headOf is a proxy's stream head including the batch so far.
func (w *writer) headOf(p string) uint64 {
	if h, ok := w.overlay[p]; ok {
		return h
	}
	return w.b.heads[p] // only the writer writes heads; reading needs no lock
}

// commit validates, writes and acknowledges one batch of requests.
func (w *writer) commit(batch []*request) {
	b := w.b
	clear(w.overlay)
	w.puts, w.undo, w.arena = w.puts[:0], w.undo[:0], w.arena[:0]
	next := b.head.Load() + 1
	taken := w.taken[:0]
	for _, r := range batch {
		if !r.state.CompareAndSwap(reqPending, reqTaken) {
			continue // abandoned by its caller; nobody waits for it
		}
		taken = append(taken, r)
		if r.snap != nil {
			w.prepareSnapshot(r)
		} else {
			next = w.prepareAppend(r, next)
		}
	}
	defer w.reset(taken)
	var err error
	if len(w.puts) > 0 {
		start := time.Now()
		b.commitMu.Lock()
		err = b.update(w.write)
		if w.observer != nil {
			defer func(events, reqs int) {
				w.observer(CommitStats{Events: events, Requests: reqs, Duration: time.Since(start), Err: err})
			}(len(w.undo), len(taken))
		}
		if err == nil {
			if len(w.overlay) > 0 {
				b.headsMu.Lock()
				for p, h := range w.overlay {
					b.heads[p] = h
				}
				b.headsMu.Unlock()
			}
			b.head.Store(next - 1)
		}
		b.commitMu.Unlock()
	}
	if err != nil {
		err = fmt.Errorf("journal: commit to %s failed, nothing of it was written: %w", b.path, b.dbErr(err))
		for _, u := range w.undo {
			u.env.Seq, u.env.StreamSeq = 0, u.streamSeq
		}
	}
	for _, r := range taken {
		if err != nil && r.err == nil {
			r.err, r.seqs = err, nil
		}
		close(r.done)
	}
	if err == nil && len(w.undo) > 0 {
		b.note.broadcast()
	}
}

// reset drops the references of a finished commit, so that the envelopes
// of callers and oversized buffers are not kept alive.
func (w *writer) reset(taken []*request) {
	clear(taken)
	w.taken = taken[:0]
	clear(w.undo)
	clear(w.puts)
	if cap(w.arena) > maxArena {
		w.arena = make([]byte, 0, initialArena)
	}
}

// prepareAppend validates r's stream seqs against the batch so far and, if
// they fit, assigns seqs and queues its puts. It returns the next free seq.
// A request that fails leaves no trace in the batch.
func (w *writer) prepareAppend(r *request, next uint64) uint64 {
	clear(w.local)
	var err error
	w.streams, err = assignStreams(r.envs, w.headOf, w.local, w.streams[:0])
	if err != nil {
		r.err = err
		return next
	}
	putsMark, undoMark, arenaMark := len(w.puts), len(w.undo), len(w.arena)
	seq := next
	for i, e := range r.envs {
		w.undo = append(w.undo, undo{e, e.StreamSeq})
		e.Seq = seq
		p := e.GetProxyId()
		if p != "" {
			e.StreamSeq = w.streams[i]
		}
		k := w.bytes(func(a []byte) []byte { return appendSeqKey(a, seq) })
		var merr error
		v := w.bytes(func(a []byte) []byte {
			a, merr = w.marshal.MarshalAppend(a, e)
			return a
		})
		if merr != nil {
			// E.g. a string field that is not valid UTF-8.
			for _, u := range w.undo[undoMark:] {
				u.env.Seq, u.env.StreamSeq = 0, u.streamSeq
			}
			w.puts, w.undo, w.arena = w.puts[:putsMark], w.undo[:undoMark], w.arena[:arenaMark]
			r.err = fmt.Errorf("%w: envelope %d (proxy_id %q) cannot be encoded: %v", ErrInvalidEvent, i, p, merr)
			return next
		}
		w.puts = append(w.puts, put{putEvent, k, v})
		if p != "" {
			sk := w.bytes(func(a []byte) []byte { return appendStreamKey(a, p, e.StreamSeq) })
			w.puts = append(w.puts, put{putStream, sk, k})
		}
		seq++
	}
	for p, h := range w.local {
		w.overlay[p] = h
	}
	for s := next; s < seq; s++ {
		r.seqs = append(r.seqs, s)
	}
	return seq
}

// prepareSnapshot validates r's snapshot against the batch so far and
// queues its put.
func (w *writer) prepareSnapshot(r *request) {
	p := r.snap.GetProxyId()
	if err := validateSnapshot(r.snap, w.headOf(p)); err != nil {
		r.err = err
		return
	}
	var merr error
	v := w.bytes(func(a []byte) []byte {
		a, merr = w.marshal.MarshalAppend(a, r.snap)
		return a
	})
	if merr != nil {
		r.err = fmt.Errorf("%w: cannot be marshalled: %v", ErrInvalidSnapshot, merr)
		return
	}
	k := w.bytes(func(a []byte) []byte { return append(a, p...) })
	w.puts = append(w.puts, put{putSnapshot, k, v})
}

// bytes appends to the arena with f and returns what f added, capped so
// later appends never write into it. If the arena grows, earlier slices
// keep the old array, which stays valid.
func (w *writer) bytes(f func([]byte) []byte) []byte {
	start := len(w.arena)
	w.arena = f(w.arena)
	return w.arena[start:len(w.arena):len(w.arena)]
}

// write is the transaction body of a commit.
func (w *writer) write(tx *bolt.Tx) error {
	buckets := [4]*bolt.Bucket{
		putEvent:    tx.Bucket(bucketEvents),
		putStream:   tx.Bucket(bucketStreams),
		putHead:     tx.Bucket(bucketHeads),
		putSnapshot: tx.Bucket(bucketSnapshots),
	}
	buckets[putEvent].FillPercent = 1.0 // keys are appended in order
	slices.SortStableFunc(w.puts, func(a, b put) int {
		if a.bucket != b.bucket || a.bucket != putStream {
			return int(a.bucket) - int(b.bucket)
		}
		return bytes.Compare(a.k, b.k)
	})
	for _, p := range w.puts {
		if err := buckets[p.bucket].Put(p.k, p.v); err != nil {
			return fmt.Errorf("put into %s: %w", [...]string{"events", "streams", "heads", "snapshots"}[p.bucket], err)
		}
	}
	return nil
}
