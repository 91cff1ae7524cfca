package membership

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/proxyhealth/proxyhealth/internal/etcdtest"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func etcdClient(t *testing.T, e *etcdtest.Etcd) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestThreeMembersSeeEachOther(t *testing.T) {
	e := etcdtest.Start(t)
	var ms []*Member
	for i := 0; i < 3; i++ {
		start := time.Now()
		ms = append(ms, join(t, e, testConfig(e, "three")))
		t.Logf("Join %d took %v", i, time.Since(start).Round(time.Millisecond))
		if !slices.Contains(ms[i].Members(), ms[i].Self()) {
			t.Fatalf("Join returned before %s saw itself: %v", ms[i].Self(), ms[i].Members())
		}
	}
	want := selves(ms)
	allSee(t, ms, want, 5*time.Second)
	for _, m := range ms {
		if !m.Fresh() {
			t.Errorf("%s is not fresh", m.Self())
		}
		if m.Err() != nil {
			t.Errorf("%s: Err %v", m.Self(), m.Err())
		}
		if n := m.Cluster().MemberList.Length(); n != 3 {
			t.Errorf("%s: the cluster's member list has %d members", m.Self(), n)
		}
		if !strings.HasPrefix(m.Self(), "127.0.0.1:") || strings.HasSuffix(m.Self(), ":0") {
			t.Errorf("Self = %s, want 127.0.0.1 with the port bound", m.Self())
		}
	}
	// The member's key in etcd holds its address, and nothing else of it.
	resp, err := etcdClient(t, e).Get(context.Background(), DefaultPrefix+"three/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 3 {
		t.Fatalf("%d keys in etcd, want 3", len(resp.Kvs))
	}
	for _, kv := range resp.Kvs {
		if kv.Lease == 0 {
			t.Errorf("key %s has no lease", kv.Key)
		}
	}
}

func TestWatchGetsTheListAndEveryChange(t *testing.T) {
	e := etcdtest.Start(t)
	a := join(t, e, testConfig(e, "watch"))
	var mu sync.Mutex
	var seen [][]string
	stop := a.Watch(func(ms []string) {
		mu.Lock()
		seen = append(seen, ms)
		mu.Unlock()
	})
	defer stop()
	b := join(t, e, testConfig(e, "watch"))
	leave(t, b)
	want := [][]string{{a.Self()}, selves([]*Member{a, b}), {a.Self()}}
	testutil.EventuallyExplain(t, 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) >= len(want)
	}, func() string {
		mu.Lock()
		defer mu.Unlock()
		return "three lists, got " + strings.Repeat("*", len(seen))
	})
	mu.Lock()
	defer mu.Unlock()
	if !slices.EqualFunc(seen, want, slices.Equal) {
		t.Fatalf("Watch saw %v, want %v", seen, want)
	}
}

// An abruptly stopped member (no revocation, no deregistration: what
// kill -9 leaves) is dropped by the survivors within TTL + 1 s.
func TestCrashedMemberIsDroppedWithinTTL(t *testing.T) {
	e := etcdtest.Start(t)
	ms := joinN(t, e, "crash", 3)
	allSee(t, ms, selves(ms), 5*time.Second)
	survivors := ms[:2]
	dropped := make([]time.Duration, len(survivors))
	start := time.Now()
	ms[2].Crash()
	t.Logf("Crash took %v", time.Since(start).Round(time.Millisecond))
	testutil.Eventually(t, testTTL+time.Second, "the survivors to drop the crashed member", func() bool {
		done := true
		for i, m := range survivors {
			if dropped[i] == 0 && len(m.Members()) == 2 {
				dropped[i] = time.Since(start)
			}
			done = done && dropped[i] != 0
		}
		return done
	})
	t.Logf("dropped after %v and %v (TTL %v)", dropped[0].Round(time.Millisecond), dropped[1].Round(time.Millisecond), testTTL)
	allSee(t, survivors, selves(survivors), time.Second)
	for _, m := range survivors {
		if !m.Fresh() || m.Err() != nil {
			t.Errorf("survivor %s: fresh %v, err %v", m.Self(), m.Fresh(), m.Err())
		}
	}
	start = time.Now()
	leave(t, survivors[0])
	t.Logf("a survivor's Leave took %v", time.Since(start).Round(time.Millisecond))
}

