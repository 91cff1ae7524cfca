package sqlview_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections/internal/gen"
	"github.com/proxyhealth/proxyhealth/projections/sqlview"
)

const (
	benchEvents  = 1_000_000
	benchProxies = 10_000
)

var (
	memOnce sync.Once
	memJ    *journal.Mem
)

// realisticMem returns a shared in-memory journal of 1,000,000 realistic
// events over 10,000 proxies (built once per process).
func realisticMem(b *testing.B) journal.Journal {
	memOnce.Do(func() {
		memJ = journal.NewMem()
		if _, err := gen.Realistic(context.Background(), memJ, 1, benchProxies, benchEvents); err != nil {
			b.Fatal(err)
		}
	})
	return memJ
}

// BenchmarkRebuild rebuilds view.db from a 1,000,000-event journal (target
// ≤ 10 s), from the in-memory journal and from a bbolt journal file.
func BenchmarkRebuild(b *testing.B) {
	b.Run("mem", func(b *testing.B) { benchRebuild(b, realisticMem(b)) })
	b.Run("bolt", func(b *testing.B) {
		dir := b.TempDir()
		bj, err := journal.OpenBolt(filepath.Join(dir, "journal.db"), journal.WithUnsafeNoSync())
		if err != nil {
			b.Fatal(err)
		}
		defer bj.Close()
		if _, err := gen.Realistic(context.Background(), bj, 1, benchProxies, benchEvents); err != nil {
			b.Fatal(err)
		}
		benchRebuild(b, bj)
	})
}

func benchRebuild(b *testing.B, j journal.Journal) {
	dir := b.TempDir()
	path := filepath.Join(dir, "view.db")
	b.ResetTimer()
	for range b.N {
		if err := sqlview.RebuildFile(context.Background(), path, j, sqlview.Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	n := j.Head() - j.First() + 1
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/rebuild")
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	if fi, err := os.Stat(path); err == nil {
		b.ReportMetric(float64(fi.Size())/(1<<20), "MiB")
	}
}

// BenchmarkIncremental applies a realistic journal to view.db the way Run
// does (WAL, synchronous=NORMAL, one transaction per batch) and reports
// events per second (target ≥ 50,000), with the default batch of 2,000
// events and with 10,000.
func BenchmarkIncremental(b *testing.B) {
	j := journal.NewMem()
	defer j.Close()
	if _, err := gen.Realistic(context.Background(), j, 2, benchProxies, 200_000); err != nil {
		b.Fatal(err)
	}
	for _, batch := range []int{sqlview.DefaultBatchSize, 4000, 10_000} {
		b.Run(fmt.Sprintf("batch-%d", batch), func(b *testing.B) {
			var total time.Duration
			for range b.N {
				path := filepath.Join(b.TempDir(), "view.db")
				emptyView(b, path)
				v, err := sqlview.OpenView(context.Background(), path, j, sqlview.Options{BatchSize: batch})
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				if err := v.CatchUp(context.Background()); err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
				v.Close()
			}
			b.ReportMetric(float64(j.Head())*float64(b.N)/total.Seconds(), "events/s")
		})
	}
}

// BenchmarkQuickCheck measures PRAGMA quick_check on a view of 1,000,000
// realistic events over 10,000 proxies (what OpenView runs with
// Options.IntegrityCheck), on a fresh connection each time.
func BenchmarkQuickCheck(b *testing.B) {
	j := realisticMem(b)
	path := filepath.Join(b.TempDir(), "view.db")
	if err := sqlview.RebuildFile(context.Background(), path, j, sqlview.Options{}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
		if err != nil {
			b.Fatal(err)
		}
		var res string
		if err := db.QueryRow("PRAGMA quick_check").Scan(&res); err != nil || res != "ok" {
			b.Fatalf("quick_check: %q, %v", res, err)
		}
		db.Close()
	}
	b.StopTimer()
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/check")
	if fi, err := os.Stat(path); err == nil {
		b.ReportMetric(float64(fi.Size())/(1<<20), "MiB")
	}
}

// BenchmarkOpenView opens (and closes) a view of 1,000,000 realistic
// events over 10,000 proxies, with and without the integrity check.
func BenchmarkOpenView(b *testing.B) {
	j := realisticMem(b)
	path := filepath.Join(b.TempDir(), "view.db")
	if err := sqlview.RebuildFile(context.Background(), path, j, sqlview.Options{}); err != nil {
		b.Fatal(err)
	}
	for _, check := range []struct {
		name string
		c    sqlview.IntegrityCheck
	}{{"check", sqlview.CheckAlways}, {"no-check", sqlview.CheckNever}} {
		b.Run(check.name, func(b *testing.B) {
			for range b.N {
				v, err := sqlview.OpenView(context.Background(), path, j, sqlview.Options{IntegrityCheck: check.c})
				if err != nil {
					b.Fatal(err)
				}
				if st := v.Status(); st.State != sqlview.StateRunning {
					b.Fatalf("status %+v", st)
				}
				v.Close()
			}
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/open")
		})
	}
}
