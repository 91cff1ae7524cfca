package sqlview_test

import (
	"context"
	"errors"
	"iter"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/gen"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections/sqlview"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// countingJournal counts the Read calls made on its journal.
type countingJournal struct {
	journal.Journal
	reads atomic.Int64
}

func (c *countingJournal) Read(ctx context.Context, from uint64) iter.Seq2[*pb.Envelope, error] {
	c.reads.Add(1)
	return c.Journal.Read(ctx, from)
}

// TestCatchUpReadsTheJournalOnce: catching up over many batches reads the
// journal in one pass. A Read per batch decodes a whole read chunk (4,096
// envelopes from bbolt) for each batch and throws away what lies beyond
// it: with small batches most of the catch-up's CPU went there.
func TestCatchUpReadsTheJournalOnce(t *testing.T) {
	j := &countingJournal{Journal: filled(t, 3, 1000)}
	path := filepath.Join(t.TempDir(), "view.db")
	emptyView(t, path)
	v := openView(t, path, j, sqlview.Options{BatchSize: 100})
	j.reads.Store(0)
	if err := v.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := v.Offset(); got != j.Head() {
		t.Fatalf("offset %d after CatchUp, journal head %d", got, j.Head())
	}
	if n := j.reads.Load(); n != 1 {
		t.Errorf("CatchUp of %d events in batches of 100 read the journal %d times, want 1", j.Head(), n)
	}
	equalsRebuild(t, path, j)
}

// TestFormatTimeIsTimeFormat: the view's own time rendering gives the text
// of time.Format with TimeLayout, for random times over the whole range of
// unix nanoseconds and for the edges.
func TestFormatTimeIsTimeFormat(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 14))
	cases := []int64{0, 1, -1, 999_999_999, 1_000_000_000, math.MaxInt64, math.MinInt64, 951_782_400_000_000_000 /* 2000-02-29 */, 4_107_542_399_999_999_999}
	for range 100_000 {
		cases = append(cases, int64(r.Uint64()), r.Int64N(5_000_000_000_000_000_000))
	}
	for _, n := range cases {
		want := time.Unix(0, n).UTC().Format(sqlview.TimeLayout)
		if got := sqlview.FormatTime(n); got != want {
			t.Fatalf("FormatTime(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestCancelledBatchRollsBack: the batch's statements run under a context
// that cannot end, so the batch checks its own: a context that ends
// before the commit rolls the batch back (offset and tables as they were),
// and the next CatchUp applies it.
func TestCancelledBatchRollsBack(t *testing.T) {
	j := filled(t, 5, 400)
	path := filepath.Join(t.TempDir(), "view.db")
	emptyView(t, path)
	v := openView(t, path, j, sqlview.Options{BatchSize: 150})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	commits := 0
	sqlview.SetBeforeCommitHook(v, func() error {
		if commits++; commits == 2 {
			cancel()
		}
		return nil
	})
	if err := v.CatchUp(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("CatchUp with a context cancelled before its second commit: %v, want context.Canceled", err)
	}
	if got := v.Offset(); got != 150 {
		t.Fatalf("offset %d after the cancelled second batch, want 150 (the first batch only)", got)
	}
	if got := storedOffset(t, path); got != 150 {
		t.Fatalf("stored offset %d after the cancelled second batch, want 150", got)
	}
	if err := v.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := v.Offset(); got != j.Head() {
		t.Fatalf("offset %d after catching up, journal head %d", got, j.Head())
	}
	equalsRebuild(t, path, j)
}

// storedOffset reads the view file's durable offset.
func storedOffset(t *testing.T, path string) uint64 {
	t.Helper()
	seq, _, err := sqlview.PeekOffset(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// TestPruningAMinuteAtATime: check_history and state_changes rows are
// deleted a minute (PruneStep) at a time: after a batch, no row is older
// than newest - retention rounded down to the minute, rows up to a minute
// older than the retention are still there, and the incremental view,
// pruned batch after batch, equals a rebuild pruned once.
func TestPruningAMinuteAtATime(t *testing.T) {
	// The rows stay in check_history_recent (fewer than a merge), or are
	// merged into check_history_archive every 100.
	t.Run("recent", testPruning)
	t.Run("merged", func(t *testing.T) {
		sqlview.SetMergeRows(t, 100, 30)
		testPruning(t)
	})
}

func testPruning(t *testing.T) {
	j := journal.NewMem()
	t.Cleanup(func() { j.Close() })
	// 20 proxies, a check every 1.5 s: 2,000 events span 50 minutes.
	if _, err := gen.Realistic(context.Background(), j, 9, 20, 2000); err != nil {
		t.Fatal(err)
	}
	const retention = 10 * time.Minute
	opts := sqlview.Options{BatchSize: 37, HistoryRetention: retention, StateChangeRetention: 2 * retention}
	path := filepath.Join(t.TempDir(), "view.db")
	emptyView(t, path)
	v := openView(t, path, j, opts)
	if err := v.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	var newest int64
	for e, err := range j.Read(context.Background(), 1) {
		if err != nil {
			t.Fatal(err)
		}
		newest = max(newest, e.GetAtUnixNano())
	}
	floor := func(n int64) int64 { return n - n%int64(time.Minute) }
	db := v.DB()
	for _, tb := range []struct {
		name      string
		retention time.Duration
	}{{"check_history", retention}, {"state_changes", 2 * retention}} {
		cutoff := floor(newest - int64(tb.retention))
		var oldest string
		var older int
		if err := db.QueryRow("SELECT MIN(at), COUNT(*) FILTER (WHERE at < ?) FROM "+tb.name, sqlview.FormatTime(newest-int64(tb.retention))).Scan(&oldest, &older); err != nil {
			t.Fatal(err)
		}
		if oldest < sqlview.FormatTime(cutoff) {
			t.Errorf("%s: oldest row at %s, before the cutoff %s", tb.name, oldest, sqlview.FormatTime(cutoff))
		}
		if tb.name == "check_history" && older == 0 {
			t.Errorf("%s: no row older than the retention (before %s) is left: pruning does not round down to the minute", tb.name, sqlview.FormatTime(newest-int64(tb.retention)))
		}
	}
	full := filepath.Join(t.TempDir(), "rebuilt.db")
	if err := sqlview.RebuildFile(context.Background(), full, j, opts); err != nil {
		t.Fatal(err)
	}
	if err := sameViews(t, path, full); err != nil {
		t.Fatal(err)
	}
}
