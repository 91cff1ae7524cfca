package journal

import (
	"context"
	"fmt"
	"iter"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

var (
	_ Journal          = (*Mem)(nil)
	_ AsyncAppender    = (*Mem)(nil)
	_ AsyncSnapshotter = (*Mem)(nil)
)

// Mem is an in-memory Journal with the same semantics as Bolt, minus
// durability: for tests and for embedding without a data directory. It
// stores and returns copies, so callers may keep and modify what they pass
// in and get back.
type Mem struct {
	mu      sync.RWMutex
	first   uint64         // seq of events[0]
	events  []*pb.Envelope // events[i].Seq == first+i
	streams map[string]*memStream
	heads   map[string]uint64
	snaps   map[string]*pb.ProxySnapshot
	carried map[string]*pb.Envelope // see Carrier
	closed  bool
	closeCh chan struct{}
	note    *notifier
}

// memStream is one proxy's retained stream: seqs[i] is the global seq of
// stream_seq first+i; last is the global seq of its newest event, retained
// or not.
type memStream struct {
	first uint64
	seqs  []uint64
	last  uint64
}

// NewMem returns an empty in-memory journal.
func NewMem() *Mem {
	return &Mem{
		first:   1,
		streams: make(map[string]*memStream),
		heads:   make(map[string]uint64),
		snaps:   make(map[string]*pb.ProxySnapshot),
		closeCh: make(chan struct{}),
		note:    newNotifier(),
	}
}

func (m *Mem) headLocked() uint64 { return m.first + uint64(len(m.events)) - 1 }

// streamHead is a proxy's stream head; call it with m.mu held.
func (m *Mem) streamHead(p string) streamHead {
	h := streamHead{seq: m.heads[p]}
	if st := m.streams[p]; st != nil {
		h.last = st.last
	}
	return h
}

// Append implements Journal.
func (m *Mem) Append(ctx context.Context, envs []*pb.Envelope) ([]uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := validateEnvelopes(envs); err != nil {
		return nil, err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	next := m.headLocked() + 1
	local := make(map[string]streamHead, 1)
	pos, err := assignStreams(envs, next, m.streamHead, local, make([]streamPos, 0, len(envs)))
	if err != nil {
		m.mu.Unlock()
		return nil, err
	}
	seqs := make([]uint64, len(envs))
	for i, e := range envs {
		e.Seq = next + uint64(i)
		if p := e.GetProxyId(); p != "" {
			e.StreamSeq, e.PrevSeq = pos[i].streamSeq, pos[i].prevSeq
			st := m.streams[p]
			if st == nil {
				st = &memStream{first: e.StreamSeq}
				m.streams[p] = st
			}
			st.seqs = append(st.seqs, e.Seq)
			st.last = e.Seq
		}
		seqs[i] = e.Seq
		m.events = append(m.events, proto.CloneOf(e))
	}
	for p, h := range local {
		m.heads[p] = h.seq
	}
	m.mu.Unlock()
	if len(envs) > 0 {
		m.note.broadcast()
	}
	return seqs, nil
}

// AppendAsync implements AsyncAppender: the in-memory journal commits at
// once, so done runs before AppendAsync returns.
func (m *Mem) AppendAsync(envs []*pb.Envelope, done func([]uint64, error)) {
	done(m.Append(context.Background(), envs))
}

// SaveSnapshotAsync implements AsyncSnapshotter: done runs before it
// returns.
func (m *Mem) SaveSnapshotAsync(s *pb.ProxySnapshot, done func(error)) {
	done(m.SaveSnapshot(context.Background(), s))
}

// Read implements Journal.
func (m *Mem) Read(ctx context.Context, from uint64) iter.Seq2[*pb.Envelope, error] {
	end := m.Head()
	return chunks(ctx, from, end, (*pb.Envelope).GetSeq, func(next uint64, dst []*pb.Envelope) ([]*pb.Envelope, error) {
		return m.readRange(next, end, readChunk, dst)
	})
}

// readRange copies up to max envelopes with from <= seq <= end.
func (m *Mem) readRange(from, end uint64, n int, dst []*pb.Envelope) ([]*pb.Envelope, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return dst, ErrClosed
	}
	from = max(from, m.first)
	end = min(end, m.headLocked())
	for s := from; s <= end && len(dst) < n; s++ {
		dst = append(dst, proto.CloneOf(m.events[s-m.first]))
	}
	return dst, nil
}

// readCommitted implements feed.
func (m *Mem) readCommitted(from uint64, n int, dst []*pb.Envelope) ([]*pb.Envelope, error) {
	return m.readRange(from, ^uint64(0), n, dst)
}

func (m *Mem) commits() <-chan struct{} { return m.note.wait() }
func (m *Mem) done() <-chan struct{}    { return m.closeCh }

// ReadStream implements Journal.
func (m *Mem) ReadStream(ctx context.Context, proxyID string, from uint64) iter.Seq2[*pb.Envelope, error] {
	end := m.StreamHead(proxyID)
	return func(yield func(*pb.Envelope, error) bool) {
		next := max(from, 1)
		var buf []*pb.Envelope
		for next <= end {
			if err := ctx.Err(); err != nil {
				yield(nil, err)
				return
			}
			buf = buf[:0]
			m.mu.RLock()
			if m.closed {
				m.mu.RUnlock()
				yield(nil, ErrClosed)
				return
			}
			st := m.streams[proxyID]
			if st != nil {
				next = max(next, st.first)
				for ; next <= end && next-st.first < uint64(len(st.seqs)) && len(buf) < readChunk; next++ {
					buf = append(buf, proto.CloneOf(m.events[st.seqs[next-st.first]-m.first]))
				}
			}
			m.mu.RUnlock()
			if len(buf) == 0 {
				return
			}
			for i, e := range buf {
				buf[i] = nil
				if !yield(e, nil) {
					return
				}
			}
		}
	}
}

// Head implements Journal.
func (m *Mem) Head() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.headLocked()
}

