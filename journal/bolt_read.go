package journal

import (
	"context"
	"fmt"
	"iter"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// readChunk is how many envelopes one short read transaction decodes, so
// that a long replay never holds one read transaction (which would block
// the file from growing) for long.
const readChunk = 4096

// Read implements Journal. It reads in chunks of short read transactions;
// events deleted by a concurrent Retain are skipped.
func (b *Bolt) Read(ctx context.Context, from uint64) iter.Seq2[*pb.Envelope, error] {
	end := b.Head()
	return func(yield func(*pb.Envelope, error) bool) {
		// The decoders' interners are held for the whole read: taken from
		// their pool for each chunk, they would be emptied by every garbage
		// collection (every few chunks at replay speed), and their strings
		// copied anew.
		ins := getInterners()
		defer ins.put()
		chunks(ctx, from, end, (*pb.Envelope).GetSeq, func(next uint64, dst []*pb.Envelope) ([]*pb.Envelope, error) {
			return b.readRange(next, end, readChunk, dst, ins)
		})(yield)
	}
}

// readCommitted implements feed.
func (b *Bolt) readCommitted(from uint64, n int, dst []*pb.Envelope) ([]*pb.Envelope, error) {
	end := b.Head()
	if from >= b.First() {
		if out, ok := b.recent.get(from, end, n, dst); ok {
			return out, nil
		}
	}
	ins := getInterners()
	defer ins.put()
	return b.readRange(from, end, n, dst, ins)
}

// readRange decodes up to n envelopes with from <= seq <= end in one read
// transaction, starting at the first retained seq if from was deleted; ins
// are the interners of its decoders. A large chunk is decoded by two
// goroutines: a helper decodes the records in blocks of decodeBlock as the
// cursor walks past them, and once the walk is done this goroutine decodes
// the blocks the helper has not taken yet (the cursor walk is cheaper than
// decoding, so the helper rarely waits for it).
func (b *Bolt) readRange(from, end uint64, n int, dst []*pb.Envelope, ins *readInterners) ([]*pb.Envelope, error) {
	err := b.viewEvents(func(events *bolt.Bucket, first uint64) error {
		next := max(from, first)
		if next > end {
			return nil
		}
		count := int(min(uint64(n), end-next+1))
		vp := valsPool.Get().(*[][]byte)
		defer func() {
			clear(*vp)
			valsPool.Put(vp)
		}()
		vals := slices.Grow((*vp)[:0], count)[:count] // point into the mmap: valid during tx
		*vp = vals
		start := len(dst)
		dst = slices.Grow(dst, count)[:start+count]
		out := dst[start:]
		blocks := decodeBlocks{out: out, vals: vals, count: count, first: next, crcFrom: b.crcFrom}
		parallel := count >= parallelDecodeMin && runtime.GOMAXPROCS(0) >= 2
		var helper *blockDecoder // started with the first block walked (count > decodeBlock)
		if parallel {
			blocks.ready = make(chan int, (count+decodeBlock-1)/decodeBlock) // sends never block
			// Also when a fault below unwinds: vals go back to their
			// pool, and the transaction ends, only after the helper.
			defer func() {
				blocks.abort()
				blocks.finish()
			}()
		}

		ec := newEventCursor(events)
		seq, v, err := ec.seek(next)
		read := 0
		for i := range count {
			if want := next + uint64(i); err != nil || seq != want {
				if parallel {
					blocks.abort()
					blocks.finish() // before out is cleared
				}
				clear(out)
				dst = dst[:start]
				if err != nil {
					return fmt.Errorf("%w: %s: %v; run a check", ErrCorrupt, b.path, err)
				}
				return b.missing(want, seq)
			}
			vals[i] = v
			read += len(v)
			if parallel && (i+1)%decodeBlock == 0 {
				blocks.ready <- i + 1 - decodeBlock
				if helper == nil {
					helper = blocks.startHelper(ins[1])
				}
			}
			if i+1 < count {
				seq, v, err = ec.next()
			}
		}
		b.mappedRead.Add(int64(read))

		var own blockDecoder
		if !parallel {
			own.decode(&blocks, 0, count, ins[0])
		} else {
			if rest := count % decodeBlock; rest != 0 {
				blocks.ready <- count - rest
			}
			blocks.close()
			own.drain(&blocks, ins[0])
			blocks.finish()
			if helper.err != nil && (own.err == nil || helper.at < own.at) {
				own = *helper
			}
		}
		if own.err != nil {
			clear(out)
			dst = dst[:start]
			return fmt.Errorf("%w: %s: %v", ErrCorrupt, b.path, own.err)
		}
		return nil
	})
	// A CompareAndSwap makes one of several concurrent readers release.
	if v := b.mappedRead.Load(); v >= releaseReadBytes && b.mappedRead.CompareAndSwap(v, 0) {
		_ = b.releaseMapped() // only memory accounting is at stake
	}
	return dst, err
}

// noteScattered is called after reads at random places of the file (a
// stream's events, a snapshot) and after every commit: at most every
// scatteredRelease, it drops the file's pages from the process's page
// tables (releaseMapped). A restart's recovery reads every proxy's stream
// and snapshot, all over the file: at 100,000 proxies that left about
// 50 MB of it mapped in the restarted daemon. Counting such reads by
// size, as readRange does, released so often that every stream read
// became ten times slower (each release is followed by page faults for
// what is read next); by time, the faults are those of the first reads
// after a release. Call it outside read transactions: releaseMapped opens
// one.
func (b *Bolt) noteScattered() {
	now := time.Now().UnixNano()
	if last := b.scatteredAt.Load(); now-last >= b.scatteredEvery.Load() && b.scatteredAt.CompareAndSwap(last, now) {
		_ = b.releaseMapped() // only memory accounting is at stake
	}
}

// releaseChunk releases the mapped pages after a commit with a chunk of a
// heads checkpoint (see ckptRound), without waiting for scatteredRelease:
// a chunk's puts read pages all over the heads bucket, and the kernel maps
// up to 16 pages around each page read (its fault-around), so a chunk left
// about 0.6–0.85 MiB of the file resident at 10,000 proxies, and a round's
// three chunks within the 500 ms made the daemon's peak RSS (3.8 MiB of
// the journal file resident at the peak, against about 0.5 otherwise).
func (b *Bolt) releaseChunk() {
	if !releaseChunks {
		return
	}
	_ = b.releaseMapped() // only memory accounting is at stake
	b.scatteredAt.Store(time.Now().UnixNano())
}

// releaseChunks is false only in a test that measures what the release
// saves.
var releaseChunks = true

// scatteredRelease is how often reads at random places and commits release
// the mapped pages at most (noteScattered; Bolt.scatteredEvery).
const scatteredRelease = 500 * time.Millisecond

// decodeBlock is how many records readRange hands its decoding helper at
// a time.
const decodeBlock = 256

// decodeBlocks is a chunk of records being decoded by two goroutines
// (readRange): the walk sends the index of each block of decodeBlock
// records walked to ready, and both decoders take blocks from it.
type decodeBlocks struct {
	out     []*pb.Envelope
	vals    [][]byte
	count   int
	first   uint64 // the seq of vals[0]
	crcFrom uint64
	ready   chan int
	closed  bool
	stop    atomic.Bool // the chunk failed: skip the blocks left
	wg      sync.WaitGroup
}

// startHelper starts the helper goroutine, which decodes with in; its
// result is in the returned decoder once finish returned. readRange starts
// it once a block is ready: started before, it would park at once and have
// to be woken again.
func (d *decodeBlocks) startHelper(in *interner) *blockDecoder {
	h := new(blockDecoder)
	d.wg.Go(func() {
		// vals point into bbolt's mmap: a fault here must not kill the
		// process (see guard).
		defer guard(&h.err, func(r any) error {
			h.at = d.count // after any decoding error
			return fmt.Errorf("decoding faulted: %v", r)
		})()
		h.drain(d, in)
	})
	return h
}

// close tells the decoders that no more blocks come.
func (d *decodeBlocks) close() {
	if !d.closed {
		d.closed = true
		close(d.ready)
	}
}

// abort makes the decoders skip the blocks left.
func (d *decodeBlocks) abort() { d.stop.Store(true) }

// finish closes ready and waits for the helper.
func (d *decodeBlocks) finish() {
	d.close()
	d.wg.Wait()
}

// blockDecoder is one of the goroutines decoding a chunk's blocks: its
// first failure and the index of the record that failed.
type blockDecoder struct {
	err error
	at  int
}

// drain decodes the blocks from d.ready until it is closed; a decoder
// gets its blocks in order, so its first failure is its lowest.
func (b *blockDecoder) drain(d *decodeBlocks, in *interner) {
	for lo := range d.ready {
		if b.err == nil && !d.stop.Load() {
			b.decode(d, lo, min(lo+decodeBlock, d.count), in)
		}
	}
}

// decode decodes d.vals[i] into a new d.out[i] for lo <= i < hi.
func (b *blockDecoder) decode(d *decodeBlocks, lo, hi int, in *interner) {
	for i := lo; i < hi; i++ {
		e, err := decodeEnvelope(d.vals[i], d.first+uint64(i), d.crcFrom, in)
		if err != nil {
			b.err, b.at = err, i
			d.abort()
			return
		}
		d.out[i] = e
	}
}

// releaseReadBytes is how many bytes of records readRange reads from the
// mmap before it drops the journal file's pages from the process's page
// tables (releaseMapped). A replay of the whole journal (a restart's
// catch-up, a rebuild) would otherwise keep every page it read mapped:
// reading 400,000 events (a 48 MiB file) added 41 MiB to the resident set.
var releaseReadBytes int64 = 8 << 20 // a variable for tests

// viewEvents runs fn in a read transaction with the events bucket and the
// first retained seq; ErrClosed once the journal is closed.
func (b *Bolt) viewEvents(fn func(events *bolt.Bucket, first uint64) error) error {
	if b.closed.Load() {
		return ErrClosed
	}
	return b.view(func(tx *bolt.Tx) error {
		first, err := readFirst(tx)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrCorrupt, b.path, err)
		}
		return fn(tx.Bucket(bucketEvents), first)
	})
}

