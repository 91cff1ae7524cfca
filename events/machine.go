package events

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// Errors returned by Decide for commands that do not apply to the state.
var (
	ErrNotAdded      = errors.New("events: proxy not added")
	ErrAlreadyAdded  = errors.New("events: proxy already added")
	ErrRemoved       = errors.New("events: proxy removed")
	ErrNotRevivable  = errors.New("events: proxy is not failed, unhealthy or recovering; nothing to revive")
	ErrInvalidResult = errors.New("events: invalid check result")
)

// Command is an input to Decide. Every command carries the time it happened
// (the shell's clock); the state machine never reads a clock.
type Command interface{ at() time.Time }

// Add starts a proxy's stream.
type Add struct {
	At             time.Time
	URLRedacted    string
	Source         string
	ConfigRef      string
	HasCredentials bool
	// Origin is how the proxy came in (configuration or run time).
	Origin pb.ProxyOrigin
	// Tags and Weight are the proxy's metadata from its list or the
	// configuration (NormalizeTags; weight 0 means unset).
	Tags   []string
	Weight float64
	// Adopt, when set, continues the new stream from another cluster
	// member's state (an Adopt decided right after the ProxyAdded, in the
	// same append: the proxy is never seen as unknown in between).
	Adopt *Adopt
}

// Adopt takes over a proxy's state from another cluster member: the
// proxy's new owner goes on from what its previous owner last replicated
// (health, streaks, recovery attempt, last check and error, exit, pause),
// not from unknown. It applies only if the record is newer than what this
// stream knows (its last check is later), so it is idempotent and a stale
// record never overwrites fresh results.
type Adopt struct {
	At time.Time
	// From is the member the record came from (its host:port; "" when
	// unknown).
	From string
	// Record is the adopted state; nil adopts nothing.
	Record *pb.ProxySnapshot
	Reason string
}

// SetMetadata gives the proxy new tags or a new weight (its list or the
// configuration changed).
type SetMetadata struct {
	At     time.Time
	Tags   []string
	Weight float64
}

// CheckResult is the outcome of one active check. Class
// FAILURE_CLASS_UNSPECIFIED means success.
type CheckResult struct {
	Class      pb.FailureClass
	StatusCode uint32
	// Message is a short cause for a failure; it must not contain
	// credentials (Decide truncates it to MaxMessageLen bytes).
	Message string
	Latency Latency
	// ExitIP and Anonymity are what an echo target saw of a passed check
	// (empty and unspecified without an echo target).
	ExitIP    string
	Anonymity pb.Anonymity
}

// OK reports whether the check passed.
func (r CheckResult) OK() bool { return r.Class == pb.FailureClass_FAILURE_CLASS_UNSPECIFIED }

// MaxMessageLen bounds CheckFailed.message.
const MaxMessageLen = 200

// CheckCompleted reports a finished active check.
type CheckCompleted struct {
	At     time.Time
	Result CheckResult
}

// CooldownExpired tells an unhealthy proxy that its cooldown has elapsed: it
// moves to recovering and is probed.
type CooldownExpired struct{ At time.Time }

// PassiveOutcome reports the outcome of real traffic through the proxy.
// Failures (OK false) are local-origin ones, the proxy's own; a target's
// error through a working proxy is an OK outcome.
type PassiveOutcome struct {
	At    time.Time
	OK    bool
	Class pb.FailureClass
	// NoEjection forbids ejecting the proxy for this failure: the pool's
	// maximum ejection share is reached (the shell knows the pool; the
	// state machine knows one proxy).
	NoEjection bool
}

// EjectionExpired tells an ejected proxy that its ejection time has come
// (the shell's timer, armed at State.EjectedUntil).
type EjectionExpired struct {
	At time.Time
}

// Pause stops checks until Resume.
type Pause struct {
	At     time.Time
	Reason string
}

// Resume restarts checks on the proxy's schedule.
type Resume struct {
	At     time.Time
	Reason string
}

// Revive brings a failed (or unhealthy/recovering) proxy back to unknown so
// that it is checked at once.
type Revive struct {
	At     time.Time
	Reason string
}

// Remove ends the proxy's stream.
type Remove struct {
	At     time.Time
	Reason string
}

