package projections_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/leanovate/gopter"
	"github.com/leanovate/gopter/gen"
	"github.com/leanovate/gopter/prop"

	igen "github.com/proxyhealth/proxyhealth/internal/gen"
	"github.com/proxyhealth/proxyhealth/projections"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// sameLive reports the first difference between two live statuses, as
// everything their queries answer: the summary, the IDs, and every proxy's
// view (rates included), state and transitions.
func sameLive(a, b *projections.Live, ids []string) string {
	if a.Seq() != b.Seq() {
		return fmt.Sprintf("seq %d != %d", a.Seq(), b.Seq())
	}
	if sa, sb := a.Summary(), b.Summary(); !reflect.DeepEqual(sa, sb) {
		return fmt.Sprintf("summary\n%+v\n!=\n%+v", sa, sb)
	}
	if ia, ib := a.IDs(), b.IDs(); !reflect.DeepEqual(ia, ib) {
		return fmt.Sprintf("IDs %v != %v", ia, ib)
	}
	for _, id := range ids {
		va, oka := a.Proxy(id)
		vb, okb := b.Proxy(id)
		if oka != okb || !reflect.DeepEqual(va, vb) {
			return fmt.Sprintf("proxy %s:\n%+v (%v)\n!=\n%+v (%v)", id, va, oka, vb, okb)
		}
		sa, _ := a.State(id)
		sb, _ := b.State(id)
		if !reflect.DeepEqual(sa, sb) {
			return fmt.Sprintf("state of %s:\n%+v\n!=\n%+v", id, sa, sb)
		}
		if ca, cb := a.StateChanges(id, 1000), b.StateChanges(id, 1000); !reflect.DeepEqual(ca, cb) {
			return fmt.Sprintf("transitions of %s:\n%+v\n!=\n%+v", id, ca, cb)
		}
	}
	return ""
}

