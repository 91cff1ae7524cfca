package events

import (
	"fmt"
	"math"
	"testing"
	"time"
)

var cooldowns = []time.Duration{60 * time.Second, 120 * time.Second, 240 * time.Second, 480 * time.Second,
	960 * time.Second, 1920 * time.Second, time.Hour, time.Hour, time.Hour}

func TestCooldown(t *testing.T) {
	cfg := DefaultConfig()
	for attempt, want := range cooldowns {
		if got := cfg.Cooldown(uint32(attempt)); got != want {
			t.Errorf("Cooldown(%d) = %v, want %v", attempt, got, want)
		}
	}
	for _, attempt := range []uint32{64, 100, math.MaxUint32} {
		if got := cfg.Cooldown(attempt); got != time.Hour {
			t.Errorf("Cooldown(%d) = %v, want the 1h cap", attempt, got)
		}
	}
	// A cap that is not a power-of-two multiple of the base.
	cfg.RecoveryCooldown, cfg.MaxRecoveryCooldown = 50*time.Second, 1000*time.Second
	for attempt, want := range []time.Duration{50, 100, 200, 400, 800, 1000, 1000} {
		if got := cfg.Cooldown(uint32(attempt)); got != want*time.Second {
			t.Errorf("50s/1000s: Cooldown(%d) = %v, want %vs", attempt, got, want)
		}
	}
	// Cap equal to the base; and a huge base must not overflow.
	cfg.MaxRecoveryCooldown = cfg.RecoveryCooldown
	if got := cfg.Cooldown(3); got != 50*time.Second {
		t.Errorf("cap = base: Cooldown(3) = %v", got)
	}
	cfg.RecoveryCooldown, cfg.MaxRecoveryCooldown = 1<<62, math.MaxInt64
	for attempt := uint32(0); attempt < 70; attempt++ {
		if got := cfg.Cooldown(attempt); got <= 0 || got > cfg.MaxRecoveryCooldown {
			t.Fatalf("huge base: Cooldown(%d) = %v", attempt, got)
		}
	}
}

// TestCooldownViaNextCheckAt walks an unhealthy proxy through failed
// recoveries and reads each wait from NextCheckAt (r = 0.5: no jitter).
func TestCooldownViaNextCheckAt(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxRecoveryAttempts = 0
	h := newHarness(t, cfg).run(sUnhealthy...)
	for attempt, want := range cooldowns {
		if h.s.Health != unhealthy || h.s.RecoveryAttempt != uint32(attempt) {
			t.Fatalf("%s attempt %d, want unhealthy attempt %d", StateName(h.s.Health), h.s.RecoveryAttempt, attempt)
		}
		at, ok := NextCheckAt(h.s, cfg, 0.5)
		if got := at.Sub(h.s.LastCheckAt); !ok || got != want {
			t.Errorf("attempt %d: next check after %v (ok=%v), want %v", attempt, got, ok, want)
		}
		lo, _ := NextCheckAt(h.s, cfg, 0)
		hi, _ := NextCheckAt(h.s, cfg, math.Nextafter(1, 0))
		if lo.Sub(h.s.LastCheckAt) != want*9/10 || hi.Sub(h.s.LastCheckAt) > want*11/10 || hi.Sub(h.s.LastCheckAt) < want*11/10-time.Microsecond {
			t.Errorf("attempt %d: jitter range [%v, %v], want [%v, %v)", attempt, lo.Sub(h.s.LastCheckAt), hi.Sub(h.s.LastCheckAt), want*9/10, want*11/10)
		}
		h.do(fail()) // the result arrives: recovering, fails, unhealthy again
	}
}

