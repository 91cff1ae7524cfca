package projections

import (
	"context"
	"fmt"
	"hash/maphash"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/proxyhealth/proxyhealth/internal/gen"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/journal"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// memProxies is the pool of the bytes-per-proxy benchmarks below, which
// fold 10 events a proxy, as BenchmarkLiveBytesPerProxy does.
const memProxies = 10_000

// memEvents returns 10 random events a proxy for memProxies proxies, as
// committed to the journal it returns (seqs and stream seqs set; the
// caller closes it).
func memEvents(b *testing.B) (*journal.Mem, []*pb.Envelope) {
	b.Helper()
	j := journal.NewMem()
	ctx := context.Background()
	if _, err := j.Append(ctx, gen.NewSim(1, memProxies).Events(10*memProxies)); err != nil {
		b.Fatal(err)
	}
	var envs []*pb.Envelope
	for e, err := range j.Read(ctx, 1) {
		if err != nil {
			b.Fatal(err)
		}
		envs = append(envs, e)
	}
	return j, envs
}

// foldBytesPerProxy reports the Go heap a projection keeps per proxy
// after fold has folded the events of memEvents into a new one (the
// events stay alive outside the measurement, so strings shared with them
// are not counted). fold returns the projection, to be kept alive until
// measured, and whether it holds proxies; stop closes it.
func foldBytesPerProxy(b *testing.B, fold func(j journal.Journal, envs []*pb.Envelope) (p any, holds bool), stop func(p any)) {
	j, envs := memEvents(b)
	defer j.Close()
	var perProxy float64
	for range b.N {
		before := testutil.HeapInUse()
		p, holds := fold(j, envs)
		perProxy = float64(testutil.HeapInUse()-before) / memProxies
		if !holds {
			b.Fatal("no proxies")
		}
		runtime.KeepAlive(p)
		stop(p)
	}
	b.ReportMetric(perProxy, "B/proxy")
}

// BenchmarkNotifierBytesPerProxy reports the Go heap the notifier's
// per-proxy episode state keeps per proxy after folding the events of
// memEvents (through apply, what Run calls for each event).
func BenchmarkNotifierBytesPerProxy(b *testing.B) {
	ctx := context.Background()
	foldBytesPerProxy(b, func(j journal.Journal, envs []*pb.Envelope) (any, bool) {
		n, err := NewNotifier(j, NotifierOptions{})
		if err != nil {
			b.Fatal(err)
		}
		for _, env := range envs {
			n.apply(ctx, env)
		}
		return n, len(n.proxies) > 0
	}, func(n any) { n.(*Notifier).Close(ctx) })
}

// BenchmarkPoolMonitorBytesPerProxy is BenchmarkNotifierBytesPerProxy for
// the pool monitor's counts.
func BenchmarkPoolMonitorBytesPerProxy(b *testing.B) {
	ctx := context.Background()
	foldBytesPerProxy(b, func(j journal.Journal, envs []*pb.Envelope) (any, bool) {
		m, err := NewPoolMonitor(j, PoolMonitorOptions{})
		if err != nil {
			b.Fatal(err)
		}
		for _, env := range envs {
			m.apply(ctx, env)
		}
		return m, m.Share().Total > 0
	}, func(any) {})
}

// again returns the i-th event of a benchmark's endless replay of envs:
// each pass over them moves their stream seqs past the last pass's, so
// that a fold does not take them for duplicates (fold.Covered).
func again(envs []*pb.Envelope, i int) *pb.Envelope {
	env := envs[i%len(envs)]
	if i >= len(envs) && env.GetStreamSeq() != 0 {
		env.StreamSeq += uint64(len(envs))
	}
	return env
}

// BenchmarkNotifierApply measures the notifier's fold of one event (apply,
// what Run calls for each) on a pool of memProxies proxies.
func BenchmarkNotifierApply(b *testing.B) {
	j, envs := memEvents(b)
	defer j.Close()
	ctx := context.Background()
	n, err := NewNotifier(j, NotifierOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close(ctx)
	b.ResetTimer()
	for i := range b.N {
		n.apply(ctx, again(envs, i))
	}
}

// BenchmarkPoolMonitorApply is BenchmarkNotifierApply for the pool
// monitor's fold.
func BenchmarkPoolMonitorApply(b *testing.B) {
	j, envs := memEvents(b)
	defer j.Close()
	ctx := context.Background()
	m, err := NewPoolMonitor(j, PoolMonitorOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		m.apply(ctx, again(envs, i))
	}
}

// TestPerProxySizes pins the sizes of what the projections keep for every
// proxy to the size classes their comments claim: a field added or moved
// carelessly would take each of them up a class.
func TestPerProxySizes(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"entry", unsafe.Sizeof(entry{}), 448},
		{"Tracker", unsafe.Sizeof(Tracker{}), 48},
		{"notifyProxy", unsafe.Sizeof(notifyProxy{}), 24},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d bytes, want %d", c.name, c.got, c.want)
		}
	}
}

// TestReasonCacheShares: a short reason seen before comes back as the copy
// first seen; a long one is never held; either comes back equal.
func TestReasonCacheShares(t *testing.T) {
	c := reasonCache{seed: maphash.MakeSeed()}
	fresh := func(s string) string { return string([]byte(s)) } // a copy of its own
	first := fresh("2 consecutive successes (threshold 2)")
	if got := c.share(first); unsafe.StringData(got) != unsafe.StringData(first) {
		t.Fatal("the first copy of a reason was not kept")
	}
	again := fresh(first)
	if got := c.share(again); got != first || unsafe.StringData(got) != unsafe.StringData(first) {
		t.Fatalf("a reason seen before: got %q, not the first copy", got)
	}
	long := strings.Repeat("x", maxSharedReason+1)
	c.share(long)
	if got := c.share(fresh(long)); got != long || unsafe.StringData(got) == unsafe.StringData(long) {
		t.Fatalf("a reason longer than %d bytes was shared", maxSharedReason)
	}
	for i := range 4 * reasonSlots { // evicts, and keeps answering right
		r := fmt.Sprintf("recovery attempt %d failed: timeout", i)
		if got := c.share(fresh(r)); got != r {
			t.Fatalf("share(%q) = %q", r, got)
		}
	}
	if got := c.share(""); got != "" {
		t.Fatalf("share(\"\") = %q", got)
	}
}
