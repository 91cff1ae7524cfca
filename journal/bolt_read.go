package journal

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"iter"
	"runtime"
	"slices"
	"sync"

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
	return chunks(ctx, from, end, (*pb.Envelope).GetSeq, func(next uint64, dst []*pb.Envelope) ([]*pb.Envelope, error) {
		return b.readRange(next, end, readChunk, dst)
	})
}

// readCommitted implements feed.
func (b *Bolt) readCommitted(from uint64, n int, dst []*pb.Envelope) ([]*pb.Envelope, error) {
	return b.readRange(from, b.Head(), n, dst)
}

// readRange decodes up to n envelopes with from <= seq <= end in one read
// transaction, starting at the first retained seq if from was deleted.
func (b *Bolt) readRange(from, end uint64, n int, dst []*pb.Envelope) ([]*pb.Envelope, error) {
	if b.closed.Load() {
		return dst, ErrClosed
	}
	err := b.view(func(tx *bolt.Tx) error {
		first, err := readFirst(tx)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrCorrupt, b.path, err)
		}
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
		var key [8]byte
		c := tx.Bucket(bucketEvents).Cursor()
		k, v := c.Seek(appendSeqKey(key[:0], next))
		for i := range vals {
			if k == nil || binary.BigEndian.Uint64(k) != next+uint64(i) {
				return b.missing(next+uint64(i), k)
			}
			vals[i] = v
			k, v = c.Next()
		}
		start := len(dst)
		dst = slices.Grow(dst, count)[:start+count]
		if err := decodeAll(dst[start:], vals, next); err != nil {
			dst = dst[:start]
			return fmt.Errorf("%w: %s: %v", ErrCorrupt, b.path, err)
		}
		return nil
	})
	return dst, err
}

// valsPool recycles the slices of raw records of readRange.
var valsPool = sync.Pool{New: func() any { return new([][]byte) }}

// parallelDecodeMin is the chunk size from which decoding is split over
// two goroutines: decoding dominates replay.
const parallelDecodeMin = 1024

// decodeAll decodes vals[i] into a new out[i], which must hold seq first+i.
func decodeAll(out []*pb.Envelope, vals [][]byte, first uint64) error {
	decode := func(lo, hi int) error {
		for i := lo; i < hi; i++ {
			out[i] = new(pb.Envelope)
			if err := unmarshalEnvelope(vals[i], out[i], first+uint64(i)); err != nil {
				return err
			}
		}
		return nil
	}
	if len(out) < parallelDecodeMin || runtime.GOMAXPROCS(0) < 2 {
		return decode(0, len(out))
	}
	half := len(out) / 2
	var wg sync.WaitGroup
	var err1 error
	wg.Go(func() { err1 = decode(0, half) })
	err2 := decode(half, len(out))
	wg.Wait()
	if err1 != nil {
		return err1
	}
	return err2
}

// missing reports a gap found while reading: want was expected but the
// cursor is at k (nil at the end).
func (b *Bolt) missing(want uint64, k []byte) error {
	if k == nil {
		return fmt.Errorf("%w: %s: event %d is missing (the events end before the head %d); run a check", ErrCorrupt, b.path, want, b.Head())
	}
	return fmt.Errorf("%w: %s: event %d is missing (the next stored key is %x); run a check", ErrCorrupt, b.path, want, k)
}

// unmarshalEnvelope decodes a record into a zero e and verifies it holds
// seq.
func unmarshalEnvelope(v []byte, e *pb.Envelope, seq uint64) error {
	// Merge skips resetting e, which is new.
	if err := (proto.UnmarshalOptions{Merge: true}).Unmarshal(v, e); err != nil {
		return fmt.Errorf("event %d cannot be decoded: %v", seq, err)
	}
	if e.GetSeq() != seq {
		return fmt.Errorf("event stored under seq %d holds seq %d", seq, e.GetSeq())
	}
	return nil
}

// ReadStream implements Journal. Like Read it uses short read transactions.
// If from was deleted by retention, it starts at the proxy's first retained
// event.
func (b *Bolt) ReadStream(ctx context.Context, proxyID string, from uint64) iter.Seq2[*pb.Envelope, error] {
	end := b.StreamHead(proxyID)
	return chunks(ctx, from, end, (*pb.Envelope).GetStreamSeq, func(next uint64, dst []*pb.Envelope) ([]*pb.Envelope, error) {
		return b.readStreamRange(proxyID, next, end, readChunk, dst)
	})
}

// readStreamRange decodes up to n envelopes of a proxy with from <=
// stream_seq <= end in one read transaction.
func (b *Bolt) readStreamRange(proxyID string, from, end uint64, n int, dst []*pb.Envelope) ([]*pb.Envelope, error) {
	if b.closed.Load() {
		return dst, ErrClosed
	}
	start := len(dst)
	err := b.view(func(tx *bolt.Tx) error {
		events := tx.Bucket(bucketEvents)
		c := tx.Bucket(bucketStreams).Cursor()
		prefix := append([]byte(proxyID), 0)
		next := from
		for k, v := c.Seek(appendStreamKey(nil, proxyID, from)); k != nil && len(dst)-start < n; k, v = c.Next() {
			if !bytes.HasPrefix(k, prefix) || len(k) != len(prefix)+8 {
				break
			}
			s := binary.BigEndian.Uint64(k[len(prefix):])
			if s > end {
				break
			}
			if s != next {
				if len(dst) > start {
					return fmt.Errorf("%w: %s: proxy %s: stream index lacks stream_seq %d (next is %d); run a check", ErrCorrupt, b.path, proxyID, next, s)
				}
				next = s // the events before were deleted by retention
			}
			if len(v) != 8 {
				return fmt.Errorf("%w: %s: proxy %s: stream index entry %d is %d bytes, want 8", ErrCorrupt, b.path, proxyID, s, len(v))
			}
			seq := binary.BigEndian.Uint64(v)
			rec := events.Get(v)
			if rec == nil {
				return fmt.Errorf("%w: %s: proxy %s: stream_seq %d points at event %d, which is missing; run a check", ErrCorrupt, b.path, proxyID, s, seq)
			}
			e := new(pb.Envelope)
			if err := unmarshalEnvelope(rec, e, seq); err != nil {
				return fmt.Errorf("%w: %s: %v", ErrCorrupt, b.path, err)
			}
			if e.GetProxyId() != proxyID || e.GetStreamSeq() != s {
				return fmt.Errorf("%w: %s: proxy %s: stream_seq %d points at event %d of proxy %q stream_seq %d; run a check",
					ErrCorrupt, b.path, proxyID, s, seq, e.GetProxyId(), e.GetStreamSeq())
			}
			dst = append(dst, e)
			next++
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
	err := b.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketSnapshots).Get([]byte(proxyID))
		if v == nil {
			return fmt.Errorf("%w for proxy %s", ErrNoSnapshot, proxyID)
		}
		s = new(pb.ProxySnapshot)
		if err := proto.Unmarshal(v, s); err != nil {
			return fmt.Errorf("%w: %s: snapshot of proxy %s cannot be decoded: %v", ErrCorrupt, b.path, proxyID, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}
