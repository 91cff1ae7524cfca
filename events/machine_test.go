package events

import (
	"testing"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// transition is one row of the transition tables: fold setup, apply cmd,
// compare the events and the resulting state.
type transition struct {
	name  string
	tweak func(*Config) // applied to DefaultConfig for setup and cmd
	setup []Command
	// cmdTweak, if set, is applied on top of tweak for cmd only (used with
	// ConfigChanged: the new config is the one passed to Decide).
	cmdTweak func(*Config)
	cmd      Command
	want     string // describe() of the events
	health   pb.HealthState
	cs, cf   uint32 // consecutive successes, failures after
	attempt  uint32
}

func noFSH(c *Config) { c.FirstSuccessHealthy = false }
func h1(c *Config)    { c.HealthyThreshold = 1 }
func u1(c *Config)    { c.UnhealthyThreshold = 1 }
func max0(c *Config)  { c.MaxRecoveryAttempts = 0 }
func max1(c *Config)  { c.MaxRecoveryAttempts = 1 }

func both(fs ...func(*Config)) func(*Config) {
	return func(c *Config) {
		for _, f := range fs {
			f(c)
		}
	}
}

func runTransitions(t *testing.T, rows []transition) {
	t.Helper()
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			if tc.tweak != nil {
				tc.tweak(&cfg)
			}
			h := newHarness(t, cfg).run(tc.setup...)
			before := h.s
			if tc.cmdTweak != nil {
				tc.cmdTweak(&h.cfg)
			}
			envs := h.do(tc.cmd)
			if got := describe(envs); got != tc.want {
				t.Errorf("events = %q, want %q", got, tc.want)
			}
			s := h.s
			if s.Health != tc.health || s.ConsecutiveSuccesses != tc.cs || s.ConsecutiveFailures != tc.cf || s.RecoveryAttempt != tc.attempt {
				t.Errorf("after: %s cs=%d cf=%d attempt=%d; want %s cs=%d cf=%d attempt=%d",
					StateName(s.Health), s.ConsecutiveSuccesses, s.ConsecutiveFailures, s.RecoveryAttempt,
					StateName(tc.health), tc.cs, tc.cf, tc.attempt)
			}
			if sc := lastChange(envs); sc != nil {
				if sc.GetTo() != s.Health || sc.GetRecoveryAttempt() != s.RecoveryAttempt || sc.GetReason() == "" {
					t.Errorf("last StateChanged %v does not match state %s attempt %d or has no reason", sc, StateName(s.Health), s.RecoveryAttempt)
				}
				if !s.LastChangeAt.Equal(At(envs[len(envs)-1])) {
					t.Errorf("LastChangeAt = %v, want the command time", s.LastChangeAt)
				}
			} else if s.LastChangeAt != before.LastChangeAt {
				t.Errorf("LastChangeAt moved without a StateChanged")
			}
		})
	}
}

const (
	cs  = "check_succeeded"
	cfd = "check_failed"
)

func TestTransitionsFromUnknown(t *testing.T) {
	runTransitions(t, []transition{
		{name: "success, first_success_healthy", setup: sUnknown, cmd: ok(),
			want: cs + " state_changed:unknown>healthy", health: healthy, cs: 1},
		{name: "success, no first_success_healthy, below threshold", tweak: noFSH, setup: sUnknown, cmd: ok(),
			want: cs, health: unknown, cs: 1},
		{name: "second success reaches threshold 2", tweak: noFSH, setup: []Command{add(), ok()}, cmd: ok(),
			want: cs + " state_changed:unknown>healthy", health: healthy, cs: 2},
		{name: "threshold 3 needs 3", tweak: both(noFSH, func(c *Config) { c.HealthyThreshold = 3 }), setup: []Command{add(), ok()}, cmd: ok(),
			want: cs, health: unknown, cs: 2},
		{name: "threshold 1", tweak: both(noFSH, h1), setup: sUnknown, cmd: ok(),
			want: cs + " state_changed:unknown>healthy", health: healthy, cs: 1},
		{name: "failure", setup: sUnknown, cmd: fail(),
			want: cfd + " state_changed:unknown>degraded", health: degraded, cf: 1},
		{name: "failure, unhealthy threshold 1", tweak: u1, setup: sUnknown, cmd: fail(),
			want: cfd + " state_changed:unknown>unhealthy", health: unhealthy, cf: 1},
		{name: "failure after a success below threshold", tweak: noFSH, setup: []Command{add(), ok()}, cmd: fail(),
			want: cfd + " state_changed:unknown>degraded", health: degraded, cf: 1},
		{name: "too_slow", setup: sUnknown, cmd: slow(),
			want: cfd + " state_changed:unknown>degraded", health: degraded},
		{name: "too_slow, unhealthy threshold 1", tweak: u1, setup: sUnknown, cmd: slow(),
			want: cfd + " state_changed:unknown>degraded", health: degraded},
		{name: "cooldown expired is ignored", setup: sUnknown, cmd: cool(), want: "", health: unknown},
	})
}

