package journal

import (
	"context"
	"maps"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// SnapshotLister is implemented by journals that can list the proxies they
// keep a snapshot of (Bolt and Mem). The engine seeds its live status with
// every proxy retention left with a snapshot but no event, so that none
// is forgotten at a restart.
type SnapshotLister interface {
	// SnapshotIDs returns the IDs of the proxies that have a snapshot,
	// sorted.
	SnapshotIDs(ctx context.Context) ([]string, error)
}

var (
	_ SnapshotLister = (*Bolt)(nil)
	_ SnapshotLister = (*Mem)(nil)
	_ SnapshotLister = readOnly{}
)

// SnapshotIDs implements SnapshotLister.
func (b *Bolt) SnapshotIDs(ctx context.Context) ([]string, error) {
	if b.closed.Load() {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var ids []string
	err := b.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSnapshots).ForEach(func(k, _ []byte) error {
			ids = append(ids, string(k))
			return nil
		})
	})
	return ids, err // bbolt keeps keys sorted
}

// SnapshotIDs implements SnapshotLister.
func (m *Mem) SnapshotIDs(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	return slices.Sorted(maps.Keys(m.snaps)), nil
}
