package sqlview_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/internal/gen"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections/sqlview"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// TestIncrementalEqualsRebuild: a view tailing the journal while random
// events are appended in random batches equals, table by table, a view
// rebuilt from scratch, and View.Rebuild reproduces it too.
func TestIncrementalEqualsRebuild(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	j := journal.NewMem()
	defer j.Close()
	path := filepath.Join(dir, "view.db")
	v, err := sqlview.OpenView(ctx, path, j, sqlview.Options{BatchSize: 97})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	var wg sync.WaitGroup
	var runErr error
	wg.Add(1)
	go func() { defer wg.Done(); runErr = v.Run(ctx) }()

	sim := gen.NewSim(42, 50)
	r := rand.New(rand.NewPCG(4, 2))
	for range 40 {
		if err := gen.AppendRandom(ctx, j, r, sim.Events(150), 30); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the view to catch up", func() bool { return v.Offset() == j.Head() })
	cancel()
	wg.Wait()
	if runErr != nil {
		t.Fatal(runErr)
	}
	if sim.Now.Sub(gen.T0) < 48*time.Hour {
		t.Fatalf("the run spans only %v; retention is not exercised", sim.Now.Sub(gen.T0))
	}
	ref := rebuilt(t, j, dir)
	if err := sameViews(t, path, ref); err != nil {
		t.Fatal(err)
	}
	d := dump(t, ref)
	for _, tb := range []string{"proxies", "check_history", "state_changes", "pool_events", "sources"} {
		if len(d[tb]) == 0 {
			t.Errorf("table %s is empty", tb)
		}
	}
	if err := v.Rebuild(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := sameViews(t, path, ref); err != nil {
		t.Fatalf("after View.Rebuild: %v", err)
	}
}

// TestCrashBetweenJournalAndView: a view that applied a prefix and stopped
// without closing (a crash) is reopened and caught up; the result equals a
// fresh rebuild. A batch aborted before its commit leaves nothing behind.
func TestCrashBetweenJournalAndView(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	j := journal.NewMem()
	defer j.Close()
	fill(t, j, 7, 30, 1500)
	path := filepath.Join(dir, "view.db")
	emptyView(t, path)
	first, err := sqlview.OpenView(ctx, path, j, sqlview.Options{BatchSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close() // the "crashed" process's handle, never used again
	if err := first.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	// Events committed to the journal that the view has not seen.
	fill(t, j, 8, 30, 1500)
	// Abort a batch half-way, like a crash between the writes and the commit.
	calls := 0
	sqlview.SetBeforeCommitHook(first, func() error {
		if calls++; calls == 3 {
			return errors.New("simulated crash")
		}
		return nil
	})
	if err := first.CatchUp(ctx); err == nil || !strings.Contains(err.Error(), "simulated crash") {
		t.Fatalf("CatchUp with a failing commit: %v", err)
	}
	applied := first.Offset()
	if applied == j.Head() || applied == 0 {
		t.Fatalf("offset %d after the aborted batch", applied)
	}
	second, err := sqlview.OpenView(ctx, path, j, sqlview.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if second.Offset() != applied {
		t.Fatalf("reopened at offset %d, want %d", second.Offset(), applied)
	}
	if err := second.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sameViews(t, path, rebuilt(t, j, dir)); err != nil {
		t.Fatal(err)
	}
	// The first handle recovers too: its failed batch left its cache intact.
	sqlview.SetBeforeCommitHook(first, nil)
	fill(t, j, 9, 30, 300)
	if err := second.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sameViews(t, path, rebuilt(t, j, t.TempDir())); err != nil {
		t.Fatal(err)
	}
}

func TestOpenViewRejectsBadFiles(t *testing.T) {
	ctx := context.Background()
	j := journal.NewMem()
	defer j.Close()
	fill(t, j, 3, 10, 300)

	t.Run("newer schema version", func(t *testing.T) {
		path := viewOf(t, j)
		setUserVersion(t, path, 7)
		_, err := sqlview.OpenView(ctx, path, j, sqlview.Options{})
		if !errors.Is(err, sqlview.ErrViewVersion) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "version 7") ||
			!strings.Contains(err.Error(), fmt.Sprintf("version %d", sqlview.SchemaVersion)) || !strings.Contains(err.Error(), "proxyhealth rebuild") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("not SQLite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "view.db")
		junk := make([]byte, 8192)
		for i := range junk {
			junk[i] = byte(i * 7)
		}
		os.WriteFile(path, junk, 0o644)
		_, err := sqlview.OpenView(ctx, path, j, sqlview.Options{})
		if !errors.Is(err, sqlview.ErrViewCorrupt) || !strings.Contains(err.Error(), path) {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("empty file becomes a view", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "view.db")
		os.WriteFile(path, nil, 0o644)
		v := openView(t, path, j, sqlview.Options{})
		if err := v.CatchUp(ctx); err != nil || v.Offset() != j.Head() {
			t.Fatalf("catch up: %v, offset %d", err, v.Offset())
		}
	})
	t.Run("foreign SQLite database", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "view.db")
		db, _ := sql.Open("sqlite3", path)
		if _, err := db.Exec("CREATE TABLE other (x)"); err != nil {
			t.Fatal(err)
		}
		db.Close()
		_, err := sqlview.OpenView(ctx, path, j, sqlview.Options{})
		if !errors.Is(err, sqlview.ErrViewCorrupt) {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("damaged state blob", func(t *testing.T) {
		path := viewOf(t, j)
		db, _ := sql.Open("sqlite3", path)
		if _, err := db.Exec("UPDATE proxies SET state_pb = x'ffffffff' WHERE id = (SELECT MIN(id) FROM proxies)"); err != nil {
			t.Fatal(err)
		}
		db.Close()
		_, err := sqlview.OpenView(ctx, path, j, sqlview.Options{})
		if !errors.Is(err, sqlview.ErrViewCorrupt) {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("ahead of the journal", func(t *testing.T) {
		path := viewOf(t, j)
		short := journal.NewMem()
		defer short.Close()
		fill(t, short, 3, 10, 50)
		_, err := sqlview.OpenView(ctx, path, short, sqlview.Options{})
		if !errors.Is(err, sqlview.ErrViewAhead) || !strings.Contains(err.Error(), path) {
			t.Fatalf("error %v", err)
		}
	})
}

func rebuildAt(t *testing.T, path string, j journal.Journal) {
	t.Helper()
	if err := sqlview.RebuildFile(context.Background(), path, j, sqlview.Options{}); err != nil {
		t.Fatal(err)
	}
}

func setUserVersion(t *testing.T, path string, v int) {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", v)); err != nil {
		t.Fatal(err)
	}
}

// TestRebuildIfInvalid moves every kind of bad file aside and rebuilds.
func TestRebuildIfInvalid(t *testing.T) {
	ctx := context.Background()
	j := journal.NewMem()
	defer j.Close()
	fill(t, j, 5, 10, 400)
	ref := rebuilt(t, j, t.TempDir())
	for name, spoil := range map[string]func(t *testing.T, path string){
		"newer version": func(t *testing.T, path string) {
			rebuildAt(t, path, j)
			setUserVersion(t, path, sqlview.SchemaVersion+1)
		},
		// A view of an older schema (version 1 had no tags, weight, exit
		// or source refresh columns) is rebuilt, not written to; version 2
		// is migrated (TestMigrateFromVersion2).
		"older version": func(t *testing.T, path string) {
			rebuildAt(t, path, j)
			setUserVersion(t, path, 1)
		},
		"junk": func(t *testing.T, path string) {
			os.WriteFile(path, []byte(strings.Repeat("not a database ", 500)), 0o644)
		},
		"ahead": func(t *testing.T, path string) {
			other := journal.NewMem()
			defer other.Close()
			fill(t, other, 5, 10, 900)
			rebuildAt(t, path, other)
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "view.db")
			spoil(t, path)
			var calls int
			var last [2]uint64
			v, err := sqlview.OpenView(ctx, path, j, sqlview.Options{RebuildIfInvalid: true, Progress: func(done, total uint64) { calls++; last = [2]uint64{done, total} }})
			if err != nil {
				t.Fatal(err)
			}
			if v.Offset() != j.Head() {
				t.Errorf("offset %d, head %d", v.Offset(), j.Head())
			}
			v.Close()
			bad, _ := filepath.Glob(filepath.Join(dir, "view.db.bad-*"))
			if len(bad) != 1 {
				t.Fatalf("moved-aside files: %v", bad)
			}
			if calls == 0 || last[0] != last[1] || last[1] != j.Head() {
				t.Errorf("progress: %d calls, last %v", calls, last)
			}
			if err := sameViews(t, path, ref); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestViewBehindRetention: events the view never applied were retained
// away; the view cannot catch up and says so, or rebuilds.
func TestViewBehindRetention(t *testing.T) {
	ctx := context.Background()
	j, sim := steadySim(t, 11)
	appendSim(t, j, sim, 500)
	path := viewOf(t, j)
	sim.Now = sim.Now.Add(time.Hour)
	appendSim(t, j, sim, 500)
	// Snapshot every proxy at the head and drop everything older than the
	// second half.
	states, cut := snapshotHead(t, j, 600)
	if n, err := j.Retain(ctx, cut); err != nil || n < 500 {
		t.Fatalf("retained %d: %v", n, err)
	}
	if _, err := sqlview.OpenView(ctx, path, j, sqlview.Options{}); !errors.Is(err, sqlview.ErrViewBehind) {
		t.Fatalf("error %v", err)
	}
	v := openView(t, path, j, sqlview.Options{RebuildIfInvalid: true})
	// Proxies come back from their snapshots: the rows equal the fold.
	var n int
	rows, err := v.DB().Query("SELECT id, state, total_checks, updated_seq FROM proxies")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, state string
		var checks, seq uint64
		if err := rows.Scan(&id, &state, &checks, &seq); err != nil {
			t.Fatal(err)
		}
		s := states[id]
		if state != events.StateName(s.Health) || checks != s.TotalChecks || seq != s.Seq {
			t.Errorf("%s: row %s/%d/%d, fold %s/%d/%d", id, state, checks, seq, events.StateName(s.Health), s.TotalChecks, s.Seq)
		}
		n++
	}
	if n == 0 {
		t.Fatal("no proxies")
	}
}

// TestViewSchema checks the file format promises: WAL, version, times,
// retention relative to the newest event, removed proxies.
func TestViewSchema(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	j := journal.NewMem()
	defer j.Close()
	fill(t, j, 21, 20, 2000)
	v, err := sqlview.OpenView(ctx, filepath.Join(dir, "view.db"), j, sqlview.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	db := v.DB()
	var mode string
	var version int
	db.QueryRow("PRAGMA journal_mode").Scan(&mode)
	db.QueryRow("PRAGMA user_version").Scan(&version)
	if mode != "wal" || version != sqlview.SchemaVersion {
		t.Errorf("journal_mode %s, user_version %d", mode, version)
	}
	var newest int64
	var oldest string
	if err := db.QueryRow("SELECT newest_at_unix_nano FROM projection_offsets WHERE name = 'sqlview'").Scan(&newest); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow("SELECT MIN(at) FROM check_history").Scan(&oldest); err != nil {
		t.Fatal(err)
	}
	o, err := time.Parse(time.RFC3339Nano, oldest)
	if err != nil || len(oldest) != len(sqlview.TimeLayout) {
		t.Fatalf("time %q: %v", oldest, err)
	}
	if cutoff := time.Unix(0, newest).Add(-24 * time.Hour); o.Before(cutoff) {
		t.Errorf("check_history keeps %v, older than 24 h before the newest event (%v)", o, cutoff)
	}
	var pruned int
	db.QueryRow("SELECT COUNT(*) FROM check_history").Scan(&pruned)
	var total int
	for e, err := range j.Read(ctx, 1) {
		if err != nil {
			t.Fatal(err)
		}
		switch e.GetEvent().(type) {
		case *pb.Envelope_CheckSucceeded, *pb.Envelope_CheckFailed:
			total++
		}
	}
	if pruned >= total {
		t.Errorf("nothing pruned: %d rows of %d checks", pruned, total)
	}
	// Sources view agrees with the proxies table.
	var viewTotal, tableTotal int
	db.QueryRow("SELECT SUM(total) FROM sources").Scan(&viewTotal)
	db.QueryRow("SELECT COUNT(*) FROM proxies").Scan(&tableTotal)
	if viewTotal != tableTotal || tableTotal == 0 {
		t.Errorf("sources total %d, proxies %d", viewTotal, tableTotal)
	}
	var bad int
	db.QueryRow(`SELECT COUNT(*) FROM sources WHERE total != unknown + healthy + degraded + unhealthy + recovering + failed`).Scan(&bad)
	if bad != 0 {
		t.Errorf("%d sources whose counts do not add up", bad)
	}
	// Removed proxies have no row; their history stays.
	var removed string
	for e, err := range j.Read(ctx, 1) {
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := e.GetEvent().(*pb.Envelope_ProxyRemoved); ok {
			removed = e.GetProxyId()
		}
		if _, ok := e.GetEvent().(*pb.Envelope_ProxyAdded); ok && e.GetProxyId() == removed {
			removed = ""
		}
	}
	if removed != "" {
		var n int
		db.QueryRow("SELECT COUNT(*) FROM proxies WHERE id = ?", removed).Scan(&n)
		if n != 0 {
			t.Errorf("removed proxy %s still has a row", removed)
		}
	}
	// Rows read back equal the fold (spot check of a few columns).
	var id, state, url string
	var checks uint64
	if err := db.QueryRow("SELECT id, state, url_redacted, total_checks FROM proxies ORDER BY id LIMIT 1").Scan(&id, &state, &url, &checks); err != nil {
		t.Fatal(err)
	}
	s := events.NewState(id)
	for e, err := range j.ReadStream(ctx, id, 1) {
		if err != nil {
			t.Fatal(err)
		}
		s = events.Evolve(s, e)
	}
	if state != events.StateName(s.Health) || url != s.URLRedacted || checks != s.TotalChecks {
		t.Errorf("row %s %s %d, fold %+v", state, url, checks, s)
	}
}

// TestWithBoltJournal runs the view against the durable journal.
func TestWithBoltJournal(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	j, err := journal.OpenBolt(filepath.Join(dir, "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	fill(t, j, 31, 25, 800)
	path := filepath.Join(dir, "view.db")
	v, err := sqlview.OpenView(ctx, path, j, sqlview.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	fill(t, j, 32, 25, 800)
	if err := v.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if v.Offset() != j.Head() {
		t.Fatalf("offset %d, head %d", v.Offset(), j.Head())
	}
	if err := sameViews(t, path, rebuilt(t, j, dir)); err != nil {
		t.Fatal(err)
	}
}

// TestRebuildKeepsCarriedPoolState: after retention deleted the pool and
// source events, a rebuild still has each source's last refresh and error
// and the newest pool event of each type (the journal carries them, see
// journal.Carrier), as a view built before the retention does.
func TestRebuildKeepsCarriedPoolState(t *testing.T) {
	ctx := context.Background()
	j, sim := steadySim(t, 12)
	appendSim(t, j, sim, 300)
	at := sim.Now.UnixNano()
	if _, err := j.Append(ctx, []*pb.Envelope{
		{AtUnixNano: at, Event: &pb.Envelope_PoolDegraded{PoolDegraded: &pb.PoolDegraded{HealthyPercentage: 40, ThresholdPercentage: 50, Healthy: 4, Total: 10}}},
		{AtUnixNano: at + 1, Source: "s1", Event: &pb.Envelope_SourceRefreshed{SourceRefreshed: &pb.SourceRefreshed{Added: 2, Total: 10}}},
		{AtUnixNano: at + 2, Source: "s1", Event: &pb.Envelope_SourceRefreshFailed{SourceRefreshFailed: &pb.SourceRefreshFailed{Error: "HTTP 503"}}},
		{AtUnixNano: at + 3, Event: &pb.Envelope_PoolPanicEntered{PoolPanicEntered: &pb.PoolPanicEntered{Usable: 1, Candidates: 10, ThresholdPercentage: 50}}},
	}); err != nil {
		t.Fatal(err)
	}
	before := dump(t, rebuilt(t, j, t.TempDir())) // what the running view holds
	first := j.Head() + 1
	sim.Now = sim.Now.Add(time.Hour)
	appendSim(t, j, sim, 300)
	_, cut := snapshotHead(t, j, first)
	if n, err := j.Retain(ctx, cut); err != nil || uint64(n) != first-1 {
		t.Fatalf("retained %d (want %d): %v", n, first-1, err)
	}
	after := dump(t, rebuilt(t, j, t.TempDir()))
	if !reflect.DeepEqual(after["source_refreshes"], before["source_refreshes"]) || len(before["source_refreshes"]) != 1 {
		t.Errorf("source_refreshes after retention and a rebuild:\n got  %q\n want %q", after["source_refreshes"], before["source_refreshes"])
	}
	// The newest pool event of each type before the retention is in the
	// rebuilt view.
	newest := map[string]string{}
	for _, row := range before["pool_events"] {
		typ := row[strings.Index(row, "type="):]
		newest[typ[:strings.Index(typ, " ")]] = row
	}
	for typ, row := range newest {
		if !slices.Contains(after["pool_events"], row) {
			t.Errorf("the newest %s before the retention is missing after a rebuild: %s\n rebuilt %q", typ, row, after["pool_events"])
		}
	}
	if len(newest) < 3 {
		t.Errorf("pool event types before the retention: %v, want at least degraded, recovered (the simulation's) and panic", newest)
	}
}
