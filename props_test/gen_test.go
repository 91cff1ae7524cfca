package props_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/leanovate/gopter"
	"github.com/leanovate/gopter/gen"
	"github.com/leanovate/gopter/prop"
	"github.com/proxyhealth/proxyhealth/events"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
	"google.golang.org/protobuf/proto"
)

// Generators, the scenario player and the property runner.

const proxyID = "0123456789abcdef"

var t0 = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

type kind int

const (
	kOK kind = iota
	kFail
	kSlow
	kInvalid
	kPassiveFail
	kPassiveOK
	kPause
	kResume
	kRevive
	kCooldown
	kConfig
	kRemove
	kAdd // a re-add: valid only after a remove
	kEjectionExpired
)

var kindNames = []string{"ok", "fail", "slow", "invalid", "passive_fail", "passive_ok", "pause", "resume", "revive", "cooldown", "config", "remove", "add", "ejection_expired"}

// weights per mille, indexed by kind.
var weights = []int{250, 220, 70, 10, 90, 40, 30, 30, 50, 90, 75, 10, 15, 20}

func kindOf(pick int) kind {
	for k, w := range weights {
		if pick < w {
			return kind(k)
		}
		pick -= w
	}
	return kOK
}

// hardClasses are the failure classes that count towards unhealthy.
var hardClasses = []pb.FailureClass{
	pb.FailureClass_FAILURE_CLASS_DNS, pb.FailureClass_FAILURE_CLASS_REFUSED, pb.FailureClass_FAILURE_CLASS_TIMEOUT,
	pb.FailureClass_FAILURE_CLASS_TLS, pb.FailureClass_FAILURE_CLASS_PROXY_AUTH_REQUIRED, pb.FailureClass_FAILURE_CLASS_BAD_STATUS,
	pb.FailureClass_FAILURE_CLASS_CONTENT_MISMATCH, pb.FailureClass_FAILURE_CLASS_RESET, pb.FailureClass_FAILURE_CLASS_PROTOCOL,
	pb.FailureClass_FAILURE_CLASS_OTHER,
}

const tooSlow = pb.FailureClass_FAILURE_CLASS_TOO_SLOW

// Op is one generated command. Pick selects the kind (shrinks towards a
// successful check); the other fields parameterise it.
type Op struct {
	Pick  int
	Class int
	DtMs  int64
	LatMs int64
	// Thresholds for kConfig (and the initial config).
	H, U, MaxRec, PFT uint32
	FSH               bool
}

func (o Op) kind() kind { return kindOf(o.Pick) }

// Scenario is a whole random run.
type Scenario struct {
	Init   Op // thresholds of the initial config
	Jitter float64
	Ops    []Op
	Cut    float64 // where to take a snapshot, as a fraction of the stream
	R      float64 // jitter sample for NextCheckAt checks
}

// opGen draws an Op straight from the generator's Rng: gen.Struct is
// reflection-heavy and made generation dominate the run time under -race.
// Ops do not shrink individually; failing sequences still shrink by
// dropping ops.
func opGen() gopter.Gen {
	return func(p *gopter.GenParameters) *gopter.GenResult {
		r := p.Rng
		o := Op{
			Pick:   r.Intn(1000),
			Class:  r.Intn(len(hardClasses)),
			DtMs:   r.Int63n(180_001),
			LatMs:  r.Int63n(3_001),
			H:      1 + uint32(r.Intn(4)),
			U:      1 + uint32(r.Intn(5)),
			MaxRec: uint32(r.Intn(5)),
			PFT:    1 + uint32(r.Intn(4)),
			FSH:    r.Intn(2) == 0,
		}
		return gopter.NewGenResult(o, gopter.NoShrinker)
	}
}

func scenarioGen() gopter.Gen {
	return gen.Struct(reflect.TypeOf(Scenario{}), map[string]gopter.Gen{
		"Init":   opGen(),
		"Jitter": gen.Float64Range(0, 0.5),
		"Ops":    gen.SliceOf(opGen()),
		"Cut":    gen.Float64Range(0, 1),
		"R":      gen.Float64Range(0, 0.999999),
	})
}

