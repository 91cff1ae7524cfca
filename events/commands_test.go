package events

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
	"google.golang.org/protobuf/proto"
)

func TestReviveFromEachState(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxRecoveryAttempts = 1
	for _, tc := range []struct {
		setup []Command
		want  pb.HealthState
		ok    bool
	}{
		{sUnknown, unknown, false},
		{sHealthy, healthy, false},
		{sDegraded, degraded, false},
		{sSlow, degraded, false},
		{sUnhealthy, unhealthy, true},
		{sRecovering, recovering, true},
		{then(sRecovering, ok()), recovering, true},
		{failedAfter(1), failed, true},
		{then(failedAfter(1), pause()), failed, true},
	} {
		t.Run(StateName(tc.want), func(t *testing.T) {
			h := newHarness(t, cfg).run(tc.setup...)
			h.do(passiveFail())
			if h.s.Health != tc.want {
				t.Fatalf("setup reached %s, want %s", StateName(h.s.Health), StateName(tc.want))
			}
			before := h.s
			envs, err := h.try(revive())
			if !tc.ok {
				mustErrIs(t, err, ErrNotRevivable)
				if !strings.Contains(err.Error(), testID) || !strings.Contains(err.Error(), StateName(tc.want)) {
					t.Errorf("error %q should name the proxy and its state", err)
				}
				if h.s != before {
					t.Errorf("a rejected command changed the state")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, want := describe(envs), "proxy_revived state_changed:"+StateName(tc.want)+">unknown"; got != want {
				t.Fatalf("events = %q, want %q", got, want)
			}
			if sc := lastChange(envs); !strings.Contains(sc.GetReason(), "op") {
				t.Errorf("reason %q should carry the operator's reason", sc.GetReason())
			}
			s := h.s
			if s.Health != unknown || s.ConsecutiveSuccesses != 0 || s.ConsecutiveFailures != 0 || s.RecoveryAttempt != 0 || s.PassiveFailures != 0 {
				t.Errorf("after revive: %+v; want unknown with counters reset", s)
			}
			if s.TotalChecks != before.TotalChecks || s.TotalFailures != before.TotalFailures || s.Paused != before.Paused {
				t.Errorf("revive must keep totals and the paused flag")
			}
			// Revived proxies start over: the first success (default config)
			// makes them healthy.
			if envs := h.do(ok()); lastChange(envs).GetTo() != healthy {
				t.Errorf("first success after revive: %s", describe(envs))
			}
		})
	}
}

func TestPauseResumeIdempotent(t *testing.T) {
	h := newHarness(t, DefaultConfig()).run(add(), ok())
	if got := describe(h.do(resume())); got != "" {
		t.Errorf("resume while running = %q, want no events", got)
	}
	if got := describe(h.do(pause())); got != "proxy_paused" || !h.s.Paused {
		t.Errorf("pause = %q paused=%v", got, h.s.Paused)
	}
	if got := describe(h.do(pause())); got != "" || !h.s.Paused {
		t.Errorf("second pause = %q, want no events", got)
	}
	if _, ok := NextCheckAt(h.s, h.cfg, 0.5); ok {
		t.Errorf("a paused proxy must not be scheduled")
	}
	// Checks in flight when paused still complete and count.
	if got := describe(h.do(fail())); got != "check_failed state_changed:healthy>degraded" {
		t.Errorf("check while paused = %q", got)
	}
	if got := describe(h.do(resume())); got != "proxy_resumed" || h.s.Paused {
		t.Errorf("resume = %q paused=%v", got, h.s.Paused)
	}
	if got := describe(h.do(resume())); got != "" {
		t.Errorf("second resume = %q, want no events", got)
	}
	if _, ok := NextCheckAt(h.s, h.cfg, 0.5); !ok {
		t.Errorf("a resumed proxy must be scheduled")
	}
	if h.s.Health != degraded {
		t.Errorf("pause/resume changed health to %s", StateName(h.s.Health))
	}
}

// allCommands returns one command of every kind.
func allCommands() []Command {
	return []Command{add(), ok(), fail(), slow(), cool(), pause(), resume(), revive(), remove(), cfgChanged(), passiveFail(), passiveOK()}
}

func TestRemoveIsAbsorbing(t *testing.T) {
	for _, setup := range [][]Command{sUnknown, sHealthy, sDegraded, sUnhealthy, sRecovering, then(sHealthy, pause())} {
		h := newHarness(t, DefaultConfig()).run(setup...)
		if got := describe(h.do(remove())); got != "proxy_removed" || !h.s.Removed {
			t.Fatalf("remove = %q", got)
		}
		if h.s.Usable() {
			t.Errorf("a removed proxy is not usable")
		}
		if _, ok := NextCheckAt(h.s, h.cfg, 0.5); ok {
			t.Errorf("a removed proxy must not be scheduled")
		}
		removed := h.s
		for _, c := range allCommands() {
			if _, isAdd := c.(Add); isAdd {
				continue // re-adding is allowed: TestReAddAfterRemove
			}
			_, err := h.try(c)
			mustErrIs(t, err, ErrRemoved)
			if h.s != removed {
				t.Fatalf("%T changed a removed proxy", c)
			}
		}
	}
}

func TestCommandsBeforeAdd(t *testing.T) {
	for _, c := range allCommands() {
		if _, isAdd := c.(Add); isAdd {
			continue
		}
		h := newHarness(t, DefaultConfig())
		_, err := h.try(c)
		mustErrIs(t, err, ErrNotAdded)
		if !strings.Contains(err.Error(), testID) {
			t.Errorf("%T: error %q should name the proxy", c, err)
		}
		if h.s != NewState(testID) {
			t.Errorf("%T changed the state", c)
		}
	}
}

func TestAdd(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	envs := h.do(Add{URLRedacted: "socks5://10.0.0.7:1080", Source: "pool-a", ConfigRef: "pool-a@3", HasCredentials: true})
	if got := describe(envs); got != "proxy_added" {
		t.Fatalf("events = %q", got)
	}
	e := envs[0]
	pa := e.GetProxyAdded()
	if e.GetSource() != "pool-a" || pa.GetSource() != "pool-a" || pa.GetCheckConfigRef() != "pool-a@3" || !pa.GetHasCredentials() || pa.GetUrlRedacted() != "socks5://10.0.0.7:1080" {
		t.Errorf("ProxyAdded = %v", e)
	}
	s := h.s
	if !s.Added || s.Health != unknown || s.Source != "pool-a" || !s.HasCredentials || s.URLRedacted != "socks5://10.0.0.7:1080" || !s.AddedAt.Equal(t0) || s.StreamSeq != 1 || s.Seq != 1001 {
		t.Errorf("state after add = %+v", s)
	}
	if s.Usable() {
		t.Errorf("an unknown proxy is not usable")
	}
	_, err := h.try(add())
	mustErrIs(t, err, ErrAlreadyAdded)
	// Later envelopes carry the source.
	if envs := h.do(ok()); envs[0].GetSource() != "pool-a" || envs[0].GetProxyId() != testID {
		t.Errorf("later envelope header = %v", envs[0])
	}
}

func TestPassiveOutcomes(t *testing.T) {
	cfg := DefaultConfig()
	h := newHarness(t, cfg).run(add(), ok(), ok())
	if got := describe(h.do(passiveOK())); got != "" {
		t.Errorf("passive success without a streak = %q, want nothing journaled", got)
	}
	for i := uint32(1); i <= 4; i++ {
		envs := h.do(passiveFail())
		want := "passive_failure"
		if i == cfg.PassiveFailureThreshold {
			want = "passive_failure proxy_ejected"
		}
		if describe(envs) != want || envs[0].GetPassiveFailureReported().GetConsecutive() != i || h.s.PassiveFailures != i {
			t.Fatalf("passive failure %d: %v, state %d", i, envs, h.s.PassiveFailures)
		}
		at, ok := NextCheckAt(h.s, cfg, 0.5)
		immediate := ok && at.IsZero()
		if want := i >= cfg.PassiveFailureThreshold; immediate != want {
			t.Errorf("after %d passive failures: NextCheckAt immediate=%v, want %v", i, immediate, want)
		}
		if h.s.Health != healthy {
			t.Fatalf("passive failures must not change health")
		}
	}
	if got := describe(h.do(passiveOK())); got != "passive_success" || h.s.PassiveFailures != 0 {
		t.Errorf("passive success = %q, streak %d", got, h.s.PassiveFailures)
	}
	if at, _ := NextCheckAt(h.s, cfg, 0.5); at.IsZero() {
		t.Errorf("after a passive success the schedule is normal again")
	}
	// An active check resets the streak too.
	h.run(passiveFail(), passiveFail(), passiveFail(), fail())
	if h.s.PassiveFailures != 0 {
		t.Errorf("active check left passive streak %d", h.s.PassiveFailures)
	}
	h.run(passiveFail(), ok())
	if h.s.PassiveFailures != 0 {
		t.Errorf("active success left passive streak %d", h.s.PassiveFailures)
	}
	// Threshold 1: a single passive failure triggers a probe.
	cfg.PassiveFailureThreshold = 1
	h = newHarness(t, cfg).run(add(), ok(), passiveFail())
	if at, ok := NextCheckAt(h.s, cfg, 0.5); !ok || !at.IsZero() {
		t.Errorf("threshold 1: NextCheckAt = %v %v, want now", at, ok)
	}
}

func TestCheckFailedRecordsDetails(t *testing.T) {
	h := newHarness(t, DefaultConfig()).run(add())
	lat := Latency{Connect: 3 * time.Millisecond, FirstByte: 40 * time.Millisecond, Total: 45 * time.Millisecond}
	envs := h.do(CheckCompleted{Result: CheckResult{Class: pb.FailureClass_FAILURE_CLASS_BAD_STATUS, StatusCode: 502, Message: "bad gateway", Latency: lat}})
	cf := envs[0].GetCheckFailed()
	if cf.GetStatusCode() != 502 || cf.GetMessage() != "bad gateway" || LatencyFromPB(cf.GetLatency()) != lat {
		t.Errorf("CheckFailed = %v", cf)
	}
	s := h.s
	if s.LastErrorClass != pb.FailureClass_FAILURE_CLASS_BAD_STATUS || s.LastError != "bad gateway" || s.LastStatusCode != 502 ||
		s.LastLatency != lat || s.TotalChecks != 1 || s.TotalFailures != 1 || !s.LastCheckAt.Equal(t0.Add(step)) {
		t.Errorf("state = %+v", s)
	}
	h.do(CheckCompleted{Result: CheckResult{StatusCode: 204, Latency: Latency{Total: time.Millisecond}}})
	if h.s.LastStatusCode != 204 || h.s.LastLatency.Total != time.Millisecond || h.s.TotalChecks != 2 || h.s.TotalFailures != 1 {
		t.Errorf("state after success = %+v", h.s)
	}
}

func TestMessageTruncation(t *testing.T) {
	for _, tc := range []struct {
		name, msg string
	}{
		{"short", "connection refused"},
		{"exactly 200", strings.Repeat("a", MaxMessageLen)},
		{"201", strings.Repeat("a", MaxMessageLen+1)},
		{"long", strings.Repeat("x", 5000)},
		{"multibyte across the limit", strings.Repeat("a", MaxMessageLen-1) + "é" + "tail"},
		{"4-byte rune across the limit", strings.Repeat("a", MaxMessageLen-2) + "😀😀"},
		{"invalid utf-8", "bad \xff\xfe byte"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, DefaultConfig()).run(add())
			envs := h.do(CheckCompleted{Result: CheckResult{Class: pb.FailureClass_FAILURE_CLASS_OTHER, Message: tc.msg}})
			got := envs[0].GetCheckFailed().GetMessage()
			if len(got) > MaxMessageLen {
				t.Errorf("message is %d bytes, want ≤ %d", len(got), MaxMessageLen)
			}
			if !utf8.ValidString(got) {
				t.Errorf("message %q is not valid UTF-8", got)
			}
			if utf8.ValidString(tc.msg) && !strings.HasPrefix(tc.msg, got) {
				t.Errorf("message %q is not a prefix of the original", got)
			}
			if len(tc.msg) <= MaxMessageLen && utf8.ValidString(tc.msg) && got != tc.msg {
				t.Errorf("short message changed: %q", got)
			}
			if len(tc.msg) > MaxMessageLen && len(got) < MaxMessageLen-utf8.UTFMax {
				t.Errorf("message truncated too much: %d bytes", len(got))
			}
			// The journal must be able to store it (proto3 strings are UTF-8).
			if _, err := proto.Marshal(envs[0]); err != nil {
				t.Errorf("envelope does not marshal: %v", err)
			}
		})
	}
}

