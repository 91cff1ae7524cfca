package rotation_test

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/rotation"
)

// bigStatus is member i's status in a benchmark pool: 90 % healthy, 5 %
// degraded, 5 % unhealthy; varied latency and success rate; 1 % never
// checked.
func bigStatus(i int, round int) rotation.Status {
	st := healthy()
	switch i % 20 {
	case 0:
		st.State, st.ConsecutiveFailures = rotation.StateUnhealthy, 3
	case 1:
		st.State, st.ConsecutiveFailures = rotation.StateDegraded, 1
	}
	st.LatencyEWMA = time.Duration(20+(i*7919+round)%500) * time.Millisecond
	st.SuccessRate = float64(50+(i*31+round)%51) / 100
	if i%100 == 99 {
		st.Checks, st.LatencyEWMA, st.SuccessRate = 0, 0, 0
	}
	return st
}

func bigMember(i int) rotation.Member {
	scheme := "http"
	if i%3 == 0 {
		scheme = "socks5"
	}
	return member(i, fmt.Sprint("src", i%10), scheme, fmt.Sprint("t", i%20), fmt.Sprint("t", 20+i%7))
}

func bigPool(tb testing.TB, n int, thr float64) *rotation.Pool {
	tb.Helper()
	o := rotation.DefaultOptions()
	o.PanicThreshold = thr
	p := newPool(tb, o)
	for i := range n {
		p.Set(bigMember(i), bigStatus(i, 0))
	}
	p.Publish()
	return p
}

// The pick variants the allocation test and the benchmarks run.
var variants = []struct {
	name string
	req  rotation.Request
}{
	{"all", rotation.Request{}},
	{"source", rotation.Request{Source: "src3"}},
	{"tag", rotation.Request{Tag: "t7"}},
	{"source+scheme+tag", rotation.Request{Source: "src3", Scheme: "http", Tag: "t13"}},
	{"exclude", rotation.Request{Exclude: []string{id(1), id(2), id(3)}}},
	// Every member tagged t0 is unhealthy: these groups are in panic mode.
	{"panic-tag", rotation.Request{Tag: "t0"}},
	{"panic-source+tag", rotation.Request{Source: "src0", Tag: "t0"}},
}

// Pick and PickN allocate nothing, for every strategy, filtered or not, in
// and out of panic mode.
func TestPickDoesNotAllocate(t *testing.T) {
	for _, thr := range []float64{0.5, 0.99} { // 0.99: the pool and its groups are in panic mode
		p := bigPool(t, 10000, thr)
		if want := thr == 0.99; p.Panic().Active != want {
			t.Fatalf("threshold %v: panic %+v", thr, p.Panic())
		}
		dst := make([]rotation.Pick, 5)
		for _, v := range variants {
			for _, s := range rotation.Strategies {
				req := v.req
				req.Strategy, req.Key = s, "some-session-key"
				wantPanic := strings.HasPrefix(v.name, "panic") || (v.name == "all" || v.name == "exclude") && thr == 0.99
				if pk, err := p.Pick(req); err != nil || pk.Panic != wantPanic {
					t.Fatalf("threshold %v %s/%s: panic %v (want %v), %v", thr, v.name, s, pk.Panic, wantPanic, err)
				}
				if s == rotation.Sticky {
					// The group has no ring yet: its picks scan (a few
					// runs, each O(members)); then Publish builds it.
					if a := testing.AllocsPerRun(5, func() { _, _ = p.PickN(req, dst) }); a != 0 {
						t.Errorf("threshold %v %s/%s: PickN without a ring allocates %v times", thr, v.name, s, a)
					}
					p.Publish()
				}
				if a := testing.AllocsPerRun(200, func() { _, _ = p.Pick(req) }); a != 0 {
					t.Errorf("threshold %v %s/%s: Pick allocates %v times", thr, v.name, s, a)
				}
				if a := testing.AllocsPerRun(200, func() { _, _ = p.PickN(req, dst) }); a != 0 {
					t.Errorf("threshold %v %s/%s: PickN allocates %v times", thr, v.name, s, a)
				}
			}
		}
		// A request built per call, its Exclude too, stays on the stack.
		x1, x2 := id(1), id(2)
		if a := testing.AllocsPerRun(200, func() {
			_, _ = p.Pick(rotation.Request{Strategy: rotation.Sticky, Key: x1, Source: "src1", Tag: "t21", Exclude: []string{x1, x2}})
		}); a != 0 {
			t.Errorf("threshold %v: a request literal with Exclude allocates %v times", thr, a)
		}
	}
}

