//go:build !linux

package main

import "errors"

// releaseBinaryPages is Linux's only (see binpages_linux.go).
func releaseBinaryPages() (int64, error) {
	return 0, errors.New("releasing the executable's pages is implemented on Linux only")
}
