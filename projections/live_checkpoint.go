package projections

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/events/packed"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// ErrBadCheckpoint is returned by ReadCheckpoint for bytes WriteCheckpoint
// did not make (another format version, a damaged or truncated file).
var ErrBadCheckpoint = errors.New("projections: not a live status checkpoint")

// A checkpoint is the live status as of one journal seq: everything a fold
// of the journal up to that seq builds, so that a restart folds only the
// events after it instead of the whole retained journal.
//
//	magic "PHLIVE" and a version byte;
//	seq, lastAt, newestAt, the pool's status, panic mode, the pool's last check;
//	the sources (name, last check, last refresh and error);
//	the proxies, in the order of Live.all: ID, state (packed's codec, or a
//	snapshot when that codec cannot hold it exactly), last passed check,
//	success-rate buckets, last transitions;
//	a CRC-32C of all of it.
//
// Numbers are varints. What the engine reports (checking, next check) is
// not in it: the actors report it again.
const (
	checkpointMagic   = "PHLIVE"
	checkpointVersion = 1

	stateCodec    = 1 // packed.Encode
	stateSnapshot = 2 // a marshalled pb.ProxySnapshot
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// WriteCheckpoint writes the live status to w as one checkpoint (see
// ReadCheckpoint), holding the read lock while it encodes: call it while
// nothing applies (the engine's Close does, after its last catch-up), or
// accept that queries wait behind the feeder meanwhile. It returns the
// seq the checkpoint stands for.
func (l *Live) WriteCheckpoint(w io.Writer) (uint64, error) {
	cw := &crcWriter{w: bufio.NewWriterSize(w, 64<<10), crc: crc32.New(castagnoli)}
	l.mu.RLock()
	seq := l.seq
	l.encodeCheckpoint(cw)
	l.mu.RUnlock()
	if cw.err == nil {
		var sum [4]byte
		binary.LittleEndian.PutUint32(sum[:], cw.crc.Sum32())
		_, cw.err = cw.w.Write(sum[:])
	}
	if cw.err == nil {
		cw.err = cw.w.Flush()
	}
	return seq, cw.err
}

func (l *Live) encodeCheckpoint(cw *crcWriter) {
	var b []byte
	b = append(b, checkpointMagic...)
	b = append(b, checkpointVersion)
	b = binary.AppendUvarint(b, l.seq)
	b = binary.AppendVarint(b, l.lastAt)
	b = binary.AppendVarint(b, l.newestAt)
	b = appendBool(b, l.pool.degraded)
	b = binary.AppendVarint(b, l.pool.at)
	b = binary.AppendUvarint(b, math.Float64bits(l.pool.pct))
	b = binary.AppendUvarint(b, math.Float64bits(l.pool.thres))
	b = appendBool(b, l.panic)
	b = binary.AppendVarint(b, l.global.lastCheck)
	b = binary.AppendUvarint(b, uint64(len(l.names)))
	for _, name := range l.names {
		a := l.sources[name]
		b = appendString(b, name)
		b = binary.AppendVarint(b, a.lastCheck)
		b = binary.AppendVarint(b, a.refresh.last)
		b = binary.AppendVarint(b, a.refresh.errAt)
		b = appendString(b, a.refresh.err)
		b = appendBool(b, a.refresh.held)
	}
	b = binary.AppendUvarint(b, uint64(len(l.all)))
	cw.write(b)
	var snap pb.ProxySnapshot
	var enc []byte // reused
	for _, e := range l.all {
		b = appendString(b[:0], e.id)
		st := e.st.Unpack(e.id)
		var ok bool
		if enc, ok = packed.Encode(enc[:0], st, e.id); ok {
			b = append(b, stateCodec)
			b = appendBytes(b, enc)
		} else {
			m, err := proto.MarshalOptions{Deterministic: true}.Marshal(events.SnapshotInto(&snap, st))
			if err != nil {
				cw.err = firstErr(cw.err, fmt.Errorf("projections: checkpoint proxy %s: %w", e.id, err))
				return
			}
			b = append(b, stateSnapshot)
			b = appendBytes(b, m)
		}
		b = binary.AppendVarint(b, e.lastOK)
		b = e.rates.appendTo(b)
		b = binary.AppendUvarint(b, uint64(e.changes.len()))
		for _, c := range e.changes.buf { // oldest first
			b = binary.AppendVarint(b, c.at)
			b = binary.AppendUvarint(b, c.seq)
			b = appendString(b, c.reason)
			b = binary.AppendUvarint(b, uint64(c.attempt))
			b = append(b, c.from, c.to)
		}
		cw.write(b)
	}
}

// appendTo appends the buckets: lastAt, whether they are wide, and each
// bucket's counts.
func (r *rates) appendTo(b []byte) []byte {
	b = binary.AppendVarint(b, r.lastAt)
	b = appendBool(b, r.wide != nil)
	for i := range numSlots {
		if r.wide != nil {
			b = binary.AppendUvarint(b, uint64(r.wide[i].ok))
			b = binary.AppendUvarint(b, uint64(r.wide[i].total))
		} else {
			b = binary.AppendUvarint(b, uint64(r.narrow[i].ok))
			b = binary.AppendUvarint(b, uint64(r.narrow[i].total))
		}
	}
	return b
}

// ReadCheckpoint restores the live status from a checkpoint written by
// WriteCheckpoint and returns the seq it stands for: l then holds what
// folding the journal up to that seq gives, and Apply goes on after it.
// l must be new (nothing applied, seeded or tracked). On an error
// (ErrBadCheckpoint, or the reader's) l is left half restored: drop it.
func (l *Live) ReadCheckpoint(r io.Reader) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seq != 0 || len(l.all) != 0 || len(l.sources) != 0 || len(l.loose) != 0 {
		return 0, errors.New("projections: ReadCheckpoint needs a new live status")
	}
	d := newCkptDecoder(r)
	if err := l.decodeCheckpoint(d); err != nil {
		return 0, err
	}
	return l.seq, nil
}

