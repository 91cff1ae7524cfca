package journal

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// retainChunk is how many events one Retain transaction deletes at most.
const retainChunk = 8192

// errNothing rolls back a transaction that found nothing to do.
var errNothing = errors.New("nothing to do")

// Retain implements Journal. It deletes in transactions of up to 8192
// events, so appends interleave with a long retention run; ctx is checked
// between them. It first checkpoints the stream heads: events after the
// checkpoint are what the next open scans, so they are never deleted.
func (b *Bolt) Retain(ctx context.Context, cutoff time.Time) (int, error) {
	if err := b.writable(ctx); err != nil {
		return 0, err
	}
	b.retainMu.Lock()
	defer b.retainMu.Unlock()
	if err := b.submit(ctx, &request{ckpt: true, done: make(chan struct{})}); err != nil {
		return 0, fmt.Errorf("journal: retain in %s: checkpoint the stream heads: %w", b.path, err)
	}
	limit := cutoff.UnixNano()
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, more, err := b.retainOnce(limit)
		total += n
		if err != nil || !more {
			return total, err
		}
	}
}

// retainOnce deletes one chunk of the prefix to retain. more reports that
// the chunk was full and the next might delete more.
func (b *Bolt) retainOnce(limit int64) (n int, more bool, err error) {
	var newFirst uint64
	b.commitMu.Lock()
	defer b.commitMu.Unlock()
	err = b.update(func(tx *bolt.Tx) error {
		events, snaps := tx.Bucket(bucketEvents), tx.Bucket(bucketSnapshots)
		through, err := readSeq(tx, metaHeadsThrough, 0)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrCorrupt, b.path, err)
		}
		covered := make(map[string]uint64) // proxy -> snapshot stream_seq
		carried := make(map[string][]byte) // see Carrier
		// deletable reports whether event seq (record v) may go: before
		// the cutoff, the heads checkpoint and its proxy's snapshot.
		deletable := func(seq uint64, v []byte) (bool, error) {
			h, err := eventHeader(v, seq, b.crcFrom)
			if err != nil {
				return false, fmt.Errorf("%w: %s: event %d cannot be decoded (%v); run a check", ErrCorrupt, b.path, seq, err)
			}
			if h.at >= limit || h.seq > through {
				return false, nil
			}
			if len(h.proxyID) > 0 {
				cov, ok := covered[string(h.proxyID)]
				if !ok {
					cov, err = snapshotCoverage(snaps, h.proxyID)
					if err != nil {
						return false, fmt.Errorf("%w: %s: %v", ErrCorrupt, b.path, err)
					}
					covered[string(h.proxyID)] = cov
				}
				return h.streamSeq <= cov, nil // else the proxy could not be recovered without it
			}
			p, _ := eventPayload(v, h.seq, b.crcFrom) // verified by eventHeader
			if err := carryDeleted(carried, p, h.seq); err != nil {
				return false, fmt.Errorf("%w: %s: %v; run a check", ErrCorrupt, b.path, err)
			}
			return true, nil
		}
		// The blocks whose events all go are deleted; one whose first
		// events go is stored again from its first kept event (cut).
		var keys [][]byte
		var cut block
		var cutKey []byte
		var last uint64 // the last event deleted
		c := events.Cursor()
		k, v := c.First()
	blocks:
		for ; k != nil && n < retainChunk; k, v = c.Next() {
			blk, err := openBlock(k, v)
			if err != nil {
				return fmt.Errorf("%w: %s: %v; run a check", ErrCorrupt, b.path, err)
			}
			for blk.n > 0 {
				before := blk
				seq, rec, err := blk.next()
				if err != nil {
					return fmt.Errorf("%w: %s: %v; run a check", ErrCorrupt, b.path, err)
				}
				ok, err := deletable(seq, rec)
				if err != nil {
					return err
				}
				if !ok {
					if before.seq != binary.BigEndian.Uint64(k) {
						cut, cutKey = before, bytes.Clone(k)
					}
					break blocks
				}
				n, last = n+1, seq
			}
			keys = append(keys, bytes.Clone(k))
		}
		if n == 0 {
			return errNothing
		}
		more = n >= retainChunk && k != nil
		for _, key := range keys {
			if err := events.Delete(key); err != nil {
				return err
			}
		}
		if cutKey != nil {
			rest, err := cut.tail()
			if err != nil {
				return fmt.Errorf("%w: %s: %v; run a check", ErrCorrupt, b.path, err)
			}
			if err := events.Delete(cutKey); err != nil {
				return err
			}
			if err := events.Put(appendSeqKey(nil, last+1), rest); err != nil {
				return err
			}
		}
		newFirst = last + 1
		if err := putCarried(tx, carried); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(metaFirst, binary.BigEndian.AppendUint64(nil, newFirst))
	})
	if errors.Is(err, errNothing) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("journal: retain in %s: %w", b.path, b.dbErr(err))
	}
	b.first.Store(newFirst)
	return n, more, nil
}