// ConfigChanged tells the machine the config changed (thresholds may now be
// crossed). The new config is the one passed to Decide.
type ConfigChanged struct{ At time.Time }

func (c Add) at() time.Time             { return c.At }
func (c Adopt) at() time.Time           { return c.At }
func (c CheckCompleted) at() time.Time  { return c.At }
func (c CooldownExpired) at() time.Time { return c.At }
func (c PassiveOutcome) at() time.Time  { return c.At }
func (c EjectionExpired) at() time.Time { return c.At }
func (c SetMetadata) at() time.Time     { return c.At }
func (c Pause) at() time.Time           { return c.At }
func (c Resume) at() time.Time          { return c.At }
func (c Revive) at() time.Time          { return c.At }
func (c Remove) at() time.Time          { return c.At }
func (c ConfigChanged) at() time.Time   { return c.At }

const (
	unknown    = pb.HealthState_HEALTH_STATE_UNKNOWN
	healthy    = pb.HealthState_HEALTH_STATE_HEALTHY
	degraded   = pb.HealthState_HEALTH_STATE_DEGRADED
	unhealthy  = pb.HealthState_HEALTH_STATE_UNHEALTHY
	recovering = pb.HealthState_HEALTH_STATE_RECOVERING
	failed     = pb.HealthState_HEALTH_STATE_FAILED
	tooSlow    = pb.FailureClass_FAILURE_CLASS_TOO_SLOW
)

// decider accumulates the events of one decision and folds each into a
// working state, so later rules see the effect of earlier events.
type decider struct {
	s   State
	at  int64
	out []*pb.Envelope
}

func (d *decider) emit(env *pb.Envelope) {
	env.ProxyId = d.s.ProxyID
	env.Source = d.s.Source
	env.AtUnixNano = d.at
	d.out = append(d.out, env)
	d.s = evolve(d.s, env, false)
}

func (d *decider) change(to pb.HealthState, attempt uint32, reason string) {
	d.emit(&pb.Envelope{Event: &pb.Envelope_StateChanged{StateChanged: &pb.StateChanged{
		From: d.s.Health, To: to, Reason: reason, RecoveryAttempt: attempt,
	}}})
}

