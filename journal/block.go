package journal

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Event blocks (schema version 5). A commit stores its events in blocks:
// the events bucket maps the seq of a block's first event to
//
//	0x01 | uvarint n | n × big-endian uint16 end | the n records
//
// whose records (record.go: framed, each with its own checksum) are the
// events seq, seq+1, ..., seq+n-1, and where record i ends (counted from
// the start of the first record) is its end; record i starts where
// record i-1 ends. A value that does not start with 0x01 is one record,
// the event under its key: every value of schema version 4 and older, and
// what this version writes for a commit of a lone event. No protobuf
// message starts with 0x01 (field number 0 is invalid), so a block is
// told apart from an unframed record of schema version 2 by its first
// byte, as a framed record is.
//
// One bbolt put per block instead of one per event: bbolt's Put searches
// the tree from the root and grows a new cursor's stack at every call,
// which was a third of an append's CPU (BenchmarkAppend). A block holds at
// most blockEvents events and at most blockBytes bytes of records (an
// event larger than that is stored alone): a bbolt leaf holds two
// elements at least (see node.split), and two blocks with their headers
// and bbolt's fit two 4 KiB pages; the ends fit 16 bits, so an event is
// found in its block without reading the others.
//
// A block never straddles commits: its events are written at once, and
// retention (Retain) rewrites a block whose first events it deletes under
// the seq of its first kept event.
const (
	recordBlock = 0x01
	blockEvents = 64
	blockBytes  = 3900
)

// block reads the records of one value of the events bucket.
type block struct {
	seq    uint64 // the seq of the next record
	n      int    // the records left
	i      int    // the index of the next record
	ends   []byte // the records' ends (a block)
	data   []byte // and the records
	single []byte // or the value, a lone record (when alone)
	alone  bool
}

// openBlock returns the reader of the events bucket's value v under key k.
func openBlock(k, v []byte) (block, error) {
	var b block
	err := b.open(k, v)
	return b, err
}

// open makes b the reader of the events bucket's value v under key k (b
// is left empty on an error).
func (b *block) open(k, v []byte) error {
	*b = block{}
	if len(k) != 8 {
		return fmt.Errorf("event key %x is not 8 bytes", k)
	}
	seq := binary.BigEndian.Uint64(k)
	if seq == 0 {
		return fmt.Errorf("event key 0: seqs start at 1")
	}
	if len(v) == 0 || v[0] != recordBlock {
		b.seq, b.n, b.single, b.alone = seq, 1, v, true
		return nil
	}
	n, w := binary.Uvarint(v[1:])
	if w <= 0 || n < 2 || n > blockEvents || 1+w+2*int(n) > len(v) {
		return fmt.Errorf("event block at seq %d has a malformed event count (%x); the block is damaged", seq, v[1:min(len(v), 11)])
	}
	ends, data := v[1+w:1+w+2*int(n)], v[1+w+2*int(n):]
	if end := int(binary.BigEndian.Uint16(ends[len(ends)-2:])); end != len(data) {
		return fmt.Errorf("event block at seq %d: its %d records end at byte %d of %d; the block is damaged", seq, n, end, len(data))
	}
	b.seq, b.n, b.ends, b.data = seq, int(n), ends, data
	return nil
}

// last returns the seq of the block's last event.
func (b *block) last() uint64 { return b.seq + uint64(b.n) - 1 }

// next returns the next record and its seq; call it only while b.n > 0.
func (b *block) next() (uint64, []byte, error) {
	seq := b.seq
	if b.alone {
		b.n, b.seq = 0, seq+1
		return seq, b.single, nil
	}
	start := 0
	if b.i > 0 {
		start = int(binary.BigEndian.Uint16(b.ends[2*b.i-2:]))
	}
	end := int(binary.BigEndian.Uint16(b.ends[2*b.i:]))
	if start > end || end > len(b.data) {
		b.n = 0
		return seq, nil, fmt.Errorf("event %d: its record's place in its block (bytes %d to %d of %d) is malformed; the block is damaged", seq, start, end, len(b.data))
	}
	b.i, b.n, b.seq = b.i+1, b.n-1, seq+1
	return seq, b.data[start:end:end], nil
}

