package rotation

import (
	"fmt"
	"net/url"
	"testing"
)

// A group whose members are the whole pool's (the only source, the only
// scheme, a tag every member has) is an alias of the pool's group: no lists
// of its own, the same group in the snapshot. When a member of another
// source joins, the groups get their own lists again, and filtered picks
// keep to their members; when it leaves, they are aliases again.
func TestGroupsOfTheWholePoolAreAliases(t *testing.T) {
	opt := DefaultOptions()
	opt.StatsRefresh, opt.PanicThreshold = 0, 0
	p, err := NewPool(opt)
	if err != nil {
		t.Fatal(err)
	}
	mem := func(i int, source string) Member {
		id := fmt.Sprintf("m%03d", i)
		return Member{ID: id, URL: &url.URL{Scheme: "http", Host: id + ":1"}, Scheme: "http", Source: source, Tags: []string{"all"}}
	}
	for i := range 20 {
		p.Set(mem(i, "a"), Status{State: StateHealthy, SuccessRate: 1, Checks: 1})
	}
	p.Publish()
	aliases := func() map[string]bool {
		out := map[string]bool{}
		for id, g := range p.groups {
			if g.alias {
				if g.cur != nil || len(g.added) > 0 || len(g.gone) > 0 {
					t.Fatalf("alias %v keeps lists: cur %v, %d added, %d gone", id, g.cur != nil, len(g.added), len(g.gone))
				}
				out[id.kind+" "+id.name] = true
			}
		}
		return out
	}
	sn := p.snap.Load()
	if got := aliases(); len(got) != 3 || sn.bySource["a"] != sn.all || sn.byScheme["http"] != sn.all || sn.byTag["all"] != sn.all {
		t.Fatalf("one source, one scheme, one tag on every member: aliases %v; snapshot shares the pool's group: source %v, scheme %v, tag %v",
			got, sn.bySource["a"] == sn.all, sn.byScheme["http"] == sn.all, sn.byTag["all"] == sn.all)
	}
	picked := func(req Request) map[string]bool {
		t.Helper()
		out := map[string]bool{}
		for range 200 {
			pk, err := p.Pick(req)
			if err != nil {
				t.Fatalf("Pick(%+v): %v", req, err)
			}
			out[pk.Member.Source] = true
		}
		return out
	}
	if got := picked(Request{Source: "a", Strategy: Weighted}); len(got) != 1 || !got["a"] {
		t.Fatalf("picks in source a through its alias: sources %v", got)
	}

	p.Set(mem(100, "b"), Status{State: StateHealthy, SuccessRate: 1, Checks: 1})
	p.Publish()
	sn = p.snap.Load()
	if got := aliases(); len(got) != 2 || got["source a"] {
		t.Fatalf("after a member of source b joined: aliases %v, want scheme http and tag all", got)
	}
	if sn.bySource["a"] == sn.all || len(sn.bySource["a"].members) != 20 || len(sn.bySource["b"].members) != 1 {
		t.Fatalf("source groups after b joined: a shares the pool's %v, a has %d members, b %d", sn.bySource["a"] == sn.all, len(sn.bySource["a"].members), len(sn.bySource["b"].members))
	}
	for _, src := range []string{"a", "b"} {
		for _, strat := range []Strategy{RoundRobin, Random, LeastLatency, Weighted} {
			if got := picked(Request{Source: src, Strategy: strat}); len(got) != 1 || !got[src] {
				t.Fatalf("%s picks in source %s: sources %v", strat, src, got)
			}
		}
	}

	p.Remove(mem(100, "b").ID)
	p.Publish()
	sn = p.snap.Load()
	if got := aliases(); len(got) != 3 || sn.bySource["a"] != sn.all || sn.bySource["b"] != nil {
		t.Fatalf("after source b's member left: aliases %v, source a shares the pool's group %v, source b %v", got, sn.bySource["a"] == sn.all, sn.bySource["b"])
	}
	// A change of usability reaches filtered picks through the pool's group.
	for i := range 19 {
		p.Set(mem(i, "a"), Status{State: StateUnhealthy})
	}
	p.Publish()
	for range 50 {
		if pk, err := p.Pick(Request{Source: "a"}); err != nil || pk.ID != "m019" {
			t.Fatalf("the only usable member of source a is m019: picked %+v, %v", pk.ID, err)
		}
	}
}
