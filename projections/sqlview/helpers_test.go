package sqlview_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/internal/gen"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections/sqlview"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// dumpTables are compared between views, in full.
var dumpTables = []struct{ name, order string }{
	{"proxies", "id"}, {"check_history", "seq"}, {"state_changes", "seq"},
	{"pool_events", "seq"}, {"source_refreshes", "source"}, {"projection_offsets", "name"}, {"sources", "source"},
}

// dump reads every row and column of every table of a view file.
func dump(t testing.TB, path string) map[string][]string {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := map[string][]string{}
	for _, tb := range dumpTables {
		rows, err := db.Query(fmt.Sprintf("SELECT * FROM %s ORDER BY %s", tb.name, tb.order))
		if err != nil {
			t.Fatalf("dump %s: %v", tb.name, err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			for i, v := range vals {
				fmt.Fprintf(&b, "%s=%#v ", cols[i], v)
			}
			out[tb.name] = append(out[tb.name], b.String())
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	return out
}

// sameViews reports the first difference between two view files.
func sameViews(t testing.TB, a, b string) error {
	t.Helper()
	da, db := dump(t, a), dump(t, b)
	for _, tb := range dumpTables {
		ra, rb := da[tb.name], db[tb.name]
		if len(ra) != len(rb) {
			return fmt.Errorf("table %s: %d rows vs %d rows", tb.name, len(ra), len(rb))
		}
		for i := range ra {
			if ra[i] != rb[i] {
				return fmt.Errorf("table %s row %d:\n  %s\n  %s", tb.name, i, ra[i], rb[i])
			}
		}
	}
	if !reflect.DeepEqual(da, db) {
		return fmt.Errorf("dumps differ")
	}
	return nil
}

// fill appends n simulated events to j in random batch sizes.
func fill(t testing.TB, j journal.Journal, seed uint64, proxies, n int) {
	t.Helper()
	sim := gen.NewSim(seed, proxies)
	if err := gen.AppendRandom(context.Background(), j, rand.New(rand.NewPCG(seed, 1)), sim.Events(n), 20); err != nil {
		t.Fatal(err)
	}
}

// rebuilt builds a fresh view of j in dir and returns its path.
func rebuilt(t testing.TB, j journal.Journal, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "rebuilt.db")
	if err := sqlview.RebuildFile(context.Background(), p, j, sqlview.Options{}); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitFor polls cond until it holds or 20 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, what, cond)
}

// emptyView creates an empty view file (schema only) at path.
func emptyView(t testing.TB, path string) {
	t.Helper()
	j := journal.NewMem()
	defer j.Close()
	v, err := sqlview.OpenView(context.Background(), path, j, sqlview.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
}

// filled returns a new in-memory journal, closed when the test ends,
// holding n simulated events of 20 proxies (seed picks them).
func filled(t *testing.T, seed uint64, n int) *journal.Mem {
	t.Helper()
	j := journal.NewMem()
	t.Cleanup(func() { j.Close() })
	fill(t, j, seed, 20, n)
	return j
}

// openView opens the view of j at path with opts and closes it when the
// test ends.
func openView(t *testing.T, path string, j journal.Journal, opts sqlview.Options) *sqlview.View {
	t.Helper()
	v, err := sqlview.OpenView(context.Background(), path, j, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// tailing opens the view of j at path with opts, starts Run and waits
// until the view has caught up with j's head.
func tailing(t *testing.T, path string, j journal.Journal, opts sqlview.Options) (*sqlview.View, *running) {
	t.Helper()
	v := openView(t, path, j, opts)
	r := startRun(t, v)
	caughtUp(t, r, v, j)
	return v, r
}

// equalsRebuild fails the test unless the view file at path equals, table
// by table, a view of j rebuilt from scratch.
func equalsRebuild(t *testing.T, path string, j journal.Journal) {
	t.Helper()
	if err := sameViews(t, path, rebuilt(t, j, t.TempDir())); err != nil {
		t.Fatal(err)
	}
}

// stopEqualsRebuild stops Run, fails the test if Run returned an error,
// and then checks that the view file at path equals a rebuild of j.
func stopEqualsRebuild(t *testing.T, r *running, path string, j journal.Journal) {
	t.Helper()
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	equalsRebuild(t, path, j)
}

// statusRunning waits until the view's status says running.
func statusRunning(t *testing.T, v *sqlview.View) {
	t.Helper()
	waitFor(t, "the status to say running", func() bool { return v.Status().State == sqlview.StateRunning })
}

// appendSim appends n events of sim to j in one batch.
func appendSim(t *testing.T, j journal.Journal, sim *gen.Sim, n int) {
	t.Helper()
	if _, err := j.Append(context.Background(), sim.Events(n)); err != nil {
		t.Fatal(err)
	}
}

// snapshotHead saves a snapshot of every proxy as of j's head (what the
// engine does before retention) and returns their states and the time of
// event seq, from which to retain (zero if j has no event seq).
func snapshotHead(t *testing.T, j journal.Journal, seq uint64) (map[string]events.State, time.Time) {
	t.Helper()
	ctx := context.Background()
	var all []*pb.Envelope
	var cut time.Time
	for e, err := range j.Read(ctx, 1) {
		if err != nil {
			t.Fatal(err)
		}
		if e.GetSeq() == seq {
			cut = events.At(e)
		}
		all = append(all, e)
	}
	states := gen.States(all)
	if err := gen.SaveSnapshots(ctx, j, states); err != nil {
		t.Fatal(err)
	}
	return states, cut
}

// steadySim returns a new in-memory journal, closed when the test ends,
// and a simulation of 10 proxies whose clock never jumps (so that a
// retention cut falls where the test puts it). Nothing is appended yet.
func steadySim(t *testing.T, seed uint64) (*journal.Mem, *gen.Sim) {
	t.Helper()
	j := journal.NewMem()
	t.Cleanup(func() { j.Close() })
	sim := gen.NewSim(seed, 10)
	sim.JumpProb = 0
	return j, sim
}

// viewOf rebuilds a view of j at view.db in a fresh directory and returns
// its path.
func viewOf(t *testing.T, j journal.Journal) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "view.db")
	rebuildAt(t, path, j)
	return path
}