// Readers pick while the writer changes members and publishes, under
// -race. Every pick is a member that exists (IDs p000000..p000199), and
// ErrNoProxy is the only error.
func TestPickWhileWriting(t *testing.T) {
	p := newPool(t, opts(0.5))
	for i := range 200 {
		p.Set(bigMember(i), bigStatus(i, 0))
	}
	p.Publish()
	var stop atomic.Bool
	var wg sync.WaitGroup
	var picked atomic.Int64
	errs := make(chan error, 4)
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := make([]rotation.Pick, 3)
			for k := 0; !stop.Load(); k++ {
				req := variants[k%len(variants)].req
				req.Strategy, req.Key = rotation.Strategies[(k+r)%5], fmt.Sprint(k%50)
				n, err := p.PickN(req, dst)
				if err != nil && err != rotation.ErrNoProxy {
					errs <- err
					return
				}
				for _, pk := range dst[:n] {
					if pk.ID < id(0) || pk.ID > id(199) || pk.URL == nil {
						errs <- fmt.Errorf("picked %q", pk.ID)
						return
					}
				}
				picked.Add(int64(n))
			}
		}()
	}
	for round := 1; round <= 300; round++ {
		for i := round % 7; i < 200; i += 7 {
			st := bigStatus(i, round)
			if (i+round)%5 == 0 {
				st.State = rotation.StateUnhealthy
			}
			st.Paused = (i+round)%31 == 0
			p.Set(bigMember(i), st)
		}
		if round%10 == 0 {
			p.Remove(id(round % 200))
		}
		p.Publish()
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if picked.Load() == 0 {
		t.Fatal("the readers picked nothing")
	}
}

var sizes = []int{10000, 100000}

// BenchmarkPick measures single picks: ns/op is the mean; p99-ns is the
// 99th percentile of individually timed picks (each timing includes two
// clock reads, about 40 ns here).
func BenchmarkPick(b *testing.B) {
	benchPick(b, []string{"all"})
}

// BenchmarkPickFiltered is BenchmarkPick with filters and exclusions.
func BenchmarkPickFiltered(b *testing.B) {
	benchPick(b, []string{"source", "tag", "source+scheme+tag", "exclude"})
}

func benchPick(b *testing.B, which []string) {
	for _, s := range rotation.Strategies {
		for _, v := range variants {
			if !slices.Contains(which, v.name) {
				continue
			}
			for _, n := range sizes {
				name := fmt.Sprintf("%s/n=%d", s, n)
				if len(which) > 1 {
					name = fmt.Sprintf("%s/%s/n=%d", s, v.name, n)
				}
				b.Run(name, func(b *testing.B) {
					p := cachedPool(b, n)
					req := v.req
					req.Strategy = s
					if s == rotation.Sticky {
						// The steady state: the first sticky pick asked
						// for the group's ring, a Publish built it.
						req.Key = "warm-up"
						if _, err := p.Pick(req); err != nil {
							b.Fatal(err)
						}
						p.Publish()
					}
					keys := make([]string, 1024)
					for i := range keys {
						keys[i] = fmt.Sprint("session-", i)
					}
					const sample = 1 << 16
					times := make([]int64, 0, sample)
					b.ReportAllocs()
					b.ResetTimer()
					for i := 0; b.Loop(); i++ {
						req.Key = keys[i&1023]
						if i&3 == 0 && len(times) < sample {
							t0 := time.Now()
							_, err := p.Pick(req)
							times = append(times, int64(time.Since(t0)))
							if err != nil {
								b.Fatal(err)
							}
							continue
						}
						if _, err := p.Pick(req); err != nil {
							b.Fatal(err)
						}
					}
					b.StopTimer()
					slices.Sort(times)
					if len(times) > 0 {
						b.ReportMetric(float64(times[len(times)*99/100]), "p99-ns")
					}
				})
			}
		}
	}
}

var (
	poolsMu sync.Mutex
	pools   = map[int]*rotation.Pool{}
)

// cachedPool builds each benchmark pool once per run.
func cachedPool(b *testing.B, n int) *rotation.Pool {
	poolsMu.Lock()
	defer poolsMu.Unlock()
	if p := pools[n]; p != nil {
		return p
	}
	p := bigPool(b, n, 0.5)
	pools[n] = p
	return p
}