// valsPool recycles the slices of raw records of readRange.
var valsPool = sync.Pool{New: func() any { return new([][]byte) }}

// parallelDecodeMin is the chunk size from which decoding is split over
// two goroutines: decoding dominates replay.
const parallelDecodeMin = 1024

// readInterners are the interners of readRange's two decoders.
type readInterners [2]*interner

// getInterners takes two interners from their pool.
func getInterners() *readInterners {
	return &readInterners{interners.Get().(*interner), interners.Get().(*interner)}
}

// put returns the interners to their pool.
func (r *readInterners) put() {
	interners.Put(r[0])
	interners.Put(r[1])
}

// interners recycles the interners of the decoders, so that a replay
// allocates each proxy ID and source about once.
var interners = sync.Pool{New: func() any { return new(interner) }}

// missing reports a gap found while reading: want was expected but the
// next event stored is got (0: none).
func (b *Bolt) missing(want, got uint64) error {
	if got == 0 {
		return fmt.Errorf("%w: %s: event %d is missing (the events end before the head %d); run a check", ErrCorrupt, b.path, want, b.Head())
	}
	return fmt.Errorf("%w: %s: event %d is missing (the next stored event is %d); run a check", ErrCorrupt, b.path, want, got)
}

// unmarshalEnvelope verifies the record of event seq (its checksum, see
// eventPayload) and decodes it into a zero e, verifying it holds seq.
func unmarshalEnvelope(v []byte, e *pb.Envelope, seq, crcFrom uint64) error {
	p, err := eventPayload(v, seq, crcFrom)
	if err != nil {
		return err
	}
	// Merge skips resetting e, which is new.
	if err := (proto.UnmarshalOptions{Merge: true}).Unmarshal(p, e); err != nil {
		return fmt.Errorf("event %d cannot be decoded: %v", seq, err)
	}
	return checkSeq(e, seq)
}