func TestTransitionsFromHealthy(t *testing.T) {
	runTransitions(t, []transition{
		{name: "success", setup: sHealthy, cmd: ok(), want: cs, health: healthy, cs: 2},
		{name: "first failure", setup: sHealthy2, cmd: fail(),
			want: cfd + " state_changed:healthy>degraded", health: degraded, cf: 1},
		{name: "first failure, unhealthy threshold 1", tweak: u1, setup: sHealthy2, cmd: fail(),
			want: cfd + " state_changed:healthy>unhealthy", health: unhealthy, cf: 1},
		{name: "too_slow", setup: sHealthy2, cmd: slow(),
			want: cfd + " state_changed:healthy>degraded", health: degraded},
		{name: "too_slow, unhealthy threshold 1", tweak: u1, setup: sHealthy2, cmd: slow(),
			want: cfd + " state_changed:healthy>degraded", health: degraded},
		{name: "every failure class", setup: sHealthy, cmd: failC(pb.FailureClass_FAILURE_CLASS_PROXY_AUTH_REQUIRED),
			want: cfd + " state_changed:healthy>degraded", health: degraded, cf: 1},
		{name: "cooldown expired is ignored", setup: sHealthy, cmd: cool(), want: "", health: healthy, cs: 1},
	})
}

func TestTransitionsFromDegraded(t *testing.T) {
	runTransitions(t, []transition{
		{name: "second failure stays degraded", setup: sDegraded, cmd: fail(), want: cfd, health: degraded, cf: 2},
		{name: "third consecutive failure", setup: sDegraded2, cmd: fail(),
			want: cfd + " state_changed:degraded>unhealthy", health: unhealthy, cf: 3},
		{name: "threshold 5: fourth failure stays degraded", tweak: func(c *Config) { c.UnhealthyThreshold = 5 },
			setup: then(sDegraded2, fail()), cmd: fail(), want: cfd, health: degraded, cf: 4},
		{name: "threshold 5: fifth failure", tweak: func(c *Config) { c.UnhealthyThreshold = 5 },
			setup: then(sDegraded2, fail(), fail()), cmd: fail(),
			want: cfd + " state_changed:degraded>unhealthy", health: unhealthy, cf: 5},
		{name: "one success below threshold", setup: sDegraded, cmd: ok(), want: cs, health: degraded, cs: 1},
		{name: "healthy_threshold successes", setup: then(sDegraded, ok()), cmd: ok(),
			want: cs + " state_changed:degraded>healthy", health: healthy, cs: 2},
		{name: "healthy threshold 1", tweak: h1, setup: sDegraded, cmd: ok(),
			want: cs + " state_changed:degraded>healthy", health: healthy, cs: 1},
		{name: "failure after a success restarts the streak", setup: then(sDegraded2, ok()), cmd: fail(),
			want: cfd, health: degraded, cf: 1},
		{name: "too_slow breaks the failure streak", setup: sDegraded2, cmd: slow(), want: cfd, health: degraded},
		{name: "failure after too_slow does not reach the threshold", setup: then(sDegraded2, slow()), cmd: fail(),
			want: cfd, health: degraded, cf: 1},
		{name: "too_slow while degraded by slowness", setup: sSlow, cmd: slow(), want: cfd, health: degraded},
		{name: "too_slow never makes unhealthy", tweak: u1, setup: sSlow, cmd: slow(), want: cfd, health: degraded},
		{name: "success after slowness", setup: then(sSlow, ok()), cmd: ok(),
			want: cs + " state_changed:degraded>healthy", health: healthy, cs: 2},
		{name: "cooldown expired is ignored", setup: sDegraded, cmd: cool(), want: "", health: degraded, cf: 1},
	})
}

