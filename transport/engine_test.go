package transport_test

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/transport"
)

// The engine is a Rotator.
var _ transport.Rotator = (*proxyhealth.Engine)(nil)

var (
	newTransport = transport.NewTransportForTest
	get          = transport.GetForTest
	startFarm    = transport.StartFarmForTest
)

// TestClassesAreTheEnginesOutcomeClasses: every class the transport
// reports is one ReportOutcome accepts.
func TestClassesAreTheEnginesOutcomeClasses(t *testing.T) {
	ours := []string{transport.ClassRefused, transport.ClassTimeout, transport.ClassReset, transport.ClassTLS, transport.ClassDNS, transport.ClassProxyAuthRequired, transport.ClassBadStatus, transport.ClassProtocol, transport.ClassOther}
	for _, c := range ours {
		if !slices.Contains(proxyhealth.OutcomeClasses, c) {
			t.Errorf("class %q is not in proxyhealth.OutcomeClasses %v", c, proxyhealth.OutcomeClasses)
		}
	}
}

// TestThroughTheEngine: a real engine checks two farm proxies; the
// transport sends a request through the one it picks, and the failures of
// refusing proxies reach the engine's journal as passive failures.
func TestThroughTheEngine(t *testing.T) {
	farm := startFarm(t, 2, fakeproxy.WithBody("via the engine"))
	health := proxyhealth.DefaultHealthConfig()
	health.Interval = 200 * time.Millisecond
	health.SuspectInterval = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	eng, err := proxyhealth.Open(ctx, proxyhealth.Config{
		DataDir: t.TempDir(),
		Sources: []proxyhealth.SourceConfig{{
			Name: "lab", Health: health, Proxies: []string{farm.URL(0), farm.URL(1)},
			Probe: proxyhealth.ProbeConfig{TargetURL: "http://probe.test/generate_204", Timeout: 2 * time.Second},
		}},
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := eng.Close(ctx); err != nil {
			t.Errorf("engine Close: %v", err)
		}
	})
	testutil.Eventually(t, 15*time.Second, "both proxies pickable", func() bool {
		a, errA := eng.Pick(proxyhealth.PickRequest{})
		b, errB := eng.Pick(proxyhealth.PickRequest{Exclude: []string{a.ID}})
		return errA == nil && errB == nil && a.State.String() == "healthy" && b.State.String() == "healthy"
	})
	tr := newTransport(t, eng, transport.Options{Strategy: proxyhealth.RoundRobin})
	if code, body := get(t, tr, "http://target.proxyhealth.test/"); code != 200 || body != "via the engine" {
		t.Fatalf("through the engine's pick: %d %q, want 200 \"via the engine\"", code, body)
	}

	if err := farm.SetAll(fakeproxy.Refuse()); err != nil {
		t.Fatal(err)
	}
	before := farm.TotalChecks()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://target.proxyhealth.test/", nil)
	if resp, err := tr.RoundTrip(req); err == nil {
		resp.Body.Close()
		t.Fatalf("GET through refusing proxies succeeded (farm accepted %d connections)", farm.TotalChecks()-before)
	}
	testutil.Eventually(t, 15*time.Second, "passive failures of both proxies in the journal", func() bool {
		seen := map[string]bool{}
		for env, err := range eng.ReadJournal(ctx, proxyhealth.JournalFilter{Types: []string{"passive_failure"}}) {
			if err != nil {
				t.Fatalf("ReadJournal: %v", err)
			}
			seen[env.GetProxyId()] = true
		}
		return len(seen) == 2
	})
}
