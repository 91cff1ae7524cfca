package rotation_test

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/rotation"
)

func TestOptionsValidate(t *testing.T) {
	if err := rotation.DefaultOptions().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if err := (rotation.Options{}).Validate(); err != nil {
		t.Fatalf("zero value: %v", err)
	}
	for _, c := range []struct {
		field string
		mod   func(*rotation.Options)
	}{
		{"Strategy", func(o *rotation.Options) { o.Strategy = "fastest" }},
		{"PanicThreshold", func(o *rotation.Options) { o.PanicThreshold = 1.5 }},
		{"PanicThreshold", func(o *rotation.Options) { o.PanicThreshold = -0.1 }},
		{"PanicThreshold", func(o *rotation.Options) { o.PanicThreshold = math.NaN() }},
		{"StatsRefresh", func(o *rotation.Options) { o.StatsRefresh = -time.Second }},
		{"StickyReplicas", func(o *rotation.Options) { o.StickyReplicas = -1 }},
		{"StickyReplicas", func(o *rotation.Options) { o.StickyReplicas = rotation.MaxStickyReplicas + 1 }},
	} {
		o := rotation.DefaultOptions()
		c.mod(&o)
		err := o.Validate()
		if !errors.Is(err, rotation.ErrBadOptions) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%+v: Validate() = %v, want ErrBadOptions naming %s", o, err, c.field)
		}
		if _, err := rotation.NewPool(o); !errors.Is(err, rotation.ErrBadOptions) {
			t.Errorf("%+v: NewPool error %v, want ErrBadOptions", o, err)
		}
	}
}

func TestBadRequests(t *testing.T) {
	p := newPool(t, opts(0))
	p.Set(member(1, "s", "http"), healthy())
	p.Publish()
	for _, req := range []rotation.Request{{Strategy: "fastest"}, {Strategy: rotation.Sticky}} {
		if _, err := p.Pick(req); !errors.Is(err, rotation.ErrBadRequest) {
			t.Errorf("Pick(%+v) = %v, want ErrBadRequest", req, err)
		}
	}
}

func TestEmptyPoolHasNoProxy(t *testing.T) {
	p := newPool(t, rotation.DefaultOptions())
	for _, req := range picks {
		if _, err := p.Pick(req); !errors.Is(err, rotation.ErrNoProxy) {
			t.Errorf("%s: %v, want ErrNoProxy", req.Strategy, err)
		}
	}
	if p.Publish() {
		t.Error("an empty Publish reported a panic change")
	}
}

// Usable = not paused, not ejected, healthy (or degraded when configured);
// with panic mode off nothing else is ever handed out.
func TestOnlyUsableMembersArePicked(t *testing.T) {
	for _, degraded := range []bool{false, true} {
		o := opts(0)
		o.IncludeDegraded = degraded
		p := newPool(t, o)
		sts := []rotation.Status{
			status(rotation.StateHealthy), status(rotation.StateDegraded), status(rotation.StateUnknown),
			status(rotation.StateUnhealthy), status(rotation.StateRecovering), status(rotation.StateFailed),
		}
		paused := healthy()
		paused.Paused = true
		ejected := healthy()
		ejected.Ejected = true
		sts = append(sts, paused, ejected)
		for i, st := range sts {
			p.Set(member(i, "s", "http"), st)
		}
		p.Publish()
		want := set(id(0))
		if degraded {
			want[id(1)] = true
		}
		for _, req := range picks {
			got := map[string]bool{}
			for k := range 400 {
				req.Key = fmt.Sprint(k)
				pk, err := p.Pick(req)
				if err != nil {
					t.Fatalf("%s: %v", req.Strategy, err)
				}
				got[pk.ID] = true
				if pk.Panic {
					t.Fatalf("%s: panic pick with panic mode off", req.Strategy)
				}
				if pk.State != rotation.StateHealthy && pk.State != rotation.StateDegraded {
					t.Fatalf("%s: picked state %v", req.Strategy, pk.State)
				}
			}
			if !sameSet(got, want) {
				t.Errorf("degraded=%v %s picked %v, want %v", degraded, req.Strategy, got, want)
			}
		}
	}
}

