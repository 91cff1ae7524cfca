package projections_test

import (
	"flag"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/leanovate/gopter"
	"github.com/leanovate/gopter/gen"
	"github.com/leanovate/gopter/prop"

	igen "github.com/proxyhealth/proxyhealth/internal/gen"
	"github.com/proxyhealth/proxyhealth/projections"
)

var (
	propSeed  = flag.Int64("props.seed", 20250304, "gopter seed of the projections properties")
	propCount = flag.Int("props.count", 60, "minimum successful tests per projections property")
)

func propParams(t *testing.T) *gopter.TestParameters {
	p := gopter.DefaultTestParametersWithSeed(*propSeed)
	p.MinSuccessfulTests = *propCount
	t.Logf("gopter seed %d (replay with -props.seed=%d)", *propSeed, *propSeed)
	return p
}

// TestPropLiveCounts: whatever the events, their batching and the checking
// flags, the incremental counts equal a recount from the proxy views, total
// equals the sum of the six state counts, and the result does not depend on
// the batching.
func TestPropLiveCounts(t *testing.T) {
	props := gopter.NewProperties(propParams(t))
	props.Property("incremental counts == recount", prop.ForAll(func(seed uint64, proxies, n int) string {
		envs := committed(t, seed, proxies, n)
		r := rand.New(rand.NewPCG(seed, 99))
		l := projections.NewLive(projections.LiveOptions{})
		for rest := envs; len(rest) > 0; {
			k := min(1+r.IntN(40), len(rest))
			l.Apply(rest[:k]...)
			rest = rest[k:]
			for range r.IntN(3) {
				l.SetChecking(igen.ID(r.IntN(proxies+2)), r.IntN(2) == 0)
			}
			if err := checkInvariants(l); err != nil {
				return err.Error()
			}
		}
		for i := range proxies + 2 {
			l.SetChecking(igen.ID(i), false)
		}
		once := projections.NewLive(projections.LiveOptions{})
		once.Apply(envs...)
		if !reflect.DeepEqual(once.Summary(), l.Summary()) {
			return "summary depends on batching"
		}
		return ""
	}, gen.UInt64(), gen.IntRange(1, 40), gen.IntRange(1, 600)))
	props.TestingRun(t)
}
