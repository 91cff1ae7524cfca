//go:build !linux

package journal

// releaseMapped is a no-op where the journal does not know how to drop
// mapped pages.
func (b *Bolt) releaseMapped() error { return nil }
