package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/clock"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// BenchmarkConfigRetainedPerProxy reports what an opened daemon keeps per
// configured proxy, as `proxyhealth run --config` opens it for the
// configuration BenchmarkDaemon writes (one source whose proxy_files list
// 100,000 proxies), but in this process, with a fake clock that never
// moves (no check runs, no proxy is needed), after it opened and after a
// reload of the same files:
//
//	go test -run '^$' -bench 'BenchmarkConfigRetainedPerProxy' -benchtime 1x ./cmd/proxyhealth/
//
// It reports:
//
//   - config-B/proxy, reloaded-config-B/proxy: the bytes still live of
//     what reading the configuration allocated (runSettings.load: the
//     parsed list's URLs, the sources' entries), exact (every allocation
//     is recorded: runtime.MemProfileRate 1 while it runs);
//   - open-B/proxy, reloaded-B/proxy: the whole live heap, less the heap
//     before the configuration was read (everything a proxy costs; varies
//     by about ±100 B/proxy from run to run).
func BenchmarkConfigRetainedPerProxy(b *testing.B) {
	const proxies = 100_000
	defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
	runtime.MemProfileRate = 1
	dir := b.TempDir()
	var list strings.Builder
	for i := range proxies {
		fmt.Fprintf(&list, "http://10.%d.%d.%d:3128\n", i>>16&255, i>>8&255, i&255)
	}
	listFile := filepath.Join(dir, "proxies.txt")
	if err := os.WriteFile(listFile, []byte(list.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	list.Reset()
	var r retained
	for i := range b.N {
		cfg := filepath.Join(dir, fmt.Sprintf("ph%d.yaml", i))
		yaml := fmt.Sprintf("data: %s\nlisten: 127.0.0.1:0\ndefaults:\n  interval: 1h\nsources:\n  - name: farm\n    proxy_files: [%s]\n",
			filepath.Join(dir, fmt.Sprintf("data%d", i)), listFile)
		if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
			b.Fatal(err)
		}
		r = retainedByDaemon(b, cfg, proxies)
	}
	per := func(n int64) float64 { return float64(n) / proxies }
	b.ReportMetric(per(r.config), "config-B/proxy")
	b.ReportMetric(per(r.reloadedConfig), "reloaded-config-B/proxy")
	b.ReportMetric(per(r.open), "open-B/proxy")
	b.ReportMetric(per(r.reloaded), "reloaded-B/proxy")
}

// retained is what retainedByDaemon measured, in bytes.
type retained struct {
	config, reloadedConfig int64 // live bytes allocated under runSettings.load
	open, reloaded         int64 // live heap growth
}

// retainedByDaemon opens the daemon of the config file cfg as runDaemon
// does, reloads it once, and measures what it keeps after each (see
// BenchmarkConfigRetainedPerProxy).
func retainedByDaemon(b *testing.B, cfg string, proxies int) retained {
	ctx := context.Background()
	rs := parseRunSettings(b, "--config", cfg)
	getenv := func(string) string { return "" }
	base := testutil.HeapInUse()
	dc, err := rs.load(getenv)
	if err != nil {
		b.Fatal(err)
	}
	dc.engine.Clock = clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	// dc is not used after this, as in runDaemon.
	d, stop := serveTestDaemon(b, rs, getenv, dc, slog.New(slog.DiscardHandler))
	defer stop() // each run's daemon before the next one's measures
	if n := len(d.eng.ProxyIDs()); n != proxies {
		b.Fatalf("%d proxies monitored, want %d", n, proxies)
	}
	var r retained
	r.open = testutil.HeapInUse() - base
	r.config = liveAllocatedBy(loadFunc)
	diff, err := d.reloadConfig(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if len(diff.Added)+len(diff.Removed)+len(diff.Changed) != 0 {
		b.Fatalf("reload of the same files: %+v", diff)
	}
	r.reloaded = testutil.HeapInUse() - base
	r.reloadedConfig = liveAllocatedBy(loadFunc)
	return r
}

// loadFunc is the name of runSettings.load in stack traces.
var loadFunc = runtime.FuncForPC(reflect.ValueOf((*runSettings).load).Pointer()).Name()

// liveAllocatedBy returns the bytes in use, as of the last garbage
// collection, of the allocations the memory profile recorded with fn on
// their stack.
func liveAllocatedBy(fn string) int64 {
	var recs []runtime.MemProfileRecord
	n, _ := runtime.MemProfile(nil, false)
	for {
		recs = make([]runtime.MemProfileRecord, n+50)
		var ok bool
		if n, ok = runtime.MemProfile(recs, false); ok {
			recs = recs[:n]
			break
		}
	}
	var total int64
	for _, r := range recs {
		frames := runtime.CallersFrames(r.Stack())
		for {
			f, more := frames.Next()
			if f.Function == fn {
				total += r.InUseBytes()
				break
			}
			if !more {
				break
			}
		}
	}
	return total
}
