//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package journal

import (
	"os"
	"time"
)

// sharedLock is a no-op where flock is not available: bbolt's own lock
// still guards the file.
func sharedLock(*os.File, time.Duration) bool { return true }
