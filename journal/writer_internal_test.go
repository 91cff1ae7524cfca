package journal

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

func testEnvelope(proxyID string, streamSeq uint64) *pb.Envelope {
	return &pb.Envelope{
		AtUnixNano: 1_736_164_800_000_000_000,
		ProxyId:    proxyID,
		StreamSeq:  streamSeq,
		Source:     "default",
		Event: &pb.Envelope_CheckSucceeded{CheckSucceeded: &pb.CheckSucceeded{
			Latency: &pb.Latency{TotalNs: 61_234_567}, StatusCode: 200,
		}},
	}
}

func newRequest(envs ...*pb.Envelope) *request {
	return &request{envs: envs, done: make(chan struct{})}
}

// TestGroupCommitIsolatesFailures commits one crafted batch: the requests
// that fail validation fail alone, the others commit together.
func TestGroupCommitIsolatesFailures(t *testing.T) {
	b := openNoSync(t)
	const a, c = "00000000000000aa", "00000000000000cc"
	good1 := newRequest(testEnvelope(a, 0), testEnvelope(c, 0))
	conflict := newRequest(testEnvelope(c, 0), testEnvelope(a, 1)) // a/1 is taken by good1
	explicit := newRequest(testEnvelope(a, 2))                     // counts good1 in the same batch
	badSnap := &request{snap: &pb.ProxySnapshot{ProxyId: c, StreamSeq: 5}, done: make(chan struct{})}
	okSnap := &request{snap: &pb.ProxySnapshot{ProxyId: a, StreamSeq: 2}, done: make(chan struct{})}
	abandoned := newRequest(testEnvelope(a, 0))
	abandoned.state.Store(reqAbandoned)
	good2 := newRequest(testEnvelope(c, 0))
	sub := b.Subscribe(1)
	defer sub.Close()

	w := newWriter(b, 100) // the running writer is idle: no requests
	w.commit([]*request{good1, conflict, explicit, badSnap, okSnap, abandoned, good2})

	for name, r := range map[string]*request{"good1": good1, "conflict": conflict, "explicit": explicit, "badSnap": badSnap, "okSnap": okSnap, "good2": good2} {
		select {
		case <-r.done:
		default:
			t.Fatalf("%s was not acknowledged", name)
		}
	}
	if good1.err != nil || explicit.err != nil || okSnap.err != nil || good2.err != nil {
		t.Fatalf("valid requests failed: %v, %v, %v, %v", good1.err, explicit.err, okSnap.err, good2.err)
	}
	if !errors.Is(conflict.err, ErrStreamConflict) || !errors.Is(badSnap.err, ErrInvalidSnapshot) {
		t.Fatalf("conflict: %v; bad snapshot: %v", conflict.err, badSnap.err)
	}
	for _, e := range conflict.envs {
		if e.GetSeq() != 0 {
			t.Fatalf("the conflicting request's envelope got seq %d", e.GetSeq())
		}
	}
	if conflict.envs[1].GetStreamSeq() != 1 || conflict.envs[0].GetStreamSeq() != 0 {
		t.Fatal("the conflicting request's stream seqs were modified")
	}
	if abandoned.envs[0].GetSeq() != 0 {
		t.Fatal("the abandoned request was written")
	}
	if got := [...]uint64{good1.seqs[0], good1.seqs[1], explicit.seqs[0], good2.seqs[0]}; got != [...]uint64{1, 2, 3, 4} {
		t.Fatalf("seqs %v, want 1 2 3 4", got)
	}
	if b.Head() != 4 || b.StreamHead(a) != 2 || b.StreamHead(c) != 2 {
		t.Fatalf("Head %d, StreamHead a %d c %d; want 4 2 2", b.Head(), b.StreamHead(a), b.StreamHead(c))
	}
	if err := b.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	envs, err := sub.NextBatch(context.Background(), 10)
	if err != nil || len(envs) != 4 {
		t.Fatalf("subscription got %d envelopes, %v; want 4", len(envs), err)
	}
	if s, err := b.LoadSnapshot(context.Background(), a); err != nil || s.GetStreamSeq() != 2 {
		t.Fatalf("snapshot %v, %v", s, err)
	}
}

