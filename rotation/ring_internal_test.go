package rotation

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/url"
	"slices"
	"testing"
)

// wantAllRings asks for every group's ring, as a sticky pick in each would.
func wantAllRings(p *Pool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, g := range p.groups {
		g.sh.wantRing.Store(true)
	}
	p.ringWanted.Store(true)
}

// After any sequence of additions, removals and member changes, every
// group's ring is exactly what building it afresh gives: each member's
// points, sorted. (mergeRing only copies and splices.)
func TestRingMatchesAFreshBuild(t *testing.T) {
	opt := DefaultOptions()
	opt.StickyReplicas = 4
	p, err := NewPool(opt)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 300 {
		for range 1 + r.IntN(5) {
			i := r.IntN(60)
			id := fmt.Sprintf("m%02d", i)
			if r.IntN(4) == 0 {
				p.Remove(id)
				continue
			}
			src := fmt.Sprint("s", r.IntN(3))
			p.Set(Member{ID: id, URL: &url.URL{Scheme: "http", Host: id + ":1"}, Scheme: "http", Source: src, Tags: []string{fmt.Sprint("t", i%4)}}, Status{State: State(r.IntN(6))})
		}
		wantAllRings(p) // every group gets a ring, new ones too
		p.Publish()
		sn := p.snap.Load()
		groups := map[string]*group{"all": sn.all}
		for k, g := range sn.bySource {
			groups["source "+k] = g
		}
		for k, g := range sn.byTag {
			groups["tag "+k] = g
		}
		for name, g := range groups {
			var want []ringPoint
			for _, s := range g.members {
				base := hashString(s.id)
				for i := range p.replicas {
					want = append(want, ringPoint{pointHash(base, i), s})
				}
			}
			slices.SortFunc(want, comparePoints)
			if len(want) != len(g.ringH) || len(g.ringH) != len(g.ringS) {
				t.Fatalf("round %d %s: ring has %d/%d points, want %d", round, name, len(g.ringH), len(g.ringS), len(want))
			}
			for i, w := range want {
				if g.ringH[i] != w.h || g.ringS[i] != w.s {
					t.Fatalf("round %d %s: point %d is %x %s, want %x %s", round, name, i, g.ringH[i], g.ringS[i].id, w.h, w.s.id)
				}
			}
		}
	}
}

// ringPoints counts the ring points the pool's current groups hold.
func ringPoints(p *Pool) map[string]int {
	sn := p.snap.Load()
	out := map[string]int{}
	add := func(name string, g *group) {
		if g.ringH != nil || g.ringS != nil {
			out[name] = len(g.ringH)
		}
	}
	add("all", sn.all)
	for k, g := range sn.bySource {
		add("source "+k, g)
	}
	for k, g := range sn.byScheme {
		add("scheme "+k, g)
	}
	for k, g := range sn.byTag {
		add("tag "+k, g)
	}
	return out
}