// Decide returns the events a command produces in a state, without changing
// anything. The envelopes carry proxy_id, source and the command's time;
// the journal assigns seq and stream_seq. A command that changes nothing
// (pausing a paused proxy) returns no events and no error. Commands that do
// not apply return an error wrapping one of the Err* values.
func Decide(s State, cmd Command, cfg Config) ([]*pb.Envelope, error) {
	d := &decider{s: s, at: UnixNano(cmd.at())}
	cmd = sanitize(cmd)
	if add, ok := cmd.(Add); ok {
		if s.Added && !s.Removed {
			return nil, fmt.Errorf("%w: %s", ErrAlreadyAdded, s.ProxyID)
		}
		d.s.Source = add.Source
		d.emit(&pb.Envelope{Event: &pb.Envelope_ProxyAdded{ProxyAdded: &pb.ProxyAdded{
			UrlRedacted: add.URLRedacted, Source: add.Source, CheckConfigRef: add.ConfigRef, HasCredentials: add.HasCredentials,
			Origin: add.Origin, Tags: NormalizeTags(add.Tags), Weight: add.Weight,
		}}})
		if add.Adopt != nil {
			fresh := s
			fresh.Added, fresh.Removed, fresh.Health = true, false, unknown
			fresh.LastCheckAt = time.Time{} // the re-added stream starts afresh (Evolve)
			d.adopt(fresh, *add.Adopt)
		}
		return d.out, nil
	}
	if !s.Added {
		return nil, fmt.Errorf("%w: %s (add it first)", ErrNotAdded, s.ProxyID)
	}
	if s.Removed {
		return nil, fmt.Errorf("%w: %s", ErrRemoved, s.ProxyID)
	}
	switch c := cmd.(type) {
	case CheckCompleted:
		if err := d.checkCompleted(c.Result, cfg); err != nil {
			return nil, err
		}
	case CooldownExpired:
		if s.Health == unhealthy {
			d.change(recovering, s.RecoveryAttempt+1, fmt.Sprintf("cooldown expired, recovery attempt %d", s.RecoveryAttempt+1))
		}
	case PassiveOutcome:
		if s.Health == failed || s.Health == unhealthy {
			break // already out of rotation; passive signals only confirm it
		}
		if !c.OK {
			n := s.PassiveFailures + 1
			d.emit(&pb.Envelope{Event: &pb.Envelope_PassiveFailureReported{PassiveFailureReported: &pb.PassiveFailureReported{
				Class: c.Class, Consecutive: n,
			}}})
			if n >= cfg.PassiveFailureThreshold && !s.Ejected() && !c.NoEjection {
				m, dur := cfg.Ejection(s.EjectionMultiplier, s.LastReturnAt, c.At)
				d.emit(&pb.Envelope{Event: &pb.Envelope_ProxyEjected{ProxyEjected: &pb.ProxyEjected{
					Class: c.Class, Consecutive: n, UntilUnixNano: c.At.Add(dur).UnixNano(), Multiplier: m,
				}}})
			}
		} else if s.PassiveFailures > 0 {
			d.emit(&pb.Envelope{Event: &pb.Envelope_PassiveSuccessReported{PassiveSuccessReported: &pb.PassiveSuccessReported{}}})
		}
	case SetMetadata:
		tags := NormalizeTags(c.Tags)
		if strings.Join(tags, ",") != s.Tags || c.Weight != s.Weight {
			d.emit(&pb.Envelope{Event: &pb.Envelope_ProxyMetadataChanged{ProxyMetadataChanged: &pb.ProxyMetadataChanged{Tags: tags, Weight: c.Weight}}})
		}
	case EjectionExpired:
		if s.Ejected() && !c.At.Before(s.EjectedUntil) {
			d.emit(&pb.Envelope{Event: &pb.Envelope_ProxyReturned{ProxyReturned: &pb.ProxyReturned{
				Reason: fmt.Sprintf("ejection of %v ended", s.EjectedUntil.Sub(s.LastEjectedAt).Round(time.Millisecond)),
			}}})
		}
	case Pause:
		if !s.Paused {
			d.emit(&pb.Envelope{Event: &pb.Envelope_ProxyPaused{ProxyPaused: &pb.ProxyPaused{Reason: c.Reason}}})
		}
	case Resume:
		if s.Paused {
			d.emit(&pb.Envelope{Event: &pb.Envelope_ProxyResumed{ProxyResumed: &pb.ProxyResumed{Reason: c.Reason}}})
		}
	case Revive:
		switch s.Health {
		case failed, unhealthy, recovering:
		default:
			return nil, fmt.Errorf("%w: %s is %s", ErrNotRevivable, s.ProxyID, StateName(s.Health))
		}
		d.emit(&pb.Envelope{Event: &pb.Envelope_ProxyRevived{ProxyRevived: &pb.ProxyRevived{Reason: c.Reason}}})
		d.change(unknown, 0, "revived: "+c.Reason)
	case Adopt:
		d.adopt(s, c)
	case Remove:
		d.emit(&pb.Envelope{Event: &pb.Envelope_ProxyRemoved{ProxyRemoved: &pb.ProxyRemoved{Reason: c.Reason}}})
	case ConfigChanged:
		d.reconsider(cfg)
	default:
		return nil, fmt.Errorf("events: unknown command %T", cmd)
	}
	return d.out, nil
}

