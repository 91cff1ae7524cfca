package journal_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/journal/journaltest"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// eventValues returns the events bucket's keys (as seqs) and values.
func eventValues(t *testing.T, path string) (keys []uint64, vals [][]byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_ = db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("events")).ForEach(func(k, v []byte) error {
			keys, vals = append(keys, binary.BigEndian.Uint64(k)), append(vals, bytes.Clone(v))
			return nil
		})
	})
	return keys, vals
}

// appendSpread appends n events of proxies proxies in one call, at i
// seconds each.
func appendSpread(t *testing.T, j journal.Journal, n, proxies int) {
	t.Helper()
	envs := make([]*pb.Envelope, n)
	for i := range envs {
		envs[i] = journaltest.Succeeded(journaltest.ProxyID(i%proxies), time.Duration(i)*time.Second)
	}
	journaltest.Append(t, j, envs...)
}

// TestBoltBlocks: a commit of many events stores them in blocks of at most
// 64 events (one bbolt key each), a lone event alone; everything reads
// back from any seq, by stream too, and after a reopen.
func TestBoltBlocks(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "journal.db")
	j := openBolt(t, path, journal.WithUnsafeNoSync())
	appendSpread(t, j, 3000, 7)
	journaltest.Append(t, j, journaltest.Failed(journaltest.ProxyID(3), time.Hour))
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	// Blocks of up to 64 events and 4,000 bytes of records (about 55 of
	// these), each under the seq of its first event; the lone event alone.
	keys, vals := eventValues(t, path)
	if n := len(keys); n < 3000/64+2 || n > 3000/40+2 || keys[0] != 1 || keys[n-1] != 3001 || vals[n-1][0] != 0x00 {
		t.Fatalf("events stored under %d keys %v; want blocks from 1 and event 3001 alone", n, keys)
	}
	for i, v := range vals[:len(vals)-1] {
		count, w := binary.Uvarint(v[1:])
		if v[0] != 0x01 || count > 64 || len(v) > 4000+1+w || keys[i]+count != keys[i+1] {
			t.Fatalf("value under seq %d (%d bytes, next key %d) is not a block of at most 64 events: %x", keys[i], len(v), keys[i+1], v[:min(len(v), 8)])
		}
	}

	j = openBolt(t, path, journal.WithUnsafeNoSync())
	defer j.Close()
	if j.Head() != 3001 {
		t.Fatalf("Head after reopen = %d, want 3001", j.Head())
	}
	if err := j.Check(ctx); err != nil {
		t.Fatal(err)
	}
	for _, from := range []uint64{1, 2, 63, 64, 65, 66, 1000, 2944, 2945, 3000, 3001} {
		envs := journaltest.ReadAll(t, j, from)
		if len(envs) != int(3001-from+1) || envs[0].GetSeq() != from {
			t.Fatalf("Read from %d yielded %d events starting at %d", from, len(envs), envs[0].GetSeq())
		}
	}
	if envs := journaltest.ReadAll(t, j, 3002); len(envs) != 0 {
		t.Fatalf("Read from 3002 yielded %d events", len(envs))
	}
	for p := range 7 {
		id := journaltest.ProxyID(p)
		for _, from := range []uint64{1, 100, 429} {
			envs := journaltest.ReadStreamAll(t, j, id, from)
			for i, e := range envs {
				if e.GetProxyId() != id || e.GetStreamSeq() != from+uint64(i) {
					t.Fatalf("ReadStream(%s, %d) event %d: proxy %s stream_seq %d", id, from, i, e.GetProxyId(), e.GetStreamSeq())
				}
			}
			if want := j.StreamHead(id) - from + 1; uint64(len(envs)) != want {
				t.Fatalf("ReadStream(%s, %d) yielded %d events, want %d", id, from, len(envs), want)
			}
		}
	}
}

