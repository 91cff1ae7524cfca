package proxyhealth

import (
	"io"
	"os"
	"path/filepath"
)

// writeFileAtomic writes the file at path (0600) through write: into a
// temporary file beside it, synced, then renamed into place, and the
// directory synced, so that a crash leaves the old file or the new one,
// never a part of one. On error the temporary file is removed and the old
// file stays.
func writeFileAtomic(path string, write func(io.Writer) error) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
