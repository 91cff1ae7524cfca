package sqlview

import (
	"database/sql"
	"time"
)

// SetBeforeCommitHook installs a hook run before each batch commit; an error
// aborts the batch (tests simulate crashes with it). The hook survives
// reopening.
func SetBeforeCommitHook(v *View, f func() error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.hook = f
	if v.a != nil {
		v.a.testHookBeforeCommit = f
	}
}

// OpenViewDB opens path the way the incremental view does (its connector
// and pragmas).
var OpenViewDB = func(path string) (*sql.DB, error) { return openDB("", path, "mode=rwc", viewPragmas...) }

// FormatTime renders unix nanoseconds as the view stores times.
var FormatTime = formatTime

// ShapeFor returns the batch size and linger v's Run would use if it held
// the given number of proxies.
func ShapeFor(v *View, proxies int64) (int, time.Duration) {
	old := v.proxies.Swap(proxies)
	defer v.proxies.Store(old)
	return v.shape()
}

// SetMergeRows makes views merge their recent checks into the archive
// once they hold rows, whatever the number of proxies, in chunks of about
// chunk rows (0: the default), until the test ends.
func SetMergeRows(t interface{ Cleanup(func()) }, rows, chunk int64) {
	f, lo, hi, c := mergeFactor, mergeMin, mergeMax, mergeChunk
	mergeFactor, mergeMin, mergeMax = 0, rows, rows
	if chunk > 0 {
		mergeChunk = chunk
	}
	t.Cleanup(func() { mergeFactor, mergeMin, mergeMax, mergeChunk = f, lo, hi, c })
}