func TestNextCheckAtEveryState(t *testing.T) {
	cfg := DefaultConfig()
	noFSHCfg := cfg
	noFSHCfg.FirstSuccessHealthy = false
	const never = time.Duration(-1)
	const now = time.Duration(-2)
	for _, tc := range []struct {
		name  string
		cfg   Config
		setup []Command
		// want delays from LastCheckAt for r = 0, 0.5 and just below 1.
		lo, mid, hi time.Duration
	}{
		{"not added", cfg, nil, never, never, never},
		{"unknown, never checked", cfg, sUnknown, now, now, now},
		{"unknown after a success", noFSHCfg, []Command{add(), ok()}, 900 * time.Millisecond, time.Second, 1100 * time.Millisecond},
		// The first check of a pool is spread over [0.1, 1]·interval·(1+jitter).
		{"healthy after its first check", cfg, sHealthy, 3300 * time.Millisecond, 18150 * time.Millisecond, 33 * time.Second},
		{"healthy", cfg, sHealthy2, 27 * time.Second, 30 * time.Second, 33 * time.Second},
		{"degraded by failure", cfg, sDegraded, 900 * time.Millisecond, time.Second, 1100 * time.Millisecond},
		{"degraded by slowness", cfg, sSlow, 27 * time.Second, 30 * time.Second, 33 * time.Second},
		{"degraded by slowness from unknown", cfg, []Command{add(), slow()}, 27 * time.Second, 30 * time.Second, 33 * time.Second},
		{"degraded by failure, then a success", cfg, then(sDegraded, ok()), 900 * time.Millisecond, time.Second, 1100 * time.Millisecond},
		{"degraded by slowness, then a success", cfg, then(sSlow, ok()), 900 * time.Millisecond, time.Second, 1100 * time.Millisecond},
		{"degraded by failure, then slowness", cfg, then(sDegraded2, slow()), 27 * time.Second, 30 * time.Second, 33 * time.Second},
		{"unhealthy", cfg, sUnhealthy, 54 * time.Second, 60 * time.Second, 66 * time.Second},
		{"recovering", cfg, sRecovering, 900 * time.Millisecond, time.Second, 1100 * time.Millisecond},
		{"recovering after a success", cfg, then(sRecovering, ok()), 900 * time.Millisecond, time.Second, 1100 * time.Millisecond},
		{"failed", func() Config { c := cfg; c.MaxRecoveryAttempts = 1; return c }(), failedAfter(1), never, never, never},
		{"paused", cfg, then(sHealthy2, pause()), never, never, never},
		{"paused unhealthy", cfg, then(sUnhealthy, pause()), never, never, never},
		{"resumed", cfg, then(sHealthy2, pause(), resume()), 27 * time.Second, 30 * time.Second, 33 * time.Second},
		{"removed", cfg, then(sHealthy2, remove()), never, never, never},
		{"passive failures at threshold", cfg, then(sHealthy2, passiveFail(), passiveFail(), passiveFail()), now, now, now},
		{"passive failures below threshold", cfg, then(sHealthy2, passiveFail(), passiveFail()), 27 * time.Second, 30 * time.Second, 33 * time.Second},
		{"revived", cfg, then(sUnhealthy, revive()), now, now, now},
		{"revived, then a success", noFSHCfg, then(sUnhealthy, revive(), ok()), 900 * time.Millisecond, time.Second, 1100 * time.Millisecond},
		{"removed and re-added", cfg, then(sHealthy2, remove(), add()), now, now, now},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := script(t, tc.cfg, tc.setup...)
			for i, r := range []float64{0, 0.5, math.Nextafter(1, 0)} {
				want := []time.Duration{tc.lo, tc.mid, tc.hi}[i]
				at, ok := NextCheckAt(s, tc.cfg, r)
				switch want {
				case never:
					if ok {
						t.Errorf("r=%v: scheduled at %v, want not scheduled", r, at)
					}
				case now:
					if !ok || !at.IsZero() {
						t.Errorf("r=%v: %v ok=%v, want now (zero time)", r, at, ok)
					}
				default:
					got := at.Sub(s.LastCheckAt)
					if !ok || s.LastCheckAt.IsZero() || got < want-time.Microsecond || got > want+time.Microsecond {
						t.Errorf("r=%v: delay %v ok=%v, want %v", r, got, ok, want)
					}
				}
			}
		})
	}
}

