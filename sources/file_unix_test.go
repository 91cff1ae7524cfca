//go:build unix

package sources

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestFileSourceRefusesSpecialFiles: a FIFO (whose read would block until
// a writer comes) and a device are refused without reading.
func TestFileSourceRefusesSpecialFiles(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, special := range []string{fifo, os.DevNull} {
		r := poll(t, &FileSource{Path: special})
		if !r.changed || !errors.Is(r.err, ErrFile) || !strings.Contains(r.err.Error(), "not a regular file") {
			t.Fatalf("%s: %+v, want it refused without reading", special, r)
		}
	}
}