// snapshotCoverage returns the stream_seq a proxy's snapshot covers (0 when
// it has none).
func snapshotCoverage(snaps *bolt.Bucket, proxyID []byte) (uint64, error) {
	v := snaps.Get(proxyID)
	if v == nil {
		return 0, nil
	}
	var s pb.ProxySnapshot
	if err := unmarshalSnapshot(v, proxyID, &s); err != nil {
		return 0, err
	}
	return s.GetStreamSeq(), nil
}

// Check implements Journal. It runs in one transaction and holds the write
// lock while it runs (appends wait), except on a read-only journal. It
// first walks the file's page structure with plain reads (so that a
// damaged page is reported, not faulted on), then checks the journal's
// invariants and runs bbolt's page-level consistency check.
func (b *Bolt) Check(ctx context.Context) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var p problems
	check := func(tx *bolt.Tx) error {
		if err := b.checkTx(ctx, tx, &p); err != nil {
			return err
		}
		for err := range tx.Check() {
			p.add("bbolt: %v", err)
		}
		return errNothing // never commit
	}
	// First the structure, with plain reads: bbolt's own check follows
	// every page id it finds and would fault on a damaged one.
	walk := func() error {
		l, err := inspectFile(b.path, walkFull)
		if err == nil && l.metaDamage != "" {
			return fmt.Errorf("%w: %s: %s; the journal itself is intact", ErrCorrupt, b.path, l.metaDamage)
		}
		return err
	}
	var err error
	if b.readOnly {
		if err = walk(); err == nil {
			err = b.view(check)
		}
	} else {
		b.commitMu.Lock()
		if err = walk(); err == nil {
			err = b.update(check)
		}
		b.commitMu.Unlock()
	}
	if err != nil && !errors.Is(err, errNothing) {
		return b.dbErr(err)
	}
	return p.err(b.path)
}

// checkTx verifies the journal's invariants within tx.
func (b *Bolt) checkTx(ctx context.Context, tx *bolt.Tx, p *problems) error {
	if v := tx.Bucket(bucketMeta).Get(metaSchema); len(v) != 8 || binary.BigEndian.Uint64(v) != b.schemaVer {
		p.add("schema version is %x, want %d", v, b.schemaVer)
	}
	if b.schemaVer >= 3 {
		if v := tx.Bucket(bucketMeta).Get(metaCRCFrom); len(v) != 8 || binary.BigEndian.Uint64(v) != b.crcFrom {
			p.add("the first checksummed seq (meta crc_from) is %x, but %d was read at open", v, b.crcFrom)
		}
	}
	first, err := readFirst(tx)
	if err != nil {
		p.add("%v", err)
		first = 1
	}
	if f := b.First(); f != first {
		p.add("first retained seq is %d in the file but %d in memory", first, f)
	}
	through, err := readSeq(tx, metaHeadsThrough, 0)
	if err != nil {
		p.add("%v", err)
	}
	ec := eventChecker{b: b, p: p, stats: make(map[string]*streamStat), first: first, through: through, next: first}
	err = tx.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
		blk, err := openBlock(k, v)
		if err != nil {
			p.add("%v", err)
			return nil
		}
		for blk.n > 0 {
			if ec.n++; ec.n%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			seq, rec, err := blk.next()
			if err != nil {
				p.add("%v", err)
				return nil
			}
			ec.event(seq, rec)
		}
		return nil
	})
	if err != nil {
		return err
	}
	next := ec.next
	if h := b.Head(); next-1 != h {
		p.add("the last event is %d but the head is %d", next-1, h)
	}
	if through > next-1 {
		p.add("the stream heads are checkpointed through event %d, beyond the last event %d", through, next-1)
	}
	b.checkHeads(tx, p, ec.stats, first, through)
	checkCarried(tx, p, first)
	return tx.Bucket(bucketSnapshots).ForEach(func(k, v []byte) error {
		var s pb.ProxySnapshot
		if err := unmarshalSnapshot(v, k, &s); err != nil {
			p.add("%v", err)
			return nil
		}
		if s.GetProxyId() != string(k) {
			p.add("snapshot stored under proxy %q names proxy %q", k, s.GetProxyId())
		}
		if h := b.StreamHead(string(k)); s.GetStreamSeq() > h {
			p.add("snapshot of proxy %q covers stream_seq %d beyond the stream head %d", k, s.GetStreamSeq(), h)
		}
		return nil
	})
}

