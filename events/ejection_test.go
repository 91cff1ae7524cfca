package events

import (
	"testing"
	"time"
)

// TestEjection: PassiveFailureThreshold consecutive passive failures eject
// the proxy for EjectionTime (the proxy is then not Usable, and is
// re-probed at once); the ejection ends only when its time has come; a
// repeat ejection lasts longer, capped, and the multiplier decays while the
// proxy stays in rotation.
func TestEjection(t *testing.T) {
	cfg := DefaultConfig() // threshold 3, 30 s, capped at 300 s
	h := newHarness(t, cfg).run(add(), ok(), ok())
	h.run(passiveFail(), passiveFail())
	if h.s.Ejected() {
		t.Fatal("ejected below the threshold")
	}
	envs := h.do(passiveFail())
	if got := describe(envs); got != "passive_failure proxy_ejected" {
		t.Fatalf("third passive failure: %q", got)
	}
	ej := envs[1].GetProxyEjected()
	ejectedAt := h.now
	if ej.GetMultiplier() != 1 || ej.GetConsecutive() != 3 || ej.GetClass() != passiveFail().(PassiveOutcome).Class ||
		!h.s.EjectedUntil.Equal(ejectedAt.Add(30*time.Second)) || !h.s.LastEjectedAt.Equal(ejectedAt) {
		t.Fatalf("ejection %v, state until %v", ej, h.s.EjectedUntil)
	}
	if !h.s.Ejected() || h.s.Usable() || h.s.Health != healthy {
		t.Fatalf("ejected proxy: ejected=%v usable=%v health=%s; want ejected, not usable, health unchanged", h.s.Ejected(), h.s.Usable(), StateName(h.s.Health))
	}
	if at, ok := NextCheckAt(h.s, cfg, 0.5); !ok || !at.IsZero() {
		t.Errorf("ejected proxy is not re-probed at once: %v %v", at, ok)
	}
	// More failures while ejected: journaled, no second ejection.
	if got := describe(h.do(passiveFail())); got != "passive_failure" {
		t.Errorf("failure while ejected: %q", got)
	}
	// A passed check does not end the ejection early (its time does).
	h.run(ok())
	if !h.s.Ejected() {
		t.Fatal("a passed check ended the ejection")
	}
	// Too early: nothing.
	if got := describe(h.do(EjectionExpired{At: ejectedAt.Add(29 * time.Second)})); got != "" {
		t.Errorf("EjectionExpired before the time: %q", got)
	}
	envs = h.do(EjectionExpired{At: ejectedAt.Add(30 * time.Second)})
	if got := describe(envs); got != "proxy_returned" || h.s.Ejected() || !h.s.Usable() {
		t.Fatalf("EjectionExpired at the time: %q, ejected=%v usable=%v", got, h.s.Ejected(), h.s.Usable())
	}
	if r := envs[0].GetProxyReturned().GetReason(); r != "ejection of 30s ended" {
		t.Errorf("reason %q", r)
	}
	returnedAt := h.now
	if got := describe(h.do(expired())); got != "" {
		t.Errorf("EjectionExpired when not ejected: %q", got)
	}
	// Ejected again within one ejection time of returning: multiplier 2,
	// 60 s.
	class := passiveFail().(PassiveOutcome).Class
	for i := range 3 {
		envs = h.do(PassiveOutcome{At: returnedAt.Add(time.Duration(i+1) * time.Second), Class: class})
	}
	ej = envs[len(envs)-1].GetProxyEjected()
	if again := returnedAt.Add(3 * time.Second); ej == nil || ej.GetMultiplier() != 2 || !h.s.EjectedUntil.Equal(again.Add(60*time.Second)) {
		t.Fatalf("repeat ejection %v until %v", ej, h.s.EjectedUntil)
	}
	// NoEjection (the pool's maximum ejection share): failures are
	// journaled, the proxy stays in rotation.
	h2 := newHarness(t, cfg).run(add(), ok())
	for range 5 {
		envs = h2.do(PassiveOutcome{Class: passiveFail().(PassiveOutcome).Class, NoEjection: true})
		if describe(envs) != "passive_failure" {
			t.Fatalf("NoEjection: %q", describe(envs))
		}
	}
	if h2.s.Ejected() {
		t.Fatal("ejected despite NoEjection")
	}
	// Unhealthy or failed proxies are already out of rotation: nothing.
	h3 := newHarness(t, cfg).run(add(), fail(), fail(), fail())
	if h3.s.Health != unhealthy {
		t.Fatalf("setup: %s", StateName(h3.s.Health))
	}
	if got := describe(h3.do(passiveFail())); got != "" {
		t.Errorf("passive failure of an unhealthy proxy: %q", got)
	}
}

// TestEjectionMultiplier: the multiplier grows by one per repeat ejection,
// decays by one per EjectionTime in rotation, and the time is capped.
func TestEjectionMultiplier(t *testing.T) {
	cfg := DefaultConfig()
	now := t0
	cases := []struct {
		last       uint32
		lastReturn time.Time
		wantM      uint32
		wantD      time.Duration
	}{
		{0, time.Time{}, 1, 30 * time.Second},
		{1, now.Add(-10 * time.Second), 2, 60 * time.Second},
		{3, now.Add(-10 * time.Second), 4, 120 * time.Second},
		{3, now.Add(-65 * time.Second), 2, 60 * time.Second},         // two periods in rotation: 3-2+1
		{3, now.Add(-10 * time.Minute), 1, 30 * time.Second},         // decayed to 0
		{20, now.Add(-time.Second), 21, 300 * time.Second},           // capped
		{1 << 30, now.Add(-time.Second), 1 << 30, 300 * time.Second}, // saturates
	}
	for _, c := range cases {
		m, d := cfg.Ejection(c.last, c.lastReturn, now)
		if m != c.wantM || d != c.wantD {
			t.Errorf("Ejection(%d, %v ago) = %d, %v; want %d, %v", c.last, now.Sub(c.lastReturn), m, d, c.wantM, c.wantD)
		}
	}
}

// TestEjectionSurvivesASnapshot: the ejection fields round-trip through a
// snapshot, so a restarted actor knows its proxy is ejected and until when.
func TestEjectionSurvivesASnapshot(t *testing.T) {
	h := newHarness(t, DefaultConfig()).run(add(), ok(), passiveFail(), passiveFail(), passiveFail())
	got := FromSnapshot(ToSnapshot(h.s))
	if !got.EjectedUntil.Equal(h.s.EjectedUntil) || got.EjectionMultiplier != 1 || !got.LastEjectedAt.Equal(h.s.LastEjectedAt) || !got.Ejected() {
		t.Fatalf("snapshot lost the ejection: %+v", got)
	}
}
