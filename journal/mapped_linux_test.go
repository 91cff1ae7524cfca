package journal

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// mappedRSS returns the resident size of this process's mappings of the
// file at path (/proc/self/smaps).
func mappedRSS(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rss int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":"):
			in = fields[len(fields)-1] == path // a mapping's header line
		case in && len(fields) == 3 && fields[0] == "Rss:":
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			rss += kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rss
}

// filledJournal returns a journal without fsync, its file at least size
// bytes, in which every event is of a proxy of its own; ids are the
// proxies, in order.
func filledJournal(t *testing.T, size int64) (b *Bolt, ids []string) {
	t.Helper()
	b = openNoSync(t)
	for i := 0; ; i++ {
		envs := make([]*pb.Envelope, 2000)
		for k := range envs {
			id := fmt.Sprintf("%016x", i*len(envs)+k)
			envs[k] = testEnvelope(id, 0)
			ids = append(ids, id)
		}
		if _, err := b.Append(context.Background(), envs); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(b.path); err != nil {
			t.Fatal(err)
		} else if fi.Size() >= size {
			return b, ids
		}
	}
}

// TestReplayReleasesMappedPages: a read of the whole journal keeps at most
// about releaseReadBytes of the file's pages mapped (resident in the
// process), not every page it read; with the release off, the same read
// keeps the whole file.
func TestReplayReleasesMappedPages(t *testing.T) {
	const size = 8 << 20
	b, _ := filledJournal(t, size)
	readAll := func() {
		t.Helper()
		for _, err := range b.Read(context.Background(), 1) {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	old := releaseReadBytes
	t.Cleanup(func() { releaseReadBytes = old })

	releaseReadBytes = 1 << 62
	if err := b.releaseMapped(); err != nil {
		t.Fatal(err)
	}
	readAll()
	if got := mappedRSS(t, b.path); got < size/2 {
		t.Fatalf("without the release, reading the %d MiB journal left %d KiB of it mapped: the measurement does not see the mapping", size>>20, got>>10)
	}

	releaseReadBytes = 1 << 20
	b.mappedRead.Store(0)
	if err := b.releaseMapped(); err != nil {
		t.Fatal(err)
	}
	readAll()
	if got, most := mappedRSS(t, b.path), 3*releaseReadBytes; got > most {
		t.Fatalf("reading the %d MiB journal left %d KiB of it mapped, want at most %d KiB", size>>20, got>>10, most>>10)
	}
}

// TestStreamReadsReleaseMappedPages: reads at random places of the file
// (streams and snapshots, what a restart's recovery reads for every proxy)
// release the file's mapped pages every scatteredRelease; without the
// release, the same reads keep most of the file mapped.
func TestStreamReadsReleaseMappedPages(t *testing.T) {
	const size = 8 << 20
	b, ids := filledJournal(t, size) // one event each
	// Every 20th proxy's stream: reads about every other page of the file.
	readStreams := func() {
		t.Helper()
		for i := 0; i < len(ids); i += 20 {
			n := 0
			for _, err := range b.ReadStream(context.Background(), ids[i], 1) {
				if err != nil {
					t.Fatal(err)
				}
				n++
			}
			if n != 1 {
				t.Fatalf("proxy %s: %d events, want 1", ids[i], n)
			}
		}
	}

	b.scatteredEvery.Store(int64(time.Hour))
	b.scatteredAt.Store(time.Now().UnixNano())
	if err := b.releaseMapped(); err != nil {
		t.Fatal(err)
	}
	readStreams()
	if got := mappedRSS(t, b.path); got < size/2 {
		t.Fatalf("without the release, reading streams all over the %d MiB journal left %d KiB of it mapped: the measurement does not see the mapping", size>>20, got>>10)
	}

	b.scatteredEvery.Store(0) // every read releases: what the last one read stays
	readStreams()
	if got, most := mappedRSS(t, b.path), int64(1<<20); got > most {
		t.Fatalf("reading streams all over the %d MiB journal left %d KiB of it mapped, want at most %d KiB", size>>20, got>>10, most>>10)
	}
}

// TestCommitsReleaseMappedPages: commits read pages all over the file
// through the mmap (the path to each key they put, pages bbolt reuses from
// anywhere in the file); at most every scatteredRelease the writer drops
// them, so that a steady trickle of commits does not keep growing the
// process's resident set. Without the release, the same commits keep
// pages mapped.
func TestCommitsReleaseMappedPages(t *testing.T) {
	b, ids := filledJournal(t, 8<<20)
	next := make(map[string]uint64, len(ids))
	commit := func(rounds int) {
		t.Helper()
		for r := range rounds {
			envs := make([]*pb.Envelope, 100)
			for k := range envs {
				id := ids[(r*7919+k*104729)%len(ids)]
				next[id]++
				envs[k] = testEnvelope(id, next[id]+1)
			}
			if _, err := b.Append(context.Background(), envs); err != nil {
				t.Fatal(err)
			}
		}
	}

	b.scatteredEvery.Store(int64(time.Hour))
	b.scatteredAt.Store(time.Now().UnixNano())
	if err := b.releaseMapped(); err != nil {
		t.Fatal(err)
	}
	commit(200)
	without := mappedRSS(t, b.path)
	if without < 256<<10 {
		t.Fatalf("without the release, 200 commits left %d KiB of the journal mapped: the measurement does not see what commits map", without>>10)
	}

	b.scatteredEvery.Store(0) // every commit releases
	commit(200)
	if got := mappedRSS(t, b.path); got > without/4 {
		t.Fatalf("200 commits left %d KiB of the journal mapped, the same commits without the release %d KiB: want at most a quarter", got>>10, without>>10)
	}
}

// TestCheckpointChunksReleaseMappedPages: a heads checkpoint's chunks read
// pages all over the heads bucket (and the kernel maps the pages around
// each); the writer drops them after each chunk's commit, without waiting
// for scatteredRelease, so that a round does not add the whole bucket to
// the resident set at once.
func TestCheckpointChunksReleaseMappedPages(t *testing.T) {
	b, ids := filledJournal(t, 4<<20)
	b.scatteredEvery.Store(int64(time.Hour)) // only the chunks release
	// dirty changes every head, so that a checkpoint puts them all.
	dirty := func() {
		t.Helper()
		for i := 0; i < len(ids); i += 2000 {
			envs := make([]*pb.Envelope, 0, 2000)
			for _, id := range ids[i:min(i+2000, len(ids))] {
				envs = append(envs, testEnvelope(id, 0))
			}
			if _, err := b.Append(context.Background(), envs); err != nil {
				t.Fatal(err)
			}
		}
	}
	checkpoint := func() int64 {
		t.Helper()
		if err := b.releaseMapped(); err != nil {
			t.Fatal(err)
		}
		if err := b.submit(context.Background(), &request{ckpt: true, done: make(chan struct{})}); err != nil {
			t.Fatal(err)
		}
		return mappedRSS(t, b.path)
	}
	if len(ids) < 3*checkpointChunk {
		t.Fatalf("%d streams: a checkpoint would take fewer than three chunks", len(ids))
	}

	releaseChunks = false
	t.Cleanup(func() { releaseChunks = true })
	dirty()
	without := checkpoint()
	if without < 256<<10 {
		t.Fatalf("without the release, a checkpoint of %d heads left %d KiB of the journal mapped: the measurement does not see what chunks map", len(ids), without>>10)
	}
	releaseChunks = true
	dirty()
	got := checkpoint()
	t.Logf("a checkpoint of %d heads in %d chunks: %d KiB of the journal mapped after it, %d KiB without the release after each chunk", len(ids), (len(ids)+checkpointChunk-1)/checkpointChunk, got>>10, without>>10)
	if got > without/3 {
		t.Fatalf("a checkpoint of %d heads left %d KiB of the journal mapped, the same without the release after each chunk %d KiB: want at most a third", len(ids), got>>10, without>>10)
	}
}
