//go:build !unix

package fakeproxy

// ensureFDs is a no-op where RLIMIT_NOFILE does not exist.
func ensureFDs(uint64) error { return nil }