func (d *decider) checkCompleted(r CheckResult, cfg Config) error {
	if _, ok := pb.FailureClass_name[int32(r.Class)]; !ok {
		return fmt.Errorf("%w: failure class %d", ErrInvalidResult, r.Class)
	}
	if r.Latency.Total < 0 || r.Latency.Connect < 0 || r.Latency.FirstByte < 0 {
		return fmt.Errorf("%w: negative latency %+v", ErrInvalidResult, r.Latency)
	}
	// A result arriving while unhealthy means the cooldown has elapsed.
	if d.s.Health == unhealthy {
		d.change(recovering, d.s.RecoveryAttempt+1, fmt.Sprintf("cooldown expired, recovery attempt %d", d.s.RecoveryAttempt+1))
	}
	lat := r.Latency.toPB()
	if r.OK() {
		d.emit(&pb.Envelope{Event: &pb.Envelope_CheckSucceeded{CheckSucceeded: &pb.CheckSucceeded{Latency: lat, StatusCode: r.StatusCode}}})
		if ip := truncateUTF8(r.ExitIP, MaxExitIPLen); ip != "" && (ip != d.s.ExitIP || r.Anonymity != d.s.Anonymity) {
			d.emit(&pb.Envelope{Event: &pb.Envelope_ExitObserved{ExitObserved: &pb.ExitObserved{
				ExitIp: ip, Anonymity: r.Anonymity, PreviousExitIp: d.s.ExitIP, PreviousAnonymity: d.s.Anonymity}}})
		}
		n := d.s.ConsecutiveSuccesses
		switch d.s.Health {
		case unknown:
			if cfg.FirstSuccessHealthy {
				d.change(healthy, 0, "first check succeeded")
			} else if n >= cfg.HealthyThreshold {
				d.change(healthy, 0, fmt.Sprintf("%d consecutive successes (threshold %d)", n, cfg.HealthyThreshold))
			}
		case degraded, recovering:
			if n >= cfg.HealthyThreshold {
				d.change(healthy, 0, fmt.Sprintf("%d consecutive successes (threshold %d)", n, cfg.HealthyThreshold))
			}
		}
		return nil
	}
	msg := truncateUTF8(r.Message, MaxMessageLen)
	d.emit(&pb.Envelope{Event: &pb.Envelope_CheckFailed{CheckFailed: &pb.CheckFailed{
		Class: r.Class, StatusCode: r.StatusCode, Message: msg, Latency: lat,
	}}})
	if r.Class == tooSlow {
		switch d.s.Health {
		case unknown, healthy:
			d.change(degraded, d.s.RecoveryAttempt, "slower than the latency ceiling")
		case recovering:
			// It answers: usable but slow, like any slow proxy (otherwise a
			// slow proxy would be re-probed on probation for ever).
			d.change(degraded, d.s.RecoveryAttempt, "recovered, but slower than the latency ceiling")
		}
		return nil
	}
	n := d.s.ConsecutiveFailures
	switch d.s.Health {
	case unknown, healthy, degraded:
		if n >= cfg.UnhealthyThreshold {
			d.change(unhealthy, d.s.RecoveryAttempt, fmt.Sprintf("%d consecutive failures (threshold %d), last: %s", n, cfg.UnhealthyThreshold, ClassName(r.Class)))
		} else if d.s.Health != degraded {
			d.change(degraded, d.s.RecoveryAttempt, "check failed: "+ClassName(r.Class))
		}
	case recovering:
		if cfg.MaxRecoveryAttempts > 0 && d.s.RecoveryAttempt >= cfg.MaxRecoveryAttempts {
			d.change(failed, d.s.RecoveryAttempt, fmt.Sprintf("recovery attempt %d of %d failed: %s; giving up until revived", d.s.RecoveryAttempt, cfg.MaxRecoveryAttempts, ClassName(r.Class)))
		} else {
			d.change(unhealthy, d.s.RecoveryAttempt, fmt.Sprintf("recovery attempt %d failed: %s", d.s.RecoveryAttempt, ClassName(r.Class)))
		}
	}
	return nil
}

// MaxReasonLen bounds operator-supplied reasons and URLs in events.
const MaxReasonLen = 1024

// sanitize makes every text field of a command valid, bounded UTF-8: a
// string proto3 cannot marshal would make the journal append fail.
func sanitize(cmd Command) Command {
	t := func(s string) string { return truncateUTF8(s, MaxReasonLen) }
	switch c := cmd.(type) {
	case Add:
		c.URLRedacted, c.Source, c.ConfigRef = t(c.URLRedacted), t(c.Source), t(c.ConfigRef)
		c.Weight = saneWeight(c.Weight)
		return c
	case SetMetadata:
		c.Weight = saneWeight(c.Weight)
		return c
	case Pause:
		c.Reason = t(c.Reason)
		return c
	case Resume:
		c.Reason = t(c.Reason)
		return c
	case Revive:
		c.Reason = t(c.Reason)
		return c
	case Remove:
		c.Reason = t(c.Reason)
		return c
	}
	return cmd
}

// MaxExitIPLen bounds ExitObserved.exit_ip (an echo target's "origin").
const MaxExitIPLen = 64

