package proxyhealth_test

import (
	"context"
	"testing"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// TestExitIPAndAnonymity: with an echo target, checks record each proxy's
// exit IP and anonymity (journaled when they change, not on every check);
// the status shows them, the list and the picker filter by them.
func TestExitIPAndAnonymity(t *testing.T) {
	farm := startFarm(t, 3)
	modes := []fakeproxy.Anonymity{fakeproxy.Elite, fakeproxy.Anonymous, fakeproxy.Transparent}
	for i, m := range modes {
		if err := farm.SetExit(i, fakeproxy.DefaultExit(i), m); err != nil {
			t.Fatal(err)
		}
	}
	probeCfg := farmProbe()
	probeCfg.EchoURL = farm.EchoURL()
	e := open(t, proxyhealth.Config{Sources: []proxyhealth.SourceConfig{{Name: "s", Health: fastHealth(), Probe: probeCfg,
		Proxies: []string{farm.URL(0), farm.URL(1), farm.URL(2)}}}})
	want := []string{"elite", "anonymous", "transparent"}
	ids := make([]string, 3)
	for i := range ids {
		ids[i], _ = proxyhealth.ResolveProxyID(farm.URL(i))
		waitState(t, e, ids[i], pb.HealthState_HEALTH_STATE_HEALTHY)
	}
	poll(t, "the exits of the three proxies", func() bool {
		for i, id := range ids {
			v, _ := e.Status().Proxy(id)
			if v.ExitIP != fakeproxy.DefaultExit(i) || v.Anonymity != want[i] {
				return false
			}
		}
		return true
	})
	if n, vs := e.Status().List(proxyhealth.ListFilter{Anonymity: "elite"}, 0, 10); n != 1 || vs[0].ID != ids[0] {
		t.Errorf("list by anonymity: %d %v", n, vs)
	}
	poll(t, "an elite pick", func() bool {
		p, err := e.Pick(proxyhealth.PickRequest{Tag: proxyhealth.AnonymityTagPrefix + "elite"})
		return err == nil && p.ID == ids[0]
	})
	// A new exit IP is journaled once.
	if err := farm.SetExit(0, "198.51.100.9", fakeproxy.Elite); err != nil {
		t.Fatal(err)
	}
	poll(t, "the new exit IP", func() bool { v, _ := e.Status().Proxy(ids[0]); return v.ExitIP == "198.51.100.9" })
	n := 0
	for env, err := range e.ReadJournal(context.Background(), proxyhealth.JournalFilter{Proxy: ids[0], Types: []string{"exit_observed"}}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		_ = env
	}
	if n != 2 {
		t.Errorf("%d exit_observed events for proxy 0, want 2 (first exit, then the new one), not one per check", n)
	}
}