// decodeEnvelope is unmarshalEnvelope into a new envelope, with the direct
// codec when it handles the record (see codec.go); in interns its strings.
func decodeEnvelope(v []byte, seq, crcFrom uint64, in *interner) (*pb.Envelope, error) {
	p, err := eventPayload(v, seq, crcFrom)
	if err != nil {
		return nil, err
	}
	e := decodeEnvelopeFast(p, in)
	if e == nil {
		e = new(pb.Envelope)
		if err := (proto.UnmarshalOptions{Merge: true}).Unmarshal(p, e); err != nil {
			return nil, fmt.Errorf("event %d cannot be decoded: %v", seq, err)
		}
	}
	return e, checkSeq(e, seq)
}

// checkSeq verifies that the envelope stored under seq holds seq.
func checkSeq(e *pb.Envelope, seq uint64) error {
	if e.GetSeq() != seq {
		return fmt.Errorf("event stored under seq %d holds seq %d", seq, e.GetSeq())
	}
	return nil
}

// ReadStream implements Journal. It follows the stream's prev_seq chain
// back from the head. Fewer than readChunk events are decoded as the walk
// finds them (readTail); more are found first (reading only their
// headers), then decoded in order, in chunks of short read transactions
// like Read. If from was deleted by retention, it starts at the proxy's
// first retained event.
func (b *Bolt) ReadStream(ctx context.Context, proxyID string, from uint64) iter.Seq2[*pb.Envelope, error] {
	head := b.streamHead(proxyID)
	return func(yield func(*pb.Envelope, error) bool) {
		from := max(from, 1)
		if from > head.seq {
			return
		}
		if head.seq-from < readChunk {
			// A stream's tail, as a restarting actor reads it: its events
			// are decoded as the walk finds them, in one transaction.
			envs, err := b.readTail(ctx, proxyID, head, from)
			if err != nil {
				yield(nil, err)
				return
			}
			for _, e := range envs {
				if !yield(e, nil) {
					return
				}
			}
			return
		}
		seqs, err := b.streamSeqs(ctx, proxyID, head, from)
		if err != nil {
			yield(nil, err)
			return
		}
		var buf []*pb.Envelope
		for len(seqs) > 0 {
			if err := ctx.Err(); err != nil {
				yield(nil, err)
				return
			}
			n := min(len(seqs), readChunk)
			if buf, err = b.readSeqs(proxyID, seqs[:n], buf[:0]); err != nil {
				yield(nil, err)
				return
			}
			seqs = seqs[n:]
			for i, e := range buf {
				buf[i] = nil
				if !yield(e, nil) {
					return
				}
			}
		}
	}
}

