package journal

import (
	"context"
	"encoding/binary"
	"fmt"
	"iter"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// MaxProxyIDLen is the longest proxy_id the journal accepts, in bytes.
// Proxy IDs are normally 16 hex digits.
const MaxProxyIDLen = 255

// validateProxyID reports whether id can be used as a stream key.
func validateProxyID(id string) error {
	if len(id) > MaxProxyIDLen {
		return fmt.Errorf("proxy_id is %d bytes long, at most %d allowed", len(id), MaxProxyIDLen)
	}
	if strings.IndexByte(id, 0) >= 0 {
		return fmt.Errorf("proxy_id %q contains a NUL byte", id)
	}
	return nil
}

// validateEnvelopes checks what can be checked without the journal's state:
// every envelope carries an event, no preset seq, and a stream_seq only with
// a proxy_id.
func validateEnvelopes(envs []*pb.Envelope) error {
	for i, e := range envs {
		switch {
		case e == nil:
			return fmt.Errorf("%w: envelope %d is nil", ErrInvalidEvent, i)
		case e.GetEvent() == nil:
			return fmt.Errorf("%w: envelope %d (proxy_id %q) has no event", ErrInvalidEvent, i, e.GetProxyId())
		case e.GetSeq() != 0:
			return fmt.Errorf("%w: envelope %d has seq %d preset; the journal assigns seq, leave it 0", ErrInvalidEvent, i, e.GetSeq())
		case e.GetStreamSeq() != 0 && e.GetProxyId() == "":
			return fmt.Errorf("%w: envelope %d has stream_seq %d but no proxy_id; pool-level events have no stream", ErrInvalidEvent, i, e.GetStreamSeq())
		}
		if err := validateProxyID(e.GetProxyId()); err != nil {
			return fmt.Errorf("%w: envelope %d: %v", ErrInvalidEvent, i, err)
		}
	}
	return nil
}

// validateSnapshot checks a snapshot against the proxy's stream head.
func validateSnapshot(s *pb.ProxySnapshot, streamHead uint64) error {
	if s == nil {
		return fmt.Errorf("%w: snapshot is nil", ErrInvalidSnapshot)
	}
	if s.GetProxyId() == "" {
		return fmt.Errorf("%w: snapshot has no proxy_id", ErrInvalidSnapshot)
	}
	if err := validateProxyID(s.GetProxyId()); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidSnapshot, err)
	}
	if s.GetStreamSeq() > streamHead {
		return fmt.Errorf("%w: snapshot of proxy %s covers stream_seq %d but the stream head is %d; snapshot only committed events",
			ErrInvalidSnapshot, s.GetProxyId(), s.GetStreamSeq(), streamHead)
	}
	return nil
}

// streamPos is where an envelope goes in its proxy's stream: its stream
// seq, and the global seq of the stream's previous event (prev_seq).
type streamPos struct{ streamSeq, prevSeq uint64 }

// assignStreams computes the stream position of every envelope of one
// Append call, whose first envelope takes global seq first, without
// modifying the envelopes. head returns a proxy's stream head including
// earlier calls of the same commit; local is an empty scratch map that
// receives the call's new heads when it succeeds. One position per
// envelope is appended to out (zero for pool-level events).
func assignStreams(envs []*pb.Envelope, first uint64, head func(string) streamHead, local map[string]streamHead, out []streamPos) ([]streamPos, error) {
	// A call usually carries a run of envelopes of one proxy (an actor's
	// events): the head of the current run's proxy is kept in cur/h and
	// goes into local only when another proxy comes, or at the end.
	var cur string
	var h streamHead
	for i, e := range envs {
		p := e.GetProxyId()
		if p == "" {
			out = append(out, streamPos{})
			continue
		}
		if p != cur {
			if cur != "" {
				local[cur] = h
			}
			var ok bool
			if h, ok = local[p]; !ok {
				h = head(p)
			}
			cur = p
		}
		want := h.seq + 1
		if s := e.GetStreamSeq(); s != 0 && s != want {
			return out, fmt.Errorf("%w: proxy %s: envelope %d has stream_seq %d but the next stream_seq is %d (stream head %d); another writer appended to this stream, reload it and decide again",
				ErrStreamConflict, p, i, s, want, h.seq)
		}
		out = append(out, streamPos{streamSeq: want, prevSeq: h.last})
		h = streamHead{seq: want, last: first + uint64(i)}
	}
	if cur != "" {
		local[cur] = h
	}
	return out, nil
}

// appendSeqKey appends the 8-byte big-endian key of a global seq.
func appendSeqKey(dst []byte, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(dst, seq)
}

// header is the part of an envelope that retention, stream reads and the
// stream heads at open need.
type header struct {
	seq       uint64
	streamSeq uint64
	prevSeq   uint64
	at        int64
	proxyID   []byte // aliases the record
}