// A lease revoked behind the member's back: Lost closes, Err says why,
// Fresh is false, and the others drop the member at once.
func TestLeaseRevokedFromOutsideLosesTheMembership(t *testing.T) {
	e := etcdtest.Start(t)
	ms := joinN(t, e, "revoke", 2)
	allSee(t, ms, selves(ms), 5*time.Second)
	victim := ms[1]
	c := etcdClient(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, victim.p.key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get %s: %v %v", victim.p.key, resp, err)
	}
	if _, err := c.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-victim.Lost():
	case <-time.After(testTTL):
		t.Fatal("Lost did not close within the TTL after the lease was revoked")
	}
	if victim.Fresh() {
		t.Error("Fresh is true after Lost closed")
	}
	if err := victim.Err(); !errors.Is(err, ErrKeyDeleted) && !errors.Is(err, ErrLeaseExpired) {
		t.Errorf("Err = %v, want ErrKeyDeleted or ErrLeaseExpired", err)
	} else {
		t.Logf("Err: %v", err)
	}
	allSee(t, ms[:1], []string{ms[0].Self()}, time.Second)
	if !ms[0].Fresh() || ms[0].Err() != nil {
		t.Errorf("the other member: fresh %v, err %v", ms[0].Fresh(), ms[0].Err())
	}
}

// A member whose key is deleted (its lease still alive) is lost too.
func TestOwnKeyDeletedLosesTheMembership(t *testing.T) {
	e := etcdtest.Start(t)
	m := join(t, e, testConfig(e, "delete"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := etcdClient(t, e).Delete(ctx, m.p.key); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("Lost did not close after the member's key was deleted")
	}
	if m.Fresh() || !errors.Is(m.Err(), ErrKeyDeleted) {
		t.Errorf("fresh %v, err %v; want false, ErrKeyDeleted", m.Fresh(), m.Err())
	}
}

// etcd stopped for 5 s, then restarted: nobody is dropped, the lists stay
// equal, Fresh turns false after the TTL during the outage (a member cut
// off from etcd cannot tell) and true again after.
func TestEtcdOutageOfFiveSecondsSplitsNothing(t *testing.T) {
	e := etcdtest.Start(t)
	ms := joinN(t, e, "outage", 3)
	want := selves(ms)
	allSee(t, ms, want, 5*time.Second)
	var mu sync.Mutex
	changes := 0
	for _, m := range ms {
		stop := m.Watch(func([]string) { mu.Lock(); changes++; mu.Unlock() })
		defer stop()
	}
	testutil.Eventually(t, time.Second, "the watchers' first calls", func() bool { mu.Lock(); defer mu.Unlock(); return changes == 3 })

	stopped := time.Now()
	e.Stop()
	var unfresh time.Duration
	testutil.Eventually(t, testTTL+time.Second, "every member to stop being fresh", func() bool {
		for _, m := range ms {
			if m.Fresh() {
				return false
			}
		}
		unfresh = time.Since(stopped)
		return true
	})
	t.Logf("all members not fresh %v after etcd stopped", unfresh.Round(time.Millisecond))
	// The scenario: etcd stays down for 5 s.
	time.Sleep(5*time.Second - time.Since(stopped))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	testutil.Eventually(t, 5*time.Second, "every member fresh again", func() bool {
		for _, m := range ms {
			if !m.Fresh() {
				return false
			}
		}
		return true
	})
	t.Logf("down %v; all fresh again %v after the restart", restarted.Sub(stopped).Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
	allSee(t, ms, want, time.Second)
	for _, m := range ms {
		select {
		case <-m.Lost():
			t.Errorf("%s lost its membership: %v", m.Self(), m.Err())
		default:
		}
	}
	// Stay a little to see no late drop (a lease that was not renewed).
	time.Sleep(testTTL)
	allSee(t, ms, want, time.Second)
	mu.Lock()
	defer mu.Unlock()
	if changes != 3 {
		t.Errorf("the member list changed %d times during the outage, want 0", changes-3)
	}
}

// The start-up race: three members started at once all see all three,
// ten times over.
func TestSimultaneousStartsAllSeeAll(t *testing.T) {
	e := etcdtest.Start(t)
	for round := 0; round < 10; round++ {
		ms := make([]*Member, 3)
		errs := make([]error, 3)
		var wg sync.WaitGroup
		for i := range ms {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sys := actor.NewActorSystem(ActorSystemOptions(nil)...)
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				ms[i], errs[i] = Join(ctx, sys, testConfig(e, "race"))
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d, member %d: %v", round, i, err)
			}
		}
		allSee(t, ms, selves(ms), 5*time.Second)
		for _, m := range ms {
			wg.Add(1)
			go func() { defer wg.Done(); leave(t, m) }()
		}
		wg.Wait()
	}
}

// A graceful Leave is seen by the others at once, not after the TTL.
func TestGracefulLeaveIsSeenAtOnce(t *testing.T) {
	e := etcdtest.Start(t)
	ms := joinN(t, e, "leave", 3)
	allSee(t, ms, selves(ms), 5*time.Second)
	start := time.Now()
	leave(t, ms[2])
	took := time.Since(start)
	allSee(t, ms[:2], selves(ms[:2]), testTTL/2)
	t.Logf("Leave took %v; the others dropped the member %v after Leave began (TTL %v)", took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), testTTL)
	if ms[2].Fresh() {
		t.Error("a member that left is fresh")
	}
	if err := ms[2].Leave(context.Background()); err != nil {
		t.Errorf("second Leave: %v", err)
	}
}

