//go:build unix

package fakeproxy

import (
	"fmt"
	"syscall"
)

// ensureFDs raises the soft RLIMIT_NOFILE to at least need (up to the hard
// limit) and fails with ErrFDLimit if that is not possible. Since Go 1.19
// the runtime already raises the soft limit to the hard one at start-up, so
// this normally does nothing.
func ensureFDs(need uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return nil // cannot tell; let listeners fail if they must
	}
	if lim.Cur >= need {
		return nil
	}
	if lim.Max < need {
		return fmt.Errorf("%w: need about %d file descriptors, hard limit is %d; start fewer proxies or raise the limit (ulimit -Hn)", ErrFDLimit, need, lim.Max)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("%w: need about %d file descriptors, could not raise the soft limit to %d: %v", ErrFDLimit, need, lim.Max, err)
	}
	return nil
}