func (l *Live) decodeCheckpoint(d *ckptDecoder) error {
	if magic := d.bytesN(len(checkpointMagic) + 1); d.err != nil || string(magic[:len(checkpointMagic)]) != checkpointMagic || magic[len(checkpointMagic)] != checkpointVersion {
		return d.fail("not a checkpoint of this version")
	}
	l.seq = d.uvarint()
	l.lastAt = d.varint()
	l.newestAt = d.varint()
	l.pool.degraded = d.bool()
	l.pool.at = d.varint()
	l.pool.pct = math.Float64frombits(d.uvarint())
	l.pool.thres = math.Float64frombits(d.uvarint())
	l.panic = d.bool()
	l.global.lastCheck = d.varint()
	nsrc := d.count(1 << 20)
	for range nsrc {
		name := d.string()
		if d.err != nil {
			break
		}
		if l.sources[name] != nil {
			return d.fail("source " + name + " twice")
		}
		a := l.sourceAgg(name)
		a.lastCheck = d.varint()
		a.refresh.last = d.varint()
		a.refresh.errAt = d.varint()
		a.refresh.err = d.string()
		a.refresh.held = d.bool()
	}
	n := d.count(1 << 30)
	l.all = make([]*entry, 0, min(n, 1<<16)) // n is not trusted before the checksum
	var snap pb.ProxySnapshot
	for range n {
		id := d.string()
		kind := d.byte()
		enc := d.bytes()
		if d.err != nil {
			break
		}
		var st events.State
		var err error
		switch kind {
		case stateCodec:
			st, err = packed.Decode(enc, id)
		case stateSnapshot:
			snap.Reset()
			if err = proto.Unmarshal(enc, &snap); err == nil {
				st = events.FromSnapshot(&snap)
			}
		default:
			err = errors.New("unknown state encoding")
		}
		if err != nil || st.ProxyID != id || id == "" || st.Removed {
			return d.fail(fmt.Sprintf("proxy %q: bad state (%v)", id, err))
		}
		if l.entries.Get(id) != nil {
			return d.fail("proxy " + id + " twice")
		}
		src := l.sources[st.Source]
		if src == nil {
			return d.fail("proxy " + id + " of an unlisted source")
		}
		st.Source = src.name // as record does
		e := &entry{id: id, st: packed.Pack(&st, id), src: src}
		e.lastOK = d.varint()
		e.rates = d.rates()
		nc := d.count(1 << 16)
		for range nc {
			c := stateChange{at: d.varint(), seq: d.uvarint(), reason: l.reasons.share(d.string())}
			attempt := d.uvarint()
			if attempt > math.MaxUint32 {
				return d.fail("a transition's attempt out of range")
			}
			c.attempt = uint32(attempt)
			c.from, c.to = d.byte(), d.byte()
			if int(c.from) >= numStates || int(c.to) >= numStates {
				return d.fail("a transition's state out of range")
			}
			e.changes.push(c, l.opts.StateChangeCap)
		}
		if d.err != nil {
			break
		}
		l.insert(e)
		l.contribute(e, 1)
	}
	if d.err != nil {
		return d.fail(d.err.Error())
	}
	want := d.sum()
	if sum := d.bytesN(4); d.err != nil || binary.LittleEndian.Uint32(sum) != want {
		return d.fail("checksum mismatch")
	}
	if d.fill(1) {
		return d.fail("bytes after the checksum")
	}
	if d.err != io.ErrUnexpectedEOF {
		return d.fail(d.err.Error())
	}
	return nil
}

