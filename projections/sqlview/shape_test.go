package sqlview_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/gen"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections/sqlview"
)

// TestLargeViewsApplyLargerBatches: up to 5,000 proxies a view applies
// batches of Options.BatchSize; once it holds more, its batches grow in
// proportion to the proxies (and the result is still the view a rebuild
// makes).
func TestLargeViewsApplyLargerBatches(t *testing.T) {
	for _, c := range []struct {
		proxies int
		scaled  bool
	}{{4_500, false}, {20_000, true}} {
		j := journal.NewMem()
		t.Cleanup(func() { j.Close() })
		n, err := gen.Realistic(context.Background(), j, 1, c.proxies, c.proxies+10_000)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "view.db")
		emptyView(t, path) // so that OpenView catches up instead of building
		v := openView(t, path, j, sqlview.Options{BatchSize: 1000})
		commits := 0
		sqlview.SetBeforeCommitHook(v, func() error { commits++; return nil })
		if err := v.CatchUp(context.Background()); err != nil {
			t.Fatal(err)
		}
		unscaled := (n + 999) / 1000
		switch {
		case !c.scaled && commits != unscaled:
			t.Errorf("%d proxies: %d events in %d transactions, want %d (batches of BatchSize)", c.proxies, n, commits, unscaled)
		case c.scaled && commits > unscaled*4/5:
			t.Errorf("%d proxies: %d events in %d transactions, want fewer than %d (batches of BatchSize grown past 5,000 proxies)", c.proxies, n, commits, unscaled*4/5)
		}
		t.Logf("%d proxies: %d events in %d transactions", c.proxies, n, commits)
		equalsRebuild(t, path, j)
	}
}

// TestShapeScalesWithProxies: the batch size and the linger grow in
// proportion past 5,000 proxies, up to 20,000 events and 10 s unless the
// Options' own are larger; a negative linger stays off.
func TestShapeScalesWithProxies(t *testing.T) {
	j := journal.NewMem()
	t.Cleanup(func() { j.Close() })
	for _, c := range []struct {
		opts    sqlview.Options
		proxies int64
		batch   int
		linger  time.Duration
	}{
		{sqlview.Options{BatchSize: 4000, Linger: time.Second}, 5_000, 4000, time.Second},
		{sqlview.Options{BatchSize: 4000, Linger: time.Second}, 10_000, 8000, 2 * time.Second},
		{sqlview.Options{BatchSize: 4000, Linger: time.Second}, 12_500, 10_000, 2500 * time.Millisecond},
		{sqlview.Options{BatchSize: 4000, Linger: time.Second}, 50_000, 20_000, 10 * time.Second},
		{sqlview.Options{BatchSize: 4000, Linger: time.Second}, 100_000, 20_000, 10 * time.Second},
		{sqlview.Options{BatchSize: 4000, Linger: time.Second}, 1_000_000, 20_000, 10 * time.Second},
		{sqlview.Options{BatchSize: 50_000, Linger: 30 * time.Second}, 100_000, 50_000, 30 * time.Second},
		{sqlview.Options{BatchSize: 1000, Linger: -1}, 50_000, 10_000, -1},
	} {
		v := openView(t, filepath.Join(t.TempDir(), "view.db"), j, c.opts)
		if b, l := sqlview.ShapeFor(v, c.proxies); b != c.batch || l != c.linger {
			t.Errorf("BatchSize %d, Linger %v, %d proxies: batches of %d, linger %v; want %d, %v", c.opts.BatchSize, c.opts.Linger, c.proxies, b, l, c.batch, c.linger)
		}
	}
}
