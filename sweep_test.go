package proxyhealth_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/internal/clock"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// TestProjectionsSeeASweep: ProjectionEnv.Sweeping reports a sweep while
// at least SweepMin proxies await their first check, and none once fewer
// do.
func TestProjectionsSeeASweep(t *testing.T) {
	var sweeping func() bool
	spy := proxyhealth.ProjectionSpec{Name: "spy", Open: func(_ context.Context, env proxyhealth.ProjectionEnv) (proxyhealth.Projection, error) {
		sweeping = env.Sweeping
		return nil, nil // nothing to run
	}}
	urls := make([]string, proxyhealth.SweepMin)
	for i := range urls {
		urls[i] = fmt.Sprintf("127.0.0.1:%d", 20000+i)
	}
	// A frozen fake clock: no proxy is checked, every one stays unknown.
	e := open(t, proxyhealth.Config{Clock: clock.NewFake(t0), Projections: []proxyhealth.ProjectionSpec{spy},
		Sources: []proxyhealth.SourceConfig{{Name: "a", Probe: farmProbe(), Proxies: urls}}})
	if sweeping == nil {
		t.Fatal("the projection's environment has no Sweeping")
	}
	if !sweeping() {
		t.Fatalf("%d proxies await their first check, yet Sweeping says no sweep", len(urls))
	}
	if err := e.RemoveProxy(context.Background(), e.ProxyIDs()[0]); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "Sweeping to say no sweep with SweepMin-1 proxies unknown", func() bool { return !sweeping() })
}
