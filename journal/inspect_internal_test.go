package journal

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// bigJournal is a journal of 1,000,000 events of 10,000 proxies, built
// once per test binary in the temporary directory.
var bigJournal = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "journal-big-")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "journal.db")
	j, err := OpenBolt(path, WithUnsafeNoSync())
	if err != nil {
		return "", err
	}
	defer j.Close()
	batch := make([]*pb.Envelope, 1000)
	for i := range 1000 {
		for k := range batch {
			batch[k] = testEnvelope(fmt.Sprintf("%016x", (i*1000+k)%10000), 0)
		}
		if _, err := j.Append(context.Background(), batch); err != nil {
			return "", err
		}
	}
	return path, j.Close()
})

// BenchmarkInspect measures the structural walk at open on a journal of
// 1,000,000 events (see walkDepth).
func BenchmarkInspect(b *testing.B) {
	path, err := bigJournal()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(filepath.Dir(path)) })
	st, _ := os.Stat(path)
	b.Logf("journal of 1,000,000 events: %d MiB", st.Size()>>20)
	for _, d := range []struct {
		name  string
		depth walkDepth
	}{{"meta", walkMeta}, {"branches", walkBranches}, {"full", walkFull}} {
		b.Run(d.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := inspectFile(path, d.depth); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("OpenBolt", func(b *testing.B) {
		for b.Loop() {
			j, err := OpenBolt(path)
			if err != nil {
				b.Fatal(err)
			}
			j.Close()
		}
	})
}

// BenchmarkRecordChecksum measures what the record checksum costs per
// event: framing a typical envelope on append, verifying it on read.
func BenchmarkRecordChecksum(b *testing.B) {
	e := testEnvelope("00000000000000aa", 7)
	e.Seq, e.PrevSeq = 123456, 123400
	payload, err := proto.Marshal(e)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("envelope of %d bytes", len(payload))
	rec := frameRecord(payload)
	buf := make([]byte, 0, 256)
	b.Run("frame", func(b *testing.B) {
		for b.Loop() {
			buf = append(beginRecord(buf[:0]), payload...)
			finishRecord(buf)
		}
	})
	b.Run("verify", func(b *testing.B) {
		for b.Loop() {
			if _, err := eventPayload(rec, 123456, 1); err != nil {
				b.Fatal(err)
			}
		}
	})
}
