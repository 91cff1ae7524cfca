package rotation

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"testing"
)

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
				base := hashString(s.m.ID)
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
					t.Fatalf("round %d %s: point %d is %x %s, want %x %s", round, name, i, g.ringH[i], g.ringS[i].m.ID, w.h, w.s.m.ID)
				}
			}
		}
	}
}