func TestJoinFailsWhenEtcdIsNotThere(t *testing.T) {
	e := etcdtest.Start(t)
	cfg := testConfig(e, "nobody")
	e.Stop()
	cfg.DialTimeout = 500 * time.Millisecond
	sys := actor.NewActorSystem(ActorSystemOptions(nil)...)
	defer sys.Shutdown()
	_, err := Join(context.Background(), sys, cfg)
	if !errors.Is(err, ErrEtcd) {
		t.Fatalf("Join without etcd: %v, want ErrEtcd", err)
	}
	if !strings.Contains(err.Error(), e.ClientURL()) {
		t.Errorf("the error does not name the endpoint: %v", err)
	}
}

func TestJoinFailsWhenTheAddressIsTaken(t *testing.T) {
	e := etcdtest.Start(t)
	a := join(t, e, testConfig(e, "taken"))
	cfg := testConfig(e, "taken")
	cfg.Advertise = a.Self()
	sys := actor.NewActorSystem(ActorSystemOptions(nil)...)
	defer sys.Shutdown()
	_, err := Join(context.Background(), sys, cfg)
	if !errors.Is(err, ErrListen) {
		t.Fatalf("Join on a taken port: %v, want ErrListen", err)
	}
	// The lease granted for the failed member was revoked: only a is listed.
	allSee(t, []*Member{a}, []string{a.Self()}, time.Second)
	resp, err2 := etcdClient(t, e).Leases(context.Background())
	if err2 != nil {
		t.Fatal(err2)
	}
	if len(resp.Leases) != 1 {
		t.Errorf("%d leases in etcd after a failed Join, want 1 (the member's)", len(resp.Leases))
	}
}

// A member that crashed and comes back on the same host:port (a new actor
// system: a new member id) is admitted by the others, in their lists and
// in protoactor's member list (which blocks the old id for good).
func TestRestartedMemberOnTheSameAddressIsAdmitted(t *testing.T) {
	e := etcdtest.Start(t)
	ms := joinN(t, e, "restart", 3)
	allSee(t, ms, selves(ms), 5*time.Second)
	addr := ms[2].Self()
	ms[2].Crash()
	allSee(t, ms[:2], selves(ms[:2]), testTTL+time.Second)
	cfg := testConfig(e, "restart")
	cfg.Advertise = addr
	back := join(t, e, cfg)
	if back.Self() != addr {
		t.Fatalf("rejoined as %s, not %s", back.Self(), addr)
	}
	all := []*Member{ms[0], ms[1], back}
	allSee(t, all, selves(all), 5*time.Second)
	testutil.Eventually(t, 5*time.Second, "protoactor's member lists to hold the three", func() bool {
		for _, m := range all {
			if m.Cluster().MemberList.Length() != 3 {
				return false
			}
		}
		return true
	})
}
