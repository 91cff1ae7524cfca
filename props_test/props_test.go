package props_test

import (
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/events"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
	"google.golang.org/protobuf/proto"
)

const (
	unknown    = pb.HealthState_HEALTH_STATE_UNKNOWN
	healthy    = pb.HealthState_HEALTH_STATE_HEALTHY
	degraded   = pb.HealthState_HEALTH_STATE_DEGRADED
	unhealthy  = pb.HealthState_HEALTH_STATE_UNHEALTHY
	recovering = pb.HealthState_HEALTH_STATE_RECOVERING
	failed     = pb.HealthState_HEALTH_STATE_FAILED
)

// (a) Replaying the journal rebuilds the live state, from scratch, through
// the wire, and from a snapshot taken at a random point.
func TestPropReplayAndSnapshots(t *testing.T) {
	checkRuns(t, func(r *run) string {
		if got := events.Fold(events.NewState(proxyID), r.All...); !reflect.DeepEqual(got, r.Final) {
			return fmt.Sprintf("fold of the stream =\n%+v\nlive state =\n%+v", got, r.Final)
		}
		for i, st := range r.Steps {
			if got := events.FromSnapshot(events.ToSnapshot(st.After)); !reflect.DeepEqual(got, st.After) {
				return fmt.Sprintf("step %d: snapshot round trip =\n%+v\nwant\n%+v", i, got, st.After)
			}
		}
		k := int(r.Sc.Cut * float64(len(r.All)))
		snap := events.ToSnapshot(events.Fold(events.NewState(proxyID), r.All[:k]...))
		b, err := proto.Marshal(snap)
		if err != nil {
			return "snapshot does not marshal: " + err.Error()
		}
		var back pb.ProxySnapshot
		if err := proto.Unmarshal(b, &back); err != nil {
			return err.Error()
		}
		if got := events.Fold(events.FromSnapshot(&back), r.All[k:]...); !reflect.DeepEqual(got, r.Final) {
			return fmt.Sprintf("snapshot at event %d + replay =\n%+v\nwant\n%+v", k, got, r.Final)
		}
		// The stream through the wire, as the journal stores it.
		s := events.NewState(proxyID)
		for _, e := range r.All {
			b, err := proto.Marshal(e)
			if err != nil {
				return fmt.Sprintf("event %d does not marshal: %v", e.GetStreamSeq(), err)
			}
			var env pb.Envelope
			if err := proto.Unmarshal(b, &env); err != nil {
				return err.Error()
			}
			s = events.Evolve(s, &env)
		}
		if !reflect.DeepEqual(s, r.Final) {
			return "fold of unmarshalled events differs from the live state"
		}
		return ""
	})
}

