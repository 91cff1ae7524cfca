package journal

import (
	"context"
	"fmt"
	"iter"
	"time"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// ReadOnly returns a view of j whose writes (Append, SaveSnapshot, Retain)
// fail with ErrReadOnly and whose Close does nothing: what the engine hands
// to code outside it (projections registered by a program, the HTTP API),
// so that appending stays the engine's alone. Reads, Subscribe and Check
// go to j.
func ReadOnly(j Journal) Journal {
	if r, ok := j.(readOnly); ok {
		return r
	}
	return readOnly{j}
}

type readOnly struct{ j Journal }

func (r readOnly) Append(context.Context, []*pb.Envelope) ([]uint64, error) {
	return nil, fmt.Errorf("%w: appending is the engine's", ErrReadOnly)
}
func (r readOnly) Read(ctx context.Context, from uint64) iter.Seq2[*pb.Envelope, error] {
	return r.j.Read(ctx, from)
}
func (r readOnly) ReadStream(ctx context.Context, id string, from uint64) iter.Seq2[*pb.Envelope, error] {
	return r.j.ReadStream(ctx, id, from)
}
func (r readOnly) Head() uint64                        { return r.j.Head() }
func (r readOnly) First() uint64                       { return r.j.First() }
func (r readOnly) StreamHead(id string) uint64         { return r.j.StreamHead(id) }
func (r readOnly) Subscribe(from uint64) *Subscription { return r.j.Subscribe(from) }
func (r readOnly) SaveSnapshot(context.Context, *pb.ProxySnapshot) error {
	return fmt.Errorf("%w: snapshots are the engine's", ErrReadOnly)
}
func (r readOnly) LoadSnapshot(ctx context.Context, id string) (*pb.ProxySnapshot, error) {
	return r.j.LoadSnapshot(ctx, id)
}
func (r readOnly) Retain(context.Context, time.Time) (int, error) {
	return 0, fmt.Errorf("%w: retention is the engine's", ErrReadOnly)
}
func (r readOnly) Check(ctx context.Context) error { return r.j.Check(ctx) }

// Close does nothing: the journal belongs to whoever opened it.
func (r readOnly) Close() error { return nil }

// SnapshotIDs lists j's snapshots when j can (SnapshotLister); otherwise
// none.
func (r readOnly) SnapshotIDs(ctx context.Context) ([]string, error) {
	if l, ok := r.j.(SnapshotLister); ok {
		return l.SnapshotIDs(ctx)
	}
	return nil, nil
}