// Set and Remove take effect at Publish, not before.
func TestPublishMakesChangesVisible(t *testing.T) {
	p := newPool(t, opts(0))
	p.Set(member(1, "s", "http"), healthy())
	if _, err := p.Pick(rotation.Request{}); !errors.Is(err, rotation.ErrNoProxy) {
		t.Fatalf("before Publish: %v, want ErrNoProxy", err)
	}
	p.Publish()
	if pk, err := p.Pick(rotation.Request{}); err != nil || pk.ID != id(1) || pk.URL.User.Username() != "user" {
		t.Fatalf("after Publish: %+v %v", pk, err)
	}
	p.Set(member(1, "s", "http"), status(rotation.StateUnhealthy))
	if _, err := p.Pick(rotation.Request{}); err != nil {
		t.Fatalf("unhealthy not yet published: %v", err)
	}
	p.Publish()
	if _, err := p.Pick(rotation.Request{}); !errors.Is(err, rotation.ErrNoProxy) {
		t.Fatalf("unhealthy published: %v, want ErrNoProxy", err)
	}
	p.Set(member(1, "s", "http"), healthy())
	p.Set(member(2, "s", "http"), healthy())
	p.Publish()
	p.Remove(id(1))
	p.Remove("nobody")
	if got := keys(counts(t, p, rotation.Request{}, 10)); !sameSet(got, set(id(1), id(2))) {
		t.Fatalf("removal not yet published: picked %v", got)
	}
	p.Publish()
	if got := keys(counts(t, p, rotation.Request{}, 10)); !sameSet(got, set(id(2))) {
		t.Fatalf("after removal: picked %v", got)
	}
	if p.Len() != 1 {
		t.Fatalf("Len = %d, want 1", p.Len())
	}
}

// A Member changed under the same ID (a new source, tags) moves groups.
func TestChangedMemberMovesGroups(t *testing.T) {
	p := newPool(t, opts(0))
	p.Set(member(1, "a", "http", "x"), healthy())
	p.Publish()
	p.Set(member(1, "b", "socks5", "y"), healthy())
	p.Publish()
	for _, req := range []rotation.Request{{Source: "a"}, {Scheme: "http"}, {Tag: "x"}} {
		if _, err := p.Pick(req); !errors.Is(err, rotation.ErrNoProxy) {
			t.Errorf("old group %+v: %v, want ErrNoProxy", req, err)
		}
	}
	pk, err := p.Pick(rotation.Request{Source: "b", Scheme: "socks5", Tag: "y"})
	if err != nil || pk.Source != "b" || pk.URL.Scheme != "socks5" {
		t.Fatalf("new groups: %+v %v", pk, err)
	}
	if p.Len() != 1 {
		t.Fatalf("Len = %d, want 1", p.Len())
	}
}

func TestRoundRobinCycles(t *testing.T) {
	p := newPool(t, opts(0))
	for i := range 10 {
		p.Set(member(i, "s", "http"), healthy())
	}
	p.Publish()
	for round := range 3 {
		seen := map[string]bool{}
		for range 10 {
			pk, err := p.Pick(rotation.Request{}) // the default strategy
			if err != nil {
				t.Fatal(err)
			}
			if seen[pk.ID] {
				t.Fatalf("round %d: %s twice within 10 picks", round, pk.ID)
			}
			seen[pk.ID] = true
		}
	}
}

func TestRandomSpreads(t *testing.T) {
	p := newPool(t, opts(0))
	for i := range 10 {
		p.Set(member(i, "s", "http"), healthy())
	}
	p.Publish()
	c := counts(t, p, rotation.Request{Strategy: rotation.Random}, 20000)
	for i := range 10 {
		if n := c[id(i)]; n < 1600 || n > 2400 {
			t.Errorf("%s picked %d times of 20000, want about 2000", id(i), n)
		}
	}
}