// (b) Counters stay consistent with the stream: totals count the check
// events, streaks equal the trailing runs (too_slow breaks a failure run),
// nothing wraps around.
func TestPropCounters(t *testing.T) {
	checkRuns(t, func(r *run) string {
		var checks, fails, passive, recoveries uint64
		var m model
		var passiveRun uint32
		for i, st := range r.Steps {
			for _, e := range st.Envs {
				m.apply(e)
				if e.GetProxyAdded() != nil { // a re-added proxy starts afresh
					checks, fails, passive, recoveries, passiveRun = 0, 0, 0, 0, 0
				}
				switch {
				case e.GetCheckSucceeded() != nil, e.GetCheckFailed() != nil, e.GetProxyRevived() != nil:
					passiveRun = 0
				case e.GetPassiveSuccessReported() != nil:
					if passiveRun == 0 {
						return fmt.Sprintf("step %d: passive success journaled without a streak", i)
					}
					passiveRun = 0
				case e.GetPassiveFailureReported() != nil:
					passiveRun++
					if c := e.GetPassiveFailureReported().GetConsecutive(); c != passiveRun {
						return fmt.Sprintf("step %d: passive failure consecutive=%d, stream says %d", i, c, passiveRun)
					}
				}
				switch {
				case e.GetCheckSucceeded() != nil:
					checks++
				case e.GetCheckFailed() != nil:
					checks++
					fails++
				case e.GetPassiveFailureReported() != nil:
					passive++
				case e.GetStateChanged().GetTo() == recovering:
					recoveries++
				}
			}
			a := st.After
			switch {
			case a.TotalChecks != checks || a.TotalFailures != fails:
				return fmt.Sprintf("step %d: totals %d/%d, stream has %d checks, %d failures", i, a.TotalChecks, a.TotalFailures, checks, fails)
			case a.TotalFailures > a.TotalChecks:
				return fmt.Sprintf("step %d: total_failures %d > total_checks %d", i, a.TotalFailures, a.TotalChecks)
			case uint64(a.ConsecutiveSuccesses) > checks-fails || uint64(a.ConsecutiveFailures) > fails:
				return fmt.Sprintf("step %d: streaks cs=%d cf=%d exceed %d successes, %d failures", i, a.ConsecutiveSuccesses, a.ConsecutiveFailures, checks-fails, fails)
			case a.ConsecutiveSuccesses != m.okRun || a.ConsecutiveFailures != m.hardRun:
				return fmt.Sprintf("step %d: streaks cs=%d cf=%d, stream says %d and %d", i, a.ConsecutiveSuccesses, a.ConsecutiveFailures, m.okRun, m.hardRun)
			case a.PassiveFailures != passiveRun:
				return fmt.Sprintf("step %d: passive streak %d, stream says %d", i, a.PassiveFailures, passiveRun)
			case uint64(a.PassiveFailures) > passive:
				return fmt.Sprintf("step %d: passive streak %d > %d reported", i, a.PassiveFailures, passive)
			case uint64(a.RecoveryAttempt) > recoveries:
				return fmt.Sprintf("step %d: recovery attempt %d > %d recoveries", i, a.RecoveryAttempt, recoveries)
			case a.StreamSeq != uint64(len(r.All[:countEnvs(r, i)])):
				return fmt.Sprintf("step %d: stream_seq %d", i, a.StreamSeq)
			}
		}
		return ""
	})
}

func countEnvs(r *run, upTo int) int {
	n := 0
	for _, st := range r.Steps[:upTo+1] {
		n += len(st.Envs)
	}
	return n
}

// A proxy is never on a success streak and a failure streak at once.
func TestPropStreaksExclusive(t *testing.T) {
	checkRuns(t, func(r *run) string {
		for i, st := range r.Steps {
			if st.After.ConsecutiveSuccesses != 0 && st.After.ConsecutiveFailures != 0 {
				return fmt.Sprintf("step %d: cs=%d and cf=%d", i, st.After.ConsecutiveSuccesses, st.After.ConsecutiveFailures)
			}
		}
		return ""
	})
}

// (c) failed is absorbing without Revive, and never scheduled.
func TestPropFailedAbsorbing(t *testing.T) {
	checkRuns(t, func(r *run) string {
		for i, st := range r.Steps {
			if st.After.Health == failed {
				for _, x := range []float64{0, r.Sc.R, math.Nextafter(1, 0)} {
					if at, ok := events.NextCheckAt(st.After, st.Cfg, x); ok {
						return fmt.Sprintf("step %d: failed proxy scheduled at %v", i, at)
					}
				}
			}
			if st.Before.Health != failed || st.Err != nil || st.Before.Removed {
				continue
			}
			switch {
			case st.Kind == kRevive:
				if st.After.Health != unknown {
					return fmt.Sprintf("step %d: revive of a failed proxy → %s", i, events.StateName(st.After.Health))
				}
			case st.After.Health != failed:
				return fmt.Sprintf("step %d: %s moved a failed proxy to %s", i, kindName(st.Kind), events.StateName(st.After.Health))
			}
			for _, e := range st.Envs {
				if e.GetPassiveFailureReported() != nil {
					return fmt.Sprintf("step %d: passive failure journaled for a failed proxy", i)
				}
			}
		}
		return ""
	})
}

// model tracks streaks independently of the package, from the events alone.
type model struct {
	health           pb.HealthState
	attempt          uint32
	okRun, hardRun   uint32 // trailing successes; trailing non-too_slow failures
	lastWasHardCheck bool
}

