package rotation_test

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/leanovate/gopter"
	"github.com/leanovate/gopter/gen"
	"github.com/leanovate/gopter/prop"
	"github.com/proxyhealth/proxyhealth/rotation"
)

var (
	seedFlag  = flag.Int64("props.seed", 20250304, "gopter seed; 0 picks a time-based seed (logged)")
	countFlag = flag.Int("props.count", 300, "minimum successful tests per property")
)

// op is one writer step of a generated scenario.
type op struct {
	Kind    int // 0..6 Set, 7 Remove, 8..9 Publish
	I       int // member 0..15
	Source  int // 0..2
	Scheme  int // 0..1
	Tags    int // bit set over {x, y}
	State   int // 0..5
	Paused  bool
	Ejected bool
	CF      uint32
	LS      int64
	LatMs   int
	Rate    int // percent
	Checks  uint32
}

type scenario struct {
	IncludeDegraded bool
	Threshold       int // index into thresholds
	Ops             []op
}

var thresholds = []float64{0, 0.3, 0.5, 0.8, 1}

func opGen() gopter.Gen {
	return func(p *gopter.GenParameters) *gopter.GenResult {
		r := p.Rng
		o := op{
			Kind: r.Intn(10), I: r.Intn(16), Source: r.Intn(3), Scheme: r.Intn(2), Tags: r.Intn(4),
			State: r.Intn(6), Paused: r.Intn(8) == 0, Ejected: r.Intn(8) == 0,
			CF: uint32(r.Intn(4)), LS: int64(r.Intn(4)), LatMs: r.Intn(300), Rate: r.Intn(101), Checks: uint32(r.Intn(3)),
		}
		return gopter.NewGenResult(o, gopter.NoShrinker)
	}
}

func (o op) member() rotation.Member {
	scheme := []string{"http", "socks5"}[o.Scheme]
	var tags []string
	if o.Tags&1 != 0 {
		tags = append(tags, "x")
	}
	if o.Tags&2 != 0 {
		tags = append(tags, "y")
	}
	return member(o.I, fmt.Sprint("s", o.Source), scheme, tags...)
}

func (o op) status() rotation.Status {
	return rotation.Status{
		State: rotation.State(o.State), Paused: o.Paused, Ejected: o.Ejected,
		LatencyEWMA: time.Duration(o.LatMs) * time.Millisecond, SuccessRate: float64(o.Rate) / 100, Checks: o.Checks,
		ConsecutiveFailures: o.CF, LastSuccess: o.LS,
	}
}

type modelEntry struct {
	m  rotation.Member
	st rotation.Status
}

// propRequests are the requests checked after each Publish.
var propRequests = []rotation.Request{
	{}, {Source: "s1"}, {Scheme: "socks5"}, {Tag: "x"}, {Source: "s0", Tag: "y"},
	{Source: "s2", Scheme: "http", Tag: "x"}, {Exclude: []string{id(0), id(1), id(2)}},
	{Source: "s1", Exclude: []string{id(4)}}, {Tag: "nope"},
}

// allowed is what the rule says a request may get: the usable matching
// members, or in panic mode those and the least-bad eligible ones (the
// best ceil(threshold × candidates), ties included); never excluded.
func allowed(model map[string]modelEntry, req rotation.Request, includeDegraded bool, thr float64) (ids map[string]bool, panic bool) {
	type cand struct {
		id     string
		usable bool
		cf     uint32
		ls     int64
	}
	var cands []cand
	usable := 0
	for id, e := range model {
		m, st := e.m, e.st
		if req.Source != "" && m.Source != req.Source || req.Scheme != "" && m.Scheme != req.Scheme || req.Tag != "" && !slices.Contains(m.Tags, req.Tag) {
			continue
		}
		if st.Paused {
			continue
		}
		u := !st.Ejected && (st.State == rotation.StateHealthy || st.State == rotation.StateDegraded && includeDegraded)
		if u {
			usable++
		}
		cands = append(cands, cand{id, u, st.ConsecutiveFailures, st.LastSuccess})
	}
	ids = map[string]bool{}
	panic = thr > 0 && len(cands) > 0 && float64(usable) < thr*float64(len(cands))
	var eligible []cand
	for _, c := range cands {
		if c.usable {
			ids[c.id] = true
		} else if model[c.id].st.State != rotation.StateFailed {
			eligible = append(eligible, c)
		}
	}
	if panic {
		sort.Slice(eligible, func(i, j int) bool {
			a, b := eligible[i], eligible[j]
			return a.cf < b.cf || a.cf == b.cf && a.ls > b.ls
		})
		if k := int(math.Ceil(thr*float64(len(cands)))) - usable; k > 0 && len(eligible) > 0 {
			cut := eligible[min(k, len(eligible))-1]
			for _, c := range eligible {
				if c.cf < cut.cf || c.cf == cut.cf && c.ls >= cut.ls {
					ids[c.id] = true
				}
			}
		}
	}
	for _, x := range req.Exclude {
		delete(ids, x)
	}
	return ids, panic
}