func TestInvalidResultRejected(t *testing.T) {
	for _, r := range []CheckResult{
		{Class: pb.FailureClass(99)},
		{Class: pb.FailureClass(-1)},
		{Latency: Latency{Total: -1}},
		{Latency: Latency{Connect: -time.Second}},
		{Class: pb.FailureClass_FAILURE_CLASS_TIMEOUT, Latency: Latency{FirstByte: -1}},
	} {
		for _, setup := range [][]Command{sHealthy, sUnhealthy} {
			h := newHarness(t, DefaultConfig()).run(setup...)
			before := h.s
			_, err := h.try(CheckCompleted{Result: r})
			mustErrIs(t, err, ErrInvalidResult)
			if h.s != before {
				t.Errorf("%+v: rejected result changed the state", r)
			}
		}
	}
}

func TestMaxRecoveryAttempts(t *testing.T) {
	for _, n := range []uint32{1, 2, 5, 7} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.MaxRecoveryAttempts = n
			h := newHarness(t, cfg).run(sUnhealthy...)
			attempts := uint32(0)
			for h.s.Health != failed {
				if attempts > n {
					t.Fatalf("still %s after %d recovery attempts", StateName(h.s.Health), attempts)
				}
				if envs := h.do(cool()); lastChange(envs).GetTo() != recovering {
					t.Fatalf("cooldown: %s", describe(envs))
				}
				attempts++
				if h.s.RecoveryAttempt != attempts {
					t.Fatalf("attempt counter %d, want %d", h.s.RecoveryAttempt, attempts)
				}
				h.do(fail())
			}
			if attempts != n {
				t.Errorf("failed after %d recovery attempts, want %d", attempts, n)
			}
			if _, ok := NextCheckAt(h.s, cfg, 0.5); ok {
				t.Errorf("a failed proxy must not be scheduled")
			}
		})
	}
	t.Run("0 never gives up", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.MaxRecoveryAttempts = 0
		h := newHarness(t, cfg).run(sUnhealthy...)
		for i := 1; i <= 50; i++ {
			h.run(cool(), fail())
			if h.s.Health != unhealthy || h.s.RecoveryAttempt != uint32(i) {
				t.Fatalf("after %d failed recoveries: %s attempt %d", i, StateName(h.s.Health), h.s.RecoveryAttempt)
			}
		}
	})
	t.Run("success resets the attempt counter", func(t *testing.T) {
		cfg := DefaultConfig()
		h := newHarness(t, cfg).run(sUnhealthy...)
		h.run(repeat(4, cool(), fail())...)
		h.run(cool(), ok(), ok())
		if h.s.Health != healthy || h.s.RecoveryAttempt != 0 {
			t.Fatalf("%s attempt %d", StateName(h.s.Health), h.s.RecoveryAttempt)
		}
		h.run(fail(), fail(), fail())
		h.run(repeat(4, cool(), fail())...)
		if h.s.Health != unhealthy {
			t.Errorf("after 4 more failed recoveries: %s, want unhealthy (budget restarted)", StateName(h.s.Health))
		}
	})
}

