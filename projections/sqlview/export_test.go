package sqlview

import "database/sql"

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