// withThresholds returns cfg with o's thresholds.
func withThresholds(cfg events.Config, o Op) events.Config {
	cfg.HealthyThreshold, cfg.UnhealthyThreshold = o.H, o.U
	cfg.MaxRecoveryAttempts, cfg.PassiveFailureThreshold = o.MaxRec, o.PFT
	cfg.FirstSuccessHealthy = o.FSH
	return cfg
}

// step is one command as played.
type step struct {
	Kind   kind
	Cmd    events.Command
	Cfg    events.Config // the config passed to Decide
	Before events.State
	After  events.State
	Envs   []*pb.Envelope
	Err    error
}

// run is a played scenario.
type run struct {
	Sc      Scenario
	Steps   []step // Steps[0] is the Add
	All     []*pb.Envelope
	Final   events.State
	Problem string // an unexpected error or impurity in Decide
}

// play feeds the scenario to Decide/Evolve like the shell would: Decide,
// let the "journal" assign seqs, Evolve. The clock only moves forward.
func play(sc Scenario) *run {
	cfg := events.DefaultConfig()
	cfg.Jitter = sc.Jitter
	cfg = withThresholds(cfg, sc.Init)
	r := &run{Sc: sc}
	s := events.NewState(proxyID)
	now := t0
	apply := func(k kind, cmd events.Command) {
		envs, err := events.Decide(s, cmd, cfg)
		again, err2 := events.Decide(s, cmd, cfg)
		if fmt.Sprint(err2) != fmt.Sprint(err) || len(again) != len(envs) {
			r.Problem = fmt.Sprintf("Decide is not deterministic for %T", cmd)
		}
		for i := range again {
			if !proto.Equal(again[i], envs[i]) {
				r.Problem = fmt.Sprintf("Decide is not deterministic for %T", cmd)
			}
		}
		st := step{Kind: k, Cmd: cmd, Cfg: cfg, Before: s, Envs: envs, Err: err}
		if err != nil && len(envs) > 0 {
			r.Problem = fmt.Sprintf("%T returned events and error %v", cmd, err)
		}
		for _, e := range envs {
			n := uint64(len(r.All) + 1)
			e.StreamSeq, e.Seq = n, 5000+3*n
			r.All = append(r.All, e)
			s = events.Evolve(s, e)
		}
		st.After = s
		r.Steps = append(r.Steps, st)
	}
	apply(kAdd, events.Add{At: now, URLRedacted: "http://10.1.2.3:3128", Source: "pool", HasCredentials: true})
	for _, o := range sc.Ops {
		now = now.Add(time.Duration(o.DtMs) * time.Millisecond)
		lat := events.Latency{Connect: time.Duration(o.LatMs) * time.Millisecond / 3, Total: time.Duration(o.LatMs) * time.Millisecond}
		var cmd events.Command
		switch o.kind() {
		case kOK:
			cmd = events.CheckCompleted{At: now, Result: events.CheckResult{StatusCode: 204, Latency: lat}}
		case kFail:
			cmd = events.CheckCompleted{At: now, Result: events.CheckResult{Class: hardClasses[o.Class], Message: "failed " + fmt.Sprint(o.Class), Latency: lat}}
		case kSlow:
			cmd = events.CheckCompleted{At: now, Result: events.CheckResult{Class: tooSlow, Message: "slow", Latency: lat}}
		case kInvalid:
			res := events.CheckResult{Class: pb.FailureClass(99)}
			if o.Class%2 == 1 {
				res = events.CheckResult{Class: hardClasses[o.Class], Latency: events.Latency{Total: -lat.Total - 1}}
			}
			cmd = events.CheckCompleted{At: now, Result: res}
		case kPassiveFail:
			c := tooSlow
			if o.Class > 0 {
				c = hardClasses[o.Class]
			}
			cmd = events.PassiveOutcome{At: now, Class: c}
		case kPassiveOK:
			cmd = events.PassiveOutcome{At: now, OK: true}
		case kPause:
			cmd = events.Pause{At: now, Reason: "p"}
		case kResume:
			cmd = events.Resume{At: now, Reason: "r"}
		case kRevive:
			cmd = events.Revive{At: now, Reason: "v"}
		case kCooldown:
			cmd = events.CooldownExpired{At: now}
		case kConfig:
			cfg = withThresholds(cfg, o)
			cmd = events.ConfigChanged{At: now}
		case kRemove:
			cmd = events.Remove{At: now, Reason: "gone"}
		case kEjectionExpired:
			cmd = events.EjectionExpired{At: now}
		case kAdd:
			cmd = events.Add{At: now, URLRedacted: "http://10.1.2.3:3128", Source: fmt.Sprint("pool", o.Class), HasCredentials: o.FSH}
		}
		apply(o.kind(), cmd)
	}
	r.Final = s
	for _, st := range r.Steps {
		if st.Err != nil && !expectedErr(st) {
			r.Problem = fmt.Sprintf("unexpected error for %s in %s: %v", kindName(st.Kind), events.StateName(st.Before.Health), st.Err)
		}
		if st.Err == nil && st.Kind == kInvalid {
			r.Problem = "an invalid check result was accepted"
		}
	}
	return r
}