func TestTransitionsFromUnhealthy(t *testing.T) {
	runTransitions(t, []transition{
		{name: "cooldown expired", setup: sUnhealthy, cmd: cool(),
			want: "state_changed:unhealthy>recovering", health: recovering, cf: 3, attempt: 1},
		{name: "success implies cooldown expired", setup: sUnhealthy, cmd: ok(),
			want: "state_changed:unhealthy>recovering " + cs, health: recovering, cs: 1, attempt: 1},
		{name: "success, healthy threshold 1", tweak: h1, setup: sUnhealthy, cmd: ok(),
			want: "state_changed:unhealthy>recovering " + cs + " state_changed:recovering>healthy", health: healthy, cs: 1},
		{name: "failure implies cooldown expired and fails the attempt", setup: sUnhealthy, cmd: fail(),
			want: "state_changed:unhealthy>recovering " + cfd + " state_changed:recovering>unhealthy", health: unhealthy, cf: 4, attempt: 1},
		{name: "failure with max attempts 1", tweak: max1, setup: sUnhealthy, cmd: fail(),
			want: "state_changed:unhealthy>recovering " + cfd + " state_changed:recovering>failed", health: failed, cf: 4, attempt: 1},
		{name: "too_slow recovers to degraded (slow but answering)", setup: sUnhealthy, cmd: slow(),
			want: "state_changed:unhealthy>recovering " + cfd + " state_changed:recovering>degraded", health: degraded, attempt: 1},
		{name: "passive failure is ignored (already out of rotation)", setup: sUnhealthy, cmd: passiveFail(),
			want: "", health: unhealthy, cf: 3},
	})
}

func TestTransitionsFromRecovering(t *testing.T) {
	runTransitions(t, []transition{
		{name: "one success below threshold", setup: sRecovering, cmd: ok(), want: cs, health: recovering, cs: 1, attempt: 1},
		{name: "healthy_threshold successes", setup: then(sRecovering, ok()), cmd: ok(),
			want: cs + " state_changed:recovering>healthy", health: healthy, cs: 2},
		{name: "failure", setup: sRecovering, cmd: fail(),
			want: cfd + " state_changed:recovering>unhealthy", health: unhealthy, cf: 4, attempt: 1},
		{name: "failure after a success", setup: then(sRecovering, ok()), cmd: fail(),
			want: cfd + " state_changed:recovering>unhealthy", health: unhealthy, cf: 1, attempt: 1},
		{name: "too_slow ends probation as degraded", setup: sRecovering, cmd: slow(), want: cfd + " state_changed:recovering>degraded", health: degraded, attempt: 1},
		{name: "too_slow after a success ends probation as degraded", setup: then(sRecovering, ok()), cmd: slow(), want: cfd + " state_changed:recovering>degraded", health: degraded, attempt: 1},
		{name: "cooldown expired is ignored", setup: sRecovering, cmd: cool(), want: "", health: recovering, cf: 3, attempt: 1},
		{name: "failure of attempt 5 of 5", setup: then(sUnhealthy, repeat(4, cool(), fail())...), cmd: fail(),
			want: "state_changed:unhealthy>recovering " + cfd + " state_changed:recovering>failed", health: failed, cf: 8, attempt: 5},
		{name: "failure of attempt 5, max 0 never gives up", tweak: max0, setup: then(sUnhealthy, repeat(4, cool(), fail())...), cmd: fail(),
			want: "state_changed:unhealthy>recovering " + cfd + " state_changed:recovering>unhealthy", health: unhealthy, cf: 8, attempt: 5},
		{name: "failure of attempt 2 of 3", tweak: func(c *Config) { c.MaxRecoveryAttempts = 3 }, setup: then(sUnhealthy, cool(), fail(), cool()), cmd: fail(),
			want: cfd + " state_changed:recovering>unhealthy", health: unhealthy, cf: 5, attempt: 2},
		{name: "failure of attempt 3 of 3", tweak: func(c *Config) { c.MaxRecoveryAttempts = 3 }, setup: then(sUnhealthy, cool(), fail(), cool(), fail(), cool()), cmd: fail(),
			want: cfd + " state_changed:recovering>failed", health: failed, cf: 6, attempt: 3},
	})
}

