package journal_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/journal/journaltest"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// originalEvents reads the events of the valid journal of validJournal.
func originalEvents(t *testing.T) ([]byte, []*pb.Envelope) {
	t.Helper()
	data, err := validJournal()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "orig.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	j := openBolt(t, path, journal.WithReadOnly())
	defer j.Close()
	return data, journaltest.ReadAll(t, j, 1)
}

// checkSalvaged opens a salvaged file and verifies that it holds exactly
// events first..last of the original, unchanged, and that it takes
// appends.
func checkSalvaged(t *testing.T, path string, rep *journal.SalvageReport, orig []*pb.Envelope) {
	t.Helper()
	ctx := context.Background()
	j := openBolt(t, path)
	defer j.Close()
	if err := j.Check(ctx); err != nil {
		t.Fatalf("the salvaged journal fails the check: %v", err)
	}
	if j.First() != rep.First || j.Head() != rep.Last {
		t.Fatalf("salvaged journal: first %d head %d, report says %d..%d", j.First(), j.Head(), rep.First, rep.Last)
	}
	for _, e := range journaltest.ReadAll(t, j, 1) {
		if !proto.Equal(e, orig[e.GetSeq()-1]) {
			t.Fatalf("salvaged event %d differs from the original:\n%v\n%v", e.GetSeq(), e, orig[e.GetSeq()-1])
		}
	}
	p := journaltest.ProxyID(3)
	h := j.StreamHead(p)
	journaltest.Append(t, j, journaltest.Succeeded(p, 10*time.Hour))
	if j.StreamHead(p) != h+1 {
		t.Fatalf("append to the salvaged journal: stream head %d, want %d", j.StreamHead(p), h+1)
	}
	if err := j.Check(ctx); err != nil {
		t.Fatalf("the salvaged journal fails the check after an append: %v", err)
	}
}

