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

	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections/internal/gen"
	"github.com/proxyhealth/proxyhealth/projections/sqlview"
)

// dumpTables are compared between views, in full.
var dumpTables = []struct{ name, order string }{
	{"proxies", "id"}, {"check_history", "seq"}, {"state_changes", "seq"},
	{"pool_events", "seq"}, {"projection_offsets", "name"}, {"sources", "source"},
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