func TestTransitionsFromFailed(t *testing.T) {
	runTransitions(t, []transition{
		{name: "success is recorded, health stays", tweak: max1, setup: failedAfter(1), cmd: ok(), want: cs, health: failed, cs: 1, attempt: 1},
		{name: "failure is recorded, health stays", tweak: max1, setup: failedAfter(1), cmd: fail(), want: cfd, health: failed, cf: 5, attempt: 1},
		{name: "too_slow is recorded, health stays", tweak: max1, setup: failedAfter(1), cmd: slow(), want: cfd, health: failed, attempt: 1},
		{name: "successes never heal", tweak: both(max1, h1), setup: then(failedAfter(1), ok()), cmd: ok(), want: cs, health: failed, cs: 2, attempt: 1},
		{name: "cooldown expired is ignored", tweak: max1, setup: failedAfter(1), cmd: cool(), want: "", health: failed, cf: 4, attempt: 1},
		{name: "passive failure is ignored", tweak: max1, setup: failedAfter(1), cmd: passiveFail(), want: "", health: failed, cf: 4, attempt: 1},
		{name: "config change is ignored", tweak: max1, setup: then(failedAfter(1), ok()), cmdTweak: func(c *Config) { c.MaxRecoveryAttempts = 0; c.HealthyThreshold = 1 },
			cmd: cfgChanged(), want: "", health: failed, cs: 1, attempt: 1},
		{name: "revive", tweak: max1, setup: failedAfter(1), cmd: revive(),
			want: "proxy_revived state_changed:failed>unknown", health: unknown},
		{name: "pause", tweak: max1, setup: failedAfter(1), cmd: pause(), want: "proxy_paused", health: failed, cf: 4, attempt: 1},
	})
}

func TestTransitionsOnConfigChanged(t *testing.T) {
	u := func(n uint32) func(*Config) { return func(c *Config) { c.UnhealthyThreshold = n } }
	h := func(n uint32) func(*Config) { return func(c *Config) { c.HealthyThreshold = n } }
	runTransitions(t, []transition{
		{name: "lower unhealthy threshold reached", setup: sDegraded2, cmdTweak: u(2), cmd: cfgChanged(),
			want: "state_changed:degraded>unhealthy", health: unhealthy, cf: 2},
		{name: "lower unhealthy threshold not reached", setup: sDegraded, cmdTweak: u(2), cmd: cfgChanged(), want: "", health: degraded, cf: 1},
		{name: "higher unhealthy threshold", setup: sDegraded2, cmdTweak: u(9), cmd: cfgChanged(), want: "", health: degraded, cf: 2},
		{name: "lower healthy threshold, degraded", setup: then(sDegraded, ok()), cmdTweak: h(1), cmd: cfgChanged(),
			want: "state_changed:degraded>healthy", health: healthy, cs: 1},
		{name: "lower healthy threshold, recovering", setup: then(sRecovering, ok()), cmdTweak: h(1), cmd: cfgChanged(),
			want: "state_changed:recovering>healthy", health: healthy, cs: 1},
		{name: "lower healthy threshold, unknown", tweak: noFSH, setup: []Command{add(), ok()}, cmdTweak: h(1), cmd: cfgChanged(),
			want: "state_changed:unknown>healthy", health: healthy, cs: 1},
		{name: "unknown never checked stays unknown", setup: sUnknown, cmdTweak: h(1), cmd: cfgChanged(), want: "", health: unknown},
		{name: "degraded by slowness without successes stays", setup: sSlow, cmdTweak: h(1), cmd: cfgChanged(), want: "", health: degraded},
		{name: "healthy unchanged", setup: sHealthy2, cmdTweak: both(h(1), u(1)), cmd: cfgChanged(), want: "", health: healthy, cs: 2},
		{name: "unhealthy waits for its cooldown", setup: sUnhealthy, cmdTweak: u(1), cmd: cfgChanged(), want: "", health: unhealthy, cf: 3},
		{name: "raised healthy threshold keeps healthy", setup: sHealthy, cmdTweak: h(5), cmd: cfgChanged(), want: "", health: healthy, cs: 1},
	})
}
