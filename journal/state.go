package journal

import (
	"context"
	"errors"
	"fmt"

	"github.com/proxyhealth/proxyhealth/events"
)

// LoadState is a proxy's state as the journal tells it: its latest
// snapshot, then the rest of its stream. snapshotSeq is the stream seq the
// snapshot covered (0 without one). What the proxy actor recovers on
// (re)start, and what the engine reads of a proxy that has no actor.
//
// A proxy with no stream head has neither events nor a snapshot (a
// snapshot covers events of its stream, and retention keeps the heads), so
// its state is read without a transaction: what every proxy actor of a
// first start recovers on, 100,000 of them at once in a large pool.
func LoadState(ctx context.Context, j Journal, proxyID string) (st events.State, snapshotSeq uint64, err error) {
	if j.StreamHead(proxyID) == 0 {
		return events.NewState(proxyID), 0, ctx.Err()
	}
	return loadState(ctx, j, proxyID)
}

// loadState is LoadState of a proxy with a stream. (Apart, because the
// state the loop over the stream assigns escapes to the heap, 500 bytes,
// and a new proxy's need not.)
func loadState(ctx context.Context, j Journal, proxyID string) (st events.State, snapshotSeq uint64, err error) {
	st = events.NewState(proxyID)
	snap, err := j.LoadSnapshot(ctx, proxyID)
	switch {
	case err == nil:
		st = events.FromSnapshot(snap)
		snapshotSeq = st.StreamSeq
	case !errors.Is(err, ErrNoSnapshot):
		return st, 0, fmt.Errorf("load the snapshot of proxy %s: %w", proxyID, err)
	}
	for env, err := range j.ReadStream(ctx, proxyID, st.StreamSeq+1) {
		if err != nil {
			return st, snapshotSeq, fmt.Errorf("replay the stream of proxy %s: %w", proxyID, err)
		}
		st = events.Evolve(st, env)
	}
	return st, snapshotSeq, nil
}