func (m *model) apply(e *pb.Envelope) {
	switch {
	case e.GetProxyAdded() != nil:
		*m = model{}
	case e.GetCheckSucceeded() != nil:
		m.okRun++
		m.hardRun = 0
		m.lastWasHardCheck = false
	case e.GetCheckFailed() != nil:
		m.okRun = 0
		if e.GetCheckFailed().GetClass() == tooSlow {
			m.hardRun = 0
			m.lastWasHardCheck = false
		} else {
			m.hardRun++
			m.lastWasHardCheck = true
		}
	case e.GetProxyRevived() != nil:
		m.okRun, m.hardRun = 0, 0
	case e.GetStateChanged() != nil:
		m.health = e.GetStateChanged().GetTo()
		m.attempt = e.GetStateChanged().GetRecoveryAttempt()
	}
}

// walk calls f for every StateChanged with the model as it was before it.
func walk(r *run, f func(i int, st step, sc *pb.StateChanged, m model) string) string {
	var m model
	for i, st := range r.Steps {
		for _, e := range st.Envs {
			if sc := e.GetStateChanged(); sc != nil {
				if msg := f(i, st, sc, m); msg != "" {
					return fmt.Sprintf("step %d (%s): %s", i, kindName(st.Kind), msg)
				}
			}
			m.apply(e)
		}
	}
	return ""
}

// (d) healthy is entered only after healthy_threshold consecutive successes
// (or the first success from unknown when first_success_healthy is on, or a
// config change whose new threshold the streak already meets); and it is
// entered as soon as that holds.
func TestPropHealthyNeedsSuccesses(t *testing.T) {
	checkRuns(t, func(r *run) string {
		if msg := walk(r, func(_ int, st step, sc *pb.StateChanged, m model) string {
			if sc.GetTo() != healthy {
				return ""
			}
			h := st.Cfg.HealthyThreshold
			switch st.Kind {
			case kOK:
				if sc.GetFrom() == unknown && st.Cfg.FirstSuccessHealthy {
					return ""
				}
				if m.okRun < h {
					return fmt.Sprintf("healthy after %d consecutive successes, threshold %d", m.okRun, h)
				}
			case kConfig:
				if m.okRun == 0 || m.okRun < h {
					return fmt.Sprintf("config change made healthy with %d successes, threshold %d", m.okRun, h)
				}
			default:
				return "entered healthy"
			}
			return ""
		}); msg != "" {
			return msg
		}
		// Liveness: after a success, a proxy that could be healthy is.
		for i, st := range r.Steps {
			a := st.After
			if st.Kind != kOK || st.Err != nil || a.Removed {
				continue
			}
			switch a.Health {
			case unknown:
				if st.Cfg.FirstSuccessHealthy || a.ConsecutiveSuccesses >= st.Cfg.HealthyThreshold {
					return fmt.Sprintf("step %d: still unknown after a success (cs=%d)", i, a.ConsecutiveSuccesses)
				}
			case degraded, recovering:
				if a.ConsecutiveSuccesses >= st.Cfg.HealthyThreshold {
					return fmt.Sprintf("step %d: still %s with %d successes", i, events.StateName(a.Health), a.ConsecutiveSuccesses)
				}
			}
		}
		return ""
	})
}

// (e) Every StateChanged starts from the state before it and goes elsewhere,
// and carries the right recovery attempt.
func TestPropStateChangedConsistent(t *testing.T) {
	checkRuns(t, func(r *run) string {
		return walk(r, func(_ int, _ step, sc *pb.StateChanged, m model) string {
			from, to := sc.GetFrom(), sc.GetTo()
			if _, ok := pb.HealthState_name[int32(to)]; !ok {
				return fmt.Sprintf("invalid target state %d", to)
			}
			switch {
			case from != m.health:
				return fmt.Sprintf("from %s but the state was %s", events.StateName(from), events.StateName(m.health))
			case from == to:
				return "from == to == " + events.StateName(to)
			case sc.GetReason() == "":
				return "no reason"
			}
			want := m.attempt
			switch to {
			case recovering:
				want = m.attempt + 1
			case healthy, unknown:
				want = 0
			}
			if sc.GetRecoveryAttempt() != want {
				return fmt.Sprintf("%s>%s with attempt %d, want %d", events.StateName(from), events.StateName(to), sc.GetRecoveryAttempt(), want)
			}
			return ""
		})
	})
}