// crcWriter writes through w and sums what it wrote; the first error
// sticks.
type crcWriter struct {
	w   *bufio.Writer
	crc hash.Hash32
	err error
}

func (c *crcWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	c.crc.Write(b)
	_, c.err = c.w.Write(b)
}

func firstErr(cur, err error) error {
	if cur != nil {
		return cur
	}
	return err
}

// ckptDecoder reads a checkpoint's fields through its own buffer, summing
// the bytes as they are consumed; the first error sticks (every read after
// it gives zero).
type ckptDecoder struct {
	r        io.Reader
	buf      []byte
	pos, end int
	crc      uint32 // of the bytes consumed before buf[0]
	eof      bool
	err      error
}

func newCkptDecoder(r io.Reader) *ckptDecoder {
	return &ckptDecoder{r: r, buf: make([]byte, 64<<10)}
}

func (d *ckptDecoder) fail(why string) error {
	return fmt.Errorf("%w: %s", ErrBadCheckpoint, why)
}

// fill makes at least n bytes available at buf[pos:] (n ≤ len(buf)), or
// sets d.err.
func (d *ckptDecoder) fill(n int) bool {
	for d.end-d.pos < n {
		if d.eof {
			if d.err == nil {
				d.err = io.ErrUnexpectedEOF
			}
			return false
		}
		d.crc = crc32.Update(d.crc, castagnoli, d.buf[:d.pos])
		d.end = copy(d.buf, d.buf[d.pos:d.end])
		d.pos = 0
		k, err := d.r.Read(d.buf[d.end:])
		d.end += k
		if err == io.EOF {
			d.eof = true
		} else if err != nil {
			d.err = err
			return false
		}
	}
	return true
}

// sum returns the checksum of every byte consumed so far.
func (d *ckptDecoder) sum() uint32 { return crc32.Update(d.crc, castagnoli, d.buf[:d.pos]) }

// ReadByte implements io.ByteReader for binary.ReadUvarint.
func (d *ckptDecoder) ReadByte() (byte, error) {
	if d.err != nil || !d.fill(1) {
		return 0, d.err
	}
	c := d.buf[d.pos]
	d.pos++
	return c, nil
}

func (d *ckptDecoder) byte() byte {
	c, _ := d.ReadByte()
	return c
}

func (d *ckptDecoder) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	if d.err == nil {
		d.err = errors.New("a flag is neither 0 nor 1")
	}
	return false
}

func (d *ckptDecoder) uvarint() uint64 {
	v, err := binary.ReadUvarint(d)
	if err != nil && d.err == nil {
		d.err = err
	}
	return v
}

func (d *ckptDecoder) varint() int64 {
	v, err := binary.ReadVarint(d)
	if err != nil && d.err == nil {
		d.err = err
	}
	return v
}

// count reads a length of at most limit.
func (d *ckptDecoder) count(limit uint64) int {
	n := d.uvarint()
	if n > limit && d.err == nil {
		d.err = fmt.Errorf("a count of %d (at most %d)", n, limit)
	}
	if d.err != nil {
		return 0
	}
	return int(n)
}

// bytesN reads n bytes (valid until the next read).
func (d *ckptDecoder) bytesN(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.buf) {
		nb := make([]byte, max(n, 2*len(d.buf)))
		d.crc = crc32.Update(d.crc, castagnoli, d.buf[:d.pos])
		d.end = copy(nb, d.buf[d.pos:d.end])
		d.buf, d.pos = nb, 0
	}
	if !d.fill(n) {
		return nil
	}
	b := d.buf[d.pos : d.pos+n]
	d.pos += n
	return b
}

// bytes reads a length-prefixed byte string (valid until the next read).
func (d *ckptDecoder) bytes() []byte { return d.bytesN(d.count(1 << 20)) }

func (d *ckptDecoder) string() string { return string(d.bytes()) }

func (d *ckptDecoder) rates() rates {
	r := rates{lastAt: d.varint()}
	wide := d.bool()
	var w [numSlots]rateSlot[uint32]
	for i := range numSlots {
		ok, total := d.uvarint(), d.uvarint()
		if ok > total || total > math.MaxUint32 {
			if d.err == nil {
				d.err = errors.New("a success-rate bucket out of range")
			}
			return newRates()
		}
		w[i] = rateSlot[uint32]{ok: uint32(ok), total: uint32(total)}
		if !wide && total > math.MaxUint16 {
			if d.err == nil {
				d.err = errors.New("a narrow success-rate bucket out of range")
			}
			return newRates()
		}
	}
	if wide {
		r.wide = &w
		return r
	}
	for i, s := range w {
		r.narrow[i] = rateSlot[uint16]{ok: uint16(s.ok), total: uint16(s.total)}
	}
	return r
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}
