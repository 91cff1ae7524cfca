package sqlview_test

import (
	"context"
	"errors"
	"flag"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/leanovate/gopter"
	"github.com/leanovate/gopter/gen"
	"github.com/leanovate/gopter/prop"

	igen "github.com/proxyhealth/proxyhealth/internal/gen"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections/sqlview"
)

var (
	propSeed  = flag.Int64("props.seed", 20250304, "gopter seed of the view properties")
	propCount = flag.Int("props.count", 40, "minimum successful tests per view property")
)

// TestPropIncrementalEqualsRebuild: for random event sequences appended in
// random batches, applied incrementally in random steps with random
// crashes (aborted batches, abandoned handles, reopened files), the view
// equals a rebuild from scratch, table by table.
func TestPropIncrementalEqualsRebuild(t *testing.T) {
	p := gopter.DefaultTestParametersWithSeed(*propSeed)
	p.MinSuccessfulTests = *propCount
	t.Logf("gopter seed %d (replay with -props.seed=%d)", *propSeed, *propSeed)
	props := gopter.NewProperties(p)
	props.Property("incremental == rebuild", prop.ForAll(func(seed uint64, proxies, n, batch int) string {
		ctx := context.Background()
		dir := t.TempDir()
		j := journal.NewMem()
		defer j.Close()
		r := rand.New(rand.NewPCG(seed, 3))
		sim := igen.NewSim(seed, proxies)
		sim.JumpProb = 0.03
		path := filepath.Join(dir, "view.db")
		emptyView(t, path)
		v, err := sqlview.OpenView(ctx, path, j, sqlview.Options{BatchSize: batch})
		if err != nil {
			return err.Error()
		}
		open := []*sqlview.View{v}
		defer func() {
			for _, v := range open {
				v.Close()
			}
		}()
		for appended := 0; appended < n; {
			k := 1 + r.IntN(60)
			if err := igen.AppendRandom(ctx, j, r, sim.Events(k), 10); err != nil {
				return err.Error()
			}
			appended += k
			switch r.IntN(6) {
			case 0: // crash: abandon the handle, reopen the file
				if v, err = sqlview.OpenView(ctx, path, j, sqlview.Options{BatchSize: batch}); err != nil {
					return err.Error()
				}
				open = append(open, v)
			case 1: // a batch dies before its commit
				sqlview.SetBeforeCommitHook(v, func() error { return errors.New("crash") })
				v.CatchUp(ctx)
				sqlview.SetBeforeCommitHook(v, nil)
			}
			if r.IntN(2) == 0 {
				if err := v.CatchUp(ctx); err != nil {
					return err.Error()
				}
			}
		}
		if err := v.CatchUp(ctx); err != nil {
			return err.Error()
		}
		if err := sameViews(t, path, rebuilt(t, j, dir)); err != nil {
			return err.Error()
		}
		return ""
	}, gen.UInt64(), gen.IntRange(1, 20), gen.IntRange(1, 400), gen.IntRange(1, 50)))
	props.TestingRun(t)
}
