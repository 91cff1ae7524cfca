package sqlview_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections/sqlview"
)

// readAll returns the content of path, or nil when it does not exist.
func readAll(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return b
}

// TestPeekOffset: PeekOffset reads the offset, including what is only in
// the WAL, without changing the file or its WAL, and tells a missing file,
// an empty one and a foreign one apart.
func TestPeekOffset(t *testing.T) {
	ctx := context.Background()
	j := filled(t, 161, 500)
	dir := t.TempDir()
	path := filepath.Join(dir, "view.db")

	if seq, ok, err := sqlview.PeekOffset(ctx, path); seq != 0 || ok || err != nil {
		t.Fatalf("missing file: %d %v %v", seq, ok, err)
	}

	rebuildAt(t, path, j)
	built := j.Head()
	fill(t, j, 162, 20, 500)
	v := openView(t, path, j, sqlview.Options{})
	if err := v.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	// While the view is open, the new offset is only in the WAL.
	db, wal := readAll(t, path), readAll(t, path+"-wal")
	if len(wal) == 0 {
		t.Fatal("no WAL")
	}
	if seq, ok, err := sqlview.PeekOffset(ctx, path); seq != j.Head() || !ok || err != nil {
		t.Fatalf("open view: %d %v %v, want %d", seq, ok, err, j.Head())
	}
	if !bytes.Equal(db, readAll(t, path)) || !bytes.Equal(wal, readAll(t, path+"-wal")) {
		t.Fatal("PeekOffset changed the file or its WAL")
	}

	// A copy as a crash leaves it: file and WAL, no shared memory.
	crash := filepath.Join(t.TempDir(), "view.db")
	if err := os.WriteFile(crash, db, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(crash+"-wal", wal, 0o600); err != nil {
		t.Fatal(err)
	}
	if seq, ok, err := sqlview.PeekOffset(ctx, crash); seq != j.Head() || !ok || err != nil || seq == built {
		t.Fatalf("crashed view: %d %v %v, want %d", seq, ok, err, j.Head())
	}
	if !bytes.Equal(db, readAll(t, crash)) || !bytes.Equal(wal, readAll(t, crash+"-wal")) {
		t.Fatal("PeekOffset changed the crashed file or its WAL")
	}

	empty := filepath.Join(t.TempDir(), "view.db")
	os.WriteFile(empty, nil, 0o600)
	if seq, ok, err := sqlview.PeekOffset(ctx, empty); seq != 0 || !ok || err != nil {
		t.Fatalf("empty file: %d %v %v", seq, ok, err)
	}
	junk := filepath.Join(t.TempDir(), "view.db")
	os.WriteFile(junk, bytes.Repeat([]byte("not a database "), 500), 0o600)
	if _, ok, err := sqlview.PeekOffset(ctx, junk); !ok || !errors.Is(err, sqlview.ErrViewCorrupt) {
		t.Fatalf("junk: %v %v", ok, err)
	}
	newer := viewOf(t, j)
	setUserVersion(t, newer, sqlview.SchemaVersion+1)
	if _, ok, err := sqlview.PeekOffset(ctx, newer); !ok || !errors.Is(err, sqlview.ErrViewVersion) {
		t.Fatalf("newer schema: %v %v", ok, err)
	}
}

// TestPeekOffsetSeesAViewAhead: the engine's check before OpenView — a
// view ahead of a truncated journal — and OpenView's own sentinel for it.
func TestPeekOffsetSeesAViewAhead(t *testing.T) {
	ctx := context.Background()
	j := filled(t, 171, 500)
	path := viewOf(t, j)
	short := journal.NewMem()
	defer short.Close()
	seq, ok, err := sqlview.PeekOffset(ctx, path)
	if err != nil || !ok || seq <= short.Head() {
		t.Fatalf("peek: %d %v %v", seq, ok, err)
	}
	if _, err := sqlview.OpenView(ctx, path, short, sqlview.Options{}); !errors.Is(err, sqlview.ErrViewAhead) {
		t.Fatalf("OpenView: %v", err)
	}
}