// TestSalvageDamagedRecord: a record that fails its checksum in the middle
// of the journal: the events before it are copied, the intact ones after
// it are reported, and the original file is not touched.
func TestSalvageDamagedRecord(t *testing.T) {
	data, orig := originalEvents(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "journal.db")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	// Damage every copy of event 1000's record in the file (bbolt leaves
	// older copies of a page in free pages).
	db, err := bolt.Open(src, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var rec []byte
	_ = db.View(func(tx *bolt.Tx) error {
		rec = bytes.Clone(journal.EventRecord(tx, 1000))
		return nil
	})
	db.Close()
	damaged := bytes.ReplaceAll(data, rec, append(rec[:len(rec)-1:len(rec)-1], rec[len(rec)-1]^0x01))
	if bytes.Equal(damaged, data) {
		t.Fatal("event 1000's record not found in the file")
	}
	if err := os.WriteFile(src, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(src)
	dst := filepath.Join(dir, "salvaged.db")
	rep, err := journal.Salvage(context.Background(), src, dst)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", rep)
	if rep.First != 1 || rep.Last != 999 || rep.StoppedAt != 1000 || rep.DamagedRecords != 1 || rep.LostEvents != 1000 ||
		len(rep.Lost) != 1 || rep.Lost[0] != (journal.SeqRange{From: 1001, To: 2000}) {
		t.Fatalf("report %+v; want 1..999 copied, event 1000 damaged, 1001..2000 lost", rep)
	}
	if after, _ := os.ReadFile(src); !bytes.Equal(before, after) {
		t.Fatal("salvage modified the original file")
	}
	if rep.Snapshots == 0 || rep.SkippedSnapshots == 0 {
		t.Fatalf("report %+v; want snapshots copied and those beyond 999 skipped", rep)
	}
	checkSalvaged(t, dst, rep, orig)
	if _, err := journal.Salvage(context.Background(), src, dst); !errors.Is(err, journal.ErrSalvageTarget) {
		t.Fatalf("salvage onto an existing file = %v, want ErrSalvageTarget", err)
	}
}

// TestSalvageDamagedCopies salvages 100 of the damaged copies of
// TestDamagedJournalsNeverCrash (every third seed: all kinds of damage):
// each either fails with one of the journal's errors or yields a journal
// that passes the check and holds a gap-free run of the original events,
// unchanged.
func TestSalvageDamagedCopies(t *testing.T) {
	data, orig := originalEvents(t)
	dir := t.TempDir()
	copied, failed := 0, 0
	for i := range uint64(100) {
		seed := 3 * i
		src, dst := filepath.Join(dir, "journal.db"), filepath.Join(dir, "salvaged.db")
		_ = os.Remove(dst)
		if err := os.WriteFile(src, journaltest.Damage(data, seed), 0o600); err != nil {
			t.Fatal(err)
		}
		rep, err := journal.Salvage(context.Background(), src, dst)
		if err != nil {
			if !knownError(err) {
				t.Fatalf("seed %d: Salvage: %v", seed, err)
			}
			failed++
			continue
		}
		copied += rep.Events
		checkSalvaged(t, dst, rep, orig)
		if t.Failed() {
			t.Fatalf("seed %d", seed)
		}
	}
	t.Logf("100 damaged copies: %d events copied in all, %d salvages failed", copied, failed)
}

// TestSalvageAfterRetention: a journal whose oldest events were deleted
// by retention salvages from its first retained seq, with the stream
// heads and snapshots it needs.
func TestSalvageAfterRetention(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "journal.db")
	j := openBolt(t, src, journal.WithUnsafeNoSync())
	fillN(t, j, 300) // proxy i%3 at i seconds
	gone := journaltest.ProxyID(7)
	journaltest.Append(t, j, journaltest.Succeeded(gone, 0)) // seq 301: retention stops before it
	for i := range 3 {
		p := journaltest.ProxyID(i)
		if err := j.SaveSnapshot(ctx, journaltest.Snapshot(p, 70, 210)); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.SaveSnapshot(ctx, journaltest.Snapshot(gone, 1, 301)); err != nil {
		t.Fatal(err)
	}
	if n, err := j.Retain(ctx, journaltest.BaseTime.Add(200*time.Second)); err != nil || n != 200 {
		t.Fatalf("Retain = %d, %v; want 200 deleted", n, err)
	}
	want := map[string]uint64{gone: j.StreamHead(gone)}
	for i := range 3 {
		want[journaltest.ProxyID(i)] = j.StreamHead(journaltest.ProxyID(i))
	}
	orig := journaltest.ReadAll(t, j, 1)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "salvaged.db")
	rep, err := journal.Salvage(ctx, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if rep.RetainedFrom != 201 || rep.First != 201 || rep.Last != 301 || rep.LostEvents != 0 || rep.Snapshots != 4 {
		t.Fatalf("report %+v; want events 201..301 and 4 snapshots", rep)
	}
	s := openBolt(t, dst, journal.WithReadOnly())
	defer s.Close()
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	for p, h := range want {
		if s.StreamHead(p) != h {
			t.Errorf("proxy %s: stream head %d after salvage, want %d", p, s.StreamHead(p), h)
		}
	}
	got := journaltest.ReadAll(t, s, 1)
	if len(got) != len(orig) {
		t.Fatalf("%d events after salvage, want %d", len(got), len(orig))
	}
	for i := range got {
		if !proto.Equal(got[i], orig[i]) {
			t.Fatalf("event %d differs after salvage", got[i].GetSeq())
		}
	}
}

// TestSalvageKeepsCarriedEvents: the pool-wide events retention carries
// (journal.Carrier) are part of the state salvage copies.
func TestSalvageKeepsCarriedEvents(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "journal.db")
	j := openBolt(t, src, journal.WithUnsafeNoSync())
	a := journaltest.ProxyID(0)
	journaltest.Append(t, j, journaltest.PoolDegraded(0), journaltest.Succeeded(a, time.Second), journaltest.Succeeded(a, 100*time.Second))
	if err := j.SaveSnapshot(ctx, journaltest.Snapshot(a, 2, 3)); err != nil {
		t.Fatal(err)
	}
	if n, err := j.Retain(ctx, journaltest.BaseTime.Add(50*time.Second)); err != nil || n != 2 {
		t.Fatalf("Retain = %d, %v; want 2 deleted", n, err)
	}
	want, err := journal.Carried(ctx, j)
	if err != nil || len(want) != 1 || want[0].GetSeq() != 1 {
		t.Fatalf("carried before salvage: %v, %v", want, err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "salvaged.db")
	if _, err := journal.Salvage(ctx, src, dst); err != nil {
		t.Fatal(err)
	}
	s := openBolt(t, dst, journal.WithReadOnly())
	defer s.Close()
	got, err := journal.Carried(ctx, s)
	if err != nil || len(got) != 1 || !proto.Equal(got[0], want[0]) {
		t.Fatalf("carried after salvage: %v, %v; want %v", got, err, want)
	}
}

// TestSalvageRefusesAFramingByteFlip: a checksummed record whose first
// byte (the framing byte) is damaged must not pass as an old record
// without a checksum: for some values its header decodes as an unknown
// field and the event was copied with it (seen once in 100 damaged
// copies, depending on where the group commits had put the records). Every
// value of that byte is tried.
func TestSalvageRefusesAFramingByteFlip(t *testing.T) {
	data, orig := originalEvents(t)
	const victim = 458
	payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(orig[victim-1])
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, payload)
	if i < 5 || data[i-5] != 0x00 {
		t.Fatalf("event %d's record not found in the file (at %d)", victim, i)
	}
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "journal.db"), filepath.Join(dir, "salvaged.db")
	for b := 1; b < 256; b++ {
		damaged := bytes.Clone(data)
		damaged[i-5] = byte(b)
		if err := os.WriteFile(src, damaged, 0o600); err != nil {
			t.Fatal(err)
		}
		_ = os.Remove(dst)
		rep, err := journal.Salvage(context.Background(), src, dst)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Last != victim-1 {
			t.Fatalf("framing byte %#02x: the salvage copied through seq %d, want it to stop before the damaged event %d", b, rep.Last, victim)
		}
	}
	checkSalvaged(t, dst, &journal.SalvageReport{First: 1, Last: victim - 1}, orig)
}
