package journal_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/journal/journaltest"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// flipInValue changes one letter of "default" (the source) in the stored
// value of key in bucket: a one-bit change that leaves valid protobuf.
func flipInValue(t *testing.T, tx *bolt.Tx, bucket string, key []byte) error {
	t.Helper()
	b := tx.Bucket([]byte(bucket))
	v := bytes.Clone(b.Get(key))
	i := bytes.Index(v, []byte("default"))
	if i < 0 {
		t.Fatalf("%s %x holds no source", bucket, key)
	}
	v[i] ^= 0x01 // 'd' -> 'e'
	return b.Put(key, v)
}

// TestBoltRecordChecksum: a one-bit change inside a record's payload that
// still decodes used to pass Check and every read; the checksum finds it.
func TestBoltRecordChecksum(t *testing.T) {
	ctx := context.Background()
	j := openBolt(t, filepath.Join(t.TempDir(), "journal.db"))
	fillN(t, j, 20)
	p := journaltest.ProxyID(0) // its events: seqs 1, 4, 7, 10, …
	if err := j.SaveSnapshot(ctx, journaltest.Snapshot(p, 3, 7)); err != nil {
		t.Fatal(err)
	}
	path := rawUpdate(t, j, func(tx *bolt.Tx) error {
		if err := flipInValue(t, tx, "events", seqKey(10)); err != nil {
			return err
		}
		return flipInValue(t, tx, "snapshots", []byte(p))
	})
	j = openBolt(t, path, journal.WithReadOnly())
	defer j.Close()
	err := j.Check(ctx)
	if !errors.Is(err, journal.ErrCorrupt) || !strings.Contains(err.Error(), "event 10") || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("Check = %v; want ErrCorrupt naming event 10's checksum", err)
	}
	if !strings.Contains(err.Error(), "snapshot of proxy") {
		t.Fatalf("Check = %v; want the damaged snapshot reported too", err)
	}
	var readErr error
	for _, err := range j.Read(ctx, 1) {
		readErr = err
	}
	if !errors.Is(readErr, journal.ErrCorrupt) || !strings.Contains(readErr.Error(), "event 10") {
		t.Fatalf("Read over the damaged record yielded %v, want ErrCorrupt naming event 10", readErr)
	}
	readErr = nil
	for _, err := range j.ReadStream(ctx, p, 1) {
		readErr = err
	}
	if !errors.Is(readErr, journal.ErrCorrupt) || !strings.Contains(readErr.Error(), "event 10") {
		t.Fatalf("ReadStream over the damaged record yielded %v, want ErrCorrupt naming event 10", readErr)
	}
	if _, err := j.LoadSnapshot(ctx, p); !errors.Is(err, journal.ErrCorrupt) {
		t.Fatalf("LoadSnapshot of the damaged snapshot = %v, want ErrCorrupt", err)
	}
}

// TestBoltRecordWithoutChecksumRefused: an event at or after crc_from
// must carry a checksum; an unframed one (e.g. its first byte damaged) is
// corrupt even if it decodes.
func TestBoltRecordWithoutChecksumRefused(t *testing.T) {
	j := openBolt(t, filepath.Join(t.TempDir(), "journal.db"))
	fillN(t, j, 20)
	path := rawUpdate(t, j, func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("events"))
		return b.Put(seqKey(12), bytes.Clone(journal.RecordPayload(b.Get(seqKey(12)))))
	})
	j = openBolt(t, path)
	defer j.Close()
	if err := j.Check(context.Background()); !errors.Is(err, journal.ErrCorrupt) || !strings.Contains(err.Error(), "event 12 has no checksum") {
		t.Fatalf("Check = %v; want ErrCorrupt: event 12 has no checksum", err)
	}
}

// downgradeToV2 rewrites a journal into schema version 2: records without
// checksum, no crc_from.
func downgradeToV2(t *testing.T, j journal.Journal) string {
	return rawUpdate(t, j, func(tx *bolt.Tx) error {
		if err := journal.IsolateEvents(tx); err != nil {
			return err
		}
		for _, name := range []string{"events", "snapshots"} {
			b := tx.Bucket([]byte(name))
			var keys, vals [][]byte
			_ = b.ForEach(func(k, v []byte) error {
				keys, vals = append(keys, bytes.Clone(k)), append(vals, bytes.Clone(journal.RecordPayload(v)))
				return nil
			})
			for i := range keys {
				if err := b.Put(keys[i], vals[i]); err != nil {
					return err
				}
			}
		}
		meta := tx.Bucket([]byte("meta"))
		if err := meta.Delete([]byte("crc_from")); err != nil {
			return err
		}
		return meta.Put([]byte("schema"), seqKey(2))
	})
}