// expectedErr reports whether a rejected command was rightly rejected.
func expectedErr(st step) bool {
	switch {
	case st.Kind == kAdd:
		return errors.Is(st.Err, events.ErrAlreadyAdded) && st.Before.Added && !st.Before.Removed
	case st.Before.Removed:
		return errors.Is(st.Err, events.ErrRemoved)
	case st.Kind == kInvalid:
		return errors.Is(st.Err, events.ErrInvalidResult)
	case st.Kind == kRevive:
		h := st.Before.Health
		return errors.Is(st.Err, events.ErrNotRevivable) && h != pb.HealthState_HEALTH_STATE_FAILED &&
			h != pb.HealthState_HEALTH_STATE_UNHEALTHY && h != pb.HealthState_HEALTH_STATE_RECOVERING
	}
	return false
}

func kindName(k kind) string { return kindNames[k] }

// trace renders the last steps of a run for failure messages.
func (r *run) trace() string {
	var b strings.Builder
	from := max(0, len(r.Steps)-40)
	fmt.Fprintf(&b, "\n  (%d steps, showing from %d)", len(r.Steps), from)
	for i := from; i < len(r.Steps); i++ {
		st := r.Steps[i]
		fmt.Fprintf(&b, "\n  %3d %-12s H=%d U=%d max=%d fsh=%v  %-10s →", i, kindName(st.Kind), st.Cfg.HealthyThreshold,
			st.Cfg.UnhealthyThreshold, st.Cfg.MaxRecoveryAttempts, st.Cfg.FirstSuccessHealthy, events.StateName(st.Before.Health))
		for _, e := range st.Envs {
			b.WriteString(" " + events.TypeName(e))
			if sc := e.GetStateChanged(); sc != nil {
				fmt.Fprintf(&b, "(%s>%s #%d)", events.StateName(sc.GetFrom()), events.StateName(sc.GetTo()), sc.GetRecoveryAttempt())
			}
		}
		if st.Err != nil {
			b.WriteString(" ERR " + st.Err.Error())
		}
		a := st.After
		fmt.Fprintf(&b, "  [cs=%d cf=%d att=%d pf=%d]", a.ConsecutiveSuccesses, a.ConsecutiveFailures, a.RecoveryAttempt, a.PassiveFailures)
	}
	return b.String()
}

// parameters returns gopter parameters seeded from -props.seed (logged) with
// -props.count successful tests.
func parameters(t *testing.T) *gopter.TestParameters {
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	p := gopter.DefaultTestParametersWithSeed(seed)
	p.MinSuccessfulTests = *countFlag
	p.MaxSize = 150
	t.Logf("gopter seed %d; replay: go test ./props_test/ -run '^%s$' -props.seed=%d -props.count=%d -v", seed, t.Name(), seed, *countFlag)
	return p
}

// checkRuns checks a property of played scenarios. check returns "" when the
// property holds, else what went wrong.
func checkRuns(t *testing.T, check func(*run) string) {
	t.Helper()
	props := gopter.NewProperties(parameters(t))
	props.Property(t.Name(), prop.ForAll(func(sc Scenario) string {
		r := play(sc)
		msg := r.Problem
		if msg == "" {
			msg = check(r)
		}
		if msg != "" {
			return msg + r.trace()
		}
		return ""
	}, scenarioGen()))
	props.TestingRun(t)
}
