//go:build !linux

package probe

import "context"

// startAsync has no event loop outside Linux: CheckAsync runs Check on a
// goroutine.
func startAsync(*Checker, context.Context, ProxyURL, Done) bool { return false }
