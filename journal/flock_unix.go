//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package journal

import (
	"os"
	"syscall"
	"time"
)

// sharedLock takes a shared flock on f (the lock bbolt takes for a
// read-only open, so it excludes a writer), waiting up to timeout; false
// if another process held an exclusive lock all that time.
func sharedLock(f *os.File, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		if err == nil {
			return true
		}
		if err != syscall.EWOULDBLOCK || time.Now().After(deadline) {
			return err != syscall.EWOULDBLOCK // not supported here: inspect anyway
		}
		time.Sleep(50 * time.Millisecond)
	}
}
