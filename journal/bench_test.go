package journal_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/journal/journaltest"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// cpuTime returns the CPU time (user + system) the process used so far.
// Reported per event next to events/s, it shows the cost independently of
// other load on the machine.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchProxies is how many proxies the benchmarks spread events over.
const benchProxies = 1000

// snapshotEvery is the proxy actors' default snapshot interval
// (actors.DefaultSnapshotEvery): a restarting actor reads at most that many
// events after its snapshot.
const snapshotEvery = 100

// BenchmarkAppend measures durable appends (fsync on) with concurrent
// appenders, like proxy actors: appender g owns the proxies g, g+appenders,
// ... of benchProxies and each call carries batch events of one proxy (an
// actor flushing its events), the next call the next proxy. Group commit
// batches the calls of all appenders into shared transactions.
func BenchmarkAppend(b *testing.B) {
	for _, batch := range []int{1, 100} {
		for _, appenders := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("batch=%d/appenders=%d", batch, appenders), func(b *testing.B) {
				benchAppend(b, benchProxies, appenders, batch, false)
			})
		}
	}
}

// BenchmarkAppendSpread is BenchmarkAppend with each call's events spread
// over batch different proxies (as a pool-wide writer would): the worst
// case for the per-proxy stream index, whose pages are touched at random.
func BenchmarkAppendSpread(b *testing.B) {
	for _, appenders := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("batch=100/appenders=%d", appenders), func(b *testing.B) {
			benchAppend(b, benchProxies, appenders, 100, true)
		})
	}
}

// BenchmarkAppendPool appends as a pool of proxies does: every call is one
// proxy's one event (a check's outcome), 64 appenders take the proxies in
// turn, and every proxy has its event before any has its next (a sweep).
// With many proxies, the heads checkpoints touch pages all over the heads
// bucket; run it with -benchtime of several times 4 × proxies events (for
// example -benchtime 2000000x at 100,000) to include them.
func BenchmarkAppendPool(b *testing.B) {
	for _, proxies := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("proxies=%d", proxies), func(b *testing.B) {
			benchAppend(b, proxies, 64, 1, false)
		})
	}
}

