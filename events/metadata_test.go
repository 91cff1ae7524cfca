package events

import (
	"math"
	"testing"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// TestTagsAndWeight: a proxy's tags and weight come with its ProxyAdded,
// normalized; SetMetadata journals a change only when there is one; both
// survive a snapshot.
func TestTagsAndWeight(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	envs := h.do(Add{URLRedacted: "http://10.0.0.7:3128", Source: "src", Tags: []string{" residential", "de", "", "de", "a,b"}, Weight: 2})
	if a := envs[0].GetProxyAdded(); a.GetWeight() != 2 || len(a.GetTags()) != 3 || a.GetTags()[0] != "a_b" || a.GetTags()[1] != "de" || a.GetTags()[2] != "residential" {
		t.Fatalf("ProxyAdded tags %v weight %v", a.GetTags(), a.GetWeight())
	}
	if h.s.Tags != "a_b,de,residential" || h.s.Weight != 2 || len(h.s.TagList()) != 3 {
		t.Fatalf("state tags %q weight %v", h.s.Tags, h.s.Weight)
	}
	if got := describe(h.do(SetMetadata{Tags: []string{"residential", "de", "a,b"}, Weight: 2})); got != "" {
		t.Errorf("the same metadata in another order: %q, want nothing journaled", got)
	}
	if got := describe(h.do(SetMetadata{Tags: []string{"de"}, Weight: 3})); got != "proxy_metadata_changed" || h.s.Tags != "de" || h.s.Weight != 3 {
		t.Errorf("new metadata: %q, state %q %v", got, h.s.Tags, h.s.Weight)
	}
	for _, w := range []float64{-1, math.NaN(), math.Inf(1)} {
		h.do(SetMetadata{Tags: []string{"de"}, Weight: w})
		if h.s.Weight != 0 {
			t.Errorf("weight %v stored as %v, want 0 (unset)", w, h.s.Weight)
		}
	}
	h.do(SetMetadata{Tags: []string{"de", "x"}, Weight: 1.5})
	if got := FromSnapshot(ToSnapshot(h.s)); got.Tags != h.s.Tags || got.Weight != 1.5 {
		t.Errorf("snapshot lost the metadata: %q %v", got.Tags, got.Weight)
	}
}

// TestExitObserved: a passed check that saw an exit IP journals it when it
// or the anonymity level changes, not on every check; failed checks and
// checks without an echo target say nothing of it.
func TestExitObserved(t *testing.T) {
	h := newHarness(t, DefaultConfig()).run(add())
	echo := func(ip string, a pb.Anonymity) Command {
		return CheckCompleted{Result: CheckResult{StatusCode: 200, ExitIP: ip, Anonymity: a}}
	}
	if got := describe(h.do(echo("203.0.113.7", pb.Anonymity_ANONYMITY_ELITE))); got != "check_succeeded exit_observed state_changed:unknown>healthy" {
		t.Fatalf("first echo: %q", got)
	}
	if h.s.ExitIP != "203.0.113.7" || AnonymityName(h.s.Anonymity) != "elite" {
		t.Fatalf("state %q %v", h.s.ExitIP, h.s.Anonymity)
	}
	if got := describe(h.do(echo("203.0.113.7", pb.Anonymity_ANONYMITY_ELITE))); got != "check_succeeded" {
		t.Errorf("the same exit: %q", got)
	}
	envs := h.do(echo("203.0.113.9", pb.Anonymity_ANONYMITY_ANONYMOUS))
	if describe(envs) != "check_succeeded exit_observed" {
		t.Fatalf("a new exit: %q", describe(envs))
	}
	if x := envs[1].GetExitObserved(); x.GetPreviousExitIp() != "203.0.113.7" || x.GetPreviousAnonymity() != pb.Anonymity_ANONYMITY_ELITE {
		t.Errorf("previous exit %v", x)
	}
	if got := describe(h.do(ok())); got != "check_succeeded" || h.s.ExitIP != "203.0.113.9" {
		t.Errorf("a check without an echo target: %q, exit %q", got, h.s.ExitIP)
	}
	if got := FromSnapshot(ToSnapshot(h.s)); got.ExitIP != h.s.ExitIP || got.Anonymity != h.s.Anonymity {
		t.Errorf("snapshot lost the exit: %+v", got)
	}
	if a, ok := ParseAnonymity("transparent"); !ok || AnonymityName(a) != "transparent" {
		t.Errorf("ParseAnonymity")
	}
}