// Power of two choices: the slowest member never beats the other one it is
// paired with; the fastest wins whenever it is drawn (2/n of the picks). A
// member without an EWMA counts as the median.
func TestLeastLatencyIsPowerOfTwoChoices(t *testing.T) {
	p := newPool(t, opts(0))
	for i := range 10 {
		st := healthy()
		st.LatencyEWMA = time.Duration(i+1) * 10 * time.Millisecond
		if i == 9 {
			st.LatencyEWMA = 0 // unknown: counts as the median of 10..90 ms
		}
		p.Set(member(i, "s", "http"), st)
	}
	p.Publish()
	const n = 20000
	c := counts(t, p, rotation.Request{Strategy: rotation.LeastLatency}, n)
	if f := float64(c[id(0)]) / n; f < 0.17 || f > 0.23 {
		t.Errorf("fastest picked %.3f of the time, want about 0.2", f)
	}
	if c[id(8)] != 0 && c[id(8)] >= c[id(9)] {
		t.Errorf("slowest known (90 ms) picked %d times, unknown (median) %d: the unknown should win more", c[id(8)], c[id(9)])
	}
	if c[id(9)] == 0 || c[id(9)] >= c[id(0)] {
		t.Errorf("unknown latency picked %d times, fastest %d", c[id(9)], c[id(0)])
	}
	// The EWMA is read live: a member turning slow loses at once, before
	// any Publish.
	slow := healthy()
	slow.LatencyEWMA = time.Hour
	p.Set(member(0, "s", "http"), slow)
	c = counts(t, p, rotation.Request{Strategy: rotation.LeastLatency}, 2000)
	if c[id(0)] != 0 {
		t.Errorf("member turned slow still picked %d times", c[id(0)])
	}
}

func TestWeightedBySuccessRate(t *testing.T) {
	p := newPool(t, opts(0))
	for i, r := range []float64{0.1, 0.2, 0.3, 0.4} {
		st := healthy()
		st.SuccessRate = r
		p.Set(member(i, "s", "http"), st)
	}
	fresh := healthy()
	fresh.Checks, fresh.SuccessRate = 0, 0 // unknown: the mean, 0.25
	p.Set(member(4, "s", "http"), fresh)
	p.Publish()
	const n = 50000
	c := counts(t, p, rotation.Request{Strategy: rotation.Weighted}, n)
	for i, w := range []float64{0.1, 0.2, 0.3, 0.4, 0.25} {
		want := n * w / 1.25
		if got := float64(c[id(i)]); math.Abs(got-want) > 0.1*want {
			t.Errorf("%s picked %v times, want about %.0f", id(i), got, want)
		}
	}
}

// Statistics-only changes are applied at a refresh, at most every
// StatsRefresh; a structural change in the group rebuilds its weights at
// once.
func TestStatsRefreshIsThrottled(t *testing.T) {
	o := opts(0)
	o.StatsRefresh = time.Hour
	p := newPool(t, o)
	p.Set(member(0, "s", "http"), healthy())
	p.Set(member(1, "s", "http"), healthy())
	p.Publish()
	bad := healthy()
	bad.SuccessRate = 0
	p.Set(member(0, "s", "http"), bad)
	p.Publish()
	c := counts(t, p, rotation.Request{Strategy: rotation.Weighted}, 4000)
	if c[id(0)] < 1500 {
		t.Fatalf("weights refreshed within StatsRefresh: member 0 picked %d of 4000", c[id(0)])
	}
	p.Set(member(2, "s", "http"), healthy())
	p.Publish()
	c = counts(t, p, rotation.Request{Strategy: rotation.Weighted}, 4000)
	if c[id(0)] > 100 {
		t.Fatalf("weights not rebuilt with the group: member 0 (rate 0) picked %d of 4000", c[id(0)])
	}
}

func TestStickyKeepsKeys(t *testing.T) {
	p := newPool(t, opts(0))
	for i := range 50 {
		p.Set(member(i, "s", "http"), healthy())
	}
	p.Publish()
	owners := map[string]bool{}
	firsts := map[string]string{}
	for k := range 500 {
		req := rotation.Request{Strategy: rotation.Sticky, Key: fmt.Sprint("user-", k)}
		first, err := p.Pick(req)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if again, _ := p.Pick(req); again.ID != first.ID {
				t.Fatalf("key %s: %s then %s", req.Key, first.ID, again.ID)
			}
		}
		owners[first.ID] = true
		firsts[req.Key] = first.ID
	}
	if len(owners) < 40 {
		t.Errorf("500 keys went to only %d of 50 proxies", len(owners))
	}
	// Those picks were made before the pool had a ring (the first sticky
	// pick asks for one, the next Publish builds it): with the ring, every
	// key stays where it was.
	p.Publish()
	for key, was := range firsts {
		if pk, err := p.Pick(rotation.Request{Strategy: rotation.Sticky, Key: key}); err != nil || pk.ID != was {
			t.Fatalf("key %s: %s before the ring, %s %v with it", key, was, pk.ID, err)
		}
	}
}

