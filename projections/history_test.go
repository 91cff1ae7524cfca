package projections_test

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/internal/gen"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// journaled appends hand-made envelopes to a fresh in-memory journal, which
// numbers them again.
func journaled(t *testing.T, envs []*pb.Envelope) journal.Journal {
	t.Helper()
	j := journal.NewMem()
	t.Cleanup(func() { _ = j.Close() })
	for _, e := range envs {
		e.Seq, e.StreamSeq = 0, 0
	}
	if _, err := j.Append(context.Background(), envs); err != nil {
		t.Fatal(err)
	}
	return j
}

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

func TestHistoryWindowAndCap(t *testing.T) {
	ctx := context.Background()
	s := newScript("p", t0).add(added("a"))
	// One check every 7 minutes for 30 hours: failures first, then passes,
	// with a state change among them.
	var times []time.Time
	for i := range 30 * 60 / 7 {
		at := t0.Add(time.Duration(i) * 7 * time.Minute)
		switch {
		case i == 151:
			s.addAt(at, change(unhealthy, healthy))
			fallthrough
		case i > 150:
			s.addAt(at, ok(50))
		default:
			s.addAt(at, fail(timeout))
		}
		times = append(times, at)
	}
	now := s.now
	j := journaled(t, s.out)
	h := projections.NewHistory(j, projections.HistoryOptions{Cap: 10, Clock: fixedClock(now)})
	got, err := h.Checks(ctx, "p", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 10 || !got[0].At.Equal(times[len(times)-1]) || !got[0].OK || got[0].Latency != 50*time.Millisecond || got[0].StatusCode != 204 || got[0].Class != "" {
		t.Fatalf("history %+v", got)
	}
	for i := 1; i < len(got); i++ {
		if !got[i].At.Before(got[i-1].At) {
			t.Fatal("history not newest first")
		}
	}
	if got, _ := h.Checks(ctx, "p", now.Add(-15*time.Minute)); len(got) != 3 {
		t.Errorf("since 15 min: %d records", len(got))
	}
	if got, _ := h.Checks(ctx, "p", t0.Add(-time.Hour)); len(got) != 10 {
		t.Errorf("since long ago: %d records", len(got))
	}
	// Without a cap worth mentioning: the 24 h window, not more.
	all := projections.NewHistory(j, projections.HistoryOptions{Cap: 1000, Clock: fixedClock(now)})
	got, _ = all.Checks(ctx, "p", time.Time{})
	want := 0
	for _, at := range times {
		if !at.Before(now.Add(-24 * time.Hour)) {
			want++
		}
	}
	if len(got) != want {
		t.Errorf("24 h window holds %d records, want %d", len(got), want)
	}
	if last := got[len(got)-1]; last.OK || last.Class != "timeout" || last.Latency != time.Second {
		t.Errorf("oldest record %+v, want a timeout", last)
	}
	// A clock far ahead: the window is empty. An unknown proxy has none.
	late := projections.NewHistory(j, projections.HistoryOptions{Clock: fixedClock(now.Add(48 * time.Hour))})
	if got, err := late.Checks(ctx, "p", time.Time{}); len(got) != 0 || err != nil {
		t.Errorf("48 h later: %v, %v", got, err)
	}
	if got, err := h.Checks(ctx, "nope", time.Time{}); len(got) != 0 || err != nil {
		t.Errorf("unknown proxy: %v, %v", got, err)
	}
}

func TestHistoryStartsAtTheLastAdd(t *testing.T) {
	s := newScript("p", t0).add(added("a")).add(ok(10)).add(ok(11)).add(&pb.ProxyRemoved{}).add(added("b")).add(fail(pb.FailureClass_FAILURE_CLASS_REFUSED))
	h := projections.NewHistory(journaled(t, s.out), projections.HistoryOptions{Clock: fixedClock(s.now)})
	got, err := h.Checks(context.Background(), "p", time.Time{})
	if err != nil || len(got) != 1 || got[0].Class != "refused" {
		t.Fatalf("history of a re-added proxy: %+v, %v", got, err)
	}
}

// TestHistoryMatchesTheStream: for every proxy of a random journal, in
// memory and in bbolt, with its oldest events deleted by retention, the
// history is the newest results of the proxy's current life within the
// window, as a plain scan of its stream finds them; several reads of the
// stream's tail are needed for most.
func TestHistoryMatchesTheStream(t *testing.T) {
	ctx := context.Background()
	bolt, err := journal.OpenBolt(filepath.Join(t.TempDir(), "j.db"))
	if err != nil {
		t.Fatal(err)
	}
	mem := journal.NewMem()
	t.Cleanup(func() { _ = bolt.Close(); _ = mem.Close() })
	sim := gen.NewSim(7, 12)
	sim.JumpProb = 0.002
	envs := sim.Events(20000)
	for _, j := range []journal.Journal{mem, bolt} {
		if _, err := j.Append(ctx, envs); err != nil {
			t.Fatal(err)
		}
		for _, e := range envs {
			e.Seq, e.StreamSeq, e.PrevSeq = 0, 0, 0
		}
	}
	// Retention: snapshots of every proxy at its head, then the oldest
	// quarter of the events goes.
	all := readAll(t, mem)
	states := gen.States(all)
	cut := time.Unix(0, all[len(all)/4].GetAtUnixNano())
	for _, j := range []journal.Journal{mem, bolt} {
		if err := gen.SaveSnapshots(ctx, j, states); err != nil {
			t.Fatal(err)
		}
		if _, err := j.Retain(ctx, cut); err != nil {
			t.Fatal(err)
		}
	}
	retained := readAll(t, mem)
	now := time.Unix(0, retained[len(retained)-1].GetAtUnixNano())
	for _, window := range []time.Duration{time.Hour, 24 * time.Hour, 1000 * time.Hour} {
		opts := projections.HistoryOptions{Window: window, Cap: 200, Clock: fixedClock(now)}
		for id := range states {
			var want []projections.CheckRecord
			for _, e := range retained {
				if e.GetProxyId() != id {
					continue
				}
				if _, added := e.GetEvent().(*pb.Envelope_ProxyAdded); added {
					want = want[:0]
				}
				if e.GetAtUnixNano() < now.Add(-window).UnixNano() {
					continue
				}
				switch ev := e.GetEvent().(type) {
				case *pb.Envelope_CheckSucceeded:
					want = append(want, projections.CheckRecord{At: time.Unix(0, e.GetAtUnixNano()).UTC(), OK: true,
						StatusCode: ev.CheckSucceeded.GetStatusCode(), Latency: time.Duration(ev.CheckSucceeded.GetLatency().GetTotalNs())})
				case *pb.Envelope_CheckFailed:
					want = append(want, projections.CheckRecord{At: time.Unix(0, e.GetAtUnixNano()).UTC(), Class: events.ClassName(ev.CheckFailed.GetClass()),
						StatusCode: ev.CheckFailed.GetStatusCode(), Latency: time.Duration(ev.CheckFailed.GetLatency().GetTotalNs())})
				}
			}
			for i, k := 0, len(want)-1; i < k; i, k = i+1, k-1 {
				want[i], want[k] = want[k], want[i]
			}
			want = want[:min(len(want), opts.Cap)]
			for name, j := range map[string]journal.Journal{"mem": mem, "bolt": bolt} {
				got, err := projections.NewHistory(j, opts).Checks(ctx, id, time.Time{})
				if err != nil {
					t.Fatal(err)
				}
				if len(got) == 0 && len(want) == 0 {
					continue
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("%s, window %v, proxy %s: %d records, want %d\n got %+v\nwant %+v", name, window, id, len(got), len(want), got, want)
				}
			}
		}
	}
}

// BenchmarkHistoryChecks: the history of one proxy of 1,000 interleaved
// with 99 others in a bbolt journal (100,000 events), 64 results wanted.
// This is what GET /v1/proxies/{id} pays instead of keeping the results in
// memory.
func BenchmarkHistoryChecks(b *testing.B) {
	ctx := context.Background()
	j, err := journal.OpenBolt(filepath.Join(b.TempDir(), "j.db"), journal.WithUnsafeNoSync())
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	g := newPoolGen()
	const proxies = 100
	var batch []*pb.Envelope
	for i := range proxies {
		batch = append(batch, g.add(i)...)
	}
	for round := range 1000 {
		for i := range proxies {
			batch = append(batch, g.check(i, round)...)
		}
		if len(batch) > 4096 || round == 999 {
			for _, e := range batch {
				e.Seq, e.StreamSeq = 0, 0
			}
			if _, err := j.Append(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	h := projections.NewHistory(j, projections.HistoryOptions{Clock: fixedClock(g.now)})
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		got, err := h.Checks(ctx, gen.ID(3), time.Time{})
		if err != nil || len(got) != projections.DefaultHistoryCap {
			b.Fatalf("%d records, %v", len(got), err)
		}
	}
}