// BenchmarkPickParallel picks from every core at once.
func BenchmarkPickParallel(b *testing.B) {
	for _, s := range rotation.Strategies {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/n=%d", s, n), func(b *testing.B) {
				p := cachedPool(b, n)
				if s == rotation.Sticky { // the ring, as in BenchmarkPick
					if _, err := p.Pick(rotation.Request{Strategy: s, Key: "warm-up"}); err != nil {
						b.Fatal(err)
					}
					p.Publish()
				}
				var ctr atomic.Int64
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					req := rotation.Request{Strategy: s, Key: fmt.Sprint("session-", ctr.Add(1))}
					for pb.Next() {
						if _, err := p.Pick(req); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

// BenchmarkPublish measures one writer step: "stats" changes the
// statistics of 100 members and publishes (a refresh is due once per
// DefaultStatsRefresh); "stats-refresh" the same with StatsRefresh 0, so
// every Publish recomputes the weights of the groups touched;
// "structural" turns 10 members unusable or usable again and publishes
// (usable lists, weights and panic data of their groups rebuilt);
// "add-remove" removes one member or adds it back (rings spliced too).
// Members are spread over 10 sources, 2 schemes and 27 tags, except in
// "structural-one-source": one source, one scheme, no tags (the daemon
// benchmark's pool), whose source and scheme groups are the pool's.
func BenchmarkPublish(b *testing.B) {
	for _, kind := range []string{"stats", "stats-refresh", "structural", "structural-one-source", "add-remove"} {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/n=%d", kind, n), func(b *testing.B) {
				o := rotation.DefaultOptions()
				if kind == "stats-refresh" {
					o.StatsRefresh = 0
				}
				p := newPool(b, o)
				// Members are built once (as the engine holds them), and
				// a few thousand spares for add-remove.
				ms := make([]rotation.Member, n+4096)
				for i := range ms {
					ms[i] = bigMember(i)
					if kind == "structural-one-source" {
						ms[i] = member(i, "src", "http")
					}
				}
				for i := range n {
					p.Set(ms[i], bigStatus(i, 0))
				}
				p.Publish()
				b.ReportAllocs()
				b.ResetTimer()
				for round := 1; b.Loop(); round++ {
					switch kind {
					case "stats", "stats-refresh":
						for j := range 100 {
							i := (round*100 + j) % n
							st := bigStatus(i, round)
							st.State = bigStatus(i, 0).State
							p.Set(ms[i], st)
						}
					case "structural", "structural-one-source":
						for j := range 10 {
							i := (round*10 + j) % n
							st := bigStatus(i, 0)
							if round&1 == 1 {
								st.State = rotation.StateUnhealthy
							}
							p.Set(ms[i], st)
						}
					case "add-remove":
						// Remove member r, add it back next round.
						r := round / 2 % n
						if round&1 == 1 {
							p.Remove(ms[r].ID)
						} else {
							p.Set(ms[r], bigStatus(r, 0))
						}
					}
					p.Publish()
				}
			})
		}
	}
}

// BenchmarkMemoryPerProxy reports the heap a pool holds per member (each
// member on 5 groups: the pool, a source, a scheme and two tags), the
// Members themselves included (their strings are the caller's, shared;
// the picker keeps one copy of each distinct Tags list). sticky=none: no sticky pick, so no
// ring; sticky=all: sticky picks on the whole pool (one ring); sticky=every:
// sticky picks filtered by each source, scheme and tag too (every group a
// ring, the most a pool can hold); one-source: no sticky pick, every
// member in one source and one scheme, without tags (the pool's source and
// scheme groups are the pool's own).
func BenchmarkMemoryPerProxy(b *testing.B) {
	for _, sticky := range []string{"none", "all", "every", "one-source"} {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("sticky=%s/n=%d", sticky, n), func(b *testing.B) {
				members := make([]rotation.Member, n)
				for i := range members {
					members[i] = bigMember(i)
					if sticky == "one-source" {
						members[i] = member(i, "src", "http")
					}
				}
				for b.Loop() {
					b.ReportMetric(float64(poolHeap(b, members, sticky))/float64(n), "B/proxy")
				}
			})
		}
	}
}

// poolHeap builds a pool of members, makes the sticky picks the variant
// says and publishes; it returns the heap the pool holds.
func poolHeap(tb testing.TB, members []rotation.Member, sticky string) uint64 {
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	p := newPool(tb, rotation.DefaultOptions())
	for i, m := range members {
		p.Set(m, bigStatus(i, 0))
	}
	p.Publish()
	var reqs []rotation.Request
	switch sticky {
	case "all":
		reqs = []rotation.Request{{}}
	case "every":
		reqs = []rotation.Request{{}, {Scheme: "http"}, {Scheme: "socks5"}}
		for i := range 10 {
			reqs = append(reqs, rotation.Request{Source: fmt.Sprint("src", i)})
		}
		for i := range 27 {
			reqs = append(reqs, rotation.Request{Tag: fmt.Sprint("t", i)})
		}
	}
	for _, req := range reqs {
		req.Strategy, req.Key = rotation.Sticky, "k"
		if _, err := p.Pick(req); err != nil {
			tb.Fatal(err)
		}
	}
	p.Publish()
	runtime.GC()
	runtime.ReadMemStats(&m1)
	runtime.KeepAlive(p)
	return m1.HeapAlloc - m0.HeapAlloc
}

// Without sticky picks a pool holds no consistent-hash ring: under 1,000 B
// per member at 10,000 members (with a ring on each of its 5 groups, 16
// points each, a member cost about 1,850 B), and a sticky pick on the
// whole pool adds one ring only (16 points × 16 B).
func TestPoolMemoryWithoutStickyPicks(t *testing.T) {
	members := make([]rotation.Member, 10000)
	for i := range members {
		members[i] = bigMember(i)
	}
	none := float64(poolHeap(t, members, "none")) / float64(len(members))
	all := float64(poolHeap(t, members, "all")) / float64(len(members))
	t.Logf("%.0f B per member without sticky picks, %.0f with sticky picks on the whole pool", none, all)
	if none > 1000 {
		t.Errorf("a pool without sticky picks holds %.0f B per member, want < 1000", none)
	}
	if ring := 16 * 16.0; all-none > 1.5*ring {
		t.Errorf("sticky picks on the whole pool cost %.0f B per member more, want about %.0f (one ring)", all-none, ring)
	}
}