// MaxTags and MaxTagLen bound a proxy's tags.
const (
	MaxTags   = 32
	MaxTagLen = 64
)

// NormalizeTags returns tags trimmed, deduplicated and sorted, without
// empty ones, at most MaxTags of at most MaxTagLen bytes each (commas, which
// separate tags in State.Tags, become '_').
func NormalizeTags(tags []string) []string {
	var out []string
	for _, t := range tags {
		t = strings.ReplaceAll(truncateUTF8(strings.TrimSpace(t), MaxTagLen), ",", "_")
		if t != "" && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	if len(out) > MaxTags {
		out = out[:MaxTags]
	}
	return out
}

// saneWeight maps a weight that is not a positive finite number to 0
// (unset).
func saneWeight(w float64) float64 {
	if !(w > 0) || math.IsInf(w, 0) {
		return 0
	}
	return w
}

// truncateUTF8 makes s valid UTF-8 (invalid bytes become U+FFFD) and cuts it
// to at most n bytes on a rune boundary: proto3 strings must be valid UTF-8,
// or the journal cannot marshal the event.
func truncateUTF8(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// reconsider applies new thresholds to the current counters.
func (d *decider) reconsider(cfg Config) {
	s := d.s
	switch {
	case s.Health == degraded && s.ConsecutiveFailures >= cfg.UnhealthyThreshold:
		d.change(unhealthy, s.RecoveryAttempt, fmt.Sprintf("config changed: %d consecutive failures reach the new threshold %d", s.ConsecutiveFailures, cfg.UnhealthyThreshold))
	case (s.Health == degraded || s.Health == recovering || s.Health == unknown) && s.ConsecutiveSuccesses > 0 && s.ConsecutiveSuccesses >= cfg.HealthyThreshold:
		d.change(healthy, 0, fmt.Sprintf("config changed: %d consecutive successes reach the new threshold %d", s.ConsecutiveSuccesses, cfg.HealthyThreshold))
	}
}

// adopt emits ProxyAdopted when c's record is newer than s (its last
// check is later than s's).
func (d *decider) adopt(s State, c Adopt) {
	r := c.Record
	if r == nil || r.GetLastCheckUnixNano() <= UnixNano(s.LastCheckAt) {
		return
	}
	kept := &pb.ProxySnapshot{
		State: r.GetState(), Paused: r.GetPaused(),
		ConsecutiveSuccesses: r.GetConsecutiveSuccesses(), ConsecutiveFailures: r.GetConsecutiveFailures(),
		RecoveryAttempt: r.GetRecoveryAttempt(), PassiveFailures: r.GetPassiveFailures(),
		LastCheckUnixNano: r.GetLastCheckUnixNano(), LastChangeUnixNano: r.GetLastChangeUnixNano(),
		LastErrorClass: r.GetLastErrorClass(), LastError: truncateUTF8(r.GetLastError(), MaxMessageLen),
		LastLatency: r.GetLastLatency(), LastStatusCode: r.GetLastStatusCode(),
		ExitIp: r.GetExitIp(), Anonymity: r.GetAnonymity(),
	}
	d.emit(&pb.Envelope{Event: &pb.Envelope_ProxyAdopted{ProxyAdopted: &pb.ProxyAdopted{
		FromMember: c.From, Previous: s.Health, State: kept, Reason: c.Reason,
	}}})
}

// EWMAAlpha is the weight of the newest successful check's latency in
// State.LatencyEWMA.
const EWMAAlpha = 0.2

// Evolve folds one event into the state. It never fails: an event this
// version does not know only advances the sequence numbers.
func Evolve(s State, env *pb.Envelope) State { return evolve(s, env, true) }

// Fold applies envelopes in order.
func Fold(s State, envs ...*pb.Envelope) State {
	for _, e := range envs {
		s = Evolve(s, e)
	}
	return s
}

func evolve(s State, env *pb.Envelope, seqs bool) State {
	if seqs {
		if env.GetStreamSeq() != 0 {
			s.StreamSeq = env.GetStreamSeq()
		}
		if env.GetSeq() != 0 {
			s.Seq = env.GetSeq()
		}
	}
	at := At(env)
	switch e := env.GetEvent().(type) {
	case *pb.Envelope_ProxyAdded:
		// A (re-)added proxy starts afresh; its stream goes on.
		s = State{StreamSeq: s.StreamSeq, Seq: s.Seq}
		s.Added = true
		s.ProxyID = env.GetProxyId()
		s.Source = e.ProxyAdded.GetSource()
		s.URLRedacted = e.ProxyAdded.GetUrlRedacted()
		s.HasCredentials = e.ProxyAdded.GetHasCredentials()
		s.Origin = e.ProxyAdded.GetOrigin()
		s.Tags = strings.Join(e.ProxyAdded.GetTags(), ",")
		s.Weight = e.ProxyAdded.GetWeight()
		s.AddedAt = at
		s.Health = unknown
	case *pb.Envelope_ProxyRemoved:
		s.Removed = true
	case *pb.Envelope_CheckSucceeded:
		s.ConsecutiveSuccesses++
		s.ConsecutiveFailures = 0
		s.PassiveFailures = 0
		s.TotalChecks++
		s.LastCheckAt = at
		s.LastStatusCode = e.CheckSucceeded.GetStatusCode()
		s.LastLatency = LatencyFromPB(e.CheckSucceeded.GetLatency())
		if lat := s.LastLatency.Total; s.HasLatencyEWMA {
			s.LatencyEWMA = time.Duration(EWMAAlpha*float64(lat) + (1-EWMAAlpha)*float64(s.LatencyEWMA))
		} else {
			s.LatencyEWMA, s.HasLatencyEWMA = lat, true
		}
	case *pb.Envelope_CheckFailed:
		f := e.CheckFailed
		s.ConsecutiveSuccesses = 0
		if f.GetClass() == tooSlow {
			s.ConsecutiveFailures = 0 // a slow answer is an answer
		} else {
			s.ConsecutiveFailures++
		}
		s.PassiveFailures = 0
		s.TotalChecks++
		s.TotalFailures++
		s.LastCheckAt = at
		s.LastErrorClass = f.GetClass()
		s.LastError = f.GetMessage()
		s.LastStatusCode = f.GetStatusCode()
		s.LastLatency = LatencyFromPB(f.GetLatency())
	case *pb.Envelope_StateChanged:
		s.Health = e.StateChanged.GetTo()
		s.RecoveryAttempt = e.StateChanged.GetRecoveryAttempt()
		s.LastChangeAt = at
	case *pb.Envelope_ProxyPaused:
		s.Paused = true
	case *pb.Envelope_ProxyResumed:
		s.Paused = false
	case *pb.Envelope_PassiveFailureReported:
		s.PassiveFailures = e.PassiveFailureReported.GetConsecutive()
	case *pb.Envelope_PassiveSuccessReported:
		s.PassiveFailures = 0
	case *pb.Envelope_ProxyRevived:
		s.ConsecutiveSuccesses = 0
		s.ConsecutiveFailures = 0
		s.PassiveFailures = 0
	case *pb.Envelope_ProxyEjected:
		s.EjectedUntil = FromUnixNano(e.ProxyEjected.GetUntilUnixNano())
		s.EjectionMultiplier = e.ProxyEjected.GetMultiplier()
		s.LastEjectedAt = at
	case *pb.Envelope_ProxyReturned:
		s.EjectedUntil = time.Time{}
		s.LastReturnAt = at
	case *pb.Envelope_ProxyMetadataChanged:
		s.Tags = strings.Join(e.ProxyMetadataChanged.GetTags(), ",")
		s.Weight = e.ProxyMetadataChanged.GetWeight()
	case *pb.Envelope_ExitObserved:
		s.ExitIP = e.ExitObserved.GetExitIp()
		s.Anonymity = e.ExitObserved.GetAnonymity()
	case *pb.Envelope_ProxyAdopted:
		r := e.ProxyAdopted.GetState()
		s.Health = r.GetState()
		s.Paused = r.GetPaused()
		s.ConsecutiveSuccesses = r.GetConsecutiveSuccesses()
		s.ConsecutiveFailures = r.GetConsecutiveFailures()
		s.RecoveryAttempt = r.GetRecoveryAttempt()
		s.PassiveFailures = r.GetPassiveFailures()
		s.LastCheckAt = FromUnixNano(r.GetLastCheckUnixNano())
		s.LastChangeAt = FromUnixNano(r.GetLastChangeUnixNano())
		s.LastErrorClass = r.GetLastErrorClass()
		s.LastError = r.GetLastError()
		s.LastStatusCode = r.GetLastStatusCode()
		s.LastLatency = LatencyFromPB(r.GetLastLatency())
		s.ExitIP = r.GetExitIp()
		s.Anonymity = r.GetAnonymity()
		s.AdoptedAt = at
	}
	return s
}

// NextCheckAt says when the proxy should next be checked. ok is false when
// it should not be checked at all (not added, removed, paused or failed).
// A zero or past time means "now". r is a uniform random sample in [0, 1)
// that spreads checks (see JitterSample for a deterministic one).
//
// The delay counts from the last check:
//   - unknown: now if it was revived or re-added after its last check,
//     else suspect_interval;
//   - recovering, or degraded (unless only by slowness): suspect_interval;
//   - healthy (or degraded only by slowness): interval ± jitter; right after
//     a proxy's first check the delay is spread uniformly over
//     [0.1, 1]·interval·(1+jitter) so that a pool checked all at once at
//     start-up does not keep coming in waves;
//   - unhealthy: the recovery cooldown for its attempt, ± jitter;
//   - passive failures at the threshold: now.
func NextCheckAt(s State, cfg Config, r float64) (time.Time, bool) {
	if !s.Added || s.Removed || s.Paused || s.Health == failed {
		return time.Time{}, false
	}
	if s.PassiveFailures >= cfg.PassiveFailureThreshold {
		return time.Time{}, true
	}
	if s.LastCheckAt.IsZero() {
		return time.Time{}, true
	}
	if s.AdoptedAt.After(s.LastCheckAt) && s.Health != unhealthy {
		// Adopted from another member: checked by its new owner at once
		// (an unhealthy one keeps its cooldown).
		return time.Time{}, true
	}
	var d time.Duration
	switch s.Health {
	case unknown:
		if s.ConsecutiveSuccesses == 0 && s.ConsecutiveFailures == 0 {
			return time.Time{}, true // revived or re-added: not checked since
		}
		d = jittered(cfg.SuspectInterval, cfg.Jitter, r)
	case recovering:
		d = jittered(cfg.SuspectInterval, cfg.Jitter, r)
	case degraded:
		if slowOnly(s) {
			d = jittered(cfg.Interval, cfg.Jitter, r)
		} else {
			d = jittered(cfg.SuspectInterval, cfg.Jitter, r)
		}
	case unhealthy:
		d = jittered(cfg.Cooldown(s.RecoveryAttempt), cfg.Jitter, r)
	default: // healthy
		if s.TotalChecks == 1 {
			// Spread a pool checked all at once at start-up over a whole
			// interval, without exceeding interval·(1+jitter) (which
			// DetectionBound assumes).
			d = time.Duration(float64(cfg.Interval) * (1 + cfg.Jitter) * (0.1 + 0.9*r))
		} else {
			d = jittered(cfg.Interval, cfg.Jitter, r)
		}
	}
	return s.LastCheckAt.Add(d), true
}

// slowOnly reports whether the last check answered but too slowly: such a
// degraded proxy is usable and is re-checked at the normal interval.
func slowOnly(s State) bool {
	return s.LastErrorClass == tooSlow && s.ConsecutiveSuccesses == 0 && s.ConsecutiveFailures == 0
}

// jittered maps r ∈ [0,1) onto d·(1 ± jitter).
func jittered(d time.Duration, jitter, r float64) time.Duration {
	return time.Duration(float64(d) * (1 + jitter*(2*r-1)))
}

// JitterSample derives a deterministic sample in [0, 1) from a proxy ID and
// a counter (the shell passes TotalChecks, so the sample changes once per
// check and a restarted actor picks the same schedule).
func JitterSample(proxyID string, n uint64) float64 {
	// FNV-1a over the ID, mixed with the sequence (splitmix64 finaliser).
	h := uint64(14695981039346656037)
	for i := 0; i < len(proxyID); i++ {
		h ^= uint64(proxyID[i])
		h *= 1099511628211
	}
	h ^= n + 0x9e3779b97f4a7c15
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return float64(h>>11) / (1 << 53)
}
