package proxyhealth_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/proxyhealth/proxyhealth"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// TestTagsAndWeightFromTheConfiguration: a source's tags go to all its
// proxies, an entry adds its own and its weight; they show in the status,
// filter the list and the picker, and a reload that changes them journals
// the change once (not for proxies whose metadata stayed).
func TestTagsAndWeightFromTheConfiguration(t *testing.T) {
	farm := startFarm(t, 3)
	sc := proxyhealth.SourceConfig{Name: "res", Health: fastHealth(), Probe: farmProbe(), Tags: []string{"residential"},
		Proxies: []string{farm.URL(0)},
		Entries: []proxyhealth.ProxyEntry{{URL: farm.URL(1), Tags: []string{"de"}, Weight: 3}, {URL: farm.URL(2), Tags: []string{"us"}}}}
	e := open(t, proxyhealth.Config{Sources: []proxyhealth.SourceConfig{sc}})
	ids := make([]string, 3)
	for i := range ids {
		ids[i], _ = proxyhealth.ResolveProxyID(farm.URL(i))
		waitState(t, e, ids[i], pb.HealthState_HEALTH_STATE_HEALTHY)
	}
	v1, _ := e.Status().Proxy(ids[1])
	v0, _ := e.Status().Proxy(ids[0])
	if strings.Join(v1.Tags, ",") != "de,residential" || v1.Weight != 3 || strings.Join(v0.Tags, ",") != "residential" || v0.Weight != 0 {
		t.Fatalf("metadata: %v %v / %v %v", v0.Tags, v0.Weight, v1.Tags, v1.Weight)
	}
	if n, vs := e.Status().List(proxyhealth.ListFilter{Tag: "de"}, 0, 10); n != 1 || vs[0].ID != ids[1] {
		t.Errorf("list by tag de: %d %v", n, vs)
	}
	poll(t, "picks by tag", func() bool {
		p, err := e.Pick(proxyhealth.PickRequest{Tag: "us"})
		return err == nil && p.ID == ids[2]
	})

	// Reload: proxy 2 moves from us to de; the others keep theirs.
	sc.Entries[1].Tags = []string{"de"}
	if _, err := e.Reconcile(context.Background(), []proxyhealth.SourceConfig{sc}); err != nil {
		t.Fatal(err)
	}
	changed := map[string]int{}
	for env, err := range e.ReadJournal(context.Background(), proxyhealth.JournalFilter{Types: []string{"proxy_metadata_changed"}}) {
		if err != nil {
			t.Fatal(err)
		}
		changed[env.GetProxyId()]++
	}
	if fmt.Sprint(changed) != fmt.Sprint(map[string]int{ids[2]: 1}) {
		t.Errorf("metadata changes journaled: %v, want one for %s", changed, ids[2])
	}
	poll(t, "picks follow the new tags", func() bool {
		n := 0
		for range 20 {
			if p, err := e.Pick(proxyhealth.PickRequest{Tag: "de"}); err == nil && p.ID == ids[2] {
				n++
			}
		}
		_, err := e.Pick(proxyhealth.PickRequest{Tag: "us"})
		return n > 0 && err != nil
	})
}