// TestBoltUpgradesSchemaV2: a version 2 journal (no checksums) reads
// read-only as it is; a writable open upgrades it to version 3 (and on
// to 4) in place:
// old records stay readable without a checksum, new ones carry one.
func TestBoltUpgradesSchemaV2(t *testing.T) {
	ctx := context.Background()
	j := openBolt(t, filepath.Join(t.TempDir(), "journal.db"))
	fillN(t, j, 20)
	p := journaltest.ProxyID(1)
	if err := j.SaveSnapshot(ctx, journaltest.Snapshot(p, 2, 5)); err != nil {
		t.Fatal(err)
	}
	path := downgradeToV2(t, j)

	ro := openBolt(t, path, journal.WithReadOnly())
	if err := ro.Check(ctx); err != nil {
		t.Fatalf("read-only Check of a version 2 journal: %v", err)
	}
	if n := len(journaltest.ReadAll(t, ro, 1)); n != 20 {
		t.Fatalf("read %d events of the version 2 journal", n)
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}

	j = openBolt(t, path)
	journaltest.Append(t, j, journaltest.Succeeded(p, time.Hour))
	if err := j.SaveSnapshot(ctx, journaltest.Snapshot(p, 8, 21)); err != nil {
		t.Fatal(err)
	}
	if err := j.Check(ctx); err != nil {
		t.Fatalf("Check after the upgrade: %v", err)
	}
	envs := journaltest.ReadStreamAll(t, j, p, 1)
	if len(envs) != 8 || envs[7].GetSeq() != 21 {
		t.Fatalf("stream of %s after the upgrade: %d events", p, len(envs))
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_ = db.View(func(tx *bolt.Tx) error {
		meta, events := tx.Bucket([]byte("meta")), tx.Bucket([]byte("events"))
		if v := meta.Get([]byte("schema")); binary.BigEndian.Uint64(v) != journal.SchemaVersion {
			t.Errorf("schema %x after the upgrade", v)
		}
		if v := meta.Get([]byte("crc_from")); binary.BigEndian.Uint64(v) != 21 {
			t.Errorf("crc_from %x after the upgrade, want 21", v)
		}
		if v := events.Get(seqKey(20)); v[0] == 0 {
			t.Errorf("event 20 was rewritten")
		}
		v := events.Get(seqKey(21))
		var e pb.Envelope
		if v[0] != 0 || proto.Unmarshal(journal.RecordPayload(v), &e) != nil || e.GetSeq() != 21 {
			t.Errorf("event 21 is not a framed record: %x", v)
		}
		return nil
	})
}

// TestBoltUpgradesSchemaV3AndV4: a version 3 or 4 journal (a record
// under every seq) reads read-only as it is; a writable open only moves it
// to version 5 (4: heads checkpointed in rounds; 5: event blocks), so that
// an older proxyhealth refuses it, and the journal then holds both its old
// records and the new blocks.
func TestBoltUpgradesSchemaV3AndV4(t *testing.T) {
	for _, from := range []uint64{3, 4} {
		t.Run(fmt.Sprintf("v%d", from), func(t *testing.T) { testUpgradeFrom(t, from) })
	}
}

func testUpgradeFrom(t *testing.T, from uint64) {
	ctx := context.Background()
	j := openBolt(t, filepath.Join(t.TempDir(), "journal.db"))
	fillN(t, j, 20)
	path := rawUpdate(t, j, func(tx *bolt.Tx) error {
		if err := journal.IsolateEvents(tx); err != nil {
			return err
		}
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), seqKey(from))
	})
	schema := func() uint64 {
		t.Helper()
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var v uint64
		_ = db.View(func(tx *bolt.Tx) error {
			v = binary.BigEndian.Uint64(tx.Bucket([]byte("meta")).Get([]byte("schema")))
			return nil
		})
		return v
	}

	ro := openBolt(t, path, journal.WithReadOnly())
	if err := ro.Check(ctx); err != nil {
		t.Fatalf("read-only Check of a version %d journal: %v", from, err)
	}
	if n := len(journaltest.ReadAll(t, ro, 1)); n != 20 {
		t.Fatalf("read %d events of the version %d journal", n, from)
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	if v := schema(); v != from {
		t.Fatalf("a read-only open changed the schema to %d", v)
	}

	j = openBolt(t, path)
	p := journaltest.ProxyID(1)
	before := j.StreamHead(p)
	journaltest.Append(t, j, journaltest.Succeeded(p, time.Hour), journaltest.Succeeded(p, 2*time.Hour), journaltest.Failed(p, 3*time.Hour))
	if got := j.StreamHead(p); got != before+3 {
		t.Fatalf("stream head %d after appends to the upgraded journal, want %d", got, before+3)
	}
	if err := j.Check(ctx); err != nil {
		t.Fatalf("Check after the upgrade: %v", err)
	}
	if n := len(journaltest.ReadStreamAll(t, j, p, 1)); uint64(n) != before+3 {
		t.Fatalf("stream of %s after the upgrade: %d events, want %d", p, n, before+3)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if v := schema(); v != journal.SchemaVersion {
		t.Fatalf("schema %d after the upgrade, want %d", v, journal.SchemaVersion)
	}
}
