package sqlview_test

import (
	"context"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/proxyhealth/proxyhealth/internal/gen"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections/sqlview"
)

// BenchmarkViewBytesPerProxy reports the Go heap an open view keeps per
// proxy (its state cache, mostly) once it has caught up with a journal of
// 10,000 proxies and 100,000 realistic events (SQLite's own memory is C
// memory and not counted).
func BenchmarkViewBytesPerProxy(b *testing.B) {
	const proxies = 10_000
	ctx := context.Background()
	j := journal.NewMem()
	if _, err := gen.Realistic(ctx, j, 1, proxies, 10*proxies); err != nil {
		b.Fatal(err)
	}
	var perProxy float64
	for range b.N {
		path := filepath.Join(b.TempDir(), "view.db")
		before := testutil.HeapInUse()
		v, err := sqlview.OpenView(ctx, path, j, sqlview.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := v.CatchUp(ctx); err != nil {
			b.Fatal(err)
		}
		if v.Offset() != j.Head() {
			b.Fatalf("view at %d, journal at %d", v.Offset(), j.Head())
		}
		perProxy = float64(testutil.HeapInUse()-before) / proxies
		runtime.KeepAlive(v)
		if err := v.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(perProxy, "B/proxy")
}
