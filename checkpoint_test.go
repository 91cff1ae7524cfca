package proxyhealth_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/internal/clock"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/probe"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// debugLogger returns a logger of everything, as text into buf.
func debugLogger(buf *testutil.SyncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// sameStatus reports the first difference between two engines' live
// status: the summary, every proxy's view and its transitions.
func sameStatus(a, b proxyhealth.StatusReader) string {
	if a.Seq() != b.Seq() {
		return fmt.Sprintf("seq %d != %d", a.Seq(), b.Seq())
	}
	if sa, sb := a.Summary(), b.Summary(); !reflect.DeepEqual(sa, sb) {
		return fmt.Sprintf("summary\n%+v\n!=\n%+v", sa, sb)
	}
	na, la := a.List(proxyhealth.ListFilter{}, 0, 1<<20)
	nb, lb := b.List(proxyhealth.ListFilter{}, 0, 1<<20)
	if na != nb || !reflect.DeepEqual(la, lb) {
		return fmt.Sprintf("proxies\n%+v\n!=\n%+v", la, lb)
	}
	for _, v := range la {
		if ca, cb := a.StateChanges(v.ID, 100), b.StateChanges(v.ID, 100); !reflect.DeepEqual(ca, cb) {
			return fmt.Sprintf("transitions of %s\n%+v\n!=\n%+v", v.ID, ca, cb)
		}
	}
	return ""
}

// checkpointRun runs an engine over dir until each proxy has passed a few
// checks and one of them (dead) has gone down, then stops it cleanly.
func checkpointRun(t *testing.T, cfg proxyhealth.Config, clk *clock.Fake, farm *fakeproxy.Farm, dead int) {
	t.Helper()
	e, err := proxyhealth.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := farm.Set(dead, fakeproxy.Refuse()); err != nil {
		t.Fatal(err)
	}
	id := probe.MustParseProxyURL(farm.URL(dead)).ID()
	head := e.JournalHead()
	poll(t, "checks, and the refused proxy down", func() bool {
		clk.Advance(50 * time.Millisecond)
		st, err := e.Proxy(ctx, id)
		return err == nil && st.State.Health == pb.HealthState_HEALTH_STATE_UNHEALTHY && e.JournalHead() > head+20
	})
	if err := farm.Set(dead, fakeproxy.OK()); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// reopenAndCompare opens cfg's data directory with a clock frozen an hour
// before now, the time of the last run (nothing runs: no check falls due,
// so the status is what was restored and folded; at now itself a proxy
// checked more than an interval before the stop was checked at once, and
// the two engines compared could differ by that check), checks that it
// logged wantLog, and compares its status with an engine's on a copy of
// the directory (whose journal is another file: it folds it all); the pool
// must hold proxies proxies.
func reopenAndCompare(t *testing.T, cfg proxyhealth.Config, now time.Time, logs *testutil.SyncBuffer, proxies int, what, wantLog string) {
	t.Helper()
	frozen := cfg
	frozen.Clock = clock.NewFake(now.Add(-time.Hour))
	from := len(logs.String())
	e := open(t, frozen)
	if got := logs.String()[from:]; !strings.Contains(got, wantLog) {
		t.Fatalf("%s: the engine did not log %q:\n%s", what, wantLog, got)
	}
	copied := frozen
	copied.DataDir, copied.Logger = testutil.CopyDir(t, cfg.DataDir), nil
	c := open(t, copied)
	if diff := sameStatus(e.Status(), c.Status()); diff != "" {
		t.Fatalf("%s: the status differs from a fold of the whole journal: %s", what, diff)
	}
	if e.Status().Summary().Counts.Total != proxies {
		t.Fatalf("%s: %+v", what, e.Status().Summary())
	}
	closeEngine(t, e)
	closeEngine(t, c)
}

// checkpointConfig is the config of these tests: a data directory, a fake
// clock, debug logs into logs, and source "a" of the farm's first n
// proxies, checked fast.
func checkpointConfig(t *testing.T, farm *fakeproxy.Farm, n int, logs *testutil.SyncBuffer) (proxyhealth.Config, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(time.Now())
	urls := make([]string, n)
	for i := range urls {
		urls[i] = farm.URL(i)
	}
	return proxyhealth.Config{DataDir: t.TempDir(), Clock: clk, Logger: debugLogger(logs),
		Sources: []proxyhealth.SourceConfig{{Name: "a", Health: fastHealth(), Probe: farmProbe(), Proxies: urls}}}, clk
}

// TestRestartFoldsOnFromTheLiveCheckpoint: a clean stop saves the live
// status's checkpoint, and the next Open restores it and folds only the
// events after it, into the status a fold of the whole journal gives (an
// engine opened on a copy of the directory, whose journal is another file,
// folds it all). A checkpoint saved by an earlier stop (the engine
// crashed after running on from it) is folded on from its own seq; a
// damaged one is ignored, and so is one older than what retention kept.
func TestRestartFoldsOnFromTheLiveCheckpoint(t *testing.T) {
	farm := startFarm(t, 3)
	var logs testutil.SyncBuffer
	cfg, clk := checkpointConfig(t, farm, 3, &logs)
	cfg.Retention = 7 * 24 * time.Hour
	dir := cfg.DataDir
	checkpointRun(t, cfg, clk, farm, 1)
	ckpt := filepath.Join(dir, proxyhealth.LiveCheckpointFile)
	earlier, err := os.ReadFile(ckpt)
	if err != nil {
		t.Fatalf("no checkpoint after a clean stop: %v", err)
	}
	checkpointRun(t, cfg, clk, farm, 2) // the second stop's checkpoint replaces the first's

	reopen := func(what, wantLog string) {
		t.Helper()
		reopenAndCompare(t, cfg, clk.Now(), &logs, 3, what, wantLog)
	}
	reopen("after a clean stop", "live status restored from its checkpoint")
	if err := os.WriteFile(ckpt, earlier, 0o600); err != nil {
		t.Fatal(err)
	}
	reopen("from the first stop's checkpoint", "live status restored from its checkpoint")
	b, err := os.ReadFile(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(ckpt, b, 0o600); err != nil {
		t.Fatal(err)
	}
	reopen("with a damaged checkpoint", "live status checkpoint not used")
	if _, err := os.Stat(ckpt); err != nil {
		t.Fatalf("the clean stop after a damaged checkpoint saved none: %v", err)
	}

	// A week and a day later, retention deletes everything the first
	// checkpoint stands for, and events after it: that checkpoint no
	// longer fits.
	e := open(t, cfg)
	head := e.JournalHead()
	clk.Advance(8 * 24 * time.Hour)
	poll(t, "checks after the clock jump", func() bool {
		clk.Advance(50 * time.Millisecond)
		return e.JournalHead() > head+10
	})
	// The hourly retention has run during the jump; once more, to be sure.
	if _, err := e.ApplyRetention(context.Background()); err != nil {
		t.Fatal(err)
	}
	if first := e.JournalFirst(); first <= head {
		t.Fatalf("retention kept the events from %d on; the checkpoints stand for events up to %d", first, head)
	}
	closeEngine(t, e)
	if err := os.WriteFile(ckpt, earlier, 0o600); err != nil {
		t.Fatal(err)
	}
	reopen("from a checkpoint older than retention", "retention deleted the events after it")
}

// TestCleanRestartRecoversEveryProxyFromTheLiveStatus: after a clean stop
// the next start gives every proxy the state it had (journal.LoadState's),
// each actor from the live status restored from the stop's checkpoint,
// without a snapshot round at the stop (SnapshotEvery is larger than any
// stream here, so no proxy has a snapshot: a replay would read every
// stream whole).
func TestCleanRestartRecoversEveryProxyFromTheLiveStatus(t *testing.T) {
	farm := startFarm(t, 4)
	var logs testutil.SyncBuffer
	cfg, clk := checkpointConfig(t, farm, 4, &logs)
	cfg.SnapshotEvery = 1 << 20
	dir := cfg.DataDir
	checkpointRun(t, cfg, clk, farm, 3)
	j, err := journal.OpenBolt(filepath.Join(dir, proxyhealth.JournalFile))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	want := map[string]events.State{}
	for i := range 4 {
		id := probe.MustParseProxyURL(farm.URL(i)).ID()
		if _, err := j.LoadSnapshot(ctx, id); !errors.Is(err, journal.ErrNoSnapshot) {
			t.Fatalf("proxy %d: a snapshot after a clean stop (%v): the stop saves none", i, err)
		}
		if want[id], _, err = journal.LoadState(ctx, j, id); err != nil {
			t.Fatal(err)
		}
		if want[id].StreamSeq < 3 {
			t.Fatalf("proxy %d: stream seq %d", i, want[id].StreamSeq)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.Clock = clock.NewFake(clk.Now().Add(-time.Hour)) // frozen before any check falls due: what shows is what was recovered
	e := open(t, cfg)
	if !strings.Contains(logs.String(), "live status restored from its checkpoint") {
		t.Fatalf("the start did not restore the stop's checkpoint:\n%s", logs.String())
	}
	for id, st := range want {
		got, err := e.Proxy(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.State, st) {
			t.Fatalf("proxy %s after the restart:\n%+v\nwant\n%+v", id, got.State, st)
		}
	}
	if n := proxyhealth.ActorsStartedFromLive(e); n != 4 {
		t.Fatalf("%d of 4 actors started from the live status", n)
	}
}

// checkpointSeq returns the seq a live status checkpoint file stands for
// (after the journal file's identity, the magic and the version).
func checkpointSeq(t *testing.T, b []byte) uint64 {
	t.Helper()
	const at = 16 + len("PHLIVE") + 1
	seq, n := binary.Uvarint(b[min(at, len(b)):])
	if n <= 0 {
		t.Fatalf("not a checkpoint: %q", b[:min(len(b), 32)])
	}
	return seq
}

// TestRunningEngineSavesLiveCheckpoints: a running engine saves the live
// status's checkpoint every CheckpointEvery while events flow, so that a
// start after a crash restores it and folds only the events after it (the
// crash is the checkpoint file of the running engine put back after its
// clean stop). A start whose fold applied many events (a crash without a
// checkpoint) saves one at once, not an interval later.
func TestRunningEngineSavesLiveCheckpoints(t *testing.T) {
	farm := startFarm(t, 3)
	var logs testutil.SyncBuffer
	cfg, clk := checkpointConfig(t, farm, 3, &logs)
	cfg.CheckpointEvery = time.Minute
	dir := cfg.DataDir
	ckpt := filepath.Join(dir, proxyhealth.LiveCheckpointFile)
	e, err := proxyhealth.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	head := e.JournalHead()
	poll(t, "checks", func() bool {
		clk.Advance(50 * time.Millisecond)
		return e.JournalHead() > head+20
	})
	if _, err := os.Stat(ckpt); err == nil {
		t.Fatal("a checkpoint was saved before CheckpointEvery passed")
	}
	clk.Advance(time.Minute)
	var first []byte
	poll(t, "a checkpoint of the running engine", func() bool {
		clk.Advance(50 * time.Millisecond)
		first, err = os.ReadFile(ckpt)
		return err == nil
	})
	seq1 := checkpointSeq(t, first)
	// The next one an interval later, of the events since.
	clk.Advance(time.Minute)
	var second []byte
	poll(t, "the next checkpoint", func() bool {
		clk.Advance(50 * time.Millisecond)
		b, err := os.ReadFile(ckpt)
		if err == nil && checkpointSeq(t, b) > seq1 {
			second = b
			return true
		}
		return false
	})
	head = e.JournalHead()
	poll(t, "checks after it", func() bool {
		clk.Advance(50 * time.Millisecond)
		return e.JournalHead() > head+20
	})
	closeEngine(t, e)
	if err := os.WriteFile(ckpt, second, 0o600); err != nil {
		t.Fatal(err)
	}
	reopenAndCompare(t, cfg, clk.Now(), &logs, 3, "from the running engine's checkpoint", "live status restored from its checkpoint")

	// No checkpoint (a crash before the first), and a long fold: the
	// start saves one at once.
	defer proxyhealth.SetSaveAtOnceAfter(1)()
	if err := os.Remove(ckpt); err != nil {
		t.Fatal(err)
	}
	cfg.CheckpointEvery = time.Hour
	e = open(t, cfg)
	poll(t, "a checkpoint at once after the long fold", func() bool {
		_, err := os.Stat(ckpt)
		return err == nil
	})
	b, err := os.ReadFile(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	// It covers the fold: the events after the restored-from checkpoint.
	if got, want := checkpointSeq(t, b), checkpointSeq(t, second)+20; got < want {
		t.Fatalf("the checkpoint saved at once stands for seq %d; the fold reached %d at least", got, want)
	}
	closeEngine(t, e)
}

// TestActorsStartFromTheLiveStatus: at Open, each proxy actor takes its
// state from the live status Open has just folded instead of replaying its
// stream after its snapshot, and that state is exactly journal.LoadState's.
// The journal is written as a daemon would write it (a snapshot every 100
// events of a stream; proxies that fail for a while, one that stays down);
// the live status folds it whole (a copy of the directory: its checkpoint
// names another file) or from a checkpoint halfway (a crash some time after
// a periodic save). The clock stays at the history's start, so no check runs.
func TestActorsStartFromTheLiveStatus(t *testing.T) {
	dir := t.TempDir()
	urls := make([]string, 40)
	for i := range urls {
		urls[i] = fmt.Sprintf("http://127.0.0.1:%d", 20000+i) // never checked
	}
	h := fastHealth()
	fails := func(i, round int) bool { return i%4 == 1 && round%37 < 9 || i == 2 && round > 150 }
	_, head := writeAgedJournal(t, filepath.Join(dir, proxyhealth.JournalFile), "a", urls, h, 250*h.Interval, fails)
	ctx := context.Background()
	j, err := journal.OpenBolt(filepath.Join(dir, proxyhealth.JournalFile))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]events.State{}
	for _, u := range urls {
		id := probe.MustParseProxyURL(u).ID()
		st, snapSeq, err := journal.LoadState(ctx, j, id)
		if err != nil {
			t.Fatal(err)
		}
		if st.StreamSeq-snapSeq < 20 {
			t.Fatalf("proxy %s: stream seq %d, snapshot at %d: nothing much to replay", id, st.StreamSeq, snapSeq)
		}
		want[id] = st
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := proxyhealth.SaveLiveCheckpointAt(ctx, dir, head/2); err != nil {
		t.Fatal(err)
	}
	whole := testutil.CopyDir(t, dir)
	for _, c := range []struct{ what, dir string }{{"folded whole", whole}, {"from a checkpoint halfway", dir}} {
		var logs testutil.SyncBuffer
		cfg := proxyhealth.Config{DataDir: c.dir, Clock: clock.NewFake(t0), Logger: debugLogger(&logs),
			Sources: []proxyhealth.SourceConfig{{Name: "a", Health: h, Probe: farmProbe(), Proxies: urls}}}
		e := open(t, cfg)
		if restored := strings.Contains(logs.String(), "live status restored from its checkpoint"); restored != (c.dir == dir) {
			t.Fatalf("%s: restored from the checkpoint: %v\n%s", c.what, restored, logs.String())
		}
		for id, st := range want {
			got, err := e.Proxy(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.State, st) {
				t.Fatalf("%s: proxy %s started with\n%+v\nwant journal.LoadState's\n%+v", c.what, id, got.State, st)
			}
		}
		if n := proxyhealth.ActorsStartedFromLive(e); n != int64(len(urls)) {
			t.Fatalf("%s: %d of %d actors started from the live status", c.what, n, len(urls))
		}
		if now := e.JournalHead(); now != head {
			t.Fatalf("%s: the engine journaled %d events: a check ran, the states compared may not be the ones started from", c.what, now-head)
		}
		closeEngine(t, e)
	}
}

// TestRunningCheckpointFailureIsWarnedOnce: a periodic save that fails (here
// the checkpoint's path is a directory, so the rename fails, as a full disk
// fails the write) is warned once, not at every interval, the engine goes
// on, and the next save after the cause is gone succeeds and says so.
func TestRunningCheckpointFailureIsWarnedOnce(t *testing.T) {
	farm := startFarm(t, 2)
	var logs testutil.SyncBuffer
	cfg, clk := checkpointConfig(t, farm, 2, &logs)
	cfg.CheckpointEvery = time.Minute
	dir := cfg.DataDir
	ckpt := filepath.Join(dir, proxyhealth.LiveCheckpointFile)
	if err := os.MkdirAll(filepath.Join(ckpt, "in-the-way"), 0o700); err != nil {
		t.Fatal(err)
	}
	e := open(t, cfg)
	const failed, again = "the live status checkpoint was not saved", "the live status checkpoint is still not saved"
	for round := range 3 {
		clk.Advance(time.Minute)
		poll(t, "a save attempt", func() bool {
			clk.Advance(50 * time.Millisecond)
			return strings.Contains(logs.String(), failed) && strings.Count(logs.String(), again) == round
		})
		// Another interval of checks: another attempt, which fails too.
		head := e.JournalHead()
		poll(t, "checks", func() bool {
			clk.Advance(50 * time.Millisecond)
			return e.JournalHead() > head+10
		})
		if n := strings.Count(logs.String(), failed); n != 1 {
			t.Fatalf("round %d: the failure was warned %d times, want once:\n%s", round, n, logs.String())
		}
		// Health reports it, without making the engine unhealthy (a cache).
		if h := e.Health(); !h.Checkpoint.Failing || h.Checkpoint.Failures != uint64(round+1) || h.Checkpoint.Error == "" || !h.OK {
			t.Fatalf("round %d: health %+v, checkpoint %+v", round, h.OK, h.Checkpoint)
		}
	}
	if err := os.RemoveAll(ckpt); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	poll(t, "a save after the cause is gone", func() bool {
		clk.Advance(50 * time.Millisecond)
		_, err := os.Stat(ckpt)
		return err == nil && strings.Contains(logs.String(), "the live status checkpoint is saved again")
	})
	if _, err := os.Stat(ckpt + ".tmp"); err == nil {
		t.Fatal("a failed save left its temporary file behind")
	}
	b, err := os.ReadFile(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	if h := e.Health().Checkpoint; h.Failing || h.Error != "" || h.Failures != 3 || h.Seq != checkpointSeq(t, b) || h.SavedAt.IsZero() {
		t.Fatalf("health after the save: %+v (the file's seq %d)", h, checkpointSeq(t, b))
	}
	closeEngine(t, e)
}

// TestArchiveStatusStartsFromTheLiveCheckpoint: an archive's status starts
// from the live status checkpoint the engine left (one from before the
// journal's head, as a crash leaves it) and equals the whole journal's
// fold, which FoldWholeJournal asks for; a checkpoint that does not fit
// (damaged) is not used.
func TestArchiveStatusStartsFromTheLiveCheckpoint(t *testing.T) {
	farm := startFarm(t, 3)
	var logs testutil.SyncBuffer
	cfg, clk := checkpointConfig(t, farm, 3, &logs)
	dir := cfg.DataDir
	checkpointRun(t, cfg, clk, farm, 1)
	ckpt := filepath.Join(dir, proxyhealth.LiveCheckpointFile)
	earlier, err := os.ReadFile(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	checkpointRun(t, cfg, clk, farm, 2)
	if err := os.WriteFile(ckpt, earlier, 0o600); err != nil { // a crash after running on from it
		t.Fatal(err)
	}
	ctx := context.Background()
	status := func(opts proxyhealth.ArchiveOptions) (proxyhealth.StatusReader, uint64, func()) {
		t.Helper()
		a, err := proxyhealth.OpenArchive(ctx, dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		st, err := a.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Seq() != a.Head() {
			t.Fatalf("status at seq %d, journal head %d", st.Seq(), a.Head())
		}
		return st, proxyhealth.ArchiveRestoredAt(a), func() { a.Close() }
	}
	from, at, done := status(proxyhealth.ArchiveOptions{})
	defer done()
	whole, wholeAt, done2 := status(proxyhealth.ArchiveOptions{FoldWholeJournal: true})
	defer done2()
	if at != checkpointSeq(t, earlier) || wholeAt != 0 {
		t.Fatalf("started from seq %d and %d; want the checkpoint's %d and 0", at, wholeAt, checkpointSeq(t, earlier))
	}
	if diff := sameStatus(from, whole); diff != "" {
		t.Fatalf("the status from the checkpoint differs from the whole fold: %s", diff)
	}
	b := append([]byte(nil), earlier...)
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(ckpt, b, 0o600); err != nil {
		t.Fatal(err)
	}
	damaged, damagedAt, done3 := status(proxyhealth.ArchiveOptions{})
	defer done3()
	if damagedAt != 0 {
		t.Fatalf("a damaged checkpoint was used (seq %d)", damagedAt)
	}
	if diff := sameStatus(damaged, whole); diff != "" {
		t.Fatalf("with a damaged checkpoint: %s", diff)
	}
}
