package props_test

import (
	"fmt"
	"math/rand"
	"sort"
	"testing"

	"github.com/leanovate/gopter"
	"github.com/proxyhealth/proxyhealth/events"
)

// TestGeneratorCoverage guards against vacuous properties: with the same
// seed and count, the generated scenarios must walk every edge of the state
// diagram (and exercise every command kind) at least a few times.
func TestGeneratorCoverage(t *testing.T) {
	p := parameters(t)
	gp := gopter.DefaultGenParameters()
	gp.Rng = rand.New(rand.NewSource(p.Seed()))
	g := scenarioGen()
	edges := map[string]int{}
	kinds := map[string]int{}
	for i := range *countFlag {
		res := g(gp.WithSize(i % p.MaxSize))
		v, ok := res.Retrieve()
		if !ok {
			t.Fatal("generator gave up")
		}
		r := play(v.(Scenario))
		for _, st := range r.Steps {
			kinds[kindName(st.Kind)]++
			for _, e := range st.Envs {
				if e.GetProxyAdded() != nil && st.Before.Removed {
					edges["removed>re-added"]++
				}
				if e.GetProxyEjected() != nil {
					edges["ejected"]++
				}
				if e.GetProxyReturned() != nil {
					edges["returned"]++
				}
				if sc := e.GetStateChanged(); sc != nil {
					edges[events.StateName(sc.GetFrom())+">"+events.StateName(sc.GetTo())]++
				}
			}
		}
	}
	want := []string{
		"unknown>healthy", "unknown>degraded", "unknown>unhealthy",
		"healthy>degraded", "healthy>unhealthy",
		"degraded>healthy", "degraded>unhealthy",
		"unhealthy>recovering", "unhealthy>unknown",
		"recovering>healthy", "recovering>unhealthy", "recovering>failed", "recovering>unknown",
		"failed>unknown", "removed>re-added", "ejected", "returned",
	}
	const minimum = 5
	for _, e := range want {
		if edges[e] < minimum {
			t.Errorf("edge %s seen %d times in %d scenarios, want ≥ %d", e, edges[e], *countFlag, minimum)
		}
	}
	for _, k := range kindNames {
		if kinds[k] < minimum {
			t.Errorf("command %s played %d times", k, kinds[k])
		}
	}
	var seen []string
	for e, n := range edges {
		seen = append(seen, fmt.Sprintf("%s=%d", e, n))
	}
	sort.Strings(seen)
	t.Logf("edges: %v", seen)
}