// walkChunk is how many links of a stream one read transaction follows.
const walkChunk = 1 << 16

// streamSeqs returns the global seqs of a proxy's retained events with
// stream_seq from..head.seq, in stream order.
func (b *Bolt) streamSeqs(ctx context.Context, proxyID string, head streamHead, from uint64) ([]uint64, error) {
	var seqs []uint64 // newest first
	cur, want := head.last, head.seq
	for cur != 0 && want >= from {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		err := b.viewEvents(func(events *bolt.Bucket, first uint64) error {
			g := newEventCursor(events)
			for n := 0; n < walkChunk && cur != 0 && want >= from; n++ {
				if cur < first {
					cur = 0 // the older events were deleted by retention
					return nil
				}
				v, err := b.link(g, proxyID, want, cur)
				if err != nil {
					return err
				}
				h, err := eventHeader(v, cur, b.crcFrom)
				if err != nil {
					return fmt.Errorf("%w: %s: event %d cannot be decoded: %v", ErrCorrupt, b.path, cur, err)
				}
				if err := b.checkLink(proxyID, want, cur, string(h.proxyID), h.streamSeq, h.seq); err != nil {
					return err
				}
				seqs = append(seqs, cur)
				cur, want = h.prevSeq, want-1
			}
			return nil
		})
		b.noteScattered()
		if err != nil {
			return nil, err
		}
	}
	slices.Reverse(seqs)
	return seqs, nil
}

