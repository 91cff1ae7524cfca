package proxyhealth_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/probe"
	"github.com/proxyhealth/proxyhealth/projections"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
	"google.golang.org/protobuf/proto"
)

// clusterOf opens one engine per address, members of one fake cluster,
// all with the same configuration: one source listing every farm proxy.
type testCluster struct {
	t       *testing.T
	fc      *proxyhealth.FakeCluster
	farm    *fakeproxy.Farm
	urls    []string
	engines map[string]*proxyhealth.Engine
	dirs    map[string]string
	// ips are the members' check source addresses, so that the farm
	// counts each member's checks apart.
	ips map[string]netip.Addr
}

func newTestCluster(t *testing.T, n int, addrs ...string) *testCluster {
	t.Helper()
	tc := &testCluster{t: t, fc: proxyhealth.NewFakeCluster(), farm: startFarm(t, n), engines: map[string]*proxyhealth.Engine{}, dirs: map[string]string{}, ips: map[string]netip.Addr{}}
	for i := range n {
		tc.urls = append(tc.urls, tc.farm.URL(i))
	}
	for _, a := range addrs {
		tc.start(a)
	}
	t.Cleanup(func() {
		for _, a := range slices.Sorted(mapsKeys(tc.engines)) {
			tc.close(a)
		}
	})
	return tc
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func (tc *testCluster) start(addr string) *proxyhealth.Engine {
	tc.t.Helper()
	if tc.dirs[addr] == "" {
		tc.dirs[addr] = tc.t.TempDir()
		tc.ips[addr] = netip.AddrFrom4([4]byte{127, 0, 0, byte(41 + len(tc.ips))})
	}
	pc := farmProbe()
	pc.SourceIP = tc.ips[addr]
	cfg := proxyhealth.Config{DataDir: tc.dirs[addr], ResumeAddedProxies: true, Sources: []proxyhealth.SourceConfig{{
		Name: "farm", Proxies: tc.urls, Health: fastHealth(), Probe: pc,
	}}}
	e := open(tc.t, tc.fc.Config(cfg, addr))
	tc.engines[addr] = e
	return e
}

func (tc *testCluster) close(addr string) {
	tc.t.Helper()
	e := tc.engines[addr]
	delete(tc.engines, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.Close(ctx); err != nil {
		tc.t.Errorf("close %s: %v", addr, err)
	}
}

// owners maps each proxy to the members whose status lists it, with the
// state each shows.
func (tc *testCluster) owners() map[string]map[string]string {
	out := map[string]map[string]string{}
	for a, e := range tc.engines {
		_, views := e.Status().List(projections.ListFilter{}, 0, 1<<20)
		for _, v := range views {
			if out[v.ID] == nil {
				out[v.ID] = map[string]string{}
			}
			out[v.ID][a] = v.State
		}
	}
	return out
}

// settled waits until every proxy is shown by exactly one of members
// (and by no other engine), checked and in a known state.
func (tc *testCluster) settled(what string, members ...string) map[string]string {
	tc.t.Helper()
	var owner map[string]string
	var last string
	if !testutil.Within(20*time.Second, 20*time.Millisecond, func() bool {
		own := tc.owners()
		owner = map[string]string{}
		for _, u := range tc.urls {
			id := proxyID(tc.t, u)
			if len(own[id]) != 1 {
				last = fmt.Sprintf("proxy %s shown by %v", id, own[id])
				return false
			}
			for a, st := range own[id] {
				if !slices.Contains(members, a) || st == "unknown" {
					last = fmt.Sprintf("proxy %s: %s on %s", id, st, a)
					return false
				}
				owner[id] = a
			}
		}
		return true
	}) {
		tc.t.Fatalf("%s: not settled: %s", what, last)
	}
	return owner
}

func proxyID(t testing.TB, raw string) string {
	t.Helper()
	return probe.MustParseProxyURL(raw).ID()
}

// Each proxy is checked by exactly one member, the one placement names,
// and every member's share is a real share.
func TestClusterChecksEachProxyOnOneMember(t *testing.T) {
	tc := newTestCluster(t, 60, "m1:1", "m2:1", "m3:1")
	owner := tc.settled("three members", "m1:1", "m2:1", "m3:1")
	count := map[string]int{}
	for _, a := range owner {
		count[a]++
	}
	if len(count) != 3 {
		t.Errorf("shares %v: a member checks nothing", count)
	}
	for a, e := range tc.engines {
		st, ok := e.Cluster()
		if !ok || st.Self != a || len(st.Members) != 3 || st.Configured != 60 || st.Checked != count[a] || !st.Fresh {
			t.Errorf("%s: cluster status %+v (share %d)", a, st, count[a])
		}
	}
	// Commands about a proxy another member checks name that member.
	for id, a := range owner {
		for b, e := range tc.engines {
			if b == a {
				continue
			}
			err := e.PauseProxy(context.Background(), id)
			if !errors.Is(err, proxyhealth.ErrNotOwner) || !strings.Contains(err.Error(), a) {
				t.Errorf("pause %s on %s (owner %s): %v", id, b, a, err)
			}
			break
		}
		break
	}
	if _, err := tc.engines["m1:1"].AddProxy(context.Background(), "farm", "http://127.0.0.1:9"); !errors.Is(err, proxyhealth.ErrClusterManaged) {
		t.Errorf("AddProxy in a cluster: %v", err)
	}
}

// A killed member's proxies are taken over by the survivors from their
// last replicated state (never unknown), journaled as adopted, and
// checked again at once.
func TestClusterKilledMembersProxiesAreAdoptedWithoutRelapse(t *testing.T) {
	tc := newTestCluster(t, 60, "m1:1", "m2:1", "m3:1")
	// Some proxies fail, so that the adopted states are not all healthy.
	for i := range 10 {
		if err := tc.farm.Set(i, fakeproxy.Refuse()); err != nil {
			t.Fatal(err)
		}
	}
	owner := tc.settled("three members", "m1:1", "m2:1", "m3:1")
	testutil.Eventually(t, 20*time.Second, "the refusing proxies are unhealthy or further", func() bool {
		own := tc.owners()
		for i := range 10 {
			for _, st := range own[proxyID(t, tc.urls[i])] {
				if st == "healthy" || st == "unknown" || st == "degraded" {
					return false
				}
			}
		}
		return true
	})
	before := tc.owners()
	killedAt := time.Now()
	tc.fc.Kill("m2:1")
	dead := tc.engines["m2:1"]
	delete(tc.engines, "m2:1")
	t.Cleanup(func() { _ = dead.Close(context.Background()) })

	after := tc.settled("after the kill", "m1:1", "m3:1")
	for id, a := range owner {
		if a != "m2:1" {
			if after[id] != a {
				t.Errorf("proxy %s moved from %s to %s though its owner lives", id, a, after[id])
			}
			continue
		}
		e := tc.engines[after[id]]
		story := streamOf(t, e, id)
		adopted := lastAdoption(story)
		if adopted == nil || adopted.GetFromMember() != "m2:1" {
			t.Errorf("proxy %s taken by %s without an adoption from m2:1: %v", id, after[id], story)
			continue
		}
		if want := before[id]["m2:1"]; events.StateName(adopted.GetState().GetState()) != want && want != "recovering" && want != "unhealthy" {
			t.Errorf("proxy %s adopted as %s, was %s on m2:1", id, events.StateName(adopted.GetState().GetState()), want)
		}
	}
	// Checked again by the survivors soon after the kill.
	testutil.Eventually(t, 10*time.Second, "the killed member's healthy proxies are checked again by a survivor", func() bool {
		for id, a := range owner {
			if a != "m2:1" || before[id]["m2:1"] != "healthy" {
				continue
			}
			v, ok := tc.engines[after[id]].Status().Proxy(id)
			if !ok || !v.LastCheckAt.After(killedAt) {
				return false
			}
		}
		return true
	})
}

// A member whose first dump from another is lost (the remote drops what it
// queued for a connection it tears down) asks for it again while it
// joins: it still holds that member's states when it takes the member's
// proxies over after a kill, and adopts them instead of starting unknown.
func TestClusterJoinAsksAgainForALostDump(t *testing.T) {
	tc := newTestCluster(t, 60, "m1:1", "m2:1")
	tc.settled("two members", "m1:1", "m2:1")
	var mu sync.Mutex
	var lost, asked int
	tc.fc.Drop(func(from, to string, msg proto.Message) bool {
		mu.Lock()
		defer mu.Unlock()
		if from == "m2:1" && to == "m3:1" {
			if r, ok := msg.(*pb.StateRecords); ok && r.GetEndOfDump() && lost == 0 {
				lost++
				return true
			}
		}
		if _, ok := msg.(*pb.DumpRequest); ok && from == "m3:1" && to == "m2:1" {
			asked++
		}
		return false
	})
	tc.start("m3:1")
	before := tc.settled("three members", "m1:1", "m2:1", "m3:1")
	mu.Lock()
	gone, again := lost, asked
	mu.Unlock()
	if gone != 1 || again == 0 {
		t.Fatalf("m2's dump to m3 lost %d times, m3 asked m2 %d times; want 1 and at least 1", gone, again)
	}
	if st, _ := tc.engines["m3:1"].Cluster(); st.Replicas == 0 {
		t.Fatalf("m3 holds no replica: %+v", st)
	}

	tc.fc.Kill("m2:1")
	dead := tc.engines["m2:1"]
	delete(tc.engines, "m2:1")
	t.Cleanup(func() { _ = dead.Close(context.Background()) })
	after := tc.settled("after the kill", "m1:1", "m3:1")
	taken := 0
	for id, a := range before {
		if a != "m2:1" || after[id] != "m3:1" {
			continue
		}
		taken++
		story := streamOf(t, tc.engines["m3:1"], id)
		adopted := lastAdoption(story)
		if adopted == nil || adopted.GetFromMember() != "m2:1" {
			t.Errorf("proxy %s taken by m3:1 without an adoption from m2:1: %v", id, story)
		}
	}
	if taken == 0 {
		t.Fatal("m3 took none of m2's proxies")
	}
}

// A member that comes back on its address takes its share back; the
// members that held it hand it over (journaled as removed, "handed over"),
// and no proxy shows unknown anywhere meanwhile.
func TestClusterRestartedMemberTakesItsShareBack(t *testing.T) {
	tc := newTestCluster(t, 60, "m1:1", "m2:1", "m3:1")
	owner := tc.settled("three members", "m1:1", "m2:1", "m3:1")
	tc.close("m2:1") // graceful: hands over at once
	tc.settled("after m2 left", "m1:1", "m3:1")
	tc.start("m2:1")
	again := tc.settled("after m2 came back", "m1:1", "m2:1", "m3:1")
	for id, a := range owner {
		if again[id] != a {
			t.Errorf("proxy %s: owner %s before, %s after the restart", id, a, again[id])
		}
	}
	// The stories of m2's proxies on the survivors end with the hand-over.
	n := 0
	for id, a := range owner {
		if a != "m2:1" {
			continue
		}
		for b, e := range tc.engines {
			if b == "m2:1" {
				continue
			}
			story := streamOf(t, e, id)
			if len(story) == 0 {
				continue
			}
			last := story[len(story)-1]
			if r := last.GetProxyRemoved(); r == nil || r.GetReason() != "handed over to cluster member m2:1" {
				t.Errorf("proxy %s on %s ends with %v", id, b, last)
			}
			n++
		}
	}
	if n == 0 {
		t.Error("no proxy of m2 was held by a survivor meanwhile")
	}
}

// A member whose membership is lost stops checking at once and says so.
func TestClusterLostMemberStopsChecking(t *testing.T) {
	tc := newTestCluster(t, 30, "m1:1", "m2:1")
	tc.settled("two members", "m1:1", "m2:1")
	e := tc.engines["m1:1"]
	tc.fc.Expel("m1:1")
	select {
	case <-e.ClusterLost():
	case <-time.After(10 * time.Second):
		t.Fatal("ClusterLost not closed")
	}
	h := e.Health()
	if h.OK || h.Cluster == nil || !h.Cluster.Lost {
		t.Errorf("health of a lost member: %+v", h)
	}
	// m2 takes everything over; m1 checks nothing more (a check in flight
	// when the membership was lost may still end).
	m2 := tc.engines["m2:1"]
	testutil.Eventually(t, 20*time.Second, "m2 checks every proxy", func() bool {
		s := m2.Status().Summary()
		return s.Total == 30 && s.Unknown == 0
	})
	// Counted at the farm, per member (a result journaled after the loss
	// of a check begun before it would move the lost member's status).
	checks := func(addr string) uint64 {
		var n uint64
		for i := range tc.urls {
			n += tc.farm.ChecksFrom(i, tc.ips[addr])
		}
		return n
	}
	m1Before, m2Before := checks("m1:1"), checks("m2:1")
	testutil.Eventually(t, 20*time.Second, "m2 checks every proxy once more", func() bool { return checks("m2:1") >= m2Before+30 })
	if got := checks("m1:1"); got != m1Before {
		t.Errorf("the lost member checked %d more times", got-m1Before)
	}
}

// lastAdoption is the last ProxyAdopted of a proxy's story (nil: none).
func lastAdoption(story []*pb.Envelope) *pb.ProxyAdopted {
	var adopted *pb.ProxyAdopted
	for _, env := range story {
		if a := env.GetProxyAdopted(); a != nil {
			adopted = a
		}
	}
	return adopted
}

func streamOf(t *testing.T, e *proxyhealth.Engine, id string) []*pb.Envelope {
	t.Helper()
	var out []*pb.Envelope
	for env, err := range e.Journal().ReadStream(context.Background(), id, 1) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, env)
	}
	return out
}

