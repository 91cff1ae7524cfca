//go:build unix

package proxyhealth

import (
	"os"
	"syscall"
)

// journalFileID returns the device and inode of the file at path.
func journalFileID(path string) (fileID, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, true //nolint:unconvert // Dev and Ino are narrower on some platforms
}