// TestReAddAfterRemove: a removed proxy can be added again; it starts afresh
// while its stream goes on.
func TestReAddAfterRemove(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxRecoveryAttempts = 1
	for _, setup := range [][]Command{sHealthy, sUnhealthy, failedAfter(1), then(sDegraded, pause(), passiveFail())} {
		h := newHarness(t, cfg).run(setup...)
		h.do(remove())
		seq := h.s.StreamSeq
		at := h.now.Add(time.Minute)
		envs := h.do(Add{At: at, URLRedacted: "http://10.0.0.8:3128", Source: "pool-b", HasCredentials: true})
		if describe(envs) != "proxy_added" || envs[0].GetSource() != "pool-b" {
			t.Fatalf("re-add = %v", envs)
		}
		want := State{ProxyID: testID, Source: "pool-b", URLRedacted: "http://10.0.0.8:3128", HasCredentials: true,
			Added: true, Health: unknown, AddedAt: at, StreamSeq: seq + 1, Seq: 1000 + seq + 1}
		if h.s != want {
			t.Errorf("after re-add:\n%+v\nwant\n%+v", h.s, want)
		}
		if next, ok := NextCheckAt(h.s, cfg, 0.5); !ok || !next.IsZero() {
			t.Errorf("a re-added proxy is checked at once; got %v %v", next, ok)
		}
		_, err := h.try(add())
		mustErrIs(t, err, ErrAlreadyAdded)
		if envs := h.do(ok()); lastChange(envs).GetTo() != healthy {
			t.Errorf("re-added proxy's first success: %s", describe(envs))
		}
		if got := Fold(NewState(testID), h.all...); got != h.s {
			t.Errorf("replay across the re-add differs from the live state")
		}
	}
}
