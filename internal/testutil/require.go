package testutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// RequireAll is the environment variable that turns "skipped: this machine
// lacks X" into a failure (CI sets it to 1).
const RequireAll = "PROXYHEALTH_REQUIRE_ALL"

// Unavailable ends a test that cannot run here (a missing program, no
// root): it skips, or fails when RequireAll is 1.
func Unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(RequireAll) == "1" {
		tb.Fatalf("%s (and %s=1)", msg, RequireAll)
	}
	tb.Skip(msg)
}

// Program returns the path of the first of names found on PATH, or ends
// the test through Unavailable, saying what is not checked without it.
func Program(tb testing.TB, notChecked string, names ...string) string {
	tb.Helper()
	for _, name := range names {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	Unavailable(tb, "%s is not installed (apt-get install %s): %s", names[0], names[0], notChecked)
	return ""
}

// Chromium returns Debian's headless Chromium, or ends the test through
// Unavailable.
func Chromium(tb testing.TB, notChecked string) string {
	tb.Helper()
	return Program(tb, notChecked, "chromium", "chromium-browser")
}

// MountTmpfs mounts a tmpfs of the given size (e.g. "8m") on a new
// directory (mode 0700) and unmounts it when the test ends; where it
// cannot (not root, no tmpfs) it ends the test through Unavailable.
func MountTmpfs(tb testing.TB, size string) string {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	if err := mount(dir, size); err != nil {
		Unavailable(tb, "this test needs to mount a small tmpfs on %s (root, mount -t tmpfs): %v", dir, err)
	}
	tb.Cleanup(func() {
		if err := unmount(dir); err != nil {
			tb.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// Long ends a long test under -short, saying why it is long; with
// RequireAll=1 (CI) it runs anyway, so that no test is left out there.
func Long(tb testing.TB, why string) {
	tb.Helper()
	if testing.Short() && os.Getenv(RequireAll) != "1" {
		tb.Skipf("-short: %s; run without -short", why)
	}
}

// FillDisk writes the file path until its file system is full (ENOSPC),
// in large chunks and then small ones, so that little room is left.
func FillDisk(tb testing.TB, path string) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	for _, size := range []int{64 << 10, 4 << 10} {
		chunk := make([]byte, size)
		for {
			_, err := f.Write(chunk)
			if err == nil {
				continue
			}
			if !errors.Is(err, syscall.ENOSPC) {
				tb.Fatalf("fill the disk of %s: %v", path, err)
			}
			break
		}
	}
}
