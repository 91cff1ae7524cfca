package journal_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/journal/journaltest"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// validJournal returns the bytes of a small valid journal: 2000 events of
// 20 proxies (several pages of events under branch pages, alone and in
// blocks), pool-level events, snapshots and a heads checkpoint.
var validJournal = sync.OnceValues(func() ([]byte, error) {
	dir, err := os.MkdirTemp("", "journal-valid-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "journal.db")
	j, err := journal.OpenBolt(path, journal.WithUnsafeNoSync())
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	var batch []*pb.Envelope
	for i := range 2000 {
		p := journaltest.ProxyID(i % 20)
		at := time.Duration(i) * time.Second
		e := journaltest.Succeeded(p, at)
		switch {
		case i%7 == 0:
			e = journaltest.Failed(p, at)
		case i%97 == 0:
			e = journaltest.PoolDegraded(at)
		}
		// Appends of 1 to 100 events: events alone and in blocks of
		// every size.
		if batch = append(batch, e); len(batch) < 1+i*37%100 && i%100 != 99 {
			continue
		}
		if _, err := j.Append(ctx, batch); err != nil {
			return nil, err
		}
		batch = nil
		if i%100 == 99 {
			q := journaltest.ProxyID(i / 100 % 20)
			if err := j.SaveSnapshot(ctx, journaltest.Snapshot(q, j.StreamHead(q), j.Head())); err != nil {
				return nil, err
			}
		}
	}
	if err := j.Close(); err != nil {
		return nil, err
	}
	return os.ReadFile(path)
})

// knownError reports whether err is one of the errors a damaged file may
// give.
func knownError(err error) bool {
	for _, target := range []error{journal.ErrCorrupt, journal.ErrNotJournal, journal.ErrEmpty, journal.ErrSchemaVersion} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// exercise opens a damaged file read-only and reads everything through
// every read path, then opens it writable and appends; nothing may crash,
// every error must be one of the journal's. It returns the error of
// Check (or of the read-only open).
func exercise(t testing.TB, path string) error {
	ctx := context.Background()
	var verdict error
	j, err := journal.OpenBolt(path, journal.WithReadOnly())
	if err != nil {
		if !knownError(err) || !strings.Contains(err.Error(), path) {
			t.Fatalf("read-only OpenBolt: %v; want ErrCorrupt, ErrNotJournal, ErrEmpty or ErrSchemaVersion naming the file", err)
		}
		verdict = err
	} else {
		verdict = j.Check(ctx)
		if verdict != nil && !errors.Is(verdict, journal.ErrCorrupt) {
			t.Fatalf("Check: %v; want nil or ErrCorrupt", verdict)
		}
		for _, err := range j.Read(ctx, 1) {
			if err != nil && !errors.Is(err, journal.ErrCorrupt) {
				t.Fatalf("Read: %v", err)
			}
		}
		for i := range 3 {
			for _, err := range j.ReadStream(ctx, journaltest.ProxyID(i), 1) {
				if err != nil && !errors.Is(err, journal.ErrCorrupt) {
					t.Fatalf("ReadStream: %v", err)
				}
			}
			if _, err := j.LoadSnapshot(ctx, journaltest.ProxyID(i)); err != nil && !errors.Is(err, journal.ErrCorrupt) && !errors.Is(err, journal.ErrNoSnapshot) {
				t.Fatalf("LoadSnapshot: %v", err)
			}
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
	}
	w, err := journal.OpenBolt(path, journal.WithUnsafeNoSync())
	if err != nil {
		if !knownError(err) {
			t.Fatalf("writable OpenBolt: %v", err)
		}
		return verdict
	}
	_, err = w.Append(ctx, []*pb.Envelope{journaltest.Succeeded(journaltest.ProxyID(1), time.Hour)})
	if err != nil && !errors.Is(err, journal.ErrCorrupt) && !errors.Is(err, journal.ErrStreamConflict) {
		t.Errorf("Append to a damaged journal: %v", err)
	}
	if err := w.Close(); err != nil && !errors.Is(err, journal.ErrCorrupt) {
		t.Errorf("Close: %v", err)
	}
	return verdict
}

// TestDamagedJournalsNeverCrash damages copies of a valid journal in 400
// fixed ways (journaltest.Damage) and exercises each: before the
// structural checks, bbolt faulted (SIGSEGV, not a panic: the test binary
// died) on about one in twenty.
func TestDamagedJournalsNeverCrash(t *testing.T) {
	data, err := validJournal()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	counts := map[string][2]int{}
	for seed := range uint64(400) {
		path := filepath.Join(dir, "journal.db")
		if err := os.WriteFile(path, journaltest.Damage(data, seed), 0o600); err != nil {
			t.Fatal(err)
		}
		err := exercise(t, path)
		kind := journaltest.DamageKinds[seed%uint64(len(journaltest.DamageKinds))]
		c := counts[kind]
		if err != nil {
			c[1]++
		} else {
			c[0]++
		}
		counts[kind] = c
		if t.Failed() {
			t.Fatalf("seed %d (%s)", seed, kind)
		}
	}
	for kind, c := range counts {
		t.Logf("%-26s clean %3d  damage reported %3d", kind, c[0], c[1])
	}
	// Truncations that used to fault in bbolt.
	for _, size := range []int{8192, 65536, 4096, 12288, 100} {
		path := filepath.Join(dir, "journal.db")
		if err := os.WriteFile(path, data[:size], 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := journal.OpenBolt(path, journal.WithReadOnly())
		if !errors.Is(err, journal.ErrCorrupt) && !errors.Is(err, journal.ErrNotJournal) {
			t.Fatalf("truncated at %d: read-only OpenBolt = %v, want ErrCorrupt", size, err)
		}
		if _, err := journal.OpenBolt(path); !errors.Is(err, journal.ErrCorrupt) && !errors.Is(err, journal.ErrNotJournal) {
			t.Fatalf("truncated at %d: OpenBolt = %v, want ErrCorrupt", size, err)
		}
		if size == 65536 && (!strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "salvage")) {
			t.Fatalf("truncated at %d: %v; want the file named and what to do", size, err)
		}
	}
}

// FuzzDamagedJournal damages a copy of a valid journal (seed chooses the
// damage, flips adds bit flips at positions taken from its bytes) and
// exercises it: it must return errors, never crash.
func FuzzDamagedJournal(f *testing.F) {
	for seed := range uint64(16) {
		f.Add(seed, []byte{})
	}
	f.Add(uint64(0), []byte{0, 0, 0x10, 0x03, 0x40, 0x01})
	data, err := validJournal()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, seed uint64, flips []byte) {
		d := journaltest.Damage(data, seed)
		for i := 0; i+2 < len(flips) && len(d) > 0; i += 3 {
			pos := (int(flips[i])<<16 | int(flips[i+1])<<8 | int(flips[i+2])) * 7 % len(d)
			d[pos] ^= 1 << (flips[i] % 8)
		}
		path := filepath.Join(t.TempDir(), "journal.db")
		if err := os.WriteFile(path, d, 0o600); err != nil {
			t.Fatal(err)
		}
		exercise(t, path)
	})
}

// TestBoltEmptyFileRefused: bbolt initialises a 0-byte file as a new
// database, so a journal truncated to nothing silently started over.
func TestBoltEmptyFileRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, opts := range [][]journal.BoltOption{nil, {journal.WithReadOnly()}} {
		j, err := journal.OpenBolt(path, opts...)
		if err == nil {
			j.Close()
			t.Fatal("OpenBolt of a 0-byte file succeeded")
		}
		if !errors.Is(err, journal.ErrEmpty) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "backup") {
			t.Fatalf("OpenBolt = %v; want ErrEmpty naming the file and what to do", err)
		}
	}
	if st, err := os.Stat(path); err != nil || st.Size() != 0 {
		t.Fatalf("the empty file was touched: %v, %v", st, err)
	}
	// A missing file is still created by a writable open.
	j := openBolt(t, filepath.Join(t.TempDir(), "new.db"))
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
}