// First implements Journal.
func (m *Mem) First() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.first
}

// StreamHead implements Journal.
func (m *Mem) StreamHead(proxyID string) uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.heads[proxyID]
}

// Subscribe implements Journal.
func (m *Mem) Subscribe(from uint64) *Subscription { return newSubscription(m, from) }

// SaveSnapshot implements Journal.
func (m *Mem) SaveSnapshot(ctx context.Context, s *pb.ProxySnapshot) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if err := validateSnapshot(s, m.heads[s.GetProxyId()]); err != nil {
		return err
	}
	m.snaps[s.GetProxyId()] = proto.CloneOf(s)
	return nil
}

// LoadSnapshot implements Journal.
func (m *Mem) LoadSnapshot(ctx context.Context, proxyID string) (*pb.ProxySnapshot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	s, ok := m.snaps[proxyID]
	if !ok {
		return nil, fmt.Errorf("%w for proxy %s", ErrNoSnapshot, proxyID)
	}
	return proto.CloneOf(s), nil
}

// Retain implements Journal.
func (m *Mem) Retain(ctx context.Context, cutoff time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	limit := cutoff.UnixNano()
	n := 0
	for n < len(m.events) {
		e := m.events[n]
		if e.GetAtUnixNano() >= limit {
			break
		}
		if p := e.GetProxyId(); p != "" {
			if s := m.snaps[p]; s == nil || s.GetStreamSeq() < e.GetStreamSeq() {
				break
			}
			st := m.streams[p]
			st.seqs = st.seqs[1:]
			st.first++
		} else {
			m.carry(e)
		}
		n++
	}
	clear(m.events[:n])
	m.events = m.events[n:]
	m.first += uint64(n)
	return n, nil
}

// Check implements Journal.
func (m *Mem) Check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return ErrClosed
	}
	var p problems
	stats := make(map[string]*streamStat)
	for i, e := range m.events {
		want := m.first + uint64(i)
		if e.GetSeq() != want {
			p.add("record %d holds seq %d", want, e.GetSeq())
			continue
		}
		addStreamEvent(&p, stats, e, want, m.first)
	}
	for id, ms := range m.streams {
		ev := stats[id]
		if ev == nil {
			ev = &streamStat{}
		}
		if uint64(len(ms.seqs)) != ev.count {
			p.add("proxy %s: stream index has %d entries but %d events are retained", id, len(ms.seqs), ev.count)
		}
		for i, seq := range ms.seqs {
			if seq < m.first || seq > m.headLocked() {
				p.add("proxy %s: stream index entry %d points at event %d, which is not retained", id, ms.first+uint64(i), seq)
				continue
			}
			if e := m.events[seq-m.first]; e.GetProxyId() != id || e.GetStreamSeq() != ms.first+uint64(i) {
				p.add("proxy %s: stream index entry %d points at event %d of proxy %q stream_seq %d", id, ms.first+uint64(i), seq, e.GetProxyId(), e.GetStreamSeq())
			}
		}
		if h := m.heads[id]; ev.count > 0 && h != ev.last {
			p.add("proxy %s: stream head is %d but the last event has stream_seq %d", id, h, ev.last)
		}
		if ev.count > 0 && ms.last != ev.lastSeq {
			p.add("proxy %s: the stream's last event is %d but %d is recorded", id, ev.lastSeq, ms.last)
		}
	}
	for id := range stats {
		if _, ok := m.streams[id]; !ok {
			p.add("proxy %s has events but no stream index", id)
		}
	}
	for id, s := range m.snaps {
		if s.GetProxyId() != id {
			p.add("snapshot under proxy %s names proxy %q", id, s.GetProxyId())
		}
	}
	return p.err("in-memory journal")
}

// CorruptForTest damages the journal for tests of Check: it overwrites the
// stored event with the given seq with a copy that claims another seq, as if
// the storage had mixed up records. It exists only for the contract test
// suite (journaltest); never call it otherwise.
func (m *Mem) CorruptForTest(seq uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if seq < m.first || seq > m.headLocked() {
		return
	}
	bad := proto.CloneOf(m.events[seq-m.first])
	bad.Seq = seq + 1<<32
	m.events[seq-m.first] = bad
}

// Close implements Journal. It is idempotent.
func (m *Mem) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closed = true
		close(m.closeCh)
	}
	return nil
}