func checkPicks(p *rotation.Pool, model map[string]modelEntry, sc scenario) string {
	thr := thresholds[sc.Threshold]
	for _, base := range propRequests {
		want, panic := allowed(model, base, sc.IncludeDegraded, thr)
		for _, s := range rotation.Strategies {
			req := base
			req.Strategy = s
			for k := range 3 {
				req.Key = fmt.Sprint("key", k)
				pk, err := p.Pick(req)
				if len(want) == 0 {
					if !errors.Is(err, rotation.ErrNoProxy) {
						return fmt.Sprintf("%+v: got %s (panic %v) err %v, want ErrNoProxy", req, pk.ID, pk.Panic, err)
					}
					continue
				}
				if err != nil || !want[pk.ID] || pk.Panic != panic {
					return fmt.Sprintf("%+v: got %s panic=%v err %v; want one of %v, panic=%v", req, pk.ID, pk.Panic, err, want, panic)
				}
			}
			dst := make([]rotation.Pick, 3)
			n, err := p.PickN(req, dst)
			if wantN := min(3, len(want)); n != wantN || (wantN == 0) != errors.Is(err, rotation.ErrNoProxy) {
				return fmt.Sprintf("PickN(%+v) = %d, %v; want %d of %v", req, n, err, wantN, want)
			}
			seen := map[string]bool{}
			for _, pk := range dst[:n] {
				if seen[pk.ID] || !want[pk.ID] {
					return fmt.Sprintf("PickN(%+v) = %v: %s repeated or not allowed (%v)", req, dst[:n], pk.ID, want)
				}
				seen[pk.ID] = true
			}
		}
	}
	ps := p.Panic()
	if _, panic := allowed(model, rotation.Request{}, sc.IncludeDegraded, thr); ps.Active != panic {
		return fmt.Sprintf("Panic() = %+v, want active=%v", ps, panic)
	}
	return ""
}

// TestPickProperty: after any sequence of Set, Remove and Publish, every
// pick is an allowed member (usable and matching, or a panic pick obeying
// the panic rule), and ErrNoProxy comes exactly when nothing is allowed.
func TestPickProperty(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	params := gopter.DefaultTestParametersWithSeed(seed)
	params.MinSuccessfulTests = *countFlag
	params.MaxSize = 80
	t.Logf("gopter seed %d; replay: go test ./rotation/ -run '^%s$' -props.seed=%d -props.count=%d -v", seed, t.Name(), seed, *countFlag)
	props := gopter.NewProperties(params)
	publishes, panics := 0, 0
	props.Property("picks obey the rules", prop.ForAll(func(sc scenario) string {
		o := rotation.DefaultOptions()
		o.IncludeDegraded, o.PanicThreshold, o.StatsRefresh = sc.IncludeDegraded, thresholds[sc.Threshold], 0
		p, err := rotation.NewPool(o)
		if err != nil {
			return err.Error()
		}
		model := map[string]modelEntry{}
		var trace strings.Builder
		for step, x := range append(slices.Clone(sc.Ops), op{Kind: 9}) {
			switch {
			case x.Kind <= 6:
				m, st := x.member(), x.status()
				model[m.ID] = modelEntry{m, st}
				p.Set(m, st)
				fmt.Fprintf(&trace, "\n  %d Set %s %s/%s%v %+v", step, m.ID, m.Source, m.Scheme, m.Tags, st)
			case x.Kind == 7:
				delete(model, id(x.I))
				p.Remove(id(x.I))
				fmt.Fprintf(&trace, "\n  %d Remove %s", step, id(x.I))
			default:
				p.Publish()
				publishes++
				if p.Panic().Active {
					panics++
				}
				fmt.Fprintf(&trace, "\n  %d Publish", step)
				if msg := checkPicks(p, model, sc); msg != "" {
					return msg + fmt.Sprintf("\n options %+v", o) + trace.String()
				}
			}
		}
		return ""
	}, gen.Struct(reflect.TypeOf(scenario{}), map[string]gopter.Gen{
		"IncludeDegraded": gen.Bool(),
		"Threshold":       gen.IntRange(0, len(thresholds)-1),
		"Ops":             gen.SliceOf(opGen()),
	})))
	props.TestingRun(t)
	// Not vacuous: both modes were checked many times.
	if publishes < 1000 || panics < 100 || publishes-panics < 100 {
		t.Errorf("checked %d publishes, %d in pool-wide panic mode: too few of one kind", publishes, panics)
	}
	t.Logf("checked after %d publishes, %d of them in pool-wide panic mode", publishes, panics)
}
