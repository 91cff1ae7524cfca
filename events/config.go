package events

import (
	"errors"
	"fmt"
	"time"
)

// ErrBadConfig is wrapped by every error Config.Validate returns.
var ErrBadConfig = errors.New("events: invalid health config")

// Config drives the state machine: thresholds and the check schedule.
// Start from DefaultConfig and change what you need; the zero Config is not
// valid.
type Config struct {
	// Interval between checks of a healthy proxy. Default 30s.
	Interval time.Duration
	// Jitter is the ± fraction applied to every delay so that checks do not
	// come in waves. Default 0.1 (±10 %). Range [0, 0.5].
	Jitter float64
	// SuspectInterval is the fast re-probe interval while a proxy is
	// degraded by failures, unknown, or recovering. Default 1s.
	SuspectInterval time.Duration
	// HealthyThreshold is the number of consecutive successes that make a
	// degraded, unknown or recovering proxy healthy. Default 2.
	HealthyThreshold uint32
	// UnhealthyThreshold is the number of consecutive failures that make a
	// proxy unhealthy. Default 3.
	UnhealthyThreshold uint32
	// FirstSuccessHealthy makes the very first success of an unknown proxy
	// enough to mark it healthy (like Envoy at startup). Default true.
	FirstSuccessHealthy bool
	// RecoveryCooldown is the base wait of an unhealthy proxy before it is
	// re-probed: RecoveryCooldown × 2^attempt, capped at MaxRecoveryCooldown.
	// Default 60s.
	RecoveryCooldown time.Duration
	// MaxRecoveryCooldown caps the cooldown. Default 1h.
	MaxRecoveryCooldown time.Duration
	// MaxRecoveryAttempts is how many failed recoveries a proxy gets before
	// it is marked failed. 0 means never give up. Default 5.
	MaxRecoveryAttempts uint32
	// PassiveFailureThreshold is the number of consecutive local-origin
	// failures reported from real traffic (the proxy refused, timed out,
	// reset, asked for auth, answered 5xx itself) that eject the proxy from
	// rotation and trigger an immediate re-probe. Default 3.
	PassiveFailureThreshold uint32
	// EjectionTime is the base time an ejected proxy stays out of rotation;
	// a repeat ejection lasts EjectionTime × its multiplier (1, 2, 3, …,
	// decaying by one for each EjectionTime spent in rotation), capped at
	// MaxEjectionTime. Default 30s, like Envoy's base_ejection_time.
	EjectionTime time.Duration
	// MaxEjectionTime caps an ejection. Default 300s.
	MaxEjectionTime time.Duration
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Interval:                30 * time.Second,
		Jitter:                  0.1,
		SuspectInterval:         time.Second,
		HealthyThreshold:        2,
		UnhealthyThreshold:      3,
		FirstSuccessHealthy:     true,
		RecoveryCooldown:        60 * time.Second,
		MaxRecoveryCooldown:     time.Hour,
		MaxRecoveryAttempts:     5,
		PassiveFailureThreshold: 3,
		EjectionTime:            30 * time.Second,
		MaxEjectionTime:         300 * time.Second,
	}
}

// MinInterval is the smallest accepted Interval and SuspectInterval.
const MinInterval = 100 * time.Millisecond

// Validate reports the first invalid field, naming it, its value and what is
// allowed.
func (c Config) Validate() error {
	bad := func(field string, v any, allowed string) error {
		return fmt.Errorf("%w: %s = %v; %s (start from events.DefaultConfig())", ErrBadConfig, field, v, allowed)
	}
	switch {
	case c.Interval < MinInterval:
		return bad("interval", c.Interval, "must be at least 100ms")
	case !(c.Jitter >= 0 && c.Jitter <= 0.5): // also rejects NaN
		return bad("jitter", c.Jitter, "must be between 0 and 0.5")
	case c.SuspectInterval < MinInterval:
		return bad("suspect_interval", c.SuspectInterval, "must be at least 100ms")
	case c.SuspectInterval > c.Interval:
		return bad("suspect_interval", c.SuspectInterval, fmt.Sprintf("must not exceed interval (%v)", c.Interval))
	case c.HealthyThreshold < 1:
		return bad("healthy_threshold", c.HealthyThreshold, "must be at least 1")
	case c.UnhealthyThreshold < 1:
		return bad("unhealthy_threshold", c.UnhealthyThreshold, "must be at least 1")
	case c.RecoveryCooldown <= 0:
		return bad("recovery_cooldown", c.RecoveryCooldown, "must be positive")
	case c.MaxRecoveryCooldown < c.RecoveryCooldown:
		return bad("max_recovery_cooldown", c.MaxRecoveryCooldown, fmt.Sprintf("must be at least recovery_cooldown (%v)", c.RecoveryCooldown))
	case c.PassiveFailureThreshold < 1:
		return bad("passive_failure_threshold", c.PassiveFailureThreshold, "must be at least 1")
	case c.EjectionTime < MinInterval:
		return bad("ejection_time", c.EjectionTime, "must be at least 100ms")
	case c.MaxEjectionTime < c.EjectionTime:
		return bad("max_ejection_time", c.MaxEjectionTime, fmt.Sprintf("must be at least ejection_time (%v)", c.EjectionTime))
	}
	return nil
}

// Cooldown returns the wait of an unhealthy proxy that has made attempt
// recovery attempts: RecoveryCooldown × 2^attempt, capped at
// MaxRecoveryCooldown.
func (c Config) Cooldown(attempt uint32) time.Duration {
	d := c.RecoveryCooldown
	for i := uint32(0); i < attempt; i++ {
		if d >= c.MaxRecoveryCooldown/2 {
			return c.MaxRecoveryCooldown
		}
		d *= 2
	}
	return min(d, c.MaxRecoveryCooldown)
}

// Ejection returns the multiplier and the duration of an ejection at now,
// for a proxy whose last multiplier was last and who last returned to
// rotation at lastReturn (zero: never ejected): the multiplier decays by
// one per EjectionTime spent in rotation since, then grows by one; the
// duration is EjectionTime × multiplier, capped at MaxEjectionTime.
func (c Config) Ejection(last uint32, lastReturn, now time.Time) (uint32, time.Duration) {
	m := last
	if !lastReturn.IsZero() && c.EjectionTime > 0 {
		if spent := now.Sub(lastReturn) / c.EjectionTime; spent > 0 {
			if uint64(spent) >= uint64(m) {
				m = 0
			} else {
				m -= uint32(spent)
			}
		}
	}
	if m < 1<<20 {
		m++
	}
	d := c.MaxEjectionTime
	if time.Duration(m) <= c.MaxEjectionTime/max(c.EjectionTime, 1) {
		d = min(c.EjectionTime*time.Duration(m), c.MaxEjectionTime)
	}
	return m, d
}

// DetectionBound is the worst-case time from a healthy proxy dying (just
// after a passed check) to it being marked unhealthy, when one check takes
// at most timeout (the probe's, which the state machine never sees):
//
//	interval·(1+jitter) + unhealthy_threshold·timeout + (unhealthy_threshold−1)·suspect_interval·(1+jitter)
//
// With the defaults (5 s timeout): 33s + 15s + 2.2s = 50.2s, within the
// spec's 60s.
func (c Config) DetectionBound(timeout time.Duration) time.Duration {
	n := time.Duration(c.UnhealthyThreshold)
	return jittered(c.Interval, c.Jitter, 1) + n*timeout + (n-1)*jittered(c.SuspectInterval, c.Jitter, 1)
}
