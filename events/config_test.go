package events

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v", err)
	}
	want := Config{Interval: 30 * time.Second, Jitter: 0.1, SuspectInterval: time.Second,
		HealthyThreshold: 2, UnhealthyThreshold: 3, FirstSuccessHealthy: true, RecoveryCooldown: time.Minute,
		MaxRecoveryCooldown: time.Hour, MaxRecoveryAttempts: 5, PassiveFailureThreshold: 3,
		EjectionTime: 30 * time.Second, MaxEjectionTime: 300 * time.Second}
	if c != want {
		t.Errorf("DefaultConfig() = %+v, want %+v", c, want)
	}
	if (Config{}).Validate() == nil {
		t.Errorf("the zero Config must not be valid")
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		field string
		mod   func(*Config)
	}{
		{"interval", func(c *Config) { c.Interval = MinInterval - 1 }},
		{"interval", func(c *Config) { c.Interval = -time.Second }},
		{"jitter", func(c *Config) { c.Jitter = -0.01 }},
		{"jitter", func(c *Config) { c.Jitter = 0.51 }},
		{"jitter", func(c *Config) { c.Jitter = math.NaN() }},
		{"jitter", func(c *Config) { c.Jitter = math.Inf(1) }},
		{"suspect_interval", func(c *Config) { c.SuspectInterval = MinInterval - 1 }},
		{"suspect_interval", func(c *Config) { c.SuspectInterval = c.Interval + 1 }},
		{"healthy_threshold", func(c *Config) { c.HealthyThreshold = 0 }},
		{"unhealthy_threshold", func(c *Config) { c.UnhealthyThreshold = 0 }},
		{"recovery_cooldown", func(c *Config) { c.RecoveryCooldown = 0 }},
		{"recovery_cooldown", func(c *Config) { c.RecoveryCooldown = -time.Second }},
		{"max_recovery_cooldown", func(c *Config) { c.MaxRecoveryCooldown = c.RecoveryCooldown - 1 }},
		{"passive_failure_threshold", func(c *Config) { c.PassiveFailureThreshold = 0 }},
	} {
		c := DefaultConfig()
		tc.mod(&c)
		err := c.Validate()
		if !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: Validate() = %v, want ErrBadConfig", tc.field, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.field+" = ") || !strings.Contains(err.Error(), "DefaultConfig") {
			t.Errorf("%s: error %q should name the field, its value and the way out", tc.field, err)
		}
	}
	for name, mod := range map[string]func(*Config){
		"minimal intervals":   func(c *Config) { c.Interval, c.SuspectInterval = MinInterval, MinInterval },
		"no jitter":           func(c *Config) { c.Jitter = 0 },
		"max jitter":          func(c *Config) { c.Jitter = 0.5 },
		"suspect = interval":  func(c *Config) { c.SuspectInterval = c.Interval },
		"thresholds 1":        func(c *Config) { c.HealthyThreshold, c.UnhealthyThreshold, c.PassiveFailureThreshold = 1, 1, 1 },
		"never give up":       func(c *Config) { c.MaxRecoveryAttempts = 0 },
		"cap equals cooldown": func(c *Config) { c.MaxRecoveryCooldown = c.RecoveryCooldown },
		"no first success":    func(c *Config) { c.FirstSuccessHealthy = false },
	} {
		c := DefaultConfig()
		mod(&c)
		if err := c.Validate(); err != nil {
			t.Errorf("%s: Validate() = %v, want valid", name, err)
		}
	}
}