// TestHeadsCheckpoint: after checkpointEvery events the writer writes the
// stream heads and the seq they are current through, so that an open scans
// only the events after it; Close writes a last one.
func TestHeadsCheckpoint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	b, err := OpenBolt(path, WithUnsafeNoSync())
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{"00000000000000aa", "00000000000000bb", "00000000000000cc"}
	const perCall = 1000
	calls := checkpointEvery/perCall + 1
	for i := range calls {
		envs := make([]*pb.Envelope, perCall)
		for k := range envs {
			envs[k] = testEnvelope(ids[(i*perCall+k)%len(ids)], 0)
		}
		if _, err := b.Append(context.Background(), envs); err != nil {
			t.Fatal(err)
		}
	}
	through, heads := checkpointOf(t, b)
	if through < checkpointEvery || through > uint64(calls*perCall) || len(heads) != len(ids) {
		t.Fatalf("checkpoint through %d with %d heads after %d events; want one past %d events, with %d heads", through, len(heads), calls*perCall, checkpointEvery, len(ids))
	}
	for id, h := range heads {
		if h.last > through || h.seq == 0 {
			t.Fatalf("checkpointed head of %s is %+v, beyond the checkpoint %d or empty", id, h, through)
		}
	}
	if err := b.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b, err = OpenBolt(path, WithReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	through, heads = checkpointOf(t, b)
	if through != b.Head() {
		t.Fatalf("after Close the heads are checkpointed through %d, want the head %d", through, b.Head())
	}
	for id, h := range heads {
		if h != b.streamHead(id) {
			t.Fatalf("checkpointed head of %s is %+v, want %+v", id, h, b.streamHead(id))
		}
	}
}