// link returns the record of event cur, which proxyID's stream names as
// its stream_seq want (walking back from its head).
func (b *Bolt) link(g *eventCursor, proxyID string, want, cur uint64) ([]byte, error) {
	v, err := g.get(cur)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: proxy %s: event %d: %v; run a check", ErrCorrupt, b.path, proxyID, cur, err)
	}
	if v == nil {
		return nil, fmt.Errorf("%w: %s: proxy %s: stream_seq %d should be event %d, which is missing; run a check", ErrCorrupt, b.path, proxyID, want, cur)
	}
	return v, nil
}

// checkLink verifies that event cur, the link of proxyID's stream_seq
// want, holds that: proxy id, stream_seq streamSeq and seq seq.
func (b *Bolt) checkLink(proxyID string, want, cur uint64, id string, streamSeq, seq uint64) error {
	if id != proxyID || streamSeq != want || seq != cur {
		return fmt.Errorf("%w: %s: proxy %s: stream_seq %d should be event %d, which holds proxy %q stream_seq %d; run a check",
			ErrCorrupt, b.path, proxyID, want, cur, id, streamSeq)
	}
	return nil
}

// readTail returns the retained events of a proxy's stream with
// stream_seq from..head.seq (fewer than readChunk), in stream order: it
// walks the stream back from its head and decodes each event as it finds
// it, in one read transaction (streamSeqs and readSeqs look every event
// up twice).
func (b *Bolt) readTail(ctx context.Context, proxyID string, head streamHead, from uint64) ([]*pb.Envelope, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	envs := make([]*pb.Envelope, 0, head.seq-from+1) // newest first
	err := b.viewEvents(func(events *bolt.Bucket, first uint64) error {
		g := newEventCursor(events)
		in := interners.Get().(*interner)
		defer interners.Put(in)
		for cur, want := head.last, head.seq; cur >= first && want >= from; want-- {
			v, err := b.link(g, proxyID, want, cur)
			if err != nil {
				return err
			}
			e, err := decodeEnvelope(v, cur, b.crcFrom, in)
			if err != nil {
				return fmt.Errorf("%w: %s: %v", ErrCorrupt, b.path, err)
			}
			if err := b.checkLink(proxyID, want, cur, e.GetProxyId(), e.GetStreamSeq(), e.GetSeq()); err != nil {
				return err
			}
			envs = append(envs, e)
			if cur = e.GetPrevSeq(); cur == 0 {
				break
			}
		}
		return nil
	})
	b.noteScattered()
	if err != nil {
		return nil, err
	}
	slices.Reverse(envs)
	return envs, nil
}

// readSeqs decodes the events with the given seqs, which streamSeqs found
// for proxyID, in one read transaction. Events deleted by a concurrent
// Retain are skipped.
func (b *Bolt) readSeqs(proxyID string, seqs []uint64, dst []*pb.Envelope) ([]*pb.Envelope, error) {
	err := b.viewEvents(func(events *bolt.Bucket, first uint64) error {
		g := newEventCursor(events)
		in := interners.Get().(*interner)
		defer interners.Put(in)
		for _, seq := range seqs {
			if seq < first {
				continue
			}
			v, err := g.get(seq)
			if err != nil {
				return fmt.Errorf("%w: %s: proxy %s: event %d: %v; run a check", ErrCorrupt, b.path, proxyID, seq, err)
			}
			if v == nil {
				return fmt.Errorf("%w: %s: proxy %s: event %d is missing; run a check", ErrCorrupt, b.path, proxyID, seq)
			}
			e, err := decodeEnvelope(v, seq, b.crcFrom, in)
			if err != nil {
				return fmt.Errorf("%w: %s: %v", ErrCorrupt, b.path, err)
			}
			dst = append(dst, e)
		}
		return nil
	})
	return dst, err
}

// LoadSnapshot implements Journal.
func (b *Bolt) LoadSnapshot(ctx context.Context, proxyID string) (*pb.ProxySnapshot, error) {
	if b.closed.Load() {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var s *pb.ProxySnapshot
	defer b.noteScattered()
	err := b.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketSnapshots).Get([]byte(proxyID))
		if v == nil {
			return fmt.Errorf("%w for proxy %s", ErrNoSnapshot, proxyID)
		}
		s = new(pb.ProxySnapshot)
		if err := unmarshalSnapshot(v, []byte(proxyID), s); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrCorrupt, b.path, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}