func benchAppend(b *testing.B, proxies, appenders, batch int, spread bool) {
	j, err := journal.OpenBolt(filepath.Join(b.TempDir(), "journal.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	ctx := context.Background()
	ids := make([]string, proxies)
	for i := range ids {
		ids[i] = journaltest.ProxyID(i)
	}
	var remaining atomic.Int64
	remaining.Store(int64(b.N))
	var wg sync.WaitGroup
	errs := make(chan error, appenders)
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	for g := range appenders {
		wg.Go(func() {
			// Fresh envelopes for every call, as actors make them: a
			// journal may keep appended envelopes for its subscriptions,
			// so they are never modified after Append.
			envs := make([]*pb.Envelope, batch)
			proxy := g
			nextProxy := func() string {
				p := ids[proxy]
				if proxy += appenders; proxy >= proxies {
					proxy = g
				}
				return p
			}
			for {
				n := remaining.Add(-int64(batch))
				if n <= -int64(batch) {
					return
				}
				call := envs
				if n < 0 {
					call = envs[:batch+int(n)]
				}
				p := nextProxy()
				for i := range call {
					e := journaltest.Succeeded("", time.Duration(i)*time.Second)
					call[i] = e
					e.ProxyId = p
					if spread {
						p = nextProxy()
					}
				}
				if _, err := j.Append(ctx, call); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	if j.Head() != uint64(b.N) {
		b.Fatalf("Head = %d after %d appends", j.Head(), b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/event")
}

// replayEvents is the size of the journal replayed by BenchmarkReplay.
const replayEvents = 1_000_000

var (
	replayOnce sync.Once
	replayDir  string
	replayErr  error
)

// replayJournal returns the path of a journal pre-filled once with
// replayEvents realistic envelopes (9 in 10 CheckSucceeded, else
// CheckFailed) over benchProxies proxies. TestMain removes it.
func replayJournal(b *testing.B) string {
	replayOnce.Do(func() {
		replayDir, replayErr = os.MkdirTemp("", "journal-bench-")
		if replayErr != nil {
			return
		}
		path := filepath.Join(replayDir, "journal.db")
		// Filling is not what is measured: skip fsync.
		j, err := journal.OpenBolt(path, journal.WithUnsafeNoSync())
		if err != nil {
			replayErr = err
			return
		}
		defer func() {
			if err := j.Close(); err != nil && replayErr == nil {
				replayErr = err
			}
		}()
		envs := make([]*pb.Envelope, 0, 8192)
		for i := range replayEvents {
			p := journaltest.ProxyID(i % benchProxies)
			at := time.Duration(i) * 30 * time.Millisecond
			if i%10 == 9 {
				envs = append(envs, journaltest.Failed(p, at))
			} else {
				envs = append(envs, journaltest.Succeeded(p, at))
			}
			if len(envs) == cap(envs) || i == replayEvents-1 {
				if _, err := j.Append(context.Background(), envs); err != nil {
					replayErr = err
					return
				}
				envs = envs[:0]
			}
		}
	})
	if replayErr != nil {
		b.Fatal(replayErr)
	}
	return filepath.Join(replayDir, "journal.db")
}

// removeReplayJournal deletes the BenchmarkReplay journal.
func removeReplayJournal() {
	if replayDir != "" {
		_ = os.RemoveAll(replayDir)
	}
}

// BenchmarkReplay measures Read of the whole journal from seq 1, including
// protobuf decoding; one op is one full replay of replayEvents envelopes.
func BenchmarkReplay(b *testing.B) {
	path := replayJournal(b)
	j, err := journal.OpenBolt(path, journal.WithReadOnly())
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	ctx := context.Background()
	b.ReportAllocs()
	var events int
	start, cpu0 := time.Now(), cpuTime()
	for b.Loop() {
		var last uint64
		var latency int64
		for e, err := range j.Read(ctx, 1) {
			if err != nil {
				b.Fatal(err)
			}
			last = e.GetSeq()
			latency += e.GetCheckSucceeded().GetLatency().GetTotalNs()
		}
		if last != replayEvents || latency == 0 {
			b.Fatalf("replay ended at seq %d", last)
		}
		events += replayEvents
	}
	b.ReportMetric(float64(events)/time.Since(start).Seconds(), "events/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(events), "cpu-ns/event")
}

// BenchmarkReadStream measures ReadStream of one proxy's whole stream
// (replayEvents/benchProxies envelopes) in the replay journal: an auditor
// reading a proxy's history.
func BenchmarkReadStream(b *testing.B) { benchReadStream(b, 1) }

// BenchmarkReadStreamTail measures ReadStream of the last 100 events of a
// proxy's stream: what a proxy actor reads after its snapshot when it
// (re)starts.
func BenchmarkReadStreamTail(b *testing.B) {
	benchReadStream(b, replayEvents/benchProxies-snapshotEvery+1)
}

func benchReadStream(b *testing.B, from uint64) {
	path := replayJournal(b)
	j, err := journal.OpenBolt(path, journal.WithReadOnly())
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	ctx := context.Background()
	want := replayEvents/benchProxies - int(from) + 1
	b.ReportAllocs()
	var events, i int
	start, cpu0 := time.Now(), cpuTime()
	for b.Loop() {
		p := journaltest.ProxyID(i % benchProxies)
		i++
		n := 0
		for _, err := range j.ReadStream(ctx, p, from) {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != want {
			b.Fatalf("stream of %s from %d has %d events, want %d", p, from, n, want)
		}
		events += n
	}
	b.ReportMetric(float64(events)/time.Since(start).Seconds(), "events/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(events), "cpu-ns/event")
}