// checkpointOf returns the seq b's heads checkpoint is current through (0:
// none yet) and the heads it holds.
func checkpointOf(t *testing.T, b *Bolt) (through uint64, heads map[string]streamHead) {
	t.Helper()
	heads = map[string]streamHead{}
	err := b.view(func(tx *bolt.Tx) error {
		var err error
		if through, err = readSeq(tx, metaHeadsThrough, 0); err != nil {
			return err
		}
		return tx.Bucket(bucketHeads).ForEach(func(k, v []byte) error {
			h, _ := parseHead(v)
			heads[string(k)] = h
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return through, heads
}

// spreadEnvelopes returns n events, the k-th of the proxy whose ID is
// (from+k) % streams in 16 hex digits: appends that go round a pool.
func spreadEnvelopes(from, n, streams int) []*pb.Envelope {
	envs := make([]*pb.Envelope, n)
	for k := range envs {
		envs[k] = testEnvelope(fmt.Sprintf("%016x", (from+k)%streams), 0)
	}
	return envs
}

// TestHeadsCheckpointScalesWithStreams: with more streams than a quarter of
// checkpointEvery, the writer checkpoints the heads every
// checkpointPerStream events per stream, not every checkpointEvery.
func TestHeadsCheckpointScalesWithStreams(t *testing.T) {
	b := openNoSync(t)
	const streams, perCall = 10_000, 1000
	interval := checkpointInterval(streams)
	if interval <= checkpointEvery {
		t.Fatalf("checkpointInterval(%d) = %d, want more than checkpointEvery (%d) for this test", streams, interval, checkpointEvery)
	}
	appended := 0
	appendUpTo := func(n int) {
		t.Helper()
		for appended+perCall <= n {
			if _, err := b.Append(context.Background(), spreadEnvelopes(appended, perCall, streams)); err != nil {
				t.Fatal(err)
			}
			appended += perCall
		}
	}
	appendUpTo(interval - perCall)
	if through, heads := checkpointOf(t, b); through != 0 || len(heads) != 0 {
		t.Fatalf("after %d events over %d streams: heads checkpointed through %d (%d heads); want none before %d events", appended, streams, through, len(heads), interval)
	}
	// The checkpoint is a round over the commits that put its chunks.
	rounds := (streams + checkpointChunk - 1) / checkpointChunk
	appendUpTo(interval + (rounds-1)*perCall)
	through, heads := checkpointOf(t, b)
	if through < uint64(interval) || len(heads) != streams {
		t.Fatalf("after %d events over %d streams: heads checkpointed through %d with %d heads; want through at least %d, with every stream's head", appended, streams, through, len(heads), interval)
	}
	for id, h := range heads {
		if h.last > b.Head() || h.seq == 0 {
			t.Fatalf("checkpointed head of %s is %+v, beyond the head %d or empty", id, h, b.Head())
		}
	}
	if err := b.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestHeadsCheckpointRoundCutShort: a heads checkpoint is written a chunk
// per commit, in key order, and heads_through moves with the last chunk. A
// crash between two chunks leaves a file whose first chunk's heads are
// newer than heads_through: it opens with every stream head right, passes
// Check and takes appends; the round goes on to its end in the original.
func TestHeadsCheckpointRoundCutShort(t *testing.T) {
	b := openNoSync(t)
	const streams, perCall = 10_000, 1000
	interval := checkpointInterval(streams)
	appended := 0
	appendCall := func(j *Bolt) {
		t.Helper()
		if _, err := j.Append(context.Background(), spreadEnvelopes(appended, perCall, streams)); err != nil {
			t.Fatal(err)
		}
		appended += perCall
	}
	for appended < interval {
		appendCall(b) // the last call's commit starts the round
	}
	through, heads := checkpointOf(t, b)
	if through != 0 || len(heads) != checkpointChunk {
		t.Fatalf("after the commit that starts the round: through %d with %d heads; want through 0 (the round is not done) with the first chunk of %d", through, len(heads), checkpointChunk)
	}
	for id, h := range heads {
		if id >= fmt.Sprintf("%016x", checkpointChunk) || h.last <= through || h.last > b.Head() {
			t.Fatalf("first chunk holds %s: %+v; want the %d smallest proxy IDs, put after the checkpoint and up to the head %d", id, h, checkpointChunk, b.Head())
		}
	}

	// A crash now: a copy of the file as this commit left it.
	crashed := filepath.Join(t.TempDir(), "crashed.db")
	if err := b.view(func(tx *bolt.Tx) error { return tx.CopyFile(crashed, 0o600) }); err != nil {
		t.Fatal(err)
	}
	c, err := OpenBolt(crashed, WithUnsafeNoSync())
	if err != nil {
		t.Fatalf("open after a round cut short: %v", err)
	}
	defer c.Close()
	for i := range streams {
		if id := fmt.Sprintf("%016x", i); c.StreamHead(id) != b.StreamHead(id) {
			t.Fatalf("proxy %s: stream head %d after the crash, want %d", id, c.StreamHead(id), b.StreamHead(id))
		}
	}
	if err := c.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	saved := appended
	appendCall(c) // streams in the first chunk and after it
	if err := c.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	appended = saved

	// The original goes on: one chunk per commit until the last.
	rounds := (streams + checkpointChunk - 1) / checkpointChunk
	for range rounds - 1 {
		if through, _ := checkpointOf(t, b); through != 0 {
			t.Fatalf("heads checkpointed through %d before the round's last chunk", through)
		}
		appendCall(b)
	}
	through, heads = checkpointOf(t, b)
	if through != uint64(interval) || len(heads) != streams {
		t.Fatalf("after the round: through %d with %d heads; want %d with every stream's", through, len(heads), interval)
	}
	if err := b.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestReleaseMapped: dropping the mapped pages loses nothing; reads fault
// them back in.
func TestReleaseMapped(t *testing.T) {
	b := openNoSync(t)
	envs := make([]*pb.Envelope, 5000)
	for i := range envs {
		envs[i] = testEnvelope("00000000000000aa", 0)
	}
	if _, err := b.Append(context.Background(), envs); err != nil {
		t.Fatal(err)
	}
	n := 0
	for range b.Read(context.Background(), 1) {
		n++
	}
	if err := b.releaseMapped(); err != nil {
		t.Fatalf("releaseMapped: %v", err)
	}
	var last uint64
	for e, err := range b.ReadStream(context.Background(), "00000000000000aa", 1) {
		if err != nil {
			t.Fatal(err)
		}
		last = e.GetStreamSeq()
	}
	if n != len(envs) || last != uint64(len(envs)) {
		t.Fatalf("read %d events before and up to stream_seq %d after releasing the mapped pages, want %d", n, last, len(envs))
	}
	if err := b.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestWriterTrimsBurstBuffers: the buffers a burst grew are dropped after
// trimEvery small commits, and kept while the batches stay large.
func TestWriterTrimsBurstBuffers(t *testing.T) {
	b := openNoSync(t)
	w := newWriter(b, 100_000)
	w.trimEvery = 4
	burst := func(n int) {
		t.Helper()
		reqs := make([]*request, n)
		for i := range reqs {
			reqs[i] = newRequest(testEnvelope(fmt.Sprintf("%016x", i), 0))
		}
		w.commit(reqs)
		for _, r := range reqs {
			if r.err != nil {
				t.Fatal(r.err)
			}
		}
	}
	burst(5000)
	bigArena, bigPuts := cap(w.arena), cap(w.puts)
	if bigArena <= 2*initialArena || bigPuts <= 2*minEntries {
		t.Fatalf("the burst did not grow the buffers (arena %d, puts %d)", bigArena, bigPuts)
	}
	// A sustained burst keeps them.
	for range w.trimEvery {
		burst(5000)
	}
	if cap(w.arena) < bigArena/2 || cap(w.puts) < bigPuts/2 {
		t.Errorf("buffers dropped during a sustained burst: arena %d, puts %d", cap(w.arena), cap(w.puts))
	}
	// Small commits only: dropped within trimEvery commits, and the
	// overlay map is replaced.
	for range 2 * w.trimEvery {
		burst(3)
	}
	if cap(w.arena) > initialArena || cap(w.puts) > 2*minEntries || cap(w.undo) > 2*minEntries || w.overlaySize > 2*minEntries {
		t.Errorf("burst buffers kept: arena %d, puts %d, undo %d, overlay size %d", cap(w.arena), cap(w.puts), cap(w.undo), w.overlaySize)
	}
	if err := b.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestWriterYieldsOnlyAfterSmallCommits: after a commit large enough for
// the encoder (encodeFromEvents events or more, from requests of
// encodePerRequest events or more on average) the writer gathers the next
// batch at once: those appenders take long to make their next requests,
// and what they queue during the next commit is marshalled by the encoder
// meanwhile. After a smaller commit it yields first, so that the
// appenders it just acknowledged join the next batch.
func TestWriterYieldsOnlyAfterSmallCommits(t *testing.T) {
	b := openNoSync(t)
	ctx := context.Background()
	appends := func(events, calls int) (yields uint64) {
		t.Helper()
		before := writerYields.Load()
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for range calls {
					envs := make([]*pb.Envelope, events)
					for i := range envs {
						envs[i] = testEnvelope(fmt.Sprintf("%016x", g), 0)
					}
					if _, err := b.Append(ctx, envs); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return writerYields.Load() - before
	}
	// Every commit holds at least one request of encodeFromEvents events
	// (at most 8 of them: DefaultMaxBatchEvents), so there are 3 or more;
	// only the first follows no commit and yields.
	if n := appends(encodeFromEvents, 5); n > 1 {
		t.Errorf("the writer yielded %d times between commits of %d-event requests, want at most once, before the first", n, encodeFromEvents)
	}
	// Commits of at most 4 requests of encodePerRequest events: too small
	// for the encoder.
	if n := appends(encodePerRequest, 20); n == 0 {
		t.Errorf("the writer never yielded between commits of %d-event requests", encodePerRequest)
	}
	if n := appends(1, 20); n == 0 {
		t.Error("the writer never yielded between commits of 1-event requests")
	}
}

// openNoSync opens a new bbolt journal in a temporary directory without
// fsync (the tests of the writer's mechanics), closed when the test ends.
func openNoSync(t *testing.T) *Bolt {
	t.Helper()
	b, err := OpenBolt(filepath.Join(t.TempDir(), "journal.db"), WithUnsafeNoSync())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// TestCheckpointAfterACrashHoldsTheHeadsMovedBeforeIt: heads that moved
// after the last checkpoint and before a crash are found again at open
// (their last event is past the checkpoint), and the next checkpoint
// writes them, with the heads moved since; a head that did not move is
// left as it is.
func TestCheckpointAfterACrashHoldsTheHeadsMovedBeforeIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	ids := []string{"00000000000000aa", "00000000000000bb", "00000000000000cc"}
	appendTo := func(b *Bolt, id string) {
		t.Helper()
		if _, err := b.Append(context.Background(), []*pb.Envelope{testEnvelope(id, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	b, err := OpenBolt(path, WithUnsafeNoSync())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		appendTo(b, id) // seqs 1-3
	}
	appendTo(b, ids[0]) // seq 4
	appendTo(b, ids[0]) // seq 5
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// As after a crash between the appends of seqs 4 and 5 and the
	// checkpoint that would have followed them: the checkpoint is as of 3.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketHeads).Put([]byte(ids[0]), appendHead(nil, streamHead{seq: 1, last: 1})); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(metaHeadsThrough, appendSeqKey(nil, 3))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	if b, err = OpenBolt(path, WithUnsafeNoSync()); err != nil {
		t.Fatal(err)
	}
	appendTo(b, ids[1]) // seq 6
	// Close checkpoints the heads.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if b, err = OpenBolt(path, WithReadOnly()); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	through, heads := checkpointOf(t, b)
	want := map[string]streamHead{ids[0]: {3, 5}, ids[1]: {2, 6}, ids[2]: {1, 3}}
	if through != 6 || !maps.Equal(heads, want) {
		t.Fatalf("checkpoint through %d with heads %v; want through 6 with %v", through, heads, want)
	}
}

// TestHeadsCheckpointRoundAfterAFailedCommit: a commit that fails in the
// middle of a heads checkpoint round drops the round (the chunks put stay
// valid); the next commit starts it again, and it still ends with every
// stream's head and a journal that passes Check. Close writes a whole
// round in transactions of its own.
func TestHeadsCheckpointRoundAfterAFailedCommit(t *testing.T) {
	var fail atomic.Bool
	path := filepath.Join(t.TempDir(), "journal.db")
	b, err := OpenBolt(path, WithUnsafeNoSync(), WithCommitFault(func() error {
		if fail.Load() {
			return errors.New("injected")
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	const streams, perCall = 10_000, 1000
	interval := checkpointInterval(streams)
	appended := 0
	appendCall := func() error {
		_, err := b.Append(context.Background(), spreadEnvelopes(appended, perCall, streams))
		if err == nil {
			appended += perCall
		}
		return err
	}
	for appended < interval {
		if err := appendCall(); err != nil {
			t.Fatal(err)
		}
	}
	fail.Store(true)
	if err := appendCall(); err == nil {
		t.Fatal("the injected commit fault did not fail the append")
	}
	fail.Store(false)
	for range 5 {
		if err := appendCall(); err != nil {
			t.Fatal(err)
		}
	}
	through, heads := checkpointOf(t, b)
	if through <= uint64(interval) || len(heads) != streams {
		t.Fatalf("after a failed commit in the round: through %d with %d heads; want a round started again after %d, with every stream's head", through, len(heads), interval)
	}
	if err := b.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Events since the round, then Close: one round in several transactions.
	for range 3 {
		if err := appendCall(); err != nil {
			t.Fatal(err)
		}
	}
	head := b.Head()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if b, err = OpenBolt(path, WithReadOnly()); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	through, heads = checkpointOf(t, b)
	if through != head || len(heads) != streams || b.unckptEvents != 0 {
		t.Fatalf("after Close: through %d with %d heads, %d events scanned at open; want through %d with every stream's head, none scanned", through, len(heads), b.unckptEvents, head)
	}
	if err := b.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}
