package sources

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// writeFile writes content to path with the given modification time, so
// that tests do not depend on the file system's time stamp granularity.
func writeFile(t *testing.T, path, content string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

type pollResult struct {
	list    List
	changed bool
	err     error
}

func poll(t *testing.T, f *FileSource) pollResult {
	t.Helper()
	l, c, err := f.Poll(context.Background())
	return pollResult{l, c, err}
}

func (r pollResult) ids() []string {
	var out []string
	for _, e := range r.list.Entries {
		out = append(out, e.Redacted)
	}
	return out
}

func TestFileSourceSettlesBeforeReading(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pool.txt")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	writeFile(t, path, "10.0.0.1:80\n", t0)
	f := &FileSource{Path: path}

	if r := poll(t, f); !r.changed || r.err != nil || len(r.list.Entries) != 1 {
		t.Fatalf("first poll: %+v, want the list at once", r)
	}
	if r := poll(t, f); r.changed || r.err != nil {
		t.Fatalf("unchanged file: %+v, want nothing new", r)
	}

	// A writer in the middle of its work: the first half, then more.
	writeFile(t, path, "10.0.0.1:80\n10.0.0.2:80\n10.0.", t0.Add(time.Second))
	if r := poll(t, f); r.changed {
		t.Fatalf("a change seen for the first time was read: %+v, want to wait for it to settle", r)
	}
	writeFile(t, path, "10.0.0.1:80\n10.0.0.2:80\n10.0.0.3:80\n", t0.Add(2*time.Second))
	if r := poll(t, f); r.changed {
		t.Fatalf("a file still changing was read: %+v", r)
	}
	r := poll(t, f)
	if !r.changed || r.err != nil || strings.Join(r.ids(), " ") != "http://10.0.0.1:80 http://10.0.0.2:80 http://10.0.0.3:80" {
		t.Fatalf("settled file: %+v, want the three proxies", r)
	}
	if r := poll(t, f); r.changed {
		t.Fatalf("after reading: %+v, want nothing new", r)
	}
}

// TestFileSourceReportsErrorsOnce: a bad list, a missing file are reported
// once, then not again until the file changes; the next good list is
// reported.
func TestFileSourceReportsErrorsOnce(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pool.txt")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := &FileSource{Path: path}

	r := poll(t, f)
	if !r.changed || !errors.Is(r.err, ErrFile) || !errors.Is(r.err, os.ErrNotExist) || r.err.Error() != path+": cannot read the proxy list: no such file or directory" {
		t.Fatalf("missing file: %+v", r)
	}
	if r := poll(t, f); r.changed {
		t.Fatalf("missing file, second poll: %+v, want nothing new", r)
	}

	writeFile(t, path, "10.0.0.1:80\n"+secretLine+"\n", t0)
	poll(t, f) // settling
	r = poll(t, f)
	var pe *ParseError
	if !r.changed || !errors.As(r.err, &pe) || pe.Name != path || pe.Line != 2 || strings.Contains(r.err.Error(), "hashhash") {
		t.Fatalf("bad list: %+v, want %s:2 without the line", r, path)
	}
	for range 3 {
		if r := poll(t, f); r.changed {
			t.Fatalf("bad list, polled again: %+v, want nothing new", r)
		}
	}
	writeFile(t, path, "10.0.0.1:80\n10.0.0.2:80\n", t0.Add(time.Second))
	poll(t, f)
	if r := poll(t, f); !r.changed || r.err != nil || len(r.list.Entries) != 2 {
		t.Fatalf("fixed list: %+v", r)
	}
}

// TestFileSourceSeesReplacement: a file renamed over the list, with the
// same size and modification time, is a change (another inode).
func TestFileSourceSeesReplacement(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pool.txt")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	writeFile(t, path, "10.0.0.1:80\n", t0)
	f := &FileSource{Path: path}
	if r := poll(t, f); !r.changed || r.err != nil {
		t.Fatalf("first poll: %+v", r)
	}
	tmp := filepath.Join(dir, "pool.txt.tmp")
	writeFile(t, tmp, "10.0.0.9:80\n", t0)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	poll(t, f)
	if r := poll(t, f); !r.changed || r.err != nil || strings.Join(r.ids(), " ") != "http://10.0.0.9:80" {
		t.Fatalf("replaced file: %+v, want the new list", r)
	}
}

func TestFileSourceRefuses(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.txt")
	writeFile(t, big, strings.Repeat("# comment\n", 20), time.Now())
	r := poll(t, &FileSource{Path: big, Limits: Limits{MaxBytes: 100}})
	if !r.changed || !errors.Is(r.err, ErrTooLarge) || !strings.Contains(r.err.Error(), "the file is 200 bytes, over the 100 bytes limit") {
		t.Fatalf("oversized file: %+v", r)
	}
	r = poll(t, &FileSource{Path: dir})
	if !r.changed || !errors.Is(r.err, ErrFile) || !strings.Contains(r.err.Error(), "it is a directory") {
		t.Fatalf("directory: %+v", r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, changed, err := (&FileSource{Path: big}).Poll(ctx); changed || !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled poll: %v, %v", changed, err)
	}
}

// TestWatch: Watch reports the first list, then each settled change, and
// returns when its context is done.
func TestWatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pool.txt")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	writeFile(t, path, "10.0.0.1:80\n", t0)

	var mu sync.Mutex
	var got []string
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Watch(ctx, path, 5*time.Millisecond, Limits{}, func(l List, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				got = append(got, "error")
				return
			}
			got = append(got, l.String())
		})
	}()
	reports := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
	testutil.Eventually(t, 10*time.Second, "the first list", func() bool { return len(reports()) == 1 })
	writeFile(t, path, "10.0.0.1:80\nnot a proxy\n", t0.Add(time.Second))
	testutil.Eventually(t, 10*time.Second, "the error", func() bool { return len(reports()) == 2 })
	writeFile(t, path, "10.0.0.1:80\n10.0.0.2:80\n", t0.Add(2*time.Second))
	testutil.Eventually(t, 10*time.Second, "the second list", func() bool { return len(reports()) == 3 })
	cancel()
	<-done
	want := []string{"plain list: 1 proxies, 1 lines, 12 bytes", "error", "plain list: 2 proxies, 2 lines, 24 bytes"}
	if g := reports(); strings.Join(g, "|") != strings.Join(want, "|") {
		t.Fatalf("reports %q, want %q", g, want)
	}
}