// (f) unhealthy is entered only after unhealthy_threshold consecutive
// non-too_slow failures (or a config change the streak meets), or by one
// failure of a recovery; failed only by a failed recovery at the limit. And
// a proxy whose streak reaches the threshold is unhealthy at once.
func TestPropUnhealthyNeedsFailures(t *testing.T) {
	checkRuns(t, func(r *run) string {
		if msg := walk(r, func(_ int, st step, sc *pb.StateChanged, m model) string {
			u, to, from := st.Cfg.UnhealthyThreshold, sc.GetTo(), sc.GetFrom()
			switch {
			case to != unhealthy && to != failed:
				return ""
			case from == recovering:
				if st.Kind != kFail || !m.lastWasHardCheck {
					return "left recovering for " + events.StateName(to) + " without a hard failure"
				}
				limit := st.Cfg.MaxRecoveryAttempts
				if giveUp := limit > 0 && m.attempt >= limit; giveUp != (to == failed) {
					return fmt.Sprintf("recovery attempt %d of %d failed → %s", m.attempt, limit, events.StateName(to))
				}
			case to == failed:
				return "failed entered from " + events.StateName(from)
			case from == unknown || from == healthy || from == degraded:
				if st.Kind != kFail && st.Kind != kConfig {
					return "unhealthy entered on " + kindName(st.Kind)
				}
				if m.hardRun < u {
					return fmt.Sprintf("unhealthy after %d consecutive hard failures, threshold %d", m.hardRun, u)
				}
			default:
				return "unhealthy entered from " + events.StateName(from)
			}
			return ""
		}); msg != "" {
			return msg
		}
		for i, st := range r.Steps {
			a := st.After
			if st.Kind == kFail && st.Err == nil && !a.Removed && (a.Health == unknown || a.Health == healthy || a.Health == degraded) &&
				a.ConsecutiveFailures >= st.Cfg.UnhealthyThreshold {
				return fmt.Sprintf("step %d: still %s with %d consecutive failures", i, events.StateName(a.Health), a.ConsecutiveFailures)
			}
		}
		return ""
	})
}

// (g) The schedule never goes back before the last check; unhealthy proxies
// wait their jittered cooldown; only the right states are scheduled.
func TestPropSchedule(t *testing.T) {
	checkRuns(t, func(r *run) string {
		for i, st := range r.Steps {
			s, cfg := st.After, st.Cfg
			for _, x := range []float64{0, r.Sc.R, events.JitterSample(s.ProxyID, s.TotalChecks), math.Nextafter(1, 0)} {
				if msg := checkSchedule(s, cfg, x); msg != "" {
					return fmt.Sprintf("step %d, r=%v: %s", i, x, msg)
				}
			}
		}
		return ""
	})
}

func checkSchedule(s events.State, cfg events.Config, r float64) string {
	at, ok := events.NextCheckAt(s, cfg, r)
	if want := s.Added && !s.Removed && !s.Paused && s.Health != failed; ok != want {
		return fmt.Sprintf("scheduled=%v for %s paused=%v removed=%v", ok, events.StateName(s.Health), s.Paused, s.Removed)
	}
	if !ok {
		return ""
	}
	passive := s.PassiveFailures >= cfg.PassiveFailureThreshold
	// Revived or re-added after its last check: checked at once.
	fresh := s.Health == unknown && !s.LastChangeAt.Before(s.LastCheckAt)
	if at.IsZero() {
		if !s.LastCheckAt.IsZero() && !passive && !fresh {
			return "now, without passive failures, for a checked proxy"
		}
		return ""
	}
	if passive || fresh {
		return fmt.Sprintf("%v, want now (passive=%d, last check %v)", at, s.PassiveFailures, s.LastCheckAt)
	}
	d := at.Sub(s.LastCheckAt)
	if d < 0 {
		return fmt.Sprintf("next check %v before the last", d)
	}
	band := func(base time.Duration, lo float64) (time.Duration, time.Duration) {
		return time.Duration(float64(base)*lo) - 1, time.Duration(float64(base)*(1+cfg.Jitter)) + 1
	}
	suspectLo, suspectHi := band(cfg.SuspectInterval, 1-cfg.Jitter)
	// Healthy: interval ± jitter, or the first-check spread down to 10 %;
	// never beyond interval·(1+jitter), which DetectionBound assumes.
	healthyLo, healthyHi := band(cfg.Interval, 0.1*(1+cfg.Jitter))
	in := func(lo, hi time.Duration) bool { return d >= lo && d <= hi }
	switch s.Health {
	case unknown, recovering:
		if !in(suspectLo, suspectHi) {
			return fmt.Sprintf("%s waits %v, want the suspect interval", events.StateName(s.Health), d)
		}
	case healthy:
		if !in(healthyLo, healthyHi) {
			return fmt.Sprintf("healthy waits %v, want within [%v, %v]", d, healthyLo, healthyHi)
		}
	case degraded:
		// Degraded only because the last check was too slow: usable, normal
		// interval; degraded by failures (or with a partial success streak
		// to confirm): re-probed quickly.
		slowOnly := s.LastErrorClass == tooSlow && s.ConsecutiveSuccesses == 0 && s.ConsecutiveFailures == 0
		if slowOnly && !in(band(cfg.Interval, 1-cfg.Jitter)) {
			return fmt.Sprintf("degraded by slowness waits %v, want the interval", d)
		}
		if !slowOnly && !in(suspectLo, suspectHi) {
			return fmt.Sprintf("degraded by failures waits %v, want the suspect interval", d)
		}
	}
	if s.Health == unhealthy {
		cd := float64(cfg.Cooldown(s.RecoveryAttempt))
		lo, hi := time.Duration(cd*(1-cfg.Jitter))-1, time.Duration(cd*(1+cfg.Jitter))+1
		if exact := time.Duration(cd * (1 + cfg.Jitter*(2*r-1))); d < lo || d > hi || d != exact {
			return fmt.Sprintf("unhealthy attempt %d waits %v, want %v in [%v, %v]", s.RecoveryAttempt, d, exact, lo, hi)
		}
	}
	return ""
}