// skipTo advances b to event seq, which must be in b.
func (b *block) skipTo(seq uint64) {
	d := int(seq - b.seq)
	b.i, b.n, b.seq = b.i+d, b.n-d, seq
}

// tail returns, in a new array, the value that stores b's remaining
// records (a block, or the lone record).
func (b *block) tail() ([]byte, error) {
	var recs [][]byte
	for b.n > 0 {
		_, rec, err := b.next()
		if err != nil {
			return nil, err
		}
		recs = append(recs, rec)
	}
	return appendBlock(nil, recs), nil
}

// appendBlock appends the block of records (the events seq, seq+1, ...;
// one alone is stored bare) to dst. Several must total at most 65,535
// bytes (blockLen keeps them within blockBytes).
func appendBlock(dst []byte, recs [][]byte) []byte {
	if len(recs) == 1 {
		return append(dst, recs[0]...)
	}
	dst = binary.AppendUvarint(append(dst, recordBlock), uint64(len(recs)))
	end := 0
	for _, r := range recs {
		end += len(r)
		dst = binary.BigEndian.AppendUint16(dst, uint16(end))
	}
	for _, r := range recs {
		dst = append(dst, r...)
	}
	return dst
}

// blockLen returns how many of recs (at least one) the next block takes:
// up to blockEvents, of up to blockBytes in all unless the first alone is
// larger.
func blockLen(recs [][]byte) int {
	size := 0
	for i, r := range recs[:min(len(recs), blockEvents)] {
		if size += len(r); size > blockBytes {
			return max(i, 1)
		}
	}
	return min(len(recs), blockEvents)
}

// eventCursor walks the events bucket event by event, through its blocks.
// Its methods return an event's seq and record, or seq 0 past the last
// event.
type eventCursor struct {
	c   *bolt.Cursor
	key [8]byte
	blk block
}

func newEventCursor(events *bolt.Bucket) *eventCursor {
	return &eventCursor{c: events.Cursor()}
}

// seek moves to event seq or, if there is none, the first event after it,
// and returns it.
func (ec *eventCursor) seek(seq uint64) (uint64, []byte, error) {
	key := appendSeqKey(ec.key[:0], seq)
	k, v := ec.c.Seek(key)
	if len(k) == 8 && binary.BigEndian.Uint64(k) == seq {
		return ec.open(k, v)
	}
	// seq may be inside the block before.
	var pk, pv []byte
	if k == nil {
		pk, pv = ec.c.Last()
	} else {
		pk, pv = ec.c.Prev()
	}
	if pk != nil {
		if err := ec.blk.open(pk, pv); err != nil {
			return 0, nil, err
		}
		if ec.blk.seq < seq && ec.blk.last() >= seq {
			ec.blk.skipTo(seq)
			return ec.blk.next()
		}
	}
	if k, v = ec.c.Seek(key); k == nil {
		ec.blk = block{}
		return 0, nil, nil
	}
	return ec.open(k, v)
}

// first moves to the first event and returns it.
func (ec *eventCursor) first() (uint64, []byte, error) {
	k, v := ec.c.First()
	if k == nil {
		ec.blk = block{}
		return 0, nil, nil
	}
	return ec.open(k, v)
}

func (ec *eventCursor) open(k, v []byte) (uint64, []byte, error) {
	if err := ec.blk.open(k, v); err != nil {
		return 0, nil, err
	}
	return ec.blk.next()
}

// next returns the event after the last one returned.
func (ec *eventCursor) next() (uint64, []byte, error) {
	if ec.blk.n > 0 {
		return ec.blk.next()
	}
	k, v := ec.c.Next()
	if k == nil {
		return 0, nil, nil
	}
	return ec.open(k, v)
}

// get returns the record of event seq, nil if there is none.
func (ec *eventCursor) get(seq uint64) ([]byte, error) {
	s, rec, err := ec.seek(seq)
	if err != nil || s != seq {
		return nil, err
	}
	return rec, nil
}

// lastEvent returns the seq of the last event in events (0 if none).
func lastEvent(events *bolt.Bucket) (uint64, error) {
	k, v := events.Cursor().Last()
	if k == nil {
		return 0, nil
	}
	blk, err := openBlock(k, v)
	if err != nil {
		return 0, err
	}
	return blk.last(), nil
}
