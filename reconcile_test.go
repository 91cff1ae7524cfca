package proxyhealth_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

func TestReconcile(t *testing.T) {
	farm := startFarm(t, 5)
	ids := make([]string, 5)
	for i := range ids {
		ids[i], _ = proxyhealth.ResolveProxyID(farm.URL(i))
	}
	src := func(name string, idx ...int) proxyhealth.SourceConfig {
		sc := proxyhealth.SourceConfig{Name: name, Health: fastHealth(), Probe: farmProbe()}
		for _, i := range idx {
			sc.Proxies = append(sc.Proxies, farm.URL(i))
		}
		return sc
	}
	e := open(t, proxyhealth.Config{Sources: []proxyhealth.SourceConfig{src("a", 0, 1), src("b", 2)}})
	ctx := context.Background()
	if _, err := e.AddProxy(ctx, "a", farm.URL(3)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.AddProxy(ctx, "", farm.URL(4)); err != nil {
		t.Fatal(err)
	}

	// A bad configuration changes nothing.
	before := e.ProxyIDs()
	if _, err := e.Reconcile(ctx, []proxyhealth.SourceConfig{src("a", 0), {Name: "bad name"}}); !errors.Is(err, proxyhealth.ErrBadConfig) {
		t.Fatalf("bad config: %v", err)
	}
	if got := e.ProxyIDs(); !slices.Equal(got, before) {
		t.Fatalf("a refused reconcile changed the proxies: %v → %v", before, got)
	}

	// a keeps u0 with new settings (and its run-time u3), u1 moves to c, b
	// goes away, the default source keeps its run-time proxy.
	a := src("a", 0)
	a.Health.Interval = 300 * time.Millisecond
	diff, err := e.Reconcile(ctx, []proxyhealth.SourceConfig{a, src("c", 1)})
	if err != nil {
		t.Fatal(err)
	}
	sorted := func(s ...string) []string { slices.Sort(s); return s }
	if want := sorted(ids[1]); !slices.Equal(diff.Added, want) {
		t.Errorf("added %v, want %v", diff.Added, want)
	}
	if want := sorted(ids[1], ids[2]); !slices.Equal(diff.Removed, want) {
		t.Errorf("removed %v, want %v", diff.Removed, want)
	}
	if want := sorted(ids[0], ids[3]); !slices.Equal(diff.Changed, want) {
		t.Errorf("changed %v, want %v", diff.Changed, want)
	}
	if got, want := e.ProxyIDs(), sorted(ids[0], ids[1], ids[3], ids[4]); !slices.Equal(got, want) {
		t.Fatalf("proxies %v, want %v", got, want)
	}
	for i, want := range map[int]string{0: "a", 1: "c", 3: "a", 4: proxyhealth.DefaultSource} {
		st, err := e.Proxy(ctx, ids[i])
		if err != nil || st.Source != want {
			t.Errorf("proxy %d: %+v %v, want source %s", i, st, err, want)
		}
	}
	if rt := e.RunTimeProxies(); len(rt) != 2 || rt[ids[3]] != "a" || rt[ids[4]] != proxyhealth.DefaultSource {
		t.Errorf("run-time proxies %v", rt)
	}

	// The same configuration again changes nothing.
	diff, err = e.Reconcile(ctx, []proxyhealth.SourceConfig{a, src("c", 1)})
	if err != nil || len(diff.Added)+len(diff.Removed)+len(diff.Changed) != 0 {
		t.Fatalf("second reconcile: %+v %v", diff, err)
	}
	// A run-time proxy that the configuration now lists is a configured one.
	diff, err = e.Reconcile(ctx, []proxyhealth.SourceConfig{src("a", 0, 3), src("c", 1)})
	if err != nil || len(diff.Added)+len(diff.Removed) != 0 {
		t.Fatalf("listing a run-time proxy: %+v %v", diff, err)
	}
	if _, rt := e.RunTimeProxies()[ids[3]]; rt {
		t.Error("a listed proxy is still a run-time one")
	}
}

// TestReconcileDefaultSourceGoneKeepsOnlyRunTime: when the configuration
// no longer lists the default source, the default source stays for its
// run-time proxies only: its configured proxies go (and the diff says so),
// its list stops.
func TestReconcileDefaultSourceGoneKeepsOnlyRunTime(t *testing.T) {
	farm := startFarm(t, 3)
	ids := make([]string, 3)
	for i := range ids {
		ids[i], _ = proxyhealth.ResolveProxyID(farm.URL(i))
	}
	def := proxyhealth.SourceConfig{Name: proxyhealth.DefaultSource, Health: fastHealth(), Probe: farmProbe(), Proxies: []string{farm.URL(0)}}
	a := proxyhealth.SourceConfig{Name: "a", Health: fastHealth(), Probe: farmProbe(), Proxies: []string{farm.URL(1)}}
	e := open(t, proxyhealth.Config{Sources: []proxyhealth.SourceConfig{def, a}})
	ctx := context.Background()
	if _, err := e.AddProxy(ctx, "", farm.URL(2)); err != nil {
		t.Fatal(err)
	}
	diff, err := e.Reconcile(ctx, []proxyhealth.SourceConfig{a})
	if err != nil {
		t.Fatal(err)
	}
	if len(diff.Added) != 0 || !slices.Equal(diff.Removed, []string{ids[0]}) {
		t.Errorf("diff %+v, want only %s removed", diff, ids[0])
	}
	want := []string{ids[1], ids[2]}
	slices.Sort(want)
	if got := e.ProxyIDs(); !slices.Equal(got, want) {
		t.Errorf("proxies %v, want %v (the default source's configured proxy is gone, its run-time one stays)", got, want)
	}
	if st, err := e.Proxy(ctx, ids[2]); err != nil || st.Source != proxyhealth.DefaultSource {
		t.Errorf("run-time proxy: %+v %v, want it in the default source", st, err)
	}
}

// TestEngineKeepsNoReferenceToConfiguredProxies: once a source without a
// list runs its proxies (Open, ReconfigureSource, Reconcile), the engine
// keeps no reference to the configuration's Proxies and Entries: the
// proxies' records have what they need, and a configuration of 100,000
// proxies would otherwise cost 7 MB for the whole run
// (BenchmarkConfigRetainedPerProxy in cmd/proxyhealth).
func TestEngineKeepsNoReferenceToConfiguredProxies(t *testing.T) {
	farm := startFarm(t, 4)
	released := make(chan string, 8)
	// watched returns a source whose Proxies and Entries report on
	// released once unreachable.
	watched := func(name string, proxy, entry int) proxyhealth.SourceConfig {
		sc := proxyhealth.SourceConfig{Name: name, Health: fastHealth(), Probe: farmProbe(),
			Proxies: []string{farm.URL(proxy)}, Entries: []proxyhealth.ProxyEntry{{URL: farm.URL(entry), Tags: []string{"t"}}}}
		runtime.AddCleanup(&sc.Proxies[0], func(s string) { released <- s }, name+" proxies")
		runtime.AddCleanup(&sc.Entries[0], func(s string) { released <- s }, name+" entries")
		return sc
	}
	e := open(t, proxyhealth.Config{Sources: []proxyhealth.SourceConfig{watched("a", 0, 1)}})
	ctx := context.Background()
	if err := e.ReconfigureSource(ctx, watched("a", 1, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Reconcile(ctx, []proxyhealth.SourceConfig{watched("a", 0, 1), watched("b", 2, 3)}); err != nil {
		t.Fatal(err)
	}
	if n := len(e.ProxyIDs()); n != 4 {
		t.Fatalf("%d proxies, want 4", n)
	}
	var got []string
	testutil.EventuallyExplain(t, 15*time.Second, func() bool {
		runtime.GC()
		for {
			select {
			case s := <-released:
				got = append(got, s)
				continue
			default:
			}
			return len(got) == cap(released)
		}
	}, func() string { return fmt.Sprintf("released: %q; the engine keeps the others", got) })
}