// TestDetectionBound simulates the worst case the bound describes: a healthy
// proxy dies right after a passed check; every check then takes the full
// timeout and the schedule always picks the longest jittered delay.
func TestDetectionBound(t *testing.T) {
	cfg := DefaultConfig()
	if b := cfg.DetectionBound(checkTimeout); b > 60*time.Second || b != 50200*time.Millisecond {
		t.Errorf("DetectionBound() = %v, want 50.2s (≤ 60s)", b)
	}
	for _, u := range []uint32{1, 2, 3, 5} {
		t.Run(fmt.Sprint("unhealthy_threshold=", u), func(t *testing.T) {
			c := cfg
			c.UnhealthyThreshold = u
			if got, bound := worstDetection(t, c, sHealthy2), c.DetectionBound(checkTimeout); got > bound || got < bound-time.Millisecond {
				t.Errorf("simulated worst case %v, DetectionBound %v", got, bound)
			}
		})
	}
	// Dying right after the very first check (whose follow-up is spread
	// over the interval) must stay within the bound too.
	if got := worstDetection(t, cfg, sHealthy); got > cfg.DetectionBound(checkTimeout) {
		t.Errorf("after the first check: simulated worst case %v, DetectionBound %v", got, cfg.DetectionBound(checkTimeout))
	}
}

// TestReviveIsCheckedAtOnce: a revived proxy is probed at once, even right
// after its last check.
func TestReviveIsCheckedAtOnce(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxRecoveryAttempts = 1
	for _, setup := range [][]Command{failedAfter(1), sUnhealthy, sRecovering} {
		h := newHarness(t, cfg).run(setup...)
		for _, gap := range []time.Duration{0, 100 * time.Millisecond} {
			h := *h
			h.do(Revive{At: h.s.LastCheckAt.Add(gap), Reason: "op"})
			for _, r := range []float64{0, 0.5, math.Nextafter(1, 0)} {
				if at, ok := NextCheckAt(h.s, cfg, r); !ok || !at.IsZero() {
					t.Errorf("revived %v after its last check: next check %v (ok=%v), want now", gap, at, ok)
				}
			}
		}
	}
}

// checkTimeout is the probe's default timeout (the probe package is not
// imported by events).
const checkTimeout = 5 * time.Second

// worstDetection plays setup, then fails every check (each taking the full
// timeout, scheduled at the latest jittered time) until unhealthy, and
// returns the time from the last passed check to unhealthy.
func worstDetection(t *testing.T, cfg Config, setup []Command) time.Duration {
	t.Helper()
	h := newHarness(t, cfg).run(setup...)
	died := h.s.LastCheckAt
	for h.s.Health != unhealthy {
		next, ok := NextCheckAt(h.s, cfg, math.Nextafter(1, 0))
		if !ok || next.IsZero() {
			t.Fatalf("unexpected schedule %v %v", next, ok)
		}
		h.do(CheckCompleted{At: next.Add(checkTimeout), Result: CheckResult{Class: 3, Latency: Latency{Total: checkTimeout}}})
	}
	return h.s.LastCheckAt.Sub(died)
}

func TestJitterSample(t *testing.T) {
	sum := 0.0
	const n = 20000
	distinct := map[float64]bool{}
	for i := range n {
		id := fmt.Sprintf("%016x", i%97)
		r := JitterSample(id, uint64(i))
		if r < 0 || r >= 1 {
			t.Fatalf("JitterSample(%s, %d) = %v, outside [0,1)", id, i, r)
		}
		if r2 := JitterSample(id, uint64(i)); r2 != r {
			t.Fatalf("JitterSample is not deterministic: %v then %v", r, r2)
		}
		sum += r
		distinct[r] = true
	}
	if mean := sum / n; mean < 0.48 || mean > 0.52 {
		t.Errorf("mean of %d samples = %v, want ≈ 0.5", n, mean)
	}
	if len(distinct) < n-10 {
		t.Errorf("only %d distinct samples of %d", len(distinct), n)
	}
	for _, seq := range []uint64{0, math.MaxUint64} {
		if r := JitterSample("", seq); r < 0 || r >= 1 {
			t.Errorf("JitterSample(\"\", %d) = %v", seq, r)
		}
	}
	if JitterSample("a", 1) == JitterSample("b", 1) {
		t.Errorf("different proxies should get different samples")
	}
}