// checkpointed returns a live status restored from l's checkpoint.
func checkpointed(t testing.TB, l *projections.Live, opts projections.LiveOptions) *projections.Live {
	t.Helper()
	var buf bytes.Buffer
	seq, err := l.WriteCheckpoint(&buf)
	if err != nil {
		t.Fatal(err)
	}
	r := projections.NewLive(opts)
	got, err := r.ReadCheckpoint(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if got != seq || got != l.Seq() {
		t.Fatalf("the checkpoint of seq %d (live at %d) read back as %d", seq, l.Seq(), got)
	}
	return r
}

// TestPropLiveCheckpoint: a live status restored from a checkpoint taken
// anywhere in the journal, then fed the rest, answers every query as the
// one fed the whole journal does (the property that lets a restart fold
// only what follows its checkpoint).
func TestPropLiveCheckpoint(t *testing.T) {
	props := gopter.NewProperties(propParams(t))
	props.Property("checkpoint + rest == whole fold", prop.ForAll(func(seed uint64, proxies, n int) string {
		envs := committed(t, seed, proxies, n)
		r := rand.New(rand.NewPCG(seed, 7))
		k := r.IntN(len(envs) + 1)
		clk := func() time.Time { return time.Unix(0, envs[len(envs)-1].GetAtUnixNano()) }
		opts := projections.LiveOptions{Clock: clk}
		whole := projections.NewLive(opts)
		whole.Apply(envs...)
		part := projections.NewLive(opts)
		part.Apply(envs[:k]...)
		restored := checkpointed(t, part, opts)
		restored.Apply(envs[k:]...)
		ids := make([]string, proxies+2)
		for i := range ids {
			ids[i] = igen.ID(i)
		}
		if diff := sameLive(whole, restored, ids); diff != "" {
			return fmt.Sprintf("checkpoint after %d of %d events: %s", k, len(envs), diff)
		}
		if err := checkInvariants(restored); err != nil {
			return err.Error()
		}
		return ""
	}, gen.UInt64(), gen.IntRange(1, 40), gen.IntRange(1, 600)))
	props.TestingRun(t)
}

// TestLiveCheckpointKeepsThePoolAndSources: the pool's degraded and panic
// flags, each source's last refresh and error, and a paused proxy come
// back from a checkpoint.
func TestLiveCheckpointKeepsThePoolAndSources(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	s := newScript("p1", t0)
	s.add(&pb.ProxyAdded{UrlRedacted: "http://10.0.0.1:8080", Source: "s", Tags: []string{"eu"}, Weight: 2}).
		add(ok(10)).add(change(pb.HealthState_HEALTH_STATE_UNKNOWN, pb.HealthState_HEALTH_STATE_HEALTHY)).
		as("p2").add(&pb.ProxyAdded{UrlRedacted: "http://10.0.0.2:8080", Source: "s"}).
		add(fail(pb.FailureClass_FAILURE_CLASS_REFUSED)).add(&pb.ProxyPaused{}).
		add(&pb.PoolDegraded{HealthyPercentage: 50, ThresholdPercentage: 60})
	envs := s.out
	at := s.now.Add(time.Second).UnixNano()
	envs = append(envs,
		&pb.Envelope{Seq: s.seq + 1, AtUnixNano: at, Source: "s", Event: &pb.Envelope_SourceRefreshed{SourceRefreshed: &pb.SourceRefreshed{}}},
		&pb.Envelope{Seq: s.seq + 2, AtUnixNano: at + 1, Source: "s", Event: &pb.Envelope_SourceRefreshFailed{SourceRefreshFailed: &pb.SourceRefreshFailed{Error: "HTTP 503"}}},
		&pb.Envelope{Seq: s.seq + 3, AtUnixNano: at + 2, Source: "t", Event: &pb.Envelope_SourceShrinkHeld{SourceShrinkHeld: &pb.SourceShrinkHeld{Previous: 100, Offered: 10, ShrinkGuard: 0.5}}},
		&pb.Envelope{Seq: s.seq + 4, AtUnixNano: at + 3, Event: &pb.Envelope_PoolPanicEntered{PoolPanicEntered: &pb.PoolPanicEntered{}}},
	)
	l := projections.NewLive(projections.LiveOptions{})
	l.Apply(envs...)
	r := checkpointed(t, l, projections.LiveOptions{})
	if diff := sameLive(l, r, []string{"p1", "p2"}); diff != "" {
		t.Fatal(diff)
	}
	sum := r.Summary()
	if !sum.PoolDegraded || !sum.PanicMode || len(sum.Sources) != 2 || sum.Sources[0].LastError != "HTTP 503" || !sum.Sources[1].HeldList {
		t.Fatalf("restored summary lost the pool or the sources: %+v", sum)
	}
	if v, _ := r.Proxy("p2"); !v.Paused {
		t.Fatalf("restored p2 is not paused: %+v", v)
	}
}

// TestLiveCheckpointRefusesDamage: a checkpoint cut short anywhere, with
// bytes after it, or with any byte changed, is refused with
// ErrBadCheckpoint (a restart then folds the whole journal), never
// restored wrong and never a panic.
func TestLiveCheckpointRefusesDamage(t *testing.T) {
	envs := committed(t, 3, 4, 120)
	l := projections.NewLive(projections.LiveOptions{})
	l.Apply(envs...)
	var buf bytes.Buffer
	if _, err := l.WriteCheckpoint(&buf); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	refused := func(what string, b []byte) {
		t.Helper()
		_, err := projections.NewLive(projections.LiveOptions{}).ReadCheckpoint(bytes.NewReader(b))
		if !errors.Is(err, projections.ErrBadCheckpoint) {
			t.Fatalf("%s: %v, want ErrBadCheckpoint", what, err)
		}
	}
	for n := range len(good) {
		refused(fmt.Sprintf("cut to %d of %d bytes", n, len(good)), good[:n])
	}
	refused("a byte after it", append(bytes.Clone(good), 0))
	for i := range good {
		for _, flip := range []byte{0x01, 0x80} {
			b := bytes.Clone(good)
			b[i] ^= flip
			refused(fmt.Sprintf("byte %d ^ %#x", i, flip), b)
		}
	}
	used := projections.NewLive(projections.LiveOptions{})
	used.Apply(envs[:1]...)
	if _, err := used.ReadCheckpoint(bytes.NewReader(good)); err == nil {
		t.Fatal("ReadCheckpoint into a live status that applied events: no error")
	}
}

// BenchmarkLiveCheckpoint prices the checkpoint a running engine saves
// every Config.CheckpointEvery: writing it (to a file, unsynced; the
// engine's feeder holds the live status's read lock meanwhile, and the
// fold waits) and reading it back, for a live status that folded ten
// events a proxy.
func BenchmarkLiveCheckpoint(b *testing.B) {
	for _, proxies := range []int{10_000, 100_000} {
		envs := committed(b, 1, proxies, 10*proxies)
		l := projections.NewLive(projections.LiveOptions{})
		l.Apply(envs...)
		envs = nil
		path := filepath.Join(b.TempDir(), "live.checkpoint")
		b.Run(fmt.Sprintf("proxies=%d/op=write", proxies), func(b *testing.B) {
			var size int64
			for range b.N {
				f, err := os.Create(path)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := l.WriteCheckpoint(f); err != nil {
					b.Fatal(err)
				}
				size, _ = f.Seek(0, io.SeekCurrent)
				f.Close()
			}
			b.ReportMetric(float64(size)/float64(proxies), "B/proxy")
		})
		b.Run(fmt.Sprintf("proxies=%d/op=read", proxies), func(b *testing.B) {
			for range b.N {
				f, err := os.Open(path)
				if err != nil {
					b.Fatal(err)
				}
				r := projections.NewLive(projections.LiveOptions{})
				if _, err := r.ReadCheckpoint(f); err != nil {
					b.Fatal(err)
				}
				f.Close()
				if r.Seq() != l.Seq() {
					b.Fatalf("read seq %d, wrote %d", r.Seq(), l.Seq())
				}
			}
		})
	}
}