// stickyMap maps every key to its proxy.
func stickyMap(t *testing.T, p *rotation.Pool, nkeys int, req rotation.Request) []string {
	t.Helper()
	out := make([]string, nkeys)
	for k := range out {
		req.Strategy, req.Key = rotation.Sticky, fmt.Sprint("key-", k)
		pk, err := p.Pick(req)
		if err != nil {
			t.Fatal(err)
		}
		out[k] = pk.ID
	}
	return out
}

// Consistent hashing, measured: 1,000 proxies, 10,000 keys. A proxy turning
// unusable (or paused) moves only its own keys, which come back when it
// returns; a proxy added takes about 1/n of the keys, from the others, and
// no other key moves.
func TestStickyConsistentHashing(t *testing.T) {
	const nproxies, nkeys = 1000, 10000
	p := newPool(t, opts(0))
	for i := range nproxies {
		p.Set(member(i, fmt.Sprint("src", i%2), "http"), healthy())
	}
	p.Publish()
	for _, req := range []rotation.Request{{}, {Source: "src0"}} {
		before := stickyMap(t, p, nkeys, req)
		victim := before[0]
		var vi int
		fmt.Sscanf(victim, "p%d", &vi)
		vsrc := fmt.Sprint("src", vi%2)
		for _, st := range []rotation.Status{status(rotation.StateUnhealthy), {State: rotation.StateHealthy, Paused: true}} {
			p.Set(member(vi, vsrc, "http"), st)
			p.Publish()
			during := stickyMap(t, p, nkeys, req)
			own, moved := 0, 0
			for k := range before {
				if before[k] == victim {
					own++
					if during[k] == victim {
						t.Fatalf("key %d still on the unusable proxy", k)
					}
				} else if during[k] != before[k] {
					moved++
				}
			}
			if moved != 0 || own == 0 {
				t.Fatalf("%+v: proxy %s unusable (%+v): %d of its keys, %d other keys moved (want 0)", req, victim, st, own, moved)
			}
			p.Set(member(vi, vsrc, "http"), healthy())
			p.Publish()
			after := stickyMap(t, p, nkeys, req)
			for k := range before {
				if after[k] != before[k] {
					t.Fatalf("key %d did not come back: %s then %s", k, before[k], after[k])
				}
			}
			t.Logf("%+v: proxy %s unusable: its %d keys moved, no other key", req, victim, own)
		}
	}
	before := stickyMap(t, p, nkeys, rotation.Request{})
	p.Set(member(nproxies, "src0", "http"), healthy())
	p.Publish()
	after := stickyMap(t, p, nkeys, rotation.Request{})
	moved := 0
	for k := range before {
		if after[k] != before[k] {
			moved++
			if after[k] != id(nproxies) {
				t.Fatalf("key %d moved from %s to %s, not to the new proxy", k, before[k], after[k])
			}
		}
	}
	// 1/n of the keys is 10; with 16 points per proxy the new one's share
	// varies (about ±25 % standard deviation).
	if moved < 2 || moved > 40 {
		t.Fatalf("adding a proxy to %d moved %d of %d keys, want about %d", nproxies, moved, nkeys, nkeys/nproxies)
	}
	t.Logf("adding one proxy to %d moved %d of %d keys (1/n = %d)", nproxies, moved, nkeys, nkeys/(nproxies+1))
}

