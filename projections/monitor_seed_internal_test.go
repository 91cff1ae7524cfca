package projections

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/proxyhealth/proxyhealth/internal/gen"
	"github.com/proxyhealth/proxyhealth/journal"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// TestPoolMonitorStartFromLive: a monitor seeded from the live status at
// any point of the journal, then fed the rest, holds what a monitor fed
// the whole journal holds (every proxy's health and stream seq, the
// counts, the degraded flag): the engine's Open seeds it instead of having
// it fold the journal a second time.
func TestPoolMonitorStartFromLive(t *testing.T) {
	ctx := context.Background()
	for seed := range uint64(40) {
		r := rand.New(rand.NewPCG(seed, 3))
		proxies, n := 1+r.IntN(30), 1+r.IntN(500)
		j := journal.NewMem()
		sim := gen.NewSim(seed, proxies)
		envs := sim.Events(n)
		// Pool events, as the monitor journals them, here and there.
		for i := range 1 + r.IntN(3) {
			k := r.IntN(len(envs) + 1)
			var ev *pb.Envelope
			if i%2 == 0 {
				ev = &pb.Envelope{Event: &pb.Envelope_PoolDegraded{PoolDegraded: &pb.PoolDegraded{}}}
			} else {
				ev = &pb.Envelope{Event: &pb.Envelope_PoolRecovered{PoolRecovered: &pb.PoolRecovered{}}}
			}
			envs = append(envs[:k], append([]*pb.Envelope{ev}, envs[k:]...)...)
		}
		committed := commit(t, j, envs)
		k := r.IntN(len(committed) + 1)
		whole, err := NewPoolMonitor(j, PoolMonitorOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, env := range committed {
			whole.apply(ctx, env)
		}
		l := NewLive(LiveOptions{})
		l.Apply(committed[:k]...)
		seeded, err := NewPoolMonitor(j, PoolMonitorOptions{})
		if err != nil {
			t.Fatal(err)
		}
		seeded.StartFrom(l)
		if want := l.Seq() + 1; seeded.from != want {
			t.Fatalf("seed %d: StartFrom at seq %d reads from %d", seed, l.Seq(), seeded.from)
		}
		for _, env := range committed[k:] {
			seeded.apply(ctx, env)
		}
		if diff := sameMonitor(whole, seeded); diff != "" {
			t.Fatalf("seed %d (%d proxies, %d events, seeded after %d): %s", seed, proxies, len(committed), k, diff)
		}
		j.Close()
	}
}

func sameMonitor(a, b *PoolMonitor) string {
	if !reflect.DeepEqual(a.proxies, b.proxies) || !reflect.DeepEqual(a.big, b.big) {
		return fmt.Sprintf("proxies\n%v\n!=\n%v", a.proxies, b.proxies)
	}
	if sa, sb := a.Share(), b.Share(); sa != sb {
		return fmt.Sprintf("share %+v != %+v", sa, sb)
	}
	return ""
}

// TestNotifierStartFromLive: a notifier seeded from the live status at any
// point of the journal, then fed the rest, holds what a notifier fed the
// whole journal holds (each proxy's URL, source, stream seq and episode)
// and tells the same notifications for the rest, whatever number of
// transitions the live status keeps per proxy.
func TestNotifierStartFromLive(t *testing.T) {
	ctx := context.Background()
	const seeds = 60
	refused := 0
	defer func() { t.Logf("%d of %d seeds refused (a live status keeping 1 or 2 transitions)", refused, seeds) }()
	for seed := range uint64(seeds) {
		r := rand.New(rand.NewPCG(seed, 5))
		proxies, n := 1+r.IntN(30), 1+r.IntN(600)
		j := journal.NewMem()
		committed := commit(t, j, gen.NewSim(seed, proxies).Events(n))
		k := r.IntN(len(committed) + 1)
		whole, err := NewNotifier(j, NotifierOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var wantNotes []Notification
		for i, env := range committed {
			if note, ok := whole.apply(ctx, env); ok && i >= k {
				wantNotes = append(wantNotes, note)
			}
		}
		l := NewLive(LiveOptions{StateChangeCap: []int{1, 2, 16}[seed%3]})
		l.Apply(committed[:k]...)
		seeded, err := NewNotifier(j, NotifierOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !seeded.StartFrom(l) {
			// Only a live status that dropped a proxy's telling
			// transitions refuses; the seeded notifier then replays all.
			if cap := []int{1, 2, 16}[seed%3]; cap == 16 {
				t.Fatalf("seed %d: StartFrom refused a live status keeping 16 transitions, without adoptions", seed)
			}
			refused++
			for _, env := range committed[:k] {
				seeded.apply(ctx, env)
			}
		} else if want := l.Seq() + 1; seeded.from != want {
			t.Fatalf("seed %d: StartFrom at seq %d reads from %d", seed, l.Seq(), seeded.from)
		}
		var notes []Notification
		for _, env := range committed[k:] {
			if note, ok := seeded.apply(ctx, env); ok {
				notes = append(notes, note)
			}
		}
		if diff := sameNotifier(whole, seeded); diff != "" {
			t.Fatalf("seed %d (%d proxies, %d events, seeded after %d): %s", seed, proxies, len(committed), k, diff)
		}
		if !reflect.DeepEqual(notes, wantNotes) {
			t.Fatalf("seed %d: notifications after the seed\n%+v\nwant\n%+v", seed, notes, wantNotes)
		}
		for _, x := range []*Notifier{whole, seeded} {
			if err := x.Close(ctx); err != nil {
				t.Fatal(err)
			}
		}
		j.Close()
	}
}

func sameNotifier(a, b *Notifier) string {
	if len(a.proxies) != len(b.proxies) {
		return fmt.Sprintf("%d proxies != %d", len(a.proxies), len(b.proxies))
	}
	for id, pa := range a.proxies {
		pb, ok := b.proxies[id]
		if !ok {
			return "proxy " + id + " missing"
		}
		ka, kb := a.kept(pa), b.kept(pb)
		if pa.url != pb.url || ka.streamSeq != kb.streamSeq || ka.down != kb.down || a.sources[ka.source] != b.sources[kb.source] {
			return fmt.Sprintf("proxy %s: %s %+v != %s %+v", id, pa.url, ka, pb.url, kb)
		}
	}
	return ""
}

// commit appends envs to j and returns them as committed (seqs filled in).
func commit(t *testing.T, j journal.Journal, envs []*pb.Envelope) []*pb.Envelope {
	t.Helper()
	ctx := context.Background()
	from := j.Head() + 1
	if _, err := j.Append(ctx, envs); err != nil {
		t.Fatal(err)
	}
	var committed []*pb.Envelope
	for env, err := range j.Read(ctx, from) {
		if err != nil {
			t.Fatal(err)
		}
		committed = append(committed, env)
	}
	return committed
}