// (i) Passive outlier detection: a proxy is ejected only when its passive
// failure streak reaches the threshold in force, never twice at once, and
// not when it is unhealthy or failed; an ejection lasts EjectionTime ×
// multiplier, capped; an ejected proxy is never Usable; it returns only
// once its time has come, and every ejection that ends ends with a
// ProxyReturned.
func TestPropEjection(t *testing.T) {
	checkRuns(t, func(r *run) string {
		for i, st := range r.Steps {
			for _, e := range st.Envs {
				at := events.At(e)
				switch {
				case e.GetProxyEjected() != nil:
					ej := e.GetProxyEjected()
					switch {
					case st.Before.Ejected():
						return fmt.Sprintf("step %d: ejected while ejected", i)
					case st.Kind != kPassiveFail:
						return fmt.Sprintf("step %d: ejected by %s", i, kindName(st.Kind))
					case ej.GetConsecutive() < st.Cfg.PassiveFailureThreshold:
						return fmt.Sprintf("step %d: ejected after %d passive failures, threshold %d", i, ej.GetConsecutive(), st.Cfg.PassiveFailureThreshold)
					case st.Before.Health == unhealthy || st.Before.Health == failed:
						return fmt.Sprintf("step %d: %s proxy ejected", i, events.StateName(st.Before.Health))
					case ej.GetMultiplier() < 1:
						return fmt.Sprintf("step %d: multiplier %d", i, ej.GetMultiplier())
					}
					d := time.Duration(ej.GetUntilUnixNano() - e.GetAtUnixNano())
					if want := min(st.Cfg.EjectionTime*time.Duration(ej.GetMultiplier()), st.Cfg.MaxEjectionTime); d != want {
						return fmt.Sprintf("step %d: ejection of %v, multiplier %d: want %v", i, d, ej.GetMultiplier(), want)
					}
				case e.GetProxyReturned() != nil:
					if !st.Before.Ejected() || at.Before(st.Before.EjectedUntil) {
						return fmt.Sprintf("step %d: returned at %v, ejected until %v", i, at, st.Before.EjectedUntil)
					}
				}
			}
			a := st.After
			if a.Ejected() && a.Usable() {
				return fmt.Sprintf("step %d: an ejected proxy is usable", i)
			}
			if st.Kind == kEjectionExpired && st.Err == nil && st.Before.Ejected() && !st.Before.Removed {
				at := st.Cmd.(events.EjectionExpired).At
				if !at.Before(st.Before.EjectedUntil) && a.Ejected() {
					return fmt.Sprintf("step %d: still ejected after its time", i)
				}
			}
		}
		return ""
	})
}