// TestBoltRetainCutsBlock: retention that ends inside a block deletes its
// first events only: the rest is stored from the first kept event, which
// becomes the first retained seq, durably.
func TestBoltRetainCutsBlock(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "journal.db")
	j := openBolt(t, path, journal.WithUnsafeNoSync())
	envs := make([]*pb.Envelope, 100)
	for i := range envs {
		envs[i] = journaltest.PoolDegraded(time.Duration(i) * time.Second)
	}
	journaltest.Append(t, j, envs...) // blocks 1..64 and 65..100
	for _, step := range []struct {
		cutoff time.Duration
		n      int
		first  uint64
	}{{30 * time.Second, 30, 31}, {70 * time.Second, 40, 71}, {70 * time.Second, 0, 71}, {99 * time.Second, 29, 100}} {
		n, err := j.Retain(ctx, journaltest.BaseTime.Add(step.cutoff))
		if err != nil {
			t.Fatal(err)
		}
		if n != step.n || j.First() != step.first {
			t.Fatalf("Retain(%v) deleted %d events, first %d; want %d, %d", step.cutoff, n, j.First(), step.n, step.first)
		}
		if err := j.Check(ctx); err != nil {
			t.Fatalf("Check after Retain(%v): %v", step.cutoff, err)
		}
		if got := journaltest.ReadAll(t, j, 1); len(got) != int(101-step.first) || got[0].GetSeq() != step.first {
			t.Fatalf("after Retain(%v) Read yields %d events from %d", step.cutoff, len(got), got[0].GetSeq())
		}
		path := j.Path()
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		if keys, _ := eventValues(t, path); keys[0] != step.first {
			t.Fatalf("after Retain(%v) the first key is %d, want %d", step.cutoff, keys[0], step.first)
		}
		j = openBolt(t, path, journal.WithUnsafeNoSync())
		if j.First() != step.first || j.Head() != 100 {
			t.Fatalf("reopened after Retain(%v): first %d head %d", step.cutoff, j.First(), j.Head())
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestBoltDamagedBlock damages the framing of a block (its event count,
// a record's length): the check names the block or the event, a read
// fails with ErrCorrupt instead of yielding events that are not there,
// and nothing panics.
func TestBoltDamagedBlock(t *testing.T) {
	// The second block, of events k..k+n-1: 0x01, the count n (one byte),
	// then the records' ends (two bytes each). A read fails naming an
	// event of the block.
	for _, tc := range []struct {
		name   string
		damage func(v []byte)
		check  string // in Check's error; {k} is k
	}{
		{"count beyond the records", func(v []byte) { v[1] = 63 }, "event block at seq {k}: its 63 records end at byte"},
		{"count short of the records", func(v []byte) { v[1] = 10 }, "event block at seq {k}: its 10 records end at byte"},
		{"count malformed", func(v []byte) { v[1] = 0x80 }, "event block at seq {k} has a malformed event count"},
		{"count too large", func(v []byte) { v[1] = 0x7f }, "event block at seq {k} has a malformed event count"},
		{"an end beyond the block", func(v []byte) { v[2] = 0x7f }, "event {k}: its record's place in its block (bytes 0 to "},
		{"an end short of its record", func(v []byte) { v[3] -= 3 }, "event {k} fails its checksum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			j := openBolt(t, filepath.Join(t.TempDir(), "journal.db"), journal.WithUnsafeNoSync())
			appendSpread(t, j, 200, 5)
			var k, n uint64
			path := rawUpdate(t, j, func(tx *bolt.Tx) error {
				b := tx.Bucket([]byte("events"))
				c := b.Cursor()
				c.First()
				key, val := c.Next()
				v := bytes.Clone(val)
				if v[0] != 0x01 || v[1] < 20 || v[1] >= 63 {
					return fmt.Errorf("the second value is not a block: %x", v[:4])
				}
				k, n = binary.BigEndian.Uint64(key), uint64(v[1])
				tc.damage(v)
				return b.Put(key, v)
			})
			check := strings.ReplaceAll(tc.check, "{k}", fmt.Sprint(k))
			j = openBolt(t, path, journal.WithReadOnly())
			defer j.Close()
			if err := j.Check(ctx); !errors.Is(err, journal.ErrCorrupt) || !strings.Contains(err.Error(), check) {
				t.Fatalf("Check = %v; want ErrCorrupt naming %q", err, check)
			}
			var readErr error
			got := 0
			for e, err := range j.Read(ctx, 1) {
				if err != nil {
					readErr = err
					break
				}
				if e.GetSeq() >= k {
					t.Fatalf("Read yielded event %d of the damaged block", e.GetSeq())
				}
				got++
			}
			var at uint64
			if readErr != nil {
				if m := regexp.MustCompile(`(?:event|seq) (\d+)`).FindStringSubmatch(readErr.Error()); m != nil {
					at, _ = strconv.ParseUint(m[1], 10, 64)
				}
			}
			if !errors.Is(readErr, journal.ErrCorrupt) || at < k || at > k+n {
				t.Fatalf("Read yielded %d events, then %v; want ErrCorrupt naming an event of %d..%d", got, readErr, k, k+n)
			}
			for p := range 5 {
				for _, err := range j.ReadStream(ctx, journaltest.ProxyID(p), 1) {
					if err != nil && !errors.Is(err, journal.ErrCorrupt) {
						t.Fatalf("ReadStream: %v", err)
					}
				}
			}
		})
	}
}
