package journal

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// Carrier is implemented by journals whose retention carries the pool's
// state forward (Bolt, Mem, and ReadOnly views of them).
//
// A proxy's state survives retention in its snapshot. The pool-wide state
// (degraded or not, panic mode, each source's last refresh and error)
// lives only in pool-wide events: those without a proxy ID. When Retain
// deletes such events it keeps the newest deleted one of each event type
// and source; Carried returns them. A fold that starts at First folds the
// carried events first and then ends in the same pool-wide state as a fold
// of the whole history, provided its pool-wide state is set by the newest
// event of each type (as the live status, the pool monitor and the SQLite
// view fold them).
type Carrier interface {
	// Carried returns the carried events, in seq order (every seq is below
	// First).
	Carried(ctx context.Context) ([]*pb.Envelope, error)
}

var (
	_ Carrier = (*Bolt)(nil)
	_ Carrier = (*Mem)(nil)
	_ Carrier = readOnly{}
)

// Carried returns j's carried events (see Carrier), in seq order; none
// when j does not carry any.
func Carried(ctx context.Context, j Journal) ([]*pb.Envelope, error) {
	if c, ok := j.(Carrier); ok {
		return c.Carried(ctx)
	}
	return nil, nil
}

// bucketCarried holds the carried events of a Bolt journal, under
// carriedKey, each a framed record of its envelope. It is created by the
// first Retain that deletes a pool-wide event (journals without it carry
// nothing; older versions ignore it).
var bucketCarried = []byte("carried")

// eventOneof is the Envelope's oneof of event types.
var eventOneof = (&pb.Envelope{}).ProtoReflect().Descriptor().Oneofs().ByName("event")

// carriedKey is the key a pool-wide event is carried under: a zero byte
// (no proxy ID starts with one), the event type's field number in the
// envelope, and the source.
func carriedKey(env *pb.Envelope) []byte {
	var num uint16
	if fd := env.ProtoReflect().WhichOneof(eventOneof); fd != nil {
		num = uint16(fd.Number())
	}
	return append(binary.BigEndian.AppendUint16([]byte{0}, num), env.GetSource()...)
}

// isCarriedKey reports whether k has carriedKey's shape.
func isCarriedKey(k []byte) bool { return len(k) >= 3 && k[0] == 0 }

// carryDeleted notes one deleted event for carrying when it is
// pool-wide; into maps carriedKey to the newest one's framed record.
func carryDeleted(into map[string][]byte, payload []byte, seq uint64) error {
	var env pb.Envelope
	if err := proto.Unmarshal(payload, &env); err != nil {
		return fmt.Errorf("event %d cannot be decoded: %v", seq, err)
	}
	if env.GetProxyId() != "" || env.GetEvent() == nil {
		return nil
	}
	into[string(carriedKey(&env))] = frameRecord(payload) // a copy: payload may be the file's memory
	return nil
}

// decodeCarried verifies and decodes a carried record stored under k.
func decodeCarried(k, v []byte) (*pb.Envelope, error) {
	p, err := checkRecord(v, "carried event", 0)
	if err != nil {
		return nil, err
	}
	env := new(pb.Envelope)
	if err := proto.Unmarshal(p, env); err != nil {
		return nil, fmt.Errorf("carried event cannot be decoded: %v", err)
	}
	if env.GetProxyId() != "" || string(carriedKey(env)) != string(k) {
		return nil, fmt.Errorf("carried event %d (%x) is stored under the wrong key %x", env.GetSeq(), carriedKey(env), k)
	}
	return env, nil
}

// bySeq orders envelopes by seq.
func bySeq(a, b *pb.Envelope) int { return cmp.Compare(a.GetSeq(), b.GetSeq()) }

// Carried implements Carrier.
func (b *Bolt) Carried(ctx context.Context) ([]*pb.Envelope, error) {
	if b.closed.Load() {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []*pb.Envelope
	err := b.view(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketCarried)
		if bk == nil {
			return nil
		}
		return bk.ForEach(func(k, v []byte) error {
			env, err := decodeCarried(k, v)
			if err != nil {
				return fmt.Errorf("%w: %s: %v; run 'proxyhealth journal verify'", ErrCorrupt, b.path, err)
			}
			out = append(out, env)
			return nil
		})
	})
	slices.SortFunc(out, bySeq)
	return out, err
}

// putCarried stores the events retention carries (carryDeleted's map).
func putCarried(tx *bolt.Tx, carried map[string][]byte) error {
	if len(carried) == 0 {
		return nil
	}
	bk, err := tx.CreateBucketIfNotExists(bucketCarried)
	if err != nil {
		return err
	}
	for k, rec := range carried {
		if err := bk.Put([]byte(k), rec); err != nil {
			return err
		}
	}
	return nil
}

// checkCarried verifies the carried events: each decodes, under its key,
// with a seq below first.
func checkCarried(tx *bolt.Tx, p *problems, first uint64) {
	bk := tx.Bucket(bucketCarried)
	if bk == nil {
		return
	}
	_ = bk.ForEach(func(k, v []byte) error {
		env, err := decodeCarried(k, v)
		switch {
		case err != nil:
			p.add("%v", err)
		case env.GetSeq() >= first:
			p.add("carried event %d is not below the first retained event %d", env.GetSeq(), first)
		}
		return nil
	})
}

// Carried implements Carrier.
func (m *Mem) Carried(ctx context.Context) ([]*pb.Envelope, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	out := make([]*pb.Envelope, 0, len(m.carried))
	for _, env := range m.carried {
		out = append(out, env)
	}
	slices.SortFunc(out, bySeq)
	return out, nil
}

// carry notes a deleted event for carrying when it is pool-wide (Mem).
func (m *Mem) carry(env *pb.Envelope) {
	if env.GetProxyId() != "" || env.GetEvent() == nil {
		return
	}
	if m.carried == nil {
		m.carried = make(map[string]*pb.Envelope)
	}
	m.carried[string(carriedKey(env))] = env
}

// Carried returns j's carried events when it has any.
func (r readOnly) Carried(ctx context.Context) ([]*pb.Envelope, error) { return Carried(ctx, r.j) }