// decodeHeader reads seq, stream_seq, prev_seq, at_unix_nano and proxy_id
// from a marshalled Envelope without decoding the event.
func decodeHeader(b []byte) (header, error) {
	var h header
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return h, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			h.seq, n = protowire.ConsumeVarint(b)
		case num == 2 && typ == protowire.VarintType:
			h.streamSeq, n = protowire.ConsumeVarint(b)
		case num == 3 && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			h.at = int64(v)
		case num == 4 && typ == protowire.BytesType:
			h.proxyID, n = protowire.ConsumeBytes(b)
		case num == 6 && typ == protowire.VarintType:
			h.prevSeq, n = protowire.ConsumeVarint(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return h, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return h, nil
}

// problems collects the findings of Check.
type problems struct {
	list  []string
	total int
}

const maxProblems = 20

func (p *problems) add(format string, args ...any) {
	p.total++
	if len(p.list) < maxProblems {
		p.list = append(p.list, fmt.Sprintf(format, args...))
	}
}

// err returns nil or an error wrapping ErrCorrupt listing the problems.
func (p *problems) err(what string) error {
	if p.total == 0 {
		return nil
	}
	msg := strings.Join(p.list, "; ")
	if p.total > len(p.list) {
		msg += fmt.Sprintf("; and %d more", p.total-len(p.list))
	}
	return fmt.Errorf("%w: %s: %d problem(s): %s", ErrCorrupt, what, p.total, msg)
}

// streamStat accumulates what Check knows about one proxy's retained
// stream, in global order.
type streamStat struct {
	count       uint64
	first, last uint64 // stream seqs
	lastSeq     uint64 // global seq of the last event
	// the last event at or before the heads checkpoint (Bolt)
	ckptStream, ckptSeq uint64
}

// addStreamEvent records retained event seq, decoded into e, in the stats
// of its stream and returns them; a pool-level event has no stream (nil),
// and must have no stream_seq.
func addStreamEvent(p *problems, stats map[string]*streamStat, e *pb.Envelope, seq, first uint64) *streamStat {
	id := e.GetProxyId()
	if id == "" {
		if e.GetStreamSeq() != 0 {
			p.add("pool-level event %d has stream_seq %d", seq, e.GetStreamSeq())
		}
		return nil
	}
	st := stats[id]
	if st == nil {
		st = &streamStat{}
		stats[id] = st
	}
	st.addEvent(p, id, seq, e.GetStreamSeq(), e.GetPrevSeq(), first)
	return st
}

// addEvent records the next retained event of the stream: its stream_seq
// must follow the previous one and its prev_seq must point at it. The
// stream's first retained event points at nothing (stream_seq 1) or at an
// event deleted by retention (before first).
func (s *streamStat) addEvent(p *problems, proxyID string, seq, streamSeq, prevSeq, first uint64) {
	switch {
	case s.count > 0 && streamSeq != s.last+1:
		p.add("proxy %s: event seq %d has stream_seq %d, expected %d", proxyID, seq, streamSeq, s.last+1)
	case s.count > 0 && prevSeq != s.lastSeq:
		p.add("proxy %s: event seq %d has prev_seq %d, but the stream's previous event is %d", proxyID, seq, prevSeq, s.lastSeq)
	case s.count == 0 && streamSeq == 1 && prevSeq != 0:
		p.add("proxy %s: event seq %d starts the stream but has prev_seq %d", proxyID, seq, prevSeq)
	case s.count == 0 && streamSeq > 1 && prevSeq >= first:
		p.add("proxy %s: event seq %d (stream_seq %d) has prev_seq %d, which is retained but is not an event of this stream", proxyID, seq, streamSeq, prevSeq)
	}
	if s.count == 0 {
		s.first = streamSeq
	}
	s.count++
	s.last, s.lastSeq = streamSeq, seq
}

// chunks turns a chunked reader into the iterator of Read and ReadStream:
// read(next, dst) returns up to readChunk envelopes from position next on
// (appended to dst); pos gives an envelope's position, so that the next
// chunk starts after the last one returned. Envelopes are yielded one by
// one; the iteration stops at the first error, at ctx's end, after end, or
// when a chunk comes back empty.
func chunks(ctx context.Context, from, end uint64, pos func(*pb.Envelope) uint64,
	read func(next uint64, dst []*pb.Envelope) ([]*pb.Envelope, error)) iter.Seq2[*pb.Envelope, error] {
	return func(yield func(*pb.Envelope, error) bool) {
		next := max(from, 1)
		var buf []*pb.Envelope
		for next <= end {
			if err := ctx.Err(); err != nil {
				yield(nil, err)
				return
			}
			var err error
			if buf, err = read(next, buf[:0]); err != nil {
				yield(nil, err)
				return
			}
			if len(buf) == 0 {
				return
			}
			next = pos(buf[len(buf)-1]) + 1
			for i, e := range buf {
				buf[i] = nil
				if !yield(e, nil) {
					return
				}
			}
		}
	}
}
