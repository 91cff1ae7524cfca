package journal

import (
	"bytes"
	"cmp"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// Request states: the writer takes a pending request (reqPending ->
// reqTaken); a caller whose context ends abandons a pending one
// (reqPending -> reqAbandoned), which the writer then skips untouched.
// While the encoder reads a request's envelopes it is reqEncoding, and
// pending again after: a caller cannot abandon it in that moment, and
// waits for its commit instead.
const (
	reqPending uint32 = iota
	reqTaken
	reqAbandoned
	reqEncoding
)

// request is one Append, SaveSnapshot or heads checkpoint waiting for the
// writer.
type request struct {
	envs  []*pb.Envelope
	snap  *pb.ProxySnapshot
	ckpt  bool // checkpoint the stream heads with this commit
	state atomic.Uint32
	done  chan struct{}                  // closed by the writer after the commit
	cb    func(seqs []uint64, err error) // or, for AppendAsync, called
	seqs  []uint64
	seq1  [1]uint64 // backing for seqs of single-event appends
	err   error
	pre   *preEncoded // the envelopes' bodies, encoded ahead (nil: none)
}

func (r *request) size() int {
	if r.snap != nil || r.ckpt {
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
	putHead
	putSnapshot
	putMeta
)

// undo restores an envelope's fields when its commit fails.
type undo struct {
	env       *pb.Envelope
	streamSeq uint64
	prevSeq   uint64
}

// writer owns all appends: it drains pending requests into one transaction.
type writer struct {
	b        *Bolt
	maxBatch int
	batch    []*request
	overlay  map[string]streamHead   // stream heads after the commit
	local    map[string]streamHead   // one request's new stream heads
	pos      []streamPos             // stream positions of the current request
	head     func(string) streamHead // headOf, for assignStreams
	// the seq the last heads checkpoint is current through (a head whose
	// last event is after it changed since), the events since, and the
	// checkpoint being written, if any
	ckptThrough uint64
	sinceCkpt   int
	round       ckptRound

	undo       []undo
	taken      []*request
	recs       [][]byte // the commit's event records, in seq order (see putBlocks)
	puts       []put
	unsorted   bool // puts are not in the order write needs (see addPut)
	arena      []byte
	marshal    proto.MarshalOptions
	delay      time.Duration     // linger for small batches
	timer      *time.Timer       // reused linger timer
	observer   func(CommitStats) // optional metrics hook
	fault      func() error      // WithCommitFault
	lastReqs   int               // requests in the previous commit
	lastEvents int               // and their events (snapshots count 1)
	// the encoder, if started; the requests it took, in order, not yet
	// committed; encodeFromEvents and encodePerRequest
	enc                   *encoder
	pending               []*request
	encodeFrom, encodePer int
	// commits since the buffers were last trimmed, and how many commits
	// that happens after (trimEvery; tests lower it); the largest
	// arena, batch and overlay used since; the overlay's largest size
	// since it was made
	sinceTrim, trimEvery     int
	peakArena, peakEntries   int
	peakOverlay, overlaySize int
}

// ckptRound is a heads checkpoint being written. A checkpoint at 100,000
// proxies puts about 100,000 heads. In one transaction, that held about
// 27 MB at once (the puts, and bbolt's nodes and dirty pages for every page
// of the heads bucket) and set the daemon's peak RSS. So a checkpoint is a
// round: the heads changed since the last checkpoint, sorted, are put
// checkpointChunk at a time with the commits that follow, each as it is at
// its commit, so that each commit touches a slice of the bucket's pages.
// The commit of the last chunk moves heads_through to the seq the round
// started at. Every head in the file thus covers the events through
// heads_through, and some cover later events too (loadHeads takes both).
type ckptRound struct {
	active  bool
	through uint64   // heads_through once the round is done
	keys    []string // the heads to put, sorted
	done    int      // keys[:done] are committed
	queued  int      // and keys[done:queued] are in the current commit
}

// checkpointChunk is how many stream heads a commit puts while a heads
// checkpoint is being written (see ckptRound): a round at 100,000 proxies
// takes 25 commits.
const checkpointChunk = 4096

// The writer's arena for keys and values starts at initialArena bytes and
// is dropped after a commit that grew it beyond maxArena. Every trimEvery
// commits, the per-batch buffers (arena, puts, undo records, the overlay
// map) that are more than twice as large as the largest batch of that
// period needed are dropped too: a steady pool commits a few dozen events
// at a time, and a start-up burst of thousands must not leave its buffers
// allocated for good, while a sustained burst keeps them.
const (
	initialArena = 64 << 10
	maxArena     = 16 << 20
	minEntries   = 64
)

func newWriter(b *Bolt, maxBatch int) *writer {
	w := &writer{
		b:           b,
		maxBatch:    maxBatch,
		overlay:     make(map[string]streamHead),
		local:       make(map[string]streamHead),
		ckptThrough: b.ckptThrough,
		sinceCkpt:   b.unckptEvents,
		arena:       make([]byte, 0, initialArena),

		trimEvery:  trimEvery,
		encodeFrom: encodeFromEvents,
		encodePer:  encodePerRequest,
	}
	w.head = w.headOf
	return w
}

// run is the writer goroutine. On stop it commits everything queued, then
// exits.
func (w *writer) run() {
	defer close(w.b.writerDone)
	defer w.stopEncoder()
	for {
		if r := w.popPending(); r != nil {
			w.collect(r)
			continue
		}
		select {
		case r := <-w.b.reqs:
			w.collect(r)
		case <-w.b.stop:
			for {
				if r := w.popPending(); r != nil {
					w.collect(r)
					continue
				}
				select {
				case r := <-w.b.reqs:
					w.collect(r)
				default:
					// A last checkpoint, so that the next open scans nothing.
					if w.sinceCkpt > 0 {
						w.commit([]*request{{ckpt: true, done: make(chan struct{})}})
					}
					return
				}
			}
		}
	}
}

// popPending returns the oldest request the encoder took, or nil.
func (w *writer) popPending() *request {
	if len(w.pending) == 0 {
		return nil
	}
	r := w.pending[0]
	w.pending[0] = nil
	w.pending = w.pending[1:]
	return r
}

// The encoder works while the writer is in a bbolt transaction: it takes
// the requests queued meanwhile, in order, and marshals their envelopes
// (all but the seqs the writer assigns, see preEncode), so that the next
// commit only splices the seqs in. It runs only for commits of at least
// encodeFromEvents events from requests of encodePerRequest events or
// more on average: then appends keep coming while a commit runs and carry
// enough events to pay for waking it; small or lone appends go straight
// to the writer as before.
var (
	encodeFromEvents = 1024
	encodePerRequest = 16
)

// encoder is the goroutine of the writer's encoding, started at its first
// use.
type encoder struct {
	start, stop, quit chan struct{}
	taken             chan []*request
	done              chan struct{}
}

// startEncoder lets the encoder take queued requests until endEncoder.
func (w *writer) startEncoder() {
	if w.enc == nil {
		w.enc = &encoder{
			start: make(chan struct{}, 1), stop: make(chan struct{}, 1), quit: make(chan struct{}),
			taken: make(chan []*request), done: make(chan struct{}),
		}
		go w.encode(w.enc)
	}
	w.enc.start <- struct{}{}
}

// endEncoder stops the encoder taking requests and queues what it took.
func (w *writer) endEncoder() {
	w.enc.stop <- struct{}{}
	w.pending = append(w.pending, <-w.enc.taken...)
}

// stopEncoder ends the encoder goroutine, if it was started.
func (w *writer) stopEncoder() {
	if w.enc != nil {
		close(w.enc.quit)
		<-w.enc.done
	}
}

// encode is the encoder goroutine.
func (w *writer) encode(e *encoder) {
	defer close(e.done)
	var taken []*request
	for {
		select {
		case <-e.start:
		case <-e.quit:
			return
		}
		clear(taken)
		taken = taken[:0]
	take:
		for {
			select {
			case r := <-w.b.reqs:
				preEncode(r)
				taken = append(taken, r)
			case <-e.stop:
				break take
			}
		}
		e.taken <- taken
	}
}

// preEncoded holds the bodies (appendBodyFast) of a request's envelopes.
type preEncoded struct {
	buf   []byte
	spans []preSpan // one per envelope
}

// preSpan is where an envelope's body is in buf, with its event at mid;
// end is 0 for an envelope the writer marshals itself.
type preSpan struct{ start, mid, end int }

// body returns the body of envelope i and where its event starts.
func (p *preEncoded) body(i int) (body []byte, mid int, ok bool) {
	if p == nil || p.spans[i].end == 0 {
		return nil, 0, false
	}
	sp := p.spans[i]
	return p.buf[sp.start:sp.end], sp.mid - sp.start, true
}

var preEncodedPool = sync.Pool{New: func() any { return new(preEncoded) }}

// maxPooledPre: larger buffers are not recycled.
const maxPooledPre = 1 << 20

// preEncode encodes the bodies of r's envelopes (that the direct codec
// handles) into r.pre, unless r is no longer pending.
func preEncode(r *request) {
	if len(r.envs) == 0 || !fastCodec || !r.state.CompareAndSwap(reqPending, reqEncoding) {
		return
	}
	p := preEncodedPool.Get().(*preEncoded)
	p.buf, p.spans = p.buf[:0], p.spans[:0]
	for _, e := range r.envs {
		start := len(p.buf)
		var mid int
		var ok bool
		if p.buf, mid, ok = appendBodyFast(p.buf, e); ok {
			p.spans = append(p.spans, preSpan{start, mid, len(p.buf)})
		} else {
			p.spans = append(p.spans, preSpan{})
		}
	}
	r.pre = p
	r.state.Store(reqPending) // only the encoder leaves reqEncoding
	encodedRequests.Add(1)
}

// encodedRequests counts the requests preEncode encoded, and
// writerYields how often the writer yielded before gathering a batch (for
// tests).
var encodedRequests, writerYields atomic.Uint64

// releasePre recycles r's pre-encoded bodies.
func releasePre(r *request) {
	if p := r.pre; p != nil {
		r.pre = nil
		if cap(p.buf) <= maxPooledPre {
			preEncodedPool.Put(p)
		}
	}
}

// collect gathers r and whatever else is queued (what the encoder took
// first), up to the batch cap, and commits them.
func (w *writer) collect(r *request) {
	w.batch = append(w.batch[:0], r)
	n := r.size()
	// Let the appenders just woken by the previous commit queue their next
	// requests, so that they join this commit instead of waiting a whole
	// fsync for the next: a yield, not a wait. Not after a commit large
	// enough for the encoder (see encodeFromEvents): its appenders take
	// long to make their next requests, the writer would wait for them
	// instead of committing what is queued, and what they queue while this
	// commit runs is marshalled meanwhile by the encoder.
	if w.lastEvents < w.encodeFrom || w.lastEvents < w.encodePer*w.lastReqs {
		writerYields.Add(1)
		runtime.Gosched()
	}
gather:
	for n < w.maxBatch {
		if r := w.popPending(); r != nil {
			w.batch = append(w.batch, r)
			n += r.size()
			continue
		}
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
	w.lastReqs, w.lastEvents = len(w.batch), n
	w.commit(w.batch)
	clear(w.batch)
}

// headOf is a proxy's stream head including the batch so far.
func (w *writer) headOf(p string) streamHead {
	if h, ok := w.overlay[p]; ok {
		return h
	}
	return w.b.heads[p] // only the writer writes heads; reading needs no lock
}

// commit validates, writes and acknowledges one batch of requests.
func (w *writer) commit(batch []*request) {
	b := w.b
	clear(w.overlay)
	w.puts, w.undo, w.recs, w.arena = w.puts[:0], w.undo[:0], w.recs[:0], w.arena[:0]
	w.unsorted = false
	next := b.head.Load() + 1
	taken := w.taken[:0]
	ckpt := false
	for _, r := range batch {
		if !r.state.CompareAndSwap(reqPending, reqTaken) {
			continue // abandoned by its caller; nobody waits for it
		}
		taken = append(taken, r)
		switch {
		case r.ckpt:
			ckpt = true
		case r.snap != nil:
			w.prepareSnapshot(r)
		default:
			next = w.prepareAppend(r, next)
		}
	}
	defer w.reset(taken)
	w.putBlocks(b.head.Load() + 1)
	if !ckpt {
		w.prepareChunk(next - 1)
	}
	chunk := w.round.active && w.round.queued > w.round.done
	var err error
	start := time.Now()
	if len(w.puts) > 0 {
		encode := len(w.undo) >= w.encodeFrom && len(w.undo) >= w.encodePer*len(taken)
		if encode {
			w.startEncoder()
		}
		b.commitMu.Lock()
		err = b.update(w.write)
		if err == nil {
			if len(w.overlay) > 0 {
				b.headsMu.Lock()
				for p, h := range w.overlay {
					b.heads[p] = h
				}
				b.headsMu.Unlock()
			}
			b.recent.add(w.undo)
			b.head.Store(next - 1)
			w.sinceCkpt += len(w.undo)
			w.chunkCommitted(next - 1)
		} else {
			w.round = ckptRound{} // the next commit starts it again
		}
		b.commitMu.Unlock()
		if encode {
			w.endEncoder()
		}
	}
	wrote := len(w.puts) > 0
	var ckptErr error
	if err != nil {
		err = fmt.Errorf("journal: commit to %s failed, nothing of it was written: %w", b.path, b.dbErr(err))
		for _, u := range w.undo {
			u.env.Seq, u.env.StreamSeq, u.env.PrevSeq = 0, u.streamSeq, u.prevSeq
		}
	} else if ckpt {
		wrote = true
		if ckptErr = w.checkpointAll(next - 1); ckptErr != nil {
			ckptErr = fmt.Errorf("journal: checkpoint of the stream heads in %s failed (the events are written; the next open scans them): %w", b.path, b.dbErr(ckptErr))
		}
	}
	if w.observer != nil && wrote {
		// Before the appenders are answered: whoever watches the commits
		// (the engine's journal health) knows of a failure before a
		// command fails with it, and a test can stop the process exactly
		// between a commit and its acknowledgement.
		w.observer(CommitStats{Events: len(w.undo), Requests: len(taken), Duration: time.Since(start), Err: cmp.Or(err, ckptErr)})
	}
	for _, r := range taken {
		if err != nil && r.err == nil {
			r.err, r.seqs = err, nil
		}
		if r.ckpt && ckptErr != nil {
			r.err = ckptErr
		}
		if r.cb != nil {
			if r.err != nil {
				r.seqs = nil
			}
			r.cb(r.seqs, r.err)
		} else {
			close(r.done)
		}
	}
	if err == nil && len(w.undo) > 0 {
		b.note.broadcast()
	}
	if w.sinceTrim++; w.sinceTrim >= w.trimEvery {
		w.sinceTrim = 0
		w.trim()
	}
	// A commit reads pages through the mmap (the path to each key it puts,
	// pages bbolt reuses from anywhere in the file), and they stay mapped:
	// at 10,000 proxies and 10 commits a second, 1–5 MiB within the 25 s
	// that 256 commits used to wait for a release (a sawtooth in the
	// daemon's resident set). At most every scatteredRelease they go: what
	// a commit reads next is faulted back from the page cache. A commit
	// with a chunk of a heads checkpoint releases them at once (see
	// releaseChunk).
	if chunk {
		b.releaseChunk()
	} else {
		b.noteScattered()
	}
}

// trimEvery is how many commits the writer makes between two trim
// calls (a few seconds at the engine's commit rate).
const trimEvery = 256

// reset drops the references of a finished commit, so that the envelopes
// of callers and oversized buffers are not kept alive.
func (w *writer) reset(taken []*request) {
	w.peakArena = max(w.peakArena, len(w.arena))
	w.peakEntries = max(w.peakEntries, len(w.puts), len(w.undo), len(taken))
	w.peakOverlay = max(w.peakOverlay, len(w.overlay))
	w.overlaySize = max(w.overlaySize, len(w.overlay))
	for _, r := range taken {
		releasePre(r)
	}
	clear(taken)
	w.taken = taken[:0]
	clear(w.undo)
	clear(w.recs)
	clear(w.puts)
	if cap(w.arena) > maxArena {
		w.arena = make([]byte, 0, initialArena)
	}
}

// trim drops the per-batch buffers that the last trimEvery commits did not
// need (see initialArena).
func (w *writer) trim() {
	if cap(w.arena) > 2*max(w.peakArena, initialArena) {
		w.arena = make([]byte, 0, initialArena)
	}
	if n := 2 * max(w.peakEntries, minEntries); cap(w.puts) > n || cap(w.undo) > n || cap(w.recs) > n || cap(w.taken) > n {
		w.puts, w.undo, w.recs, w.taken = nil, nil, nil, nil
	}
	if w.overlaySize > 2*max(w.peakOverlay, minEntries) { // a cleared map keeps its buckets
		w.overlay, w.overlaySize = make(map[string]streamHead), w.peakOverlay
	}
	w.peakArena, w.peakEntries, w.peakOverlay = 0, 0, 0
}

// prepareAppend validates r's stream seqs against the batch so far and, if
// they fit, assigns seqs and queues its puts. It returns the next free seq.
// A request that fails leaves no trace in the batch.
func (w *writer) prepareAppend(r *request, next uint64) uint64 {
	clear(w.local)
	var err error
	w.pos, err = assignStreams(r.envs, next, w.head, w.local, w.pos[:0])
	if err != nil {
		r.err = err
		return next
	}
	undoMark, arenaMark := len(w.undo), len(w.arena)
	seq := next
	for i, e := range r.envs {
		w.undo = append(w.undo, undo{e, e.StreamSeq, e.PrevSeq})
		e.Seq = seq
		p := e.GetProxyId()
		if p != "" {
			e.StreamSeq, e.PrevSeq = w.pos[i].streamSeq, w.pos[i].prevSeq
		}
		var merr error
		v := w.bytes(func(a []byte) []byte {
			a = beginRecord(a)
			if body, mid, ok := r.pre.body(i); ok {
				return appendSpliced(a, body, mid, e.Seq, e.StreamSeq, e.PrevSeq)
			}
			a, merr = w.appendEnvelope(a, e)
			return a
		})
		finishRecord(v)
		if merr != nil {
			// E.g. a string field that is not valid UTF-8.
			for _, u := range w.undo[undoMark:] {
				u.env.Seq, u.env.StreamSeq, u.env.PrevSeq = 0, u.streamSeq, u.prevSeq
			}
			w.undo, w.recs, w.arena = w.undo[:undoMark], w.recs[:undoMark], w.arena[:arenaMark]
			r.err = fmt.Errorf("%w: envelope %d (proxy_id %q) cannot be encoded: %v", ErrInvalidEvent, i, p, merr)
			return next
		}
		w.recs = append(w.recs, v)
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

// putBlocks queues the puts of the commit's event records, the events
// from seq on, as blocks (see block.go).
func (w *writer) putBlocks(seq uint64) {
	for recs := w.recs; len(recs) > 0; {
		n := blockLen(recs)
		k := w.bytes(func(a []byte) []byte { return appendSeqKey(a, seq) })
		v := recs[0] // an event alone is its record
		if n > 1 {
			v = w.bytes(func(a []byte) []byte { return appendBlock(a, recs[:n]) })
		}
		w.addPut(put{putEvent, k, v})
		seq += uint64(n)
		recs = recs[n:]
	}
}

// appendEnvelope appends e marshalled, with the direct codec when it
// handles e (see codec.go).
func (w *writer) appendEnvelope(dst []byte, e *pb.Envelope) ([]byte, error) {
	if b, ok := appendEnvelopeFast(dst, e); ok {
		return b, nil
	}
	return w.marshal.MarshalAppend(dst, e)
}

// prepareSnapshot validates r's snapshot against the batch so far and
// queues its put.
func (w *writer) prepareSnapshot(r *request) {
	p := r.snap.GetProxyId()
	if err := validateSnapshot(r.snap, w.headOf(p).seq); err != nil {
		r.err = err
		return
	}
	var merr error
	v := w.bytes(func(a []byte) []byte {
		a, merr = w.marshal.MarshalAppend(beginRecord(a), r.snap)
		return a
	})
	finishRecord(v)
	if merr != nil {
		r.err = fmt.Errorf("%w: cannot be marshalled: %v", ErrInvalidSnapshot, merr)
		return
	}
	k := w.bytes(func(a []byte) []byte { return append(a, p...) })
	w.addPut(put{putSnapshot, k, v})
}

// prepareChunk queues the next chunk of the heads checkpoint being
// written, after starting one as of seq through if checkpointInterval
// events were committed since the last.
func (w *writer) prepareChunk(through uint64) {
	r := &w.round
	if !r.active {
		if w.sinceCkpt+len(w.undo) < checkpointInterval(len(w.b.heads)) {
			return
		}
		w.startRound(through)
	}
	r.queued = min(r.done+checkpointChunk, len(r.keys))
	for _, p := range r.keys[r.done:r.queued] {
		w.putHead(p, w.headOf(p))
	}
	if r.queued == len(r.keys) {
		k := w.bytes(func(a []byte) []byte { return append(a, metaHeadsThrough...) })
		v := w.bytes(func(a []byte) []byte { return appendSeqKey(a, r.through) })
		w.addPut(put{putMeta, k, v})
	}
}

// startRound starts a heads checkpoint as of seq through (see ckptRound):
// it lists the heads changed since the last checkpoint, in this commit or
// before. A head changed before this commit is one whose last event came
// after the last checkpoint, so no set of them is kept between rounds;
// finding them walks the heads, about a millisecond at 100,000 proxies,
// once every checkpointInterval events.
func (w *writer) startRound(through uint64) {
	// At most every head: appended from nil, the keys left five times
	// their final array as garbage (8 MB against 1.6 at 100,000 proxies
	// in the daemon's allocation profile, whose first round puts every
	// proxy's head).
	keys := make([]string, 0, len(w.b.heads)+len(w.overlay))
	for p, h := range w.b.heads { // only the writer writes heads
		if h.last > w.ckptThrough {
			keys = append(keys, p)
		}
	}
	for p := range w.overlay {
		if h, ok := w.b.heads[p]; !ok || h.last <= w.ckptThrough {
			keys = append(keys, p)
		}
	}
	slices.Sort(keys)
	w.round = ckptRound{active: true, through: through, keys: keys}
}

// chunkCommitted records that the commit with the chunk prepareChunk
// queued is written; after the last chunk, the checkpoint is current
// through its round's seq, and head is the seq of the commit.
func (w *writer) chunkCommitted(head uint64) {
	r := &w.round
	if !r.active {
		return
	}
	if r.done = r.queued; r.done == len(r.keys) {
		w.ckptThrough, w.sinceCkpt = r.through, int(head-r.through)
		w.round = ckptRound{}
	}
}

// checkpointAll writes a whole heads checkpoint as of seq head, the last
// committed, in transactions of its own (Close, and Retain before it
// deletes): the round under way, if any, is dropped (the heads it put stay
// valid) and a new one written to its end.
func (w *writer) checkpointAll(head uint64) error {
	w.startRound(head)
	for w.round.active {
		w.puts, w.arena, w.unsorted = w.puts[:0], w.arena[:0], false
		w.prepareChunk(head)
		w.b.commitMu.Lock()
		err := w.b.update(w.write)
		if err == nil {
			w.chunkCommitted(head)
		}
		w.b.commitMu.Unlock()
		if err != nil {
			w.round = ckptRound{}
			return err
		}
		w.b.releaseChunk()
	}
	return nil
}

func (w *writer) putHead(p string, h streamHead) {
	k := w.bytes(func(a []byte) []byte { return append(a, p...) })
	v := w.bytes(func(a []byte) []byte { return appendHead(a, h) })
	w.addPut(put{putHead, k, v})
}

// addPut queues p, noting whether the puts are still in write's order
// (see comparePuts): a commit's events come in order, and so do the heads
// of a checkpoint's chunk, but snapshots may come before them.
func (w *writer) addPut(p put) {
	if n := len(w.puts); n > 0 && comparePuts(p, w.puts[n-1]) < 0 {
		w.unsorted = true
	}
	w.puts = append(w.puts, p)
}

// bytes appends to the arena with f and returns what f added, capped so
// later appends never write into it. If the arena grows, earlier slices
// keep the old array, which stays valid.
func (w *writer) bytes(f func([]byte) []byte) []byte {
	start := len(w.arena)
	w.arena = f(w.arena)
	return w.arena[start:len(w.arena):len(w.arena)]
}

// comparePuts orders puts by bucket, and a checkpoint's heads by key.
func comparePuts(a, b put) int {
	if a.bucket != b.bucket || a.bucket != putHead {
		return int(a.bucket) - int(b.bucket)
	}
	return bytes.Compare(a.k, b.k)
}

// write is the transaction body of a commit.
func (w *writer) write(tx *bolt.Tx) error {
	buckets := [4]*bolt.Bucket{
		putEvent:    tx.Bucket(bucketEvents),
		putHead:     tx.Bucket(bucketHeads),
		putSnapshot: tx.Bucket(bucketSnapshots),
		putMeta:     tx.Bucket(bucketMeta),
	}
	buckets[putEvent].FillPercent = 1.0 // keys are appended in order
	// Puts are written in key order, so that bbolt visits each page once.
	// Most commits hold events only, already in order.
	if w.unsorted {
		slices.SortStableFunc(w.puts, comparePuts)
	}
	for _, p := range w.puts {
		if err := buckets[p.bucket].Put(p.k, p.v); err != nil {
			return fmt.Errorf("put into %s: %w", [...]string{"events", "heads", "snapshots", "meta"}[p.bucket], err)
		}
	}
	if w.fault != nil {
		if err := w.fault(); err != nil {
			return fmt.Errorf("injected commit fault: %w", err)
		}
	}
	return nil
}
