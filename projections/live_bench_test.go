package projections_test

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/internal/gen"
	"github.com/proxyhealth/proxyhealth/projections"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

const benchProxies = 100_000

// pool builds envelopes for a pool of n proxies in 20 sources: each is
// added, checked `checks` times (1 in 10 proxies failing) and changes state
// every 4th check. It calls emit with each committed envelope.
type poolGen struct {
	seq     uint64
	streams []uint64
	now     time.Time
	r       *rand.Rand
	// allChange makes every proxy (not only every third) change state.
	allChange bool
}

func newPoolGen() *poolGen { return &poolGen{now: gen.T0, r: rand.New(rand.NewPCG(1, 2))} }

func (g *poolGen) next(i int, at time.Time, ev any) *pb.Envelope {
	for len(g.streams) <= i {
		g.streams = append(g.streams, 0)
	}
	g.seq++
	g.streams[i]++
	e := env(g.seq, g.streams[i], at, gen.ID(i), ev)
	e.Source = fmt.Sprintf("source-%02d", i%20)
	return e
}

// add returns proxy i's ProxyAdded and its first transition, to healthy.
func (g *poolGen) add(i int) []*pb.Envelope {
	return []*pb.Envelope{
		g.next(i, g.now, &pb.ProxyAdded{UrlRedacted: gen.URL(i), Source: fmt.Sprintf("source-%02d", i%20)}),
		g.next(i, g.now, change(unknown, healthy)),
	}
}

// check returns one check of proxy i, and a state change every 4th round.
func (g *poolGen) check(i, round int) []*pb.Envelope {
	g.now = g.now.Add(300 * time.Microsecond)
	var out []*pb.Envelope
	if i%10 == 0 && g.r.IntN(2) == 0 {
		out = append(out, g.next(i, g.now, fail(timeout)))
	} else {
		out = append(out, g.next(i, g.now, ok(20+g.r.IntN(300))))
	}
	if round%4 == 3 && (i%3 == 0 || g.allChange) {
		from, to := healthy, degraded
		if round%8 == 7 {
			from, to = degraded, healthy
		}
		c := change(from, to)
		c.Reason = fmt.Sprintf("round %d: %d consecutive results", round, g.r.IntN(5))
		out = append(out, g.next(i, g.now, c))
	}
	return out
}

// buildPool applies n proxies with `rounds` checks each to a new Live.
func buildPool(n, rounds int) *projections.Live {
	l := projections.NewLive(projections.LiveOptions{})
	g := newPoolGen()
	for i := range n {
		l.Apply(g.add(i)...)
	}
	for round := range rounds {
		for i := range n {
			l.Apply(g.check(i, round)...)
		}
	}
	return l
}

var (
	poolOnce sync.Once
	pool100k *projections.Live
)

func shared100k() *projections.Live {
	poolOnce.Do(func() { pool100k = buildPool(benchProxies, 4) })
	return pool100k
}

func p99(d []time.Duration) float64 {
	slices.Sort(d)
	return float64(d[len(d)*99/100])
}

// BenchmarkSummary measures Summary at 100,000 proxies in 20 sources and
// reports the 99th percentile latency of single calls (target: 50 µs).
func BenchmarkSummary(b *testing.B) {
	l := shared100k()
	d := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t := time.Now()
		s := l.Summary()
		d = append(d, time.Since(t))
		if s.Total != benchProxies {
			b.Fatal(s.Total)
		}
	}
	b.StopTimer()
	b.ReportMetric(p99(d), "p99-ns")
}

// BenchmarkSummaryUnderLoad is BenchmarkSummary while a feeder applies
// check results as fast as it can.
func BenchmarkSummaryUnderLoad(b *testing.B) {
	l := buildPool(benchProxies, 1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	var applied int
	go func() {
		defer wg.Done()
		g := newPoolGen()
		g.seq, g.streams = 1<<40, make([]uint64, benchProxies)
		for i := range benchProxies {
			g.streams[i] = 1 << 20
		}
		for round := 0; ; round++ {
			for i := range benchProxies {
				if i%256 == 0 {
					select {
					case <-stop:
						return
					default:
					}
				}
				envs := g.check(i, round)
				l.Apply(envs...)
				applied += len(envs)
			}
		}
	}()
	d := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		t := time.Now()
		l.Summary()
		d = append(d, time.Since(t))
	}
	elapsed := time.Since(start)
	b.StopTimer()
	close(stop)
	wg.Wait()
	b.ReportMetric(p99(d), "p99-ns")
	b.ReportMetric(float64(applied)/elapsed.Seconds(), "feeder-events/s")
}

// BenchmarkApply measures Apply throughput on a pool of 100,000 proxies.
func BenchmarkApply(b *testing.B) {
	l := buildPool(benchProxies, 1)
	g := newPoolGen()
	g.seq, g.streams = 1<<40, make([]uint64, benchProxies)
	for i := range benchProxies {
		g.streams[i] = 1 << 20
	}
	batch := make([][]*pb.Envelope, 0, 4096)
	for i := range 4096 {
		batch = append(batch, g.check(i*24%benchProxies, i))
	}
	b.ResetTimer()
	n := 0
	seq := g.seq
	for i := range b.N {
		envs := batch[i%len(batch)]
		for _, e := range envs {
			seq++
			e.Seq = seq
			e.StreamSeq += 1 << 10
		}
		l.Apply(envs...)
		n += len(envs)
	}
	b.StopTimer()
	if l.Seq() != seq {
		b.Fatalf("applied up to seq %d, want %d: envelopes were skipped", l.Seq(), seq)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkList measures one page of 100 healthy proxies at 100,000
// proxies: the first page, and a page deep in the list.
func BenchmarkList(b *testing.B) {
	l := shared100k()
	l.List(projections.ListFilter{}, 0, 1) // build the sorted index
	for _, bc := range []struct {
		name   string
		offset int
	}{{"first-page", 0}, {"offset-40000", 40000}} {
		b.Run(bc.name, func(b *testing.B) {
			d := make([]time.Duration, 0, b.N)
			for range b.N {
				t := time.Now()
				total, page := l.List(projections.ListFilter{State: "healthy"}, bc.offset, 100)
				d = append(d, time.Since(t))
				if len(page) != 100 || total < bc.offset {
					b.Fatal(total, len(page))
				}
			}
			b.ReportMetric(p99(d), "p99-ns")
		})
	}
}

// BenchmarkLiveMemory reports the heap held per proxy at 100,000 proxies
// with full histories (64 check results, 16 state changes, all rate
// buckets in use).
func BenchmarkLiveMemory(b *testing.B) {
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		l := projections.NewLive(projections.LiveOptions{})
		g := newPoolGen()
		g.allChange = true
		for i := range benchProxies {
			l.Apply(g.add(i)...)
		}
		// 64 rounds spread over 25 hours: every check record, state change
		// and rate bucket slot is in use.
		for round := range 64 {
			g.now = gen.T0.Add(time.Duration(round) * 25 * time.Hour / 64)
			for i := range benchProxies {
				l.Apply(g.check(i, round)...)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if l.Summary().Total != benchProxies {
			b.Fatal("wrong total")
		}
		if n := len(l.StateChanges(gen.ID(1), 0)); n != projections.DefaultStateChangeCap {
			b.Fatalf("state changes %d", n)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/benchProxies, "bytes/proxy")
		runtime.KeepAlive(l)
	}
}

var _ = events.StateName
