package journal_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/journal/journaltest"
)

// A new journal appears only complete: while it is being created its
// path does not exist, and a crash before it is linked into place leaves
// no journal (so the next start creates one) instead of a 0-byte or
// uninitialised file that Open refuses as lost history.
func TestNewJournalAppearsOnlyComplete(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "journal.db")
	var sawTmp string
	journal.SetCreateHook(func(tmp string) {
		sawTmp = tmp
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("journal.db is visible before it is complete: %v", err)
		}
		ro, err := journal.OpenBolt(tmp, journal.WithReadOnly())
		if err != nil {
			t.Errorf("the new journal under its temporary name is not a complete journal: %v", err)
			return
		}
		_ = ro.Close()
	})
	defer journal.SetCreateHook(nil)
	j := openBolt(t, path)
	journaltest.Append(t, j, journaltest.Succeeded(journaltest.ProxyID(1), time.Second))
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if sawTmp == "" {
		t.Fatal("the hook did not run: the journal was not created through its temporary name")
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("journal.db: %v, mode %v", err, st.Mode())
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range left {
		if strings.Contains(filepath.Base(f), ".new-") {
			t.Errorf("temporary file left: %s", f)
		}
	}

	// A crash before the link: no journal.db; the next open creates it.
	crashed := filepath.Join(t.TempDir(), "journal.db")
	journal.SetCreateHook(func(string) { panic("crash") })
	func() {
		defer func() { _ = recover() }()
		_, _ = journal.OpenBolt(crashed)
	}()
	journal.SetCreateHook(nil)
	if _, err := os.Stat(crashed); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a crash during creation left journal.db: %v", err)
	}
	j = openBolt(t, crashed)
	if j.Head() != 0 {
		t.Errorf("head of the new journal: %d", j.Head())
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(crashed + ".new-*"); len(left) != 0 {
		t.Errorf("the crashed creation's temporary file was not cleaned up: %v", left)
	}
}