// Rings cost memory only where sticky picks happen: a pool picked from
// without Sticky has none; a sticky pick filtered by source gets that
// source's group a ring at the next Publish (and no other group one), and
// the ring then follows membership changes.
func TestRingsOnlyWhereStickyPicksHappen(t *testing.T) {
	opt := DefaultOptions()
	p, err := NewPool(opt)
	if err != nil {
		t.Fatal(err)
	}
	mem := func(i int) Member {
		id := fmt.Sprintf("m%03d", i)
		return Member{ID: id, URL: &url.URL{Scheme: "http", Host: id + ":1"}, Scheme: "http", Source: fmt.Sprint("s", i%3), Tags: []string{"a", "b"}}
	}
	for i := range 90 {
		p.Set(mem(i), Status{State: StateHealthy})
	}
	p.Publish()
	for _, s := range []Strategy{RoundRobin, Random, LeastLatency, Weighted} {
		for _, req := range []Request{{Strategy: s}, {Strategy: s, Source: "s1"}, {Strategy: s, Tag: "a"}} {
			if _, err := p.Pick(req); err != nil {
				t.Fatal(err)
			}
		}
	}
	p.Publish()
	if got := ringPoints(p); len(got) != 0 {
		t.Fatalf("without sticky picks the pool holds rings: %v", got)
	}
	if _, err := p.Pick(Request{Strategy: Sticky, Key: "k", Source: "s1"}); err != nil {
		t.Fatal(err)
	}
	if got := ringPoints(p); len(got) != 0 {
		t.Fatalf("a ring appeared before Publish: %v", got)
	}
	p.Publish() // nothing else changed: the wanted ring alone is built
	want := map[string]int{"source s1": 30 * p.replicas}
	if got := ringPoints(p); !maps.Equal(got, want) {
		t.Fatalf("after a sticky pick in source s1 and a Publish: rings %v, want %v", got, want)
	}
	p.Set(mem(90+1), Status{State: StateHealthy}) // source s1
	p.Remove(mem(1).ID)                           // source s1
	p.Remove(mem(4).ID)                           // source s1
	p.Publish()
	want["source s1"] = 29 * p.replicas
	if got := ringPoints(p); !maps.Equal(got, want) {
		t.Fatalf("after membership changes: rings %v, want %v", got, want)
	}
}

// stickyScan (no ring) and the ring walk pick the same member, for any
// key, filters, exclusions and panic state: a key's first picks, made
// before its group's ring exists, are the ones it keeps.
func TestStickyScanAgreesWithTheRing(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	checked := 0
	for _, thr := range []float64{0, 0.5, 0.9} {
		opt := DefaultOptions()
		opt.PanicThreshold, opt.StatsRefresh, opt.StickyReplicas = thr, 0, 1+r.IntN(20)
		p, err := NewPool(opt)
		if err != nil {
			t.Fatal(err)
		}
		for round := range 40 {
			for range 1 + r.IntN(10) {
				i := r.IntN(80)
				id := fmt.Sprintf("m%02d", i)
				if r.IntN(5) == 0 {
					p.Remove(id)
					continue
				}
				st := Status{State: State(r.IntN(6)), Paused: r.IntN(10) == 0, Ejected: r.IntN(10) == 0, ConsecutiveFailures: uint32(r.IntN(3)), LastSuccess: int64(r.IntN(3))}
				p.Set(Member{ID: id, URL: &url.URL{Scheme: "http", Host: id + ":1"}, Scheme: []string{"http", "socks5"}[i%2], Source: fmt.Sprint("s", i%3), Tags: []string{fmt.Sprint("t", i%4)}}, st)
			}
			wantAllRings(p)
			p.Publish()
			sn := p.snap.Load()
			for _, f := range []filter{{}, {source: "s1"}, {scheme: "socks5"}, {tag: "t2"}, {source: "s0", tag: "t0"}, {source: "s2", scheme: "http", tag: "t1"}} {
				var scratch *[]ranked
				v, ok := newView(sn, f, &scratch)
				if ok && v.g.ringH == nil {
					t.Fatalf("round %d %+v: the group has no ring", round, f)
				}
				for k := range 50 {
					key := fmt.Sprint("key-", round, "-", k)
					sk := skip{}
					if k%3 == 0 {
						sk.exclude = []string{fmt.Sprintf("m%02d", r.IntN(80)), fmt.Sprintf("m%02d", r.IntN(80))}
					}
					var viaRing, viaScan *slot
					if ok {
						viaRing, viaScan = v.sticky(key, &sk), v.stickyScan(key, &sk)
					}
					if viaRing != viaScan {
						t.Fatalf("round %d %+v key %s: ring picks %v, scan %v", round, f, key, idOf(viaRing), idOf(viaScan))
					}
					if viaRing != nil {
						checked++
					}
				}
				if scratch != nil {
					release(scratch)
				}
			}
		}
	}
	if checked < 5000 {
		t.Fatalf("only %d non-empty comparisons", checked)
	}
	t.Logf("%d picks compared", checked)
}

func idOf(s *slot) string {
	if s == nil {
		return "none"
	}
	return s.id
}