// eventChecker checks the events of a file in order (Check).
type eventChecker struct {
	b              *Bolt
	p              *problems
	stats          map[string]*streamStat
	first, through uint64
	next           uint64 // the seq expected next
	n              int    // the events seen so far
	e              pb.Envelope
}

// event checks event seq, whose record is v: its place after the one
// before, its record and its stream.
func (c *eventChecker) event(seq uint64, v []byte) {
	p := c.p
	switch {
	case seq < c.next && c.n == 1:
		p.add("event %d precedes the first retained seq %d", seq, c.first)
	case seq < c.next:
		p.add("event key %d out of order", seq)
	case seq == c.next+1:
		p.add("event %d is missing", c.next)
	case seq > c.next:
		p.add("events %d..%d are missing", c.next, seq-1)
	}
	c.next = seq + 1
	e := &c.e
	e.Reset()
	if err := unmarshalEnvelope(v, e, seq, c.b.crcFrom); err != nil {
		p.add("%v", err)
		return
	}
	if st := addStreamEvent(p, c.stats, e, seq, c.first); st != nil && seq <= c.through {
		st.ckptStream, st.ckptSeq = st.last, st.lastSeq
	}
}

// checkHeads compares the stream heads in memory and in the checkpoint
// with the streams seen in the events. A checkpointed head is the stream's
// as of heads_through (through), or a later event of the stream that a
// checkpoint round put (see ckptRound).
func (b *Bolt) checkHeads(tx *bolt.Tx, p *problems, stats map[string]*streamStat, first, through uint64) {
	g := newEventCursor(tx.Bucket(bucketEvents))
	// later reports whether h points at an event of proxy id after through.
	later := func(id string, h streamHead) bool {
		if h.last <= through {
			return false
		}
		v, err := g.get(h.last)
		if v == nil || err != nil {
			return false
		}
		e, err := eventHeader(v, h.last, b.crcFrom)
		return err == nil && string(e.proxyID) == id && e.streamSeq == h.seq
	}
	b.headsMu.RLock()
	defer b.headsMu.RUnlock()
	for id, st := range stats {
		if h := b.heads[id]; h.seq != st.last || h.last != st.lastSeq {
			p.add("proxy %s: stream head is stream_seq %d at event %d, but the stream ends with stream_seq %d at event %d", id, h.seq, h.last, st.last, st.lastSeq)
		}
	}
	for id, h := range b.heads {
		if stats[id] == nil && h.last >= first {
			p.add("proxy %s: stream head points at event %d, which is retained but not an event of this proxy", id, h.last)
		}
	}
	ckpt := make(map[string]bool)
	_ = tx.Bucket(bucketHeads).ForEach(func(k, v []byte) error {
		id := string(k)
		ckpt[id] = true
		h, ok := parseHead(v)
		if !ok {
			p.add("checkpointed stream head of proxy %q is malformed (%x)", k, v)
			return nil
		}
		st := stats[id]
		switch {
		case later(id, h):
			// put by a checkpoint round after through
		case st != nil && st.ckptSeq != 0 && (h.seq != st.ckptStream || h.last != st.ckptSeq):
			p.add("proxy %s: checkpointed stream head is stream_seq %d at event %d, but the events say stream_seq %d at event %d", id, h.seq, h.last, st.ckptStream, st.ckptSeq)
		case (st == nil || st.ckptSeq == 0) && h.last >= first:
			p.add("proxy %s: checkpointed stream head points at event %d, which is retained but not an event of this proxy before the checkpoint", id, h.last)
		case b.heads[id].seq < h.seq:
			p.add("proxy %s: checkpointed stream head %d is ahead of the head %d", id, h.seq, b.heads[id].seq)
		}
		return nil
	})
	for id, st := range stats {
		if st.ckptSeq != 0 && !ckpt[id] {
			p.add("proxy %s has events before the heads checkpoint but no checkpointed head", id)
		}
	}
}