func TestFiltersExcludeAndPickN(t *testing.T) {
	p := newPool(t, opts(0))
	// 0..11: source a (even) / b (odd), scheme http (i%3 != 0) / socks5,
	// tag "fast" for i < 6.
	for i := range 12 {
		scheme := "http"
		if i%3 == 0 {
			scheme = "socks5"
		}
		src := "a"
		if i%2 == 1 {
			src = "b"
		}
		var tags []string
		if i < 6 {
			tags = []string{"fast", "eu"}
		}
		p.Set(member(i, src, scheme, tags...), healthy())
	}
	p.Publish()
	match := func(i int, req rotation.Request) bool {
		return (req.Source == "" || (req.Source == "a") == (i%2 == 0)) &&
			(req.Scheme == "" || (req.Scheme == "socks5") == (i%3 == 0)) &&
			(req.Tag == "" || i < 6)
	}
	for _, f := range []rotation.Request{
		{Source: "a"}, {Scheme: "socks5"}, {Tag: "fast"},
		{Source: "b", Scheme: "http"}, {Source: "a", Tag: "fast"}, {Source: "a", Scheme: "socks5", Tag: "fast"},
		{Source: "b", Exclude: []string{id(1), id(3)}},
	} {
		want := map[string]bool{}
		for i := range 12 {
			if match(i, f) && !(i == 1 || i == 3) || match(i, f) && f.Exclude == nil {
				want[id(i)] = true
			}
		}
		for _, req := range picks {
			req.Source, req.Scheme, req.Tag, req.Exclude = f.Source, f.Scheme, f.Tag, f.Exclude
			got := map[string]bool{}
			for k := range 300 {
				if req.Strategy == rotation.Sticky {
					req.Key = fmt.Sprint(k)
				}
				pk, err := p.Pick(req)
				if err != nil {
					t.Fatalf("%+v: %v", req, err)
				}
				got[pk.ID] = true
			}
			if !sameSet(got, want) {
				t.Errorf("%+v picked %v, want %v", req, got, want)
			}
			dst := make([]rotation.Pick, 20)
			n, err := p.PickN(req, dst)
			if err != nil || n != len(want) {
				t.Fatalf("PickN(%+v) = %d, %v; want %d", req, n, err, len(want))
			}
			distinct := map[string]bool{}
			for _, pk := range dst[:n] {
				distinct[pk.ID] = true
			}
			if !sameSet(distinct, want) {
				t.Errorf("PickN(%+v) = %v, want %v", req, distinct, want)
			}
		}
	}
	for _, req := range []rotation.Request{{Source: "c"}, {Scheme: "socks4"}, {Tag: "us"}, {Source: "a", Tag: "us"}, {Exclude: []string{id(0)}, Source: "a", Scheme: "socks5", Tag: "fast"}} {
		if _, err := p.Pick(req); !errors.Is(err, rotation.ErrNoProxy) {
			t.Errorf("%+v: %v, want ErrNoProxy", req, err)
		}
	}
	if n, err := p.PickN(rotation.Request{}, nil); n != 0 || err != nil {
		t.Errorf("PickN into nothing = %d, %v", n, err)
	}
}

// Sticky PickN: the key's own proxy first, then the next ones.
func TestStickyPickNStartsWithTheKeysProxy(t *testing.T) {
	p := newPool(t, opts(0))
	for i := range 20 {
		p.Set(member(i, "s", "http"), healthy())
	}
	p.Publish()
	req := rotation.Request{Strategy: rotation.Sticky, Key: "alice"}
	one, err := p.Pick(req)
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]rotation.Pick, 3)
	if n, err := p.PickN(req, dst); err != nil || n != 3 || dst[0].ID != one.ID {
		t.Fatalf("PickN = %d %v %s, want 3 starting with %s", n, err, dst[0].ID, one.ID)
	}
	// The second is where the key goes when the first is excluded (a retry).
	req.Exclude = []string{one.ID}
	if retry, _ := p.Pick(req); retry.ID != dst[1].ID {
		t.Fatalf("retry went to %s, PickN's second is %s", retry.ID, dst[1].ID)
	}
}

// TestStatsRefreshFollowsTheInjectedClock: the throttle reads Options.Now,
// so a statistics-only change shows once that clock has moved past
// StatsRefresh (the engine passes its own clock).
func TestStatsRefreshFollowsTheInjectedClock(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	o := opts(0)
	o.StatsRefresh = time.Second
	o.Now = func() time.Time { return now }
	p := newPool(t, o)
	p.Set(member(0, "s", "http"), healthy())
	p.Set(member(1, "s", "http"), healthy())
	p.Publish()
	bad := healthy()
	bad.SuccessRate, bad.Checks = 0, 100
	p.Set(member(0, "s", "http"), bad)
	p.Publish()
	if c := counts(t, p, rotation.Request{Strategy: rotation.Weighted}, 4000); c[id(0)] < 1500 {
		t.Fatalf("refreshed before the clock moved: member 0 picked %d of 4000", c[id(0)])
	}
	now = now.Add(2 * time.Second)
	p.Set(member(0, "s", "http"), bad)
	p.Publish()
	if c := counts(t, p, rotation.Request{Strategy: rotation.Weighted}, 4000); c[id(0)] > 100 {
		t.Fatalf("not refreshed after the clock moved past StatsRefresh: member 0 (rate 0) picked %d of 4000", c[id(0)])
	}
}

