package sqlview

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
