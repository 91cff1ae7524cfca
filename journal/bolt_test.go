package journal_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/journal/journaltest"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

func openBolt(t *testing.T, path string, opts ...journal.BoltOption) *journal.Bolt {
	t.Helper()
	j, err := journal.OpenBolt(path, opts...)
	if err != nil {
		t.Fatalf("OpenBolt: %v", err)
	}
	return j
}

// rawUpdate closes j and modifies its file with bbolt directly.
func rawUpdate(t *testing.T, j journal.Journal, fn func(tx *bolt.Tx) error) string {
	t.Helper()
	path := j.(*journal.Bolt).Path()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// TestBoltContract runs the contract suite without fsync: the suite tests
// semantics (reopening within the process does not depend on fsync), and
// thousands of fsyncs would make it slow on a busy disk. The benchmarks
// and the other tests use fsync.
func TestBoltContract(t *testing.T) {
	journaltest.Run(t, journaltest.Harness{
		Open: func(t *testing.T) journal.Journal {
			return openBolt(t, filepath.Join(t.TempDir(), "journal.db"), journal.WithUnsafeNoSync(), journal.WithCommitDelay(time.Millisecond))
		},
		Reopen: func(t *testing.T, old journal.Journal) journal.Journal {
			path := old.(*journal.Bolt).Path()
			if err := old.Close(); err != nil {
				t.Fatal(err)
			}
			return openBolt(t, path, journal.WithUnsafeNoSync(), journal.WithCommitDelay(time.Millisecond))
		},
		Damage: func(t *testing.T, j journal.Journal) journal.Journal {
			mid := j.Head()/2 + 1 // a proxy event: its stream index entry dangles
			path := rawUpdate(t, j, func(tx *bolt.Tx) error { return deleteEvent(tx, mid) })
			return openBolt(t, path, journal.WithUnsafeNoSync(), journal.WithCommitDelay(time.Millisecond))
		},
	})
}

// TestBoltConcurrentDurable is the suite's concurrent append test with
// fsync on, smaller: group commit under real commits.
func TestBoltConcurrentDurable(t *testing.T) {
	j := openBolt(t, filepath.Join(t.TempDir(), "journal.db"))
	defer j.Close()
	const goroutines, calls = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for c := range calls {
				envs := []*pb.Envelope{journaltest.Succeeded(journaltest.ProxyID(g%3), time.Duration(c)*time.Second)}
				if c%2 == 0 {
					envs = append(envs, journaltest.Failed(journaltest.ProxyID(g), time.Duration(c)*time.Second))
				}
				if _, err := j.Append(context.Background(), envs); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if want := uint64(goroutines * (calls + calls/2)); j.Head() != want {
		t.Fatalf("Head = %d, want %d", j.Head(), want)
	}
	if err := j.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	path := j.Path()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j2 := openBolt(t, path)
	defer j2.Close()
	if n := len(journaltest.ReadAll(t, j2, 1)); n != goroutines*(calls+calls/2) {
		t.Fatalf("after reopen %d events", n)
	}
}

func fillN(t *testing.T, j journal.Journal, n int) {
	t.Helper()
	for i := range n {
		journaltest.Append(t, j, journaltest.Succeeded(journaltest.ProxyID(i%3), time.Duration(i)*time.Second))
	}
}

func TestBoltGarbageValue(t *testing.T) {
	j := openBolt(t, filepath.Join(t.TempDir(), "journal.db"))
	fillN(t, j, 20)
	path := rawUpdate(t, j, func(tx *bolt.Tx) error {
		return putEvent(tx, 10, []byte{0xff, 0xff, 0xff, 0x01})
	})
	j = openBolt(t, path)
	defer j.Close()
	err := j.Check(context.Background())
	if !errors.Is(err, journal.ErrCorrupt) || !strings.Contains(err.Error(), "event 10") {
		t.Fatalf("Check = %v; want ErrCorrupt naming event 10", err)
	}
	var readErr error
	for _, err := range j.Read(context.Background(), 1) {
		readErr = err
	}
	if !errors.Is(readErr, journal.ErrCorrupt) {
		t.Fatalf("Read over the garbage yielded %v, want ErrCorrupt", readErr)
	}
}

// putEvent stores v as event seq's value (inside a raw transaction), the
// event alone under its seq (journal.IsolateEvent).
func putEvent(tx *bolt.Tx, seq uint64, v []byte) error {
	if err := journal.IsolateEvent(tx, seq); err != nil {
		return err
	}
	return tx.Bucket([]byte("events")).Put(seqKey(seq), v)
}

// deleteEvent deletes event seq (inside a raw transaction).
func deleteEvent(tx *bolt.Tx, seq uint64) error {
	if err := journal.IsolateEvent(tx, seq); err != nil {
		return err
	}
	return tx.Bucket([]byte("events")).Delete(seqKey(seq))
}

// rewriteEvent changes one stored event with fn (inside a raw transaction).
func rewriteEvent(t *testing.T, tx *bolt.Tx, seq uint64, fn func(*pb.Envelope)) error {
	t.Helper()
	if err := journal.IsolateEvent(tx, seq); err != nil {
		return err
	}
	b := tx.Bucket([]byte("events"))
	var e pb.Envelope
	if err := proto.Unmarshal(journal.RecordPayload(b.Get(seqKey(seq))), &e); err != nil {
		return err
	}
	fn(&e)
	v, err := proto.Marshal(&e)
	if err != nil {
		return err
	}
	return b.Put(seqKey(seq), journal.FrameRecord(v))
}

func TestBoltDamagedChain(t *testing.T) {
	j := openBolt(t, filepath.Join(t.TempDir(), "journal.db"))
	fillN(t, j, 20) // proxy 1: seqs 2, 5, 8, … 20 are its stream_seqs 1…7
	p := journaltest.ProxyID(1)
	// Point stream_seq 3 of proxy 1 back at its stream_seq 1, skipping 2.
	path := rawUpdate(t, j, func(tx *bolt.Tx) error {
		return rewriteEvent(t, tx, 8, func(e *pb.Envelope) {
			if e.GetProxyId() != p || e.GetStreamSeq() != 3 || e.GetPrevSeq() != 5 {
				t.Fatalf("event 8 is %v, want proxy %s stream_seq 3 prev_seq 5", e, p)
			}
			e.PrevSeq = 2
		})
	})
	j = openBolt(t, path)
	defer j.Close()
	if err := j.Check(context.Background()); !errors.Is(err, journal.ErrCorrupt) || !strings.Contains(err.Error(), p) {
		t.Fatalf("Check = %v; want ErrCorrupt naming proxy %s", err, p)
	}
	var readErr error
	for _, err := range j.ReadStream(context.Background(), p, 1) {
		readErr = err
	}
	if !errors.Is(readErr, journal.ErrCorrupt) || !strings.Contains(readErr.Error(), "event 2") {
		t.Fatalf("ReadStream over the damaged chain yielded %v, want ErrCorrupt naming event 2", readErr)
	}
}

// TestBoltHeadsRecoveredAfterCrash: a journal whose heads checkpoint is
// missing (as after a crash before the first checkpoint) gets its stream
// heads back from the events at open.
func TestBoltHeadsRecoveredAfterCrash(t *testing.T) {
	j := openBolt(t, filepath.Join(t.TempDir(), "journal.db"))
	fillN(t, j, 20)
	want := map[string]uint64{}
	for i := range 3 {
		want[journaltest.ProxyID(i)] = j.StreamHead(journaltest.ProxyID(i))
	}
	path := rawUpdate(t, j, func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket([]byte("heads")); err != nil {
			return err
		}
		if _, err := tx.CreateBucket([]byte("heads")); err != nil {
			return err
		}
		return tx.Bucket([]byte("meta")).Delete([]byte("heads_through"))
	})
	j = openBolt(t, path)
	for id, h := range want {
		if got := j.StreamHead(id); got != h {
			t.Errorf("proxy %s: stream head %d after reopening, want %d", id, got, h)
		}
	}
	if err := j.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The stream continues where it was, and Close checkpoints the heads.
	journaltest.Append(t, j, journaltest.Succeeded(journaltest.ProxyID(1), time.Hour))
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = openBolt(t, path)
	defer j.Close()
	if got := j.StreamHead(journaltest.ProxyID(1)); got != want[journaltest.ProxyID(1)]+1 {
		t.Fatalf("stream head %d, want %d", got, want[journaltest.ProxyID(1)]+1)
	}
	if err := j.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestBoltMigratesSchemaV1 builds a schema version 1 file (stream index,
// no prev_seq, a proxy whose events retention deleted but whose snapshot
// remains) and opens it: writable, it is upgraded in place and keeps every
// event; read-only, it is refused with what to do.
func TestBoltMigratesSchemaV1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b, gone := journaltest.ProxyID(1), journaltest.ProxyID(2), journaltest.ProxyID(3)
	err = db.Update(func(tx *bolt.Tx) error {
		bk := map[string]*bolt.Bucket{}
		for _, name := range []string{"events", "streams", "heads", "snapshots", "meta"} {
			if bk[name], err = tx.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		// Events 1 and 2 were deleted by retention (first = 3); they were
		// proxy gone's stream_seqs 1 and 2, covered by its snapshot.
		stream := map[string]uint64{}
		order := []string{a, b, a, "", b, a}
		for i, id := range order {
			seq := uint64(i + 3)
			e := journaltest.Succeeded(id, time.Duration(seq)*time.Second)
			if id == "" {
				e = &pb.Envelope{AtUnixNano: int64(seq), Event: &pb.Envelope_PoolDegraded{PoolDegraded: &pb.PoolDegraded{}}}
			} else {
				stream[id]++
				e.StreamSeq = stream[id]
				k := append(append([]byte(id), 0), seqKey(e.StreamSeq)...)
				if err := bk["streams"].Put(k, seqKey(seq)); err != nil {
					return err
				}
			}
			e.Seq = seq
			v, err := proto.Marshal(e)
			if err != nil {
				return err
			}
			if err := bk["events"].Put(seqKey(seq), v); err != nil {
				return err
			}
		}
		snap, _ := proto.Marshal(&pb.ProxySnapshot{ProxyId: gone, StreamSeq: 2})
		if err := bk["snapshots"].Put([]byte(gone), snap); err != nil {
			return err
		}
		if err := bk["meta"].Put([]byte("first"), seqKey(3)); err != nil {
			return err
		}
		return bk["meta"].Put([]byte("schema"), seqKey(1))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	_, err = journal.OpenBolt(path, journal.WithReadOnly())
	if !errors.Is(err, journal.ErrSchemaVersion) || !strings.Contains(err.Error(), "proxyhealth run") {
		t.Fatalf("read-only OpenBolt of a version 1 file = %v; want ErrSchemaVersion saying how to upgrade", err)
	}

	j := openBolt(t, path)
	if err := j.Check(context.Background()); err != nil {
		t.Fatalf("Check after the upgrade: %v", err)
	}
	if j.First() != 3 || j.Head() != 8 {
		t.Fatalf("first %d head %d after the upgrade, want 3 and 8", j.First(), j.Head())
	}
	for id, want := range map[string][]uint64{a: {3, 5, 8}, b: {4, 7}, gone: nil} {
		var got []uint64
		prev := uint64(0)
		for e, err := range j.ReadStream(context.Background(), id, 1) {
			if err != nil {
				t.Fatal(err)
			}
			if e.GetPrevSeq() != prev {
				t.Errorf("proxy %s: event %d has prev_seq %d, want %d", id, e.GetSeq(), e.GetPrevSeq(), prev)
			}
			prev = e.GetSeq()
			got = append(got, e.GetSeq())
		}
		if !slices.Equal(got, want) {
			t.Errorf("proxy %s: stream %v after the upgrade, want %v", id, got, want)
		}
	}
	if h := j.StreamHead(gone); h != 2 {
		t.Errorf("proxy %s: stream head %d, want 2 (from its snapshot)", gone, h)
	}
	// Appends continue every stream.
	journaltest.Append(t, j, journaltest.Succeeded(gone, time.Hour), journaltest.Succeeded(a, time.Hour))
	if j.StreamHead(gone) != 3 || j.StreamHead(a) != 4 {
		t.Fatalf("stream heads %d and %d after appending, want 3 and 4", j.StreamHead(gone), j.StreamHead(a))
	}
	if err := j.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	ro := openBolt(t, path, journal.WithReadOnly())
	defer ro.Close()
	if err := ro.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestBoltNotJournal(t *testing.T) {
	dir := t.TempDir()
	random := make([]byte, 64<<10)
	_, _ = rand.Read(random)
	cases := map[string][]byte{
		"random.db": random,
		"small.db":  random[:100],
		"text.db":   []byte(strings.Repeat("not a journal\n", 1000)),
	}
	for name, content := range cases {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		j, err := journal.OpenBolt(path)
		if err == nil {
			j.Close()
			t.Fatalf("%s: OpenBolt succeeded", name)
		}
		if !errors.Is(err, journal.ErrNotJournal) || !strings.Contains(err.Error(), path) {
			t.Fatalf("%s: OpenBolt = %v; want ErrNotJournal naming the file", name, err)
		}
	}
	// A bbolt file of something else.
	path := filepath.Join(dir, "other.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("users")); return err }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := journal.OpenBolt(path); !errors.Is(err, journal.ErrNotJournal) || !strings.Contains(err.Error(), "users") {
		t.Fatalf("OpenBolt of another bbolt file = %v; want ErrNotJournal naming its buckets", err)
	}
}

func TestBoltLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	j := openBolt(t, path)
	defer j.Close()
	for name, opts := range map[string][]journal.BoltOption{
		"read-write": {journal.WithLockTimeout(50 * time.Millisecond)},
		"read-only":  {journal.WithLockTimeout(50 * time.Millisecond), journal.WithReadOnly()},
	} {
		start := time.Now()
		j2, err := journal.OpenBolt(path, opts...)
		if err == nil {
			j2.Close()
			t.Fatalf("%s: second OpenBolt succeeded", name)
		}
		if !errors.Is(err, journal.ErrLocked) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "another proxyhealth") {
			t.Fatalf("%s: second OpenBolt = %v; want ErrLocked naming the file", name, err)
		}
		// Not an assertion on speed: a hang would show up as a test timeout.
		t.Logf("%s: gave up after %v: %v", name, time.Since(start), err)
	}
}

func TestBoltSchemaVersion(t *testing.T) {
	j := openBolt(t, filepath.Join(t.TempDir(), "journal.db"))
	path := rawUpdate(t, j, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), seqKey(7))
	})
	_, err := journal.OpenBolt(path)
	if !errors.Is(err, journal.ErrSchemaVersion) || !strings.Contains(err.Error(), "version 7") || !strings.Contains(err.Error(), fmt.Sprintf("version %d", journal.SchemaVersion)) {
		t.Fatalf("OpenBolt = %v; want ErrSchemaVersion naming versions 7 and %d", err, journal.SchemaVersion)
	}
}

func TestBoltReadOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "journal.db")
	if _, err := journal.OpenBolt(path, journal.WithReadOnly()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("read-only OpenBolt of a missing file = %v, want fs.ErrNotExist", err)
	}
	j := openBolt(t, path)
	fillN(t, j, 30)
	p := journaltest.ProxyID(1)
	if err := j.SaveSnapshot(ctx, journaltest.Snapshot(p, 5, 14)); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	ro := openBolt(t, path, journal.WithReadOnly())
	defer ro.Close()
	if ro.Head() != 30 || ro.StreamHead(p) != 10 {
		t.Fatalf("read-only Head %d StreamHead %d, want 30 10", ro.Head(), ro.StreamHead(p))
	}
	if n := len(journaltest.ReadAll(t, ro, 1)); n != 30 {
		t.Fatalf("read-only Read yielded %d envelopes", n)
	}
	if n := len(journaltest.ReadStreamAll(t, ro, p, 3)); n != 8 {
		t.Fatalf("read-only ReadStream yielded %d envelopes", n)
	}
	if _, err := ro.LoadSnapshot(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := ro.Check(ctx); err != nil {
		t.Fatalf("read-only Check: %v", err)
	}
	_, err := ro.Append(ctx, []*pb.Envelope{journaltest.Succeeded(p, 0)})
	if !errors.Is(err, journal.ErrReadOnly) {
		t.Fatalf("read-only Append = %v, want ErrReadOnly", err)
	}
	if err := ro.SaveSnapshot(ctx, journaltest.Snapshot(p, 5, 14)); !errors.Is(err, journal.ErrReadOnly) {
		t.Fatalf("read-only SaveSnapshot = %v, want ErrReadOnly", err)
	}
	if _, err := ro.Retain(ctx, time.Now()); !errors.Is(err, journal.ErrReadOnly) {
		t.Fatalf("read-only Retain = %v, want ErrReadOnly", err)
	}
	// Two read-only opens share the file.
	ro2 := openBolt(t, path, journal.WithReadOnly())
	if err := ro2.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestBoltInvalidUTF8FailsAlone(t *testing.T) {
	j := openBolt(t, filepath.Join(t.TempDir(), "journal.db"))
	defer j.Close()
	p := journaltest.ProxyID(1)
	bad := journaltest.Failed(p, 0)
	bad.GetCheckFailed().Message = "bad \xff byte"
	good := journaltest.Succeeded(p, 0)
	_, err := j.Append(context.Background(), []*pb.Envelope{good, bad})
	if !errors.Is(err, journal.ErrInvalidEvent) {
		t.Fatalf("Append with invalid UTF-8 = %v, want ErrInvalidEvent", err)
	}
	if good.GetSeq() != 0 || good.GetStreamSeq() != 0 || j.Head() != 0 || j.StreamHead(p) != 0 {
		t.Fatalf("the failed call left traces: seq %d stream_seq %d head %d stream head %d",
			good.GetSeq(), good.GetStreamSeq(), j.Head(), j.StreamHead(p))
	}
	if seqs := journaltest.Append(t, j, good); seqs[0] != 1 || good.GetStreamSeq() != 1 {
		t.Fatalf("retry got seq %d stream_seq %d, want 1 1", seqs[0], good.GetStreamSeq())
	}
	if err := j.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A small batch lingers for more appends: concurrent single-event appends
// share commits, and the observer sees every event exactly once.
func TestBoltCommitDelayGroupsAppendsAndObserverCounts(t *testing.T) {
	var mu sync.Mutex
	var commits, events int
	j := openBolt(t, filepath.Join(t.TempDir(), "journal.db"),
		journal.WithCommitDelay(20*time.Millisecond),
		journal.WithCommitObserver(func(c journal.CommitStats) {
			mu.Lock()
			defer mu.Unlock()
			if c.Err != nil || c.Duration <= 0 {
				t.Errorf("commit stats %+v", c)
			}
			commits++
			events += c.Events
		}))
	defer j.Close()
	const appenders = 50
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if _, err := j.Append(context.Background(), []*pb.Envelope{journaltest.Succeeded(journaltest.ProxyID(i), time.Millisecond)}); err != nil {
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if events != appenders {
		t.Fatalf("observer saw %d events, want %d", events, appenders)
	}
	if commits > appenders/2 {
		t.Fatalf("%d commits for %d concurrent appends: no grouping", commits, appenders)
	}
	t.Logf("%d appends in %d commits", appenders, commits)
}

// TestBoltAppendAsyncRacingClose: every AppendAsync racing Close is
// answered exactly once, committed or ErrClosed; nothing is left waiting.
func TestBoltAppendAsyncRacingClose(t *testing.T) {
	j := openBolt(t, filepath.Join(t.TempDir(), "journal.db"), journal.WithUnsafeNoSync())
	var calls, committed sync.WaitGroup
	var answered, failed atomic.Int64
	const n = 2000
	calls.Add(n)
	committed.Add(n)
	for i := range n {
		go func() {
			defer calls.Done()
			j.AppendAsync([]*pb.Envelope{journaltest.Succeeded(journaltest.ProxyID(i%7), 0)}, func(_ []uint64, err error) {
				answered.Add(1)
				if err != nil {
					if !errors.Is(err, journal.ErrClosed) {
						t.Errorf("AppendAsync: %v", err)
					}
					failed.Add(1)
				}
				committed.Done()
			})
		}()
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	calls.Wait()
	committed.Wait()
	if answered.Load() != n {
		t.Fatalf("%d answers for %d calls", answered.Load(), n)
	}
	j = openBolt(t, j.Path(), journal.WithReadOnly())
	defer j.Close()
	if got := int64(j.Head()); got != n-failed.Load() {
		t.Fatalf("%d events in the journal, %d appends answered without error", got, n-failed.Load())
	}
}

// TestReadOnlyView: the view the engine hands out reads everything and
// writes nothing.
func TestReadOnlyView(t *testing.T) {
	ctx := context.Background()
	j := journal.NewMem()
	defer j.Close()
	p1 := journaltest.ProxyID(1)
	journaltest.Append(t, j, journaltest.Succeeded(p1, 0))
	ro := journal.ReadOnly(j)
	if _, err := ro.Append(ctx, []*pb.Envelope{journaltest.Succeeded(p1, 1)}); !errors.Is(err, journal.ErrReadOnly) {
		t.Fatalf("Append = %v", err)
	}
	if err := ro.SaveSnapshot(ctx, journaltest.Snapshot(p1, 1, 1)); !errors.Is(err, journal.ErrReadOnly) {
		t.Fatalf("SaveSnapshot = %v", err)
	}
	if _, err := ro.Retain(ctx, time.Now()); !errors.Is(err, journal.ErrReadOnly) {
		t.Fatalf("Retain = %v", err)
	}
	if err := ro.Close(); err != nil || ro.Head() != 1 || j.Head() != 1 {
		t.Fatalf("Close %v, head %d", err, ro.Head())
	}
	n := 0
	for _, err := range ro.Read(ctx, 1) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 1 || ro.StreamHead(p1) != 1 {
		t.Fatalf("read %d events, stream head %d", n, ro.StreamHead(p1))
	}
}

// TestBoltReadChunkDamage damages events in the middle of a chunk that Read
// decodes on two goroutines (readRange): it reports the first damaged
// event whichever goroutine decoded it, and a missing event, and yields
// nothing of the chunk.
func TestBoltReadChunkDamage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(tx *bolt.Tx) error
		want   string
	}{
		{"garbage", func(tx *bolt.Tx) error {
			for _, seq := range []uint64{2000, 2600, 100} {
				if err := putEvent(tx, seq, []byte{0xff, 0xff, 0xff, 0x01}); err != nil {
					return err
				}
			}
			return nil
		}, "event 100 "},
		{"missing", func(tx *bolt.Tx) error {
			if err := putEvent(tx, 300, []byte{0xff}); err != nil {
				return err
			}
			return deleteEvent(tx, 1500)
		}, "event 1500 is missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := openBolt(t, filepath.Join(t.TempDir(), "journal.db"), journal.WithUnsafeNoSync())
			envs := make([]*pb.Envelope, 3000)
			for i := range envs {
				envs[i] = journaltest.Succeeded(journaltest.ProxyID(i%7), time.Duration(i)*time.Second)
			}
			if _, err := j.Append(context.Background(), envs); err != nil {
				t.Fatal(err)
			}
			path := rawUpdate(t, j, tc.damage)
			j = openBolt(t, path, journal.WithReadOnly())
			defer j.Close()
			for range 3 {
				n := 0
				var readErr error
				for _, err := range j.Read(context.Background(), 1) {
					if err != nil {
						readErr = err
						break
					}
					n++
				}
				if n != 0 || !errors.Is(readErr, journal.ErrCorrupt) || !strings.Contains(readErr.Error(), tc.want) {
					t.Fatalf("Read yielded %d envelopes, then %v; want none, then ErrCorrupt naming %q", n, readErr, tc.want)
				}
			}
		})
	}
}
