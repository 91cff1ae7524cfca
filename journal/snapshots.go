package journal

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	bolt "go.etcd.io/bbolt"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
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

// QuietSnapshots calls seed with the snapshot of every proxy whose
// snapshot covers its whole stream (no event of it follows the snapshot):
// the proxies a fold of the retained events may not know, when retention
// deleted all their events. It goes over ids, or over every proxy j lists
// when ids is nil and j is a SnapshotLister. The folds (live status, pool
// monitor, SQLite view) seed these after folding the retained events,
// skipping the proxies they already know.
func QuietSnapshots(ctx context.Context, j Journal, ids []string, seed func(*pb.ProxySnapshot)) error {
	if ids == nil {
		l, ok := j.(SnapshotLister)
		if !ok {
			return nil
		}
		var err error
		if ids, err = l.SnapshotIDs(ctx); err != nil {
			return fmt.Errorf("journal: list the snapshots: %w", err)
		}
	}
	for _, id := range ids {
		snap, err := j.LoadSnapshot(ctx, id)
		if errors.Is(err, ErrNoSnapshot) {
			continue
		}
		if err != nil {
			return fmt.Errorf("journal: load the snapshot of proxy %s: %w", id, err)
		}
		if j.StreamHead(id) > snap.GetStreamSeq() {
			continue // events after the snapshot were folded: they are the truth (e.g. a removal)
		}
		seed(snap)
	}
	return nil
}
