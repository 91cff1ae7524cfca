package proxyhealth_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// TestTheViewFollowsTheEngine: registered, the view is kept in
// DataDir/view.db, reported in Health, caught up at Close; RebuildView and
// ViewOffset work on the data directory afterwards; without a data directory
// there is no view.
func TestTheViewFollowsTheEngine(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir := t.TempDir()
	cfg := proxyhealth.Config{DataDir: dir, Projections: []proxyhealth.ProjectionSpec{proxyhealth.SQLiteView()},
		Sources: []proxyhealth.SourceConfig{{Name: "a", Proxies: []string{"127.0.0.1:9"}}}}
	e, err := proxyhealth.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range e.Health().Projections {
		found = found || p.Name == proxyhealth.SQLiteViewName
	}
	if !found {
		t.Errorf("the view is not in Health: %+v", e.Health().Projections)
	}
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}
	head := e.JournalHead()
	seq, exists, err := proxyhealth.ViewOffset(ctx, dir)
	if err != nil || !exists || seq != head {
		t.Fatalf("Offset = %d %v %v; the journal's head is %d", seq, exists, err, head)
	}
	if err := os.Remove(filepath.Join(dir, proxyhealth.SQLiteViewFile)); err != nil {
		t.Fatal(err)
	}
	a, err := proxyhealth.OpenArchive(ctx, dir, proxyhealth.ArchiveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var calls int
	_, err = a.RebuildView(ctx, func(done, total uint64) { calls++ })
	a.Close()
	if err != nil || calls == 0 {
		t.Fatalf("Rebuild: %v (%d progress calls)", err, calls)
	}
	if seq, exists, err := proxyhealth.ViewOffset(ctx, dir); err != nil || !exists || seq != head {
		t.Fatalf("after Rebuild: Offset = %d %v %v, want %d", seq, exists, err, head)
	}

	// No data directory: no view, nothing reported.
	mem, err := proxyhealth.Open(ctx, proxyhealth.Config{Projections: []proxyhealth.ProjectionSpec{proxyhealth.SQLiteView()}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range mem.Health().Projections {
		if p.Name == proxyhealth.SQLiteViewName {
			t.Errorf("an engine without a data directory reports a view: %+v", p)
		}
	}
	if err := mem.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := proxyhealth.ViewOffset(ctx, t.TempDir()); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Offset without a view: %v", err)
	}
}

// TestReadViewBesideARunningEngine: the view is readable while an
// engine holds the journal, and says what the engine's status says.
func TestReadViewBesideARunningEngine(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir := t.TempDir()
	e, err := proxyhealth.Open(ctx, proxyhealth.Config{DataDir: dir, Projections: []proxyhealth.ProjectionSpec{proxyhealth.SQLiteView()},
		Sources: []proxyhealth.SourceConfig{{Name: "a", Proxies: []string{"127.0.0.1:9", "127.0.0.1:7"}}, {Name: "b", Proxies: []string{"127.0.0.1:5"}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	id, _ := proxyhealth.ResolveProxyID("127.0.0.1:7")
	if err := e.PauseProxy(ctx, id); err != nil {
		t.Fatal(err)
	}
	head := e.JournalHead()
	var snap proxyhealth.ViewSnapshot
	testutil.EventuallyExplain(t, 20*time.Second, func() bool {
		snap, err = proxyhealth.ReadView(ctx, dir, 10)
		return err == nil && snap.Summary.Seq >= head
	}, func() string { return fmt.Sprintf("the view to reach seq %d: %+v %v", head, snap.Summary, err) })
	if snap.Summary.Total != 3 || snap.Summary.Paused != 1 || len(snap.Summary.Sources) != 2 || snap.Summary.Sources[0].Name != "a" || snap.Summary.Sources[0].Total != 2 {
		t.Errorf("snapshot %+v", snap.Summary)
	}
	if len(snap.Paused) != 1 || snap.Paused[0].ID != id || snap.Paused[0].Source != "a" {
		t.Errorf("paused %+v", snap.Paused)
	}
	if _, err := proxyhealth.ReadView(ctx, t.TempDir(), 0); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("no view: %v", err)
	}
}

// TestTheSQLiteViewNeedsADriver: Config.Validate (and so Open) refuses the
// SQLite view when no SQLite driver is registered, naming the import; the
// view's spec checks the driver it will use.
func TestTheSQLiteViewNeedsADriver(t *testing.T) {
	spec := proxyhealth.SQLiteView()
	if spec.Validate == nil {
		t.Fatal("SQLiteView has no Validate: Config.Validate cannot tell a missing driver")
	}
	// This test binary registers mattn/go-sqlite3 (main_test.go), so the
	// spec's own check passes; a spec whose check fails shows the path.
	if err := spec.Validate(); err != nil {
		t.Fatalf("with the driver registered: %v", err)
	}
	bad := spec
	bad.Validate = func() error { return proxyhealth.ErrNoSQLiteDriver }
	err := proxyhealth.Config{Projections: []proxyhealth.ProjectionSpec{bad}}.Validate()
	if !errors.Is(err, proxyhealth.ErrNoSQLiteDriver) || !errors.Is(err, proxyhealth.ErrBadConfig) {
		t.Fatalf("Validate with a missing driver: %v", err)
	}
}
