// Package journal is proxyhealth's append-only event log.
//
// Every health event is an [proxyhealthv1.Envelope]. The journal assigns each
// appended envelope a global sequence number (from 1, gap-free) and, for
// proxy events, a per-proxy stream sequence number (from 1, gap-free within
// the proxy's stream). Append returns only after the events are durable;
// nothing may act on an event before that (persist, then apply, then side
// effects).
//
// Two implementations share one contract test suite (package journaltest):
// [Bolt], backed by a bbolt file with group commit, and [Mem], in memory, for
// tests and embedding without a data directory.
package journal

import (
	"context"
	"errors"
	"iter"
	"time"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// Sentinel errors. Match them with errors.Is; the returned errors wrap them
// with the detail (file name, proxy ID, sequence numbers).
var (
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("journal: closed")
	// ErrStreamConflict is returned by Append when an envelope names a
	// stream_seq that is not the proxy's current stream head + 1: another
	// writer appended to the same proxy's stream. Reload the stream and
	// decide again.
	ErrStreamConflict = errors.New("journal: stream sequence conflict")
	// ErrInvalidEvent is returned by Append for an envelope without an event,
	// with a preset global seq, or with a stream_seq but no proxy_id.
	ErrInvalidEvent = errors.New("journal: invalid event")
	// ErrCorrupt reports damage found by Check or while reading: a gap in the
	// sequence, an undecodable record, an index that disagrees with the events.
	ErrCorrupt = errors.New("journal: corrupt")
	// ErrEmpty is returned by OpenBolt (writable or read-only) for an
	// existing journal file of 0 bytes: it holds no data, so it is not
	// silently started over. Restore the file from a backup, or delete it
	// to start a new journal deliberately.
	ErrEmpty = errors.New("journal: file is empty")
	// ErrLocked is returned by OpenBolt when another process holds the file.
	ErrLocked = errors.New("journal: locked by another process")
	// ErrNotJournal is returned by OpenBolt for a file that is not a
	// proxyhealth journal (not bbolt, or bbolt without the journal's buckets).
	ErrNotJournal = errors.New("journal: not a proxyhealth journal")
	// ErrSchemaVersion is returned by OpenBolt for a journal written by a
	// newer proxyhealth.
	ErrSchemaVersion = errors.New("journal: unsupported schema version")
	// ErrNoSnapshot is returned by LoadSnapshot when the proxy has none.
	ErrNoSnapshot = errors.New("journal: no snapshot")
	// ErrReadOnly is returned by writes to a journal opened read-only.
	ErrReadOnly = errors.New("journal: opened read-only")
	// ErrInvalidSnapshot is returned by SaveSnapshot for a snapshot without a
	// valid proxy_id or with a stream_seq beyond the proxy's stream head.
	ErrInvalidSnapshot = errors.New("journal: invalid snapshot")
)

// DefaultRetention is how long events are kept by default (7 days).
const DefaultRetention = 7 * 24 * time.Hour

// Journal is the append-only event log. All methods are safe for concurrent
// use.
type Journal interface {
	// Append makes the envelopes durable as one atomic unit and returns the
	// global seq assigned to each, in order. It fills in Seq, PrevSeq (for
	// envelopes with a proxy_id: the seq of the stream's previous envelope)
	// and, for envelopes with a proxy_id and StreamSeq 0, StreamSeq. An
	// envelope that already carries a StreamSeq must be exactly the proxy's
	// stream head + 1 (counting the envelopes before it in the same call),
	// otherwise nothing of the call is written and the error wraps
	// ErrStreamConflict. The envelopes must not be modified by the caller
	// once Append is called, also after it returned: a journal may hand
	// the same envelopes to its subscriptions.
	// When ctx ends before the commit, Append returns ctx.Err() and the
	// events may or may not have been committed.
	Append(ctx context.Context, envs []*pb.Envelope) ([]uint64, error)

	// Read yields every retained envelope with seq >= from, in seq order,
	// up to the head at the time of the call. The iteration stops at the
	// first error, which is yielded with a nil envelope.
	Read(ctx context.Context, from uint64) iter.Seq2[*pb.Envelope, error]

	// ReadStream yields one proxy's envelopes with stream_seq >= from, in
	// order.
	ReadStream(ctx context.Context, proxyID string, from uint64) iter.Seq2[*pb.Envelope, error]

	// Head returns the highest committed global seq (0 when empty).
	Head() uint64
	// First returns the lowest retained global seq (Head()+1 when empty).
	First() uint64
	// StreamHead returns the highest committed stream_seq of a proxy (0 when
	// it has none).
	StreamHead(proxyID string) uint64

	// Subscribe returns a subscription that delivers every committed
	// envelope with seq >= from exactly once and in order: first those
	// already in the journal, then new ones as they commit. A slow
	// subscriber never slows down Append; it reads from the journal at its
	// own pace. The envelopes it delivers may be shared with other
	// subscriptions and with the appender: read them, never modify them.
	Subscribe(from uint64) *Subscription

	// SaveSnapshot stores a proxy's snapshot, replacing any older one.
	SaveSnapshot(ctx context.Context, s *pb.ProxySnapshot) error
	// LoadSnapshot returns a proxy's latest snapshot, or ErrNoSnapshot.
	LoadSnapshot(ctx context.Context, proxyID string) (*pb.ProxySnapshot, error)

	// Retain deletes the oldest events that are older than cutoff, as a
	// contiguous prefix of the global sequence, and never an event that a
	// proxy's latest snapshot does not cover (so every proxy can still be
	// recovered). It returns how many events were deleted.
	Retain(ctx context.Context, cutoff time.Time) (int, error)

	// Check verifies the journal: gap-free global seqs from First to Head,
	// every record decodable (Bolt: and passing its CRC-32C checksum, and
	// every page of the file sound) with a seq matching its key, per-proxy streams
	// gap-free and consistent with the events, snapshots decodable. Damage
	// is reported as an error wrapping ErrCorrupt that lists what was found.
	Check(ctx context.Context) error

	// Close stops the journal after committing appends already accepted.
	Close() error
}

// AsyncAppender is implemented by journals that can acknowledge an append
// through a callback, so that a caller with many appends in flight (the
// proxy actors) does not park a goroutine on each. Bolt and Mem implement
// it.
type AsyncAppender interface {
	// AppendAsync is Append without a context: done is called exactly
	// once with what Append would return, after the commit (or at once,
	// on the caller's goroutine, when the call is invalid or the journal
	// is closed). It may block while the writer's queue is full. done may
	// run on the journal's writer goroutine: it must return quickly and
	// must not call the journal.
	AppendAsync(envs []*pb.Envelope, done func(seqs []uint64, err error))
}

// AsyncSnapshotter is implemented by journals that can acknowledge a
// snapshot save through a callback, so that many saves in flight (every
// proxy actor answering SnapshotNow before retention) do not park a
// goroutine each. Bolt and Mem implement it.
type AsyncSnapshotter interface {
	// SaveSnapshotAsync is SaveSnapshot without a context: done is called
	// exactly once with what SaveSnapshot would return, after the commit
	// (or at once, on the caller's goroutine, when the snapshot is invalid
	// or the journal is closed). It may block while the writer's queue is
	// full. done may run on the journal's writer goroutine: it must return
	// quickly and must not call the journal.
	SaveSnapshotAsync(s *pb.ProxySnapshot, done func(error))
}