// A member that joins a running cluster starts the proxies it takes from
// the states the others sent it: each stream begins with ProxyAdded and
// ProxyAdopted in one append, never unknown in between.
func TestClusterNewMemberStartsFromTheOthersStates(t *testing.T) {
	tc := newTestCluster(t, 60, "m1:1", "m2:1")
	before := tc.settled("two members", "m1:1", "m2:1")
	tc.start("m3:1")
	after := tc.settled("three members", "m1:1", "m2:1", "m3:1")
	taken := 0
	for id, a := range after {
		if a != "m3:1" {
			continue
		}
		taken++
		story := streamOf(t, tc.engines["m3:1"], id)
		if len(story) < 2 || story[0].GetProxyAdded() == nil || story[1].GetProxyAdopted() == nil || story[1].GetSeq() != story[0].GetSeq()+1 {
			t.Errorf("proxy %s on the new member: %v", id, story)
			continue
		}
		if from := story[1].GetProxyAdopted().GetFromMember(); from != before[id] {
			t.Errorf("proxy %s adopted from %q, its owner was %s", id, from, before[id])
		}
	}
	if taken == 0 {
		t.Fatal("the new member took nothing")
	}
}

// Any member answers for the whole cluster: the summary adds the members
// up, a list pages through every member's proxies in ID order, a pick
// finds a usable proxy on another member; a member that does not answer is
// named, not silently dropped.
func TestClusterQueriesAnswerForTheWholeCluster(t *testing.T) {
	tc := newTestCluster(t, 60, "m1:1", "m2:1", "m3:1")
	owner := tc.settled("three members", "m1:1", "m2:1", "m3:1")
	ctx := context.Background()
	e := tc.engines["m1:1"]

	s, ans, err := e.ClusterSummary(ctx)
	if err != nil || s.Total != 60 || s.Healthy != 60 || len(ans.Members) != 3 || len(ans.Missing) != 0 {
		t.Fatalf("summary: total %d healthy %d, %+v, %v", s.Total, s.Healthy, ans, err)
	}
	if len(s.Sources) != 1 || s.Sources[0].Name != "farm" || s.Sources[0].Total != 60 || s.HealthPercentage != 100 {
		t.Errorf("summary sources: %+v, %.1f%%", s.Sources, s.HealthPercentage)
	}
	shares := map[string]int{}
	for _, a := range owner {
		shares[a]++
	}
	if !maps.Equal(ans.Shares, shares) {
		t.Errorf("shares %v, want %v", ans.Shares, shares)
	}

	var ids []string
	for id := range owner {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	total, page, ans, err := e.ClusterList(ctx, proxyhealth.ListFilter{State: "healthy"}, 25, 10)
	if err != nil || total != 60 || len(page) != 10 || len(ans.Missing) != 0 {
		t.Fatalf("list: total %d, %d views, %+v, %v", total, len(page), ans, err)
	}
	for i, v := range page {
		if v.ID != ids[25+i] {
			t.Errorf("page[%d] = %s, want %s", i, v.ID, ids[25+i])
		}
	}

	// m1 pauses every proxy it checks: a pick comes from another member,
	// with the URL of the shared configuration.
	for id, a := range owner {
		if a == "m1:1" {
			if err := e.PauseProxy(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The picker follows the live status right after each batch.
	testutil.Eventually(t, 10*time.Second, "no local pick with every local proxy paused", func() bool {
		_, err := e.Pick(proxyhealth.PickRequest{})
		return errors.Is(err, proxyhealth.ErrNoProxy)
	})
	p, ans, err := e.ClusterPick(ctx, proxyhealth.PickRequest{})
	if err != nil || owner[p.ID] == "m1:1" || owner[p.ID] == "" || p.URL == nil || proxyID(t, p.URL.String()) != p.ID {
		t.Fatalf("cluster pick: %+v (owner %s), %+v, %v", p, owner[p.ID], ans, err)
	}

	// A member that does not answer is named, and its proxies are missing.
	tc.fc.Mute("m3:1", true)
	s, ans, err = e.ClusterSummary(ctx)
	n3 := 0
	for _, a := range owner {
		if a == "m3:1" {
			n3++
		}
	}
	if err != nil || s.Total != 60-n3 || len(ans.Missing) != 1 || ans.Missing[0].Member != "m3:1" || slices.Contains(ans.Members, "m3:1") {
		t.Errorf("summary with m3 mute: total %d (want %d), %+v, %v", s.Total, 60-n3, ans, err)
	}
	if _, _, _, err := e.ClusterList(ctx, proxyhealth.ListFilter{}, 19990, 20); !errors.Is(err, proxyhealth.ErrClusterQuery) {
		t.Errorf("a list page too deep: %v", err)
	}
}