// TestMemberWeightScalesItsShare: under the weighted strategy a member's
// share is its success rate times its own weight (from its list or the
// configuration; unset counts as 1), and a weight change applies at the
// next Publish.
func TestMemberWeightScalesItsShare(t *testing.T) {
	p := newPool(t, opts(0))
	heavy := member(0, "s", "http")
	heavy.Weight = 3
	p.Set(heavy, healthy())
	p.Set(member(1, "s", "http"), healthy()) // weight unset: 1
	p.Publish()
	const n = 40000
	c := counts(t, p, rotation.Request{Strategy: rotation.Weighted}, n)
	if got, want := float64(c[id(0)]), n*0.75; math.Abs(got-want) > 0.05*want {
		t.Errorf("weight 3 picked %v of %d, want about %.0f", got, n, want)
	}
	heavy.Weight = 1
	p.Set(heavy, healthy())
	p.Publish()
	c = counts(t, p, rotation.Request{Strategy: rotation.Weighted}, n)
	if got, want := float64(c[id(0)]), n*0.5; math.Abs(got-want) > 0.05*want {
		t.Errorf("after the change, picked %v of %d, want about %.0f", got, n, want)
	}
}

// TestSetStatusKeepsTheMember: SetStatus changes a known member's status
// (usability at the next Publish) and refuses an unknown one.
func TestSetStatusKeepsTheMember(t *testing.T) {
	p := newPool(t, opts(0))
	if p.SetStatus(id(0), healthy()) {
		t.Fatal("SetStatus of an unknown member succeeded")
	}
	p.Set(member(0, "s", "http"), healthy())
	p.Publish()
	down := healthy()
	down.State = rotation.StateUnhealthy
	if !p.SetStatus(id(0), down) {
		t.Fatal("SetStatus of a known member failed")
	}
	p.Publish()
	if _, err := p.Pick(rotation.Request{}); err == nil {
		t.Fatal("an unhealthy member was picked after SetStatus")
	}
	if !p.SetStatus(id(0), healthy()) {
		t.Fatal("SetStatus failed")
	}
	p.Publish()
	if got, err := p.Pick(rotation.Request{}); err != nil || got.ID != id(0) || got.URL == nil {
		t.Fatalf("after SetStatus back to healthy: %+v %v", got, err)
	}
}

// TestLargeGroupsRefreshInProportion: a group of more than 10,000 members
// has its statistics recomputed every StatsRefresh × members / 10,000; a
// small group of the same pool keeps StatsRefresh, and the large group's
// turn comes without a further change.
func TestLargeGroupsRefreshInProportion(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	o := opts(0)
	o.StatsRefresh = time.Second
	o.Now = func() time.Time { return now }
	p := newPool(t, o)
	const n = 20_000 // the pool's group: its turn every 2 s
	tagged := func(i int) rotation.Member {
		if i < 2 {
			return member(i, "s", "http", "t") // the tag's group: 2 members
		}
		return member(i, "s", "http")
	}
	for i := range n {
		p.Set(tagged(i), healthy())
	}
	p.Publish()
	bad := healthy()
	bad.SuccessRate, bad.Checks = 0, 100
	badShare := func(req rotation.Request) float64 {
		t.Helper()
		c := counts(t, p, req, 4000)
		picked := 0
		for i := 0; i < n/2; i++ {
			if i != 1 {
				picked += c[id(i)]
			}
		}
		return float64(picked) / 4000
	}
	now = now.Add(1500 * time.Millisecond)
	for i := range n / 2 { // members 0 and 2..9999 fail every check
		if i != 1 {
			p.Set(tagged(i), bad)
		}
	}
	p.Publish()
	if c := counts(t, p, rotation.Request{Strategy: rotation.Weighted, Tag: "t"}, 4000); c[id(0)] > 100 {
		t.Fatalf("the 2-member group was not refreshed after StatsRefresh: member 0 (rate 0) picked %d of 4000", c[id(0)])
	}
	if s := badShare(rotation.Request{Strategy: rotation.Weighted}); s < 0.4 {
		t.Fatalf("the %d-member group was refreshed after 1.5 s (its turn is every 2 s): failing members got %.3f of the picks", n, s)
	}
	now = now.Add(time.Second) // 2.5 s after the group's last computation
	p.Publish()                // no new change: the group left stale has its turn
	if s := badShare(rotation.Request{Strategy: rotation.Weighted}); s > 0.05 {
		t.Fatalf("the %d-member group was not refreshed 2.5 s after its last computation: failing members got %.3f of the picks", n, s)
	}
}
