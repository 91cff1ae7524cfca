package proxyhealth_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
)

// TestArchiveReadsADataDirectory: the offline door gives what the engine
// gave, and refuses a journal a running engine holds.
func TestArchiveReadsADataDirectory(t *testing.T) {
	farm := startFarm(t, 3)
	dir := t.TempDir()
	e := open(t, proxyhealth.Config{DataDir: dir, Sources: []proxyhealth.SourceConfig{{Name: "a", Health: fastHealth(), Probe: farmProbe(), Proxies: []string{farm.URL(0), farm.URL(1), farm.URL(2)}}}})
	poll(t, "checks", func() bool { return e.Status().Summary().Healthy == 3 })
	ctx := context.Background()
	if _, err := proxyhealth.OpenArchive(ctx, dir, proxyhealth.ArchiveOptions{LockTimeout: 50 * time.Millisecond}); !errors.Is(err, proxyhealth.ErrJournalLocked) {
		t.Fatalf("OpenArchive while the engine runs: %v, want ErrJournalLocked", err)
	}
	id, _ := proxyhealth.ResolveProxyID(farm.URL(1))
	closeEngine(t, e)
	want, _ := e.Status().Proxy(id)

	a, err := proxyhealth.OpenArchive(ctx, dir, proxyhealth.ArchiveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	st, err := a.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := st.Proxy(id)
	if !ok || got.State != want.State || got.TotalChecks != want.TotalChecks || st.Seq() != a.Head() {
		t.Fatalf("archive status %+v (seq %d, head %d); the engine's %+v", got, st.Seq(), a.Head(), want)
	}
	if s := st.Summary(); s.Total != 3 {
		t.Fatalf("summary %+v", s.Counts)
	}
	hist, err := a.History(ctx, id, time.Time{})
	if err != nil || len(hist) == 0 {
		t.Fatalf("history: %d, %v", len(hist), err)
	}
	n := 0
	for _, err := range a.ReadJournal(ctx, proxyhealth.JournalFilter{Proxy: id}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if uint64(n) < want.TotalChecks {
		t.Fatalf("%d events of the proxy, fewer than its %d checks", n, want.TotalChecks)
	}
	if err := a.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "salvaged.db")
	rep, err := proxyhealth.SalvageJournal(ctx, dir, out)
	if err != nil || rep == nil {
		t.Fatalf("salvage of a healthy journal: %v", err)
	}
	if _, err := proxyhealth.OpenArchive(ctx, t.TempDir(), proxyhealth.ArchiveOptions{}); err == nil {
		t.Fatal("OpenArchive of a directory without a journal succeeded")
	}
}
